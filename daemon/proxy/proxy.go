// Package proxy is the model proxy: the one way a sandboxed agent reaches a
// language model. It is served on the session's own unix socket (package
// sessionsock routes /api/ here), so the caller's identity is the socket it
// came through, never anything in the request.
//
// It forwards exactly one Ollama endpoint, POST /api/chat (streaming NDJSON
// or not), to exactly one configured upstream, for exactly the model the
// session's current profile names. Each call is rebuilt from a strictly
// decoded body — unknown, duplicate or case-variant keys refuse the call —
// with the proxy's own clamps on context length, prediction length and
// keep_alive; no header the agent sent is forwarded. Body size, message and
// tool counts, answer size, call rate, concurrency and tokens per day are
// capped per session, and both sides have timeouts. Tokens are charged at
// admission (a call's worst case) and settled when the answer's final line
// reports the real counts, so hanging up early never makes a call cheap
// (Budget); one Gate caps the calls all sessions have at the upstream.
//
// Every forwarded call leaves one audit record (session, model, tokens,
// duration, status), written before the agent gets the answer's final line
// (the one with "done"): if the record cannot be written, the agent gets an
// error line instead and its client fails the call. Every refusal is
// audited as one of a few fixed classes (never the agent's text), which the
// audit log folds into counted entries when repeated. Nothing here ever
// logs or audits conversation content.
package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
)

// Refusal classes: the only reasons the proxy writes to the audit log for a
// refused call (action "model.refused"). The agent gets the detail back in
// its answer; the log never sees the agent's text.
const (
	RefusedEndpoint    = "endpoint not allowed"
	RefusedMalformed   = "malformed request"
	RefusedTooLarge    = "request too large"
	RefusedTooMany     = "too many messages or tools"
	RefusedSlow        = "request too slow"
	RefusedModel       = "model not allowed"
	RefusedRate        = "call rate exceeded"
	RefusedTokens      = "daily token budget spent"
	RefusedConcurrency = "too many calls at once"
	RefusedResponse    = "response too large"
	RefusedNoProfile   = "no profile"
	// RefusedLedger: the session's token record in the daemon's store could
	// not be read or written, so the call cannot be charged (fail closed).
	RefusedLedger = "token record unavailable"
	// RefusedBusy: every upstream slot shared by all sessions stayed taken
	// for the whole wait (Limits.QueueTimeout).
	RefusedBusy = "model server busy"
)

// Audit actions.
const (
	ActionCall    = "model.call"
	ActionRefused = "model.refused"
)

// Limits bound what one session's agent can make the proxy do. Zero fields
// take the Default* values, never "unlimited".
type Limits struct {
	// MaxBody caps a request body. Default: DefaultMaxBody.
	MaxBody int64
	// MaxMessages and MaxTools cap a request's messages and tools.
	MaxMessages int
	MaxTools    int
	// MaxResponse caps the bytes of one answer, all lines together; MaxLine
	// one streamed line.
	MaxResponse int64
	MaxLine     int
	// DefaultNumCtx is the context length asked for when the agent names
	// none; MaxNumCtx the most it may ask for.
	DefaultNumCtx int64
	MaxNumCtx     int64
	// MaxNumPredict caps the tokens generated per call.
	MaxNumPredict int64
	// MaxKeepAlive caps how long the upstream keeps the model loaded after
	// a call (the agent's keep_alive is clamped to it; none means this).
	MaxKeepAlive time.Duration
	// MaxConcurrent caps one session's calls in flight (waiting for an
	// upstream slot included).
	MaxConcurrent int
	// QueueTimeout bounds how long a call waits for one of the upstream
	// slots all sessions share (Config.Gate) before it is refused as
	// RefusedBusy. The wait counts against CallTimeout.
	QueueTimeout time.Duration
	// CallTimeout bounds a whole call; HeaderTimeout the wait for the
	// upstream's answer to begin (a cold model load); IdleTimeout the gap
	// between two streamed lines; WriteTimeout one write to the agent (an
	// agent that stops reading is cut off).
	CallTimeout   time.Duration
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	WriteTimeout  time.Duration
}

// Defaults for Limits.
const (
	DefaultMaxBody       = 1 << 20
	DefaultMaxMessages   = 256
	DefaultMaxTools      = 32
	DefaultMaxResponse   = 4 << 20
	DefaultMaxLine       = 1 << 20
	DefaultNumCtx        = 8192
	DefaultMaxNumCtx     = 32768
	DefaultMaxNumPredict = 2048
	DefaultMaxKeepAlive  = 10 * time.Minute
	DefaultMaxConcurrent = 2
	DefaultQueueTimeout  = 2 * time.Minute
	DefaultCallTimeout   = 10 * time.Minute
	DefaultHeaderTimeout = 5 * time.Minute
	DefaultIdleTimeout   = 2 * time.Minute
	DefaultWriteTimeout  = 30 * time.Second
)

func (l Limits) withDefaults() Limits {
	def := func(p *int64, d int64) {
		if *p <= 0 {
			*p = d
		}
	}
	defi := func(p *int, d int) {
		if *p <= 0 {
			*p = d
		}
	}
	defd := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	def(&l.MaxBody, DefaultMaxBody)
	defi(&l.MaxMessages, DefaultMaxMessages)
	defi(&l.MaxTools, DefaultMaxTools)
	def(&l.MaxResponse, DefaultMaxResponse)
	defi(&l.MaxLine, DefaultMaxLine)
	def(&l.MaxNumCtx, DefaultMaxNumCtx)
	def(&l.DefaultNumCtx, min(DefaultNumCtx, l.MaxNumCtx))
	l.DefaultNumCtx = min(l.DefaultNumCtx, l.MaxNumCtx)
	def(&l.MaxNumPredict, DefaultMaxNumPredict)
	defd(&l.MaxKeepAlive, DefaultMaxKeepAlive)
	defi(&l.MaxConcurrent, DefaultMaxConcurrent)
	defd(&l.QueueTimeout, DefaultQueueTimeout)
	defd(&l.CallTimeout, DefaultCallTimeout)
	defd(&l.HeaderTimeout, DefaultHeaderTimeout)
	defd(&l.IdleTimeout, DefaultIdleTimeout)
	defd(&l.WriteTimeout, DefaultWriteTimeout)
	return l
}

// Auditor is the part of the audit log the proxy writes (audit.Log).
type Auditor interface {
	Append(r audit.Record) (audit.Entry, error)
	Refuse(actor, action, subject, reason string) error
}

// Config wires one session's proxy.
type Config struct {
	// Upstream is the Ollama server's base URL (config model.ollama_url).
	Upstream string
	// Session names the session in audit records; the actor is "agent:"
	// and the session.
	Session string
	// Profile returns the session's current profile: its model and limits
	// are read on every call, so an approved change applies at once.
	Profile func(ctx context.Context) (profile.Profile, error)
	// Budget is the session's budget; the supervisor keeps it so that it
	// outlives the sandbox. Nil starts a fresh one.
	Budget *Budget
	Audit  Auditor
	// Client reaches the upstream; nil means NewUpstreamClient(Limits).
	// Share one among sessions.
	Client *http.Client
	// Gate caps calls at the upstream across sessions: share one among
	// every session's proxy. Nil gives this proxy a gate of its own of
	// DefaultMaxUpstreamCalls (which caps nothing across sessions).
	Gate   *Gate
	Limits Limits
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	Log *slog.Logger
}

// Proxy serves one session's model calls. It is an http.Handler for the
// session socket's /api/ paths.
type Proxy struct {
	cfg     Config
	lim     Limits
	chatURL string
	actor   string
	client  *http.Client
	gate    *Gate
}

// New checks cfg and returns the session's proxy.
func New(cfg Config) (*Proxy, error) {
	u, err := url.Parse(cfg.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("proxy: upstream %q must be an http(s) URL with a host and nothing else: set model.ollama_url", cfg.Upstream)
	}
	if cfg.Profile == nil || cfg.Audit == nil || cfg.Session == "" {
		return nil, errors.New("proxy: a proxy needs a session, its profile and the audit log")
	}
	if cfg.Budget == nil {
		cfg.Budget = &Budget{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lim := cfg.Limits.withDefaults()
	client := cfg.Client
	if client == nil {
		client = NewUpstreamClient(lim)
	}
	gate := cfg.Gate
	if gate == nil {
		gate = NewGate(0)
	}
	return &Proxy{
		cfg: cfg, lim: lim, client: client, gate: gate,
		chatURL: u.JoinPath(wire.PathModelChat).String(),
		actor:   "agent:" + cfg.Session,
	}, nil
}

// NewUpstreamClient returns the HTTP client the proxy reaches Ollama with:
// no environment proxy, no redirects (the call goes to the configured
// upstream or nowhere), bounded dialing and header waits.
func NewUpstreamClient(lim Limits) *http.Client {
	lim = lim.withDefaults()
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			TLSHandshakeTimeout:    10 * time.Second,
			ResponseHeaderTimeout:  lim.HeaderTimeout,
			MaxIdleConnsPerHost:    8,
			IdleConnTimeout:        90 * time.Second,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Used returns the tokens the session has used today.
func (p *Proxy) Used() int64 { return p.cfg.Budget.Used(p.cfg.Now()) }

// ServeHTTP serves one request from the agent.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != wire.PathModelChat {
		p.refuse(w, http.StatusNotFound, &requestError{class: RefusedEndpoint, detail: r.Method + " " + truncate(r.URL.Path, 64) + " (only POST /api/chat is forwarded)"})
		return
	}
	rc := http.NewResponseController(w)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.lim.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			p.refuse(w, wire.ModelStatusTooLarge, refusal(0, RefusedTooLarge, "the body is over %d bytes", p.lim.MaxBody))
		case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
			p.refuse(w, http.StatusRequestTimeout, refusal(0, RefusedSlow, "the body did not arrive in time"))
		default:
			p.refuse(w, http.StatusBadRequest, refusal(0, RefusedMalformed, "reading the body: %v", err))
		}
		return
	}
	// The body is in. From here the call's own timeouts bound it: the
	// socket's read deadline would otherwise fire mid-answer and cancel it.
	_ = rc.SetReadDeadline(time.Time{})
	req, up, err := decodeChat(body, p.lim)
	if err != nil {
		p.refuse(w, 0, err)
		return
	}
	prof, err := p.cfg.Profile(r.Context())
	if err != nil {
		p.cfg.Log.Error("model proxy: reading the session's profile", "session", p.cfg.Session, "err", err)
		p.refuse(w, http.StatusServiceUnavailable, refusal(0, RefusedNoProfile, "the session's profile could not be read"))
		return
	}
	if !sameModel(req.Model, prof.Model) {
		p.refuse(w, wire.ModelStatusNotAllowed, refusal(0, RefusedModel, "this session may use only %q; ask the owner to change the profile's model", prof.Model))
		return
	}
	// Charge the call's worst case now, out of what the day has left; it
	// settles to the upstream's counts when the final line arrives. The
	// prediction is cut to what the day has left.
	prompt, predict := estimate(int64(len(body)), *up.Options.NumCtx, *up.Options.NumPredict)
	tk, class, err := p.cfg.Budget.admit(r.Context(), p.cfg.Now(), budgetLimits{
		callsPerMinute: prof.Limits.CallsPerMinute,
		tokensPerDay:   prof.Limits.TokensPerDay,
		concurrent:     p.lim.MaxConcurrent,
	}, prompt, predict)
	switch {
	case class == RefusedLedger:
		p.cfg.Log.Error("model proxy: the session's token budget", "session", p.cfg.Session, "err", err)
		p.refuse(w, http.StatusServiceUnavailable, refusal(0, class, "the session's token count could not be kept; tell the operator"))
		return
	case class != "":
		p.refuse(w, wire.ModelStatusBudget, refusal(0, class, "try again later or ask the owner to raise the session's limits"))
		return
	}
	up.Options.NumPredict = &tk.numPredict
	p.forward(w, rc, r.Context(), prof.Model, up, tk)
}

// refuse audits a refusal (its class only) and answers the agent in
// Ollama's error shape, with the detail.
func (p *Proxy) refuse(w http.ResponseWriter, status int, err error) {
	var re *requestError
	if !errors.As(err, &re) {
		re = &requestError{status: http.StatusBadRequest, class: RefusedMalformed, detail: err.Error()}
	}
	if status == 0 {
		status = re.status
	}
	if aerr := p.cfg.Audit.Refuse(p.actor, ActionRefused, p.cfg.Session, re.class); aerr != nil {
		p.cfg.Log.Error("audit write failed", "session", p.cfg.Session, "err", aerr)
	}
	writeError(w, status, "ironclaw proxy: "+re.class+": "+truncate(re.detail, 256))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

func errorLine(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, '\n')
}

// lineMeta is what the proxy reads from each line of the upstream's answer:
// never the content, only whether it ended, failed, and what it cost.
type lineMeta struct {
	Done            bool   `json:"done"`
	Error           string `json:"error"`
	PromptEvalCount int64  `json:"prompt_eval_count"`
	EvalCount       int64  `json:"eval_count"`
}

// callResult is the audited outcome of one forwarded call.
type callResult struct {
	status        int
	outcome       string
	prompt, eval  int64
	chunks        int64
	bytes         int64
	tokensCharged int64
	wroteHeader   bool // the agent has a 200 header: failures go as an error line
	// reported: the final line arrived with the upstream's counts.
	reported bool
	// idle: the upstream certainly did no work for the call (it was not
	// reached, or refused the call up front), so nothing is charged.
	idle bool
}

// fail records a failed answer; status is what the agent gets if no header
// went out yet (after one, it gets an error line under the 200).
func (r *callResult) fail(outcome string, status int) {
	r.outcome = outcome
	if !r.wroteHeader {
		r.status = status
	}
}

// forward waits for an upstream slot, makes the upstream call, streams its
// answer to the agent and settles the call's ticket.
func (p *Proxy) forward(w http.ResponseWriter, rc *http.ResponseController, ctx context.Context, model string, up *upstreamRequest, tk *ticket) {
	start := p.cfg.Now()
	ctx, cancel := context.WithTimeout(ctx, p.lim.CallTimeout)
	defer cancel()
	wait, stopWait := context.WithTimeout(ctx, p.lim.QueueTimeout)
	leave, err := p.gate.enter(wait, p.cfg.Session)
	stopWait()
	if err != nil {
		// The call never reached the upstream: it costs nothing.
		if serr := tk.settle(ctx, p.cfg.Now(), 0); serr != nil {
			p.cfg.Log.Error("model proxy: settling a call", "session", p.cfg.Session, "err", serr)
		}
		p.refuse(w, http.StatusServiceUnavailable, refusal(0, RefusedBusy, "all %d model slots stayed busy for %s; try again later", p.gate.Size(), p.lim.QueueTimeout))
		return
	}
	defer leave()
	_ = rc.SetWriteDeadline(time.Now().Add(p.lim.WriteTimeout))
	res := callResult{}
	final, errMsg := p.exchange(ctx, cancel, w, rc, up, &res)
	// Charge what the upstream reported. A call that ended without saying
	// (the agent hung up, the answer was cut or timed out) keeps its whole
	// reservation; one the upstream never worked on costs nothing.
	switch {
	case res.reported:
		res.tokensCharged = res.prompt + res.eval
	case res.idle:
		res.tokensCharged = 0
	default:
		res.tokensCharged = tk.reserved
	}
	tk.release(ctx, p.cfg.Now(), res.tokensCharged)
	rec := audit.Record{
		Actor: p.actor, Action: ActionCall, Subject: p.cfg.Session, Decision: "allow",
		Result: fmt.Sprintf("model=%s status=%d outcome=%s prompt_tokens=%d eval_tokens=%d reserved=%d charged=%d lines=%d bytes=%d duration_ms=%d stream=%t",
			truncate(model, 100), res.status, res.outcome, res.prompt, res.eval, tk.reserved, res.tokensCharged, res.chunks, res.bytes, p.cfg.Now().Sub(start).Milliseconds(), up.Stream),
	}
	if _, err := p.cfg.Audit.Append(rec); err != nil {
		p.cfg.Log.Error("audit write failed; the model's answer is withheld", "session", p.cfg.Session, "err", err)
		final, errMsg = nil, "ironclaw proxy: the call could not be audited, so its answer is withheld: tell the operator"
	}
	_ = rc.SetWriteDeadline(time.Now().Add(p.lim.WriteTimeout))
	switch {
	case final != nil:
		if !res.wroteHeader {
			startAnswer(w, up.Stream)
		}
		w.Write(final)
	case res.wroteHeader:
		if errMsg != "" {
			w.Write(errorLine(errMsg))
		}
	default:
		status := res.status
		if status == http.StatusOK {
			status = http.StatusInternalServerError
		}
		writeError(w, status, errMsg)
	}
	_ = rc.Flush()
	// Recorded after the answer is on its way, off the turn's critical path:
	// until then the store keeps the admission's reservation (at least the
	// charge), so a crash meanwhile overcounts, never undercounts.
	if err := tk.record(ctx); err != nil {
		// The charge stands in memory; the store keeps the reservation
		// written at admission.
		p.cfg.Log.Error("model proxy: recording a call's tokens", "session", p.cfg.Session, "err", err)
	}
}

func startAnswer(w http.ResponseWriter, stream bool) {
	if stream {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(http.StatusOK)
}

// exchange sends up and copies the answer's lines to w, all but the final
// one, which it returns so that the caller sends it only once the call is
// audited. A failure comes back as errMsg, sent as an error line once a
// 200 header is out (res.wroteHeader), else with res.status.
func (p *Proxy) exchange(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter, rc *http.ResponseController, up *upstreamRequest, res *callResult) (final []byte, errMsg string) {
	res.idle = true
	buf, err := json.Marshal(up)
	if err != nil {
		res.status, res.outcome = http.StatusInternalServerError, "encode"
		return nil, "ironclaw proxy: encoding the call failed"
	}
	ureq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.chatURL, bytes.NewReader(buf))
	if err != nil {
		res.status, res.outcome = http.StatusInternalServerError, "request"
		return nil, "ironclaw proxy: building the call failed"
	}
	// A fresh header: nothing the agent sent is forwarded.
	ureq.Header = http.Header{"Content-Type": {"application/json"}}
	resp, err := p.client.Do(ureq)
	if err != nil {
		// Only a failed dial proves the upstream never saw the call; any
		// later failure (a hang-up or timeout during a long prompt) may
		// have cost it the work.
		var oe *net.OpError
		res.idle = errors.As(err, &oe) && oe.Op == "dial"
		res.status, res.outcome = http.StatusBadGateway, "unreachable"
		if ctx.Err() != nil {
			res.status, res.outcome = http.StatusGatewayTimeout, "timeout"
		}
		p.cfg.Log.Warn("model proxy: the upstream did not answer", "session", p.cfg.Session, "err", err)
		return nil, "ironclaw proxy: the model server did not answer; the operator should check that Ollama runs at model.ollama_url"
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		_ = json.Unmarshal(b, &e)
		res.status, res.outcome = resp.StatusCode, "upstream error"
		switch {
		case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusNotFound:
			// Passed on: "model not found" and "does not support tools"
			// tell the agent what to say.
		default:
			res.status = http.StatusBadGateway
		}
		if e.Error == "" {
			e.Error = resp.Status
		}
		return nil, "ollama: " + truncate(e.Error, 256)
	}
	// Ollama refuses up front (unknown model, no tool support) with a
	// status; from a 200 on, the model is working.
	res.idle = false
	res.status, res.outcome = http.StatusOK, "done"
	idle := time.AfterFunc(p.lim.IdleTimeout, cancel)
	defer idle.Stop()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(br, p.lim.MaxLine)
		idle.Reset(p.lim.IdleTimeout)
		if len(bytes.TrimSpace(line)) > 0 {
			res.bytes += int64(len(line)) + 1
			if res.bytes > p.lim.MaxResponse {
				res.fail("too large", wire.ModelStatusTooLarge)
				p.refuseQuiet(RefusedResponse)
				return nil, fmt.Sprintf("%s: over %d bytes", wire.ModelErrTooLarge, p.lim.MaxResponse)
			}
			var m lineMeta
			if err := json.Unmarshal(line, &m); err != nil {
				res.fail("malformed answer", http.StatusBadGateway)
				return nil, "ironclaw proxy: the model server sent a malformed line"
			}
			if m.Error != "" {
				res.fail("upstream error", http.StatusBadGateway)
				return nil, "ollama: " + truncate(m.Error, 256)
			}
			res.chunks++
			if m.Done {
				res.prompt, res.eval = max(m.PromptEvalCount, 0), max(m.EvalCount, 0)
				res.reported = true
				return append(line, '\n'), ""
			}
			_ = rc.SetWriteDeadline(time.Now().Add(p.lim.WriteTimeout))
			if !res.wroteHeader {
				startAnswer(w, up.Stream)
				res.wroteHeader = true
			}
			if _, werr := w.Write(append(line, '\n')); werr != nil {
				res.outcome = "agent hung up"
				return nil, ""
			}
			if ferr := rc.Flush(); ferr != nil {
				res.outcome = "agent hung up"
				return nil, ""
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, errLineTooLong):
			res.fail("too large", wire.ModelStatusTooLarge)
			p.refuseQuiet(RefusedResponse)
			return nil, fmt.Sprintf("%s: a line over %d bytes", wire.ModelErrTooLarge, p.lim.MaxLine)
		case errors.Is(err, io.EOF):
			res.fail("cut short", http.StatusBadGateway)
			return nil, "ironclaw proxy: the model server ended the answer early"
		default:
			res.fail("broken", http.StatusBadGateway)
			if ctx.Err() != nil {
				res.fail("timeout", http.StatusGatewayTimeout)
			}
			return nil, "ironclaw proxy: the model's answer stopped (" + res.outcome + ")"
		}
	}
}

// refuseQuiet audits a refusal whose answer is already under way.
func (p *Proxy) refuseQuiet(class string) {
	if err := p.cfg.Audit.Refuse(p.actor, ActionRefused, p.cfg.Session, class); err != nil {
		p.cfg.Log.Error("audit write failed", "session", p.cfg.Session, "err", err)
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line (without its newline) of at most max bytes. At
// the end of the input it returns what is left with io.EOF.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max+1 {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}
