// Package operator implements daemon/api over the daemon's parts: the change
// gateway, the store, the session supervisor and the audit log. Each
// surface (the admin socket, the SSH console) authenticates its operator and
// asks Service.For for a value bound to them; nothing here trusts an actor
// named in a request.
//
// It must never decide anything itself: approvals go through the gateway,
// session actions through the supervisor, and what they audit is what
// happened. Reading a conversation's content is always its own audited act.
package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// Gateway is what the service needs of the change gateway.
type Gateway interface {
	List(ctx context.Context, f gateway.Filter) ([]gateway.Summary, error)
	Show(ctx context.Context, id gateway.ID) (gateway.View, error)
	Approve(ctx context.Context, id gateway.ID, actor string, hash [32]byte) error
	Deny(ctx context.Context, id gateway.ID, actor string, hash [32]byte, note string) error
	Submit(ctx context.Context, r gateway.Request) (gateway.Ticket, error)
}

// Store is what the service reads from the store.
type Store interface {
	ListSessions(ctx context.Context) ([]store.Session, error)
	GetSession(ctx context.Context, id wire.SessionID) (store.Session, error)
	CurrentProfile(ctx context.Context, id wire.SessionID) (uint64, profile.Profile, error)
	Profile(ctx context.Context, id wire.SessionID, version uint64) (profile.Profile, error)
	ProfileVersions(ctx context.Context, id wire.SessionID) ([]store.ProfileVersionInfo, error)
}

// Supervisor is what the service needs of the session supervisor.
type Supervisor interface {
	Status(id wire.SessionID) (supervisor.Status, bool)
	Send(ctx context.Context, binding, from, text string) (wire.SessionID, uint64, error)
	Subscribe(binding string) chan supervisor.Reply
	Unsubscribe(ch chan supervisor.Reply)
	Erase(ctx context.Context, id wire.SessionID, actor string) error
	Resume(ctx context.Context, id wire.SessionID, operator string) error
	CreateSession(ctx context.Context, binding, actor string) (wire.SessionID, error)
	Stop(ctx context.Context, id wire.SessionID, actor string) error
	Restart(ctx context.Context, id wire.SessionID, actor string) error
	ResetOutbox(ctx context.Context, id wire.SessionID, actor string) error
	Records(ctx context.Context, id wire.SessionID, actor string) (store.Records, error)
	// Transcript audits the read as actor's, then reads; no audit, no read.
	Transcript(ctx context.Context, id wire.SessionID, actor string) ([]wire.Turn, error)
	Undelivered(ctx context.Context, binding string) ([]supervisor.Reply, error)
	Delivered(ctx context.Context, session wire.SessionID, seq uint64) error
}

// AuditLog is what the service needs of the audit log.
type AuditLog interface {
	Verify(anchor *audit.Anchor) (audit.Report, error)
}

// Config wires a Service.
type Config struct {
	Gateway    Gateway
	Store      Store
	Supervisor Supervisor
	Audit      AuditLog
	// AuditPath is the audit log file, read for AuditEntries.
	AuditPath string
	// Anchor returns the audit anchor the daemon keeps in its store.
	Anchor func(ctx context.Context) (*audit.Anchor, error)
	// Status fills in what only the daemon knows (version, health).
	Status func(ctx context.Context) api.Status
	// PinAgent pins the installed agent for new sessions on behalf of actor.
	PinAgent func(actor string) error
	// Usage reads a running sandbox's cgroup usage by its container id
	// (sandbox.CgroupHost.Usage); nil leaves usage out of the session list.
	Usage func(containerID string) (sandbox.CgroupUsage, error)
	// ModelProbe asks the model server whether it has the model
	// (proxy.Preflight); nil leaves the model's health out of Status.
	// Status calls it at most once per ModelProbeTTL, with ModelProbeTimeout.
	ModelProbe func(ctx context.Context) error
	// LocalBinding is the binding of the local console session.
	LocalBinding string
	// MatrixDevices reads the Matrix channel's devices; ok is false (or the
	// func nil) when there is no Matrix channel.
	MatrixDevices func(ctx context.Context) (d api.MatrixDevices, ok bool, err error)
	// Hub carries events; nil makes one.
	Hub *Hub
}

// Service makes operator-bound api values.
type Service struct {
	cfg   Config
	hub   *Hub
	model modelCache
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Gateway == nil || cfg.Store == nil || cfg.Supervisor == nil || cfg.Audit == nil || cfg.Anchor == nil || cfg.Status == nil || cfg.PinAgent == nil {
		return nil, errors.New("operator: Gateway, Store, Supervisor, Audit, Anchor, Status and PinAgent are required")
	}
	if cfg.Hub == nil {
		cfg.Hub = NewHub()
	}
	return &Service{cfg: cfg, hub: cfg.Hub}, nil
}

// Hub is the service's event hub (the daemon publishes what happens
// outside the service on it, such as an agent filing a request).
func (s *Service) Hub() *Hub { return s.hub }

// For returns the api bound to the operator who authenticated as actor
// ("operator:local:<user>" or "operator:SHA256:<fingerprint>") on surface
// via. The caller must have authenticated actor itself.
func (s *Service) For(actor, via string) api.Operator {
	return &bound{s: s, who: api.Identity{Actor: actor, Via: via}}
}

type bound struct {
	s   *Service
	who api.Identity
}

var _ api.Operator = (*bound)(nil)

func (b *bound) Who() api.Identity { return b.who }

func (b *bound) Status(ctx context.Context) (api.Status, error) {
	st := b.s.cfg.Status(ctx)
	ss, err := b.s.cfg.Store.ListSessions(ctx)
	if err != nil {
		return st, internal("listing sessions", err)
	}
	st.Sessions = 0
	for _, x := range ss {
		if x.State == store.StateActive {
			st.Sessions++
			if rs, ok := b.s.cfg.Supervisor.Status(x.ID); ok && rs.Running {
				st.Running++
			}
		}
	}
	pending, err := b.s.cfg.Gateway.List(ctx, gateway.Filter{States: []store.ChangeState{store.ChangePending}})
	if err != nil {
		return st, internal("listing changes", err)
	}
	st.PendingChanges = len(pending)
	st.ModelHealth, st.ModelHint = b.s.modelHealth(ctx)
	return st, nil
}

func (b *bound) PinAgent(ctx context.Context) (api.Status, error) {
	if err := b.s.cfg.PinAgent(b.who.Actor); err != nil {
		return api.Status{}, internal("pinning the agent", err)
	}
	return b.Status(ctx)
}

func internal(what string, err error) error {
	return &api.Error{Code: api.CodeInternal, Message: what + ": " + err.Error(), Hint: "the daemon's log has more; try again"}
}

// --- conversations ---------------------------------------------------------

// MaxChatWait bounds ChatRequest.WaitSeconds.
const MaxChatWait = 300 * time.Second

func (b *bound) Chat(ctx context.Context, r api.ChatRequest) (api.ChatReply, error) {
	if r.Text == "" || len(r.Text) > wire.MaxTextSize || !utf8.ValidString(r.Text) {
		return api.ChatReply{}, &api.Error{Code: api.CodeInvalid, Message: "the message must be 1 byte to 64 KiB of UTF-8 text"}
	}
	binding := b.s.cfg.LocalBinding
	if r.Session != "" {
		s, err := b.session(ctx, r.Session)
		if err != nil {
			return api.ChatReply{}, err
		}
		if s.State != store.StateActive {
			return api.ChatReply{}, &api.Error{Code: api.CodeConflict, Message: "session " + r.Session + " is " + string(s.State)}
		}
		binding = s.Binding
	}
	wait := min(time.Duration(max(r.WaitSeconds, 0))*time.Second, MaxChatWait)
	// A reply stays in the store's delivery intents until a chat hands it
	// over: one that no chat was waiting for (the client gave up, the
	// daemon restarted) comes back with the next chat, once. They are
	// listed before this message is sent, so a fast answer to it is never
	// among them (the intents do not say which message they answer).
	// Only the local console session's replies are the chat's to hand
	// over; another channel's session (Matrix) delivers its own.
	var earlier []supervisor.Reply
	if binding == b.s.cfg.LocalBinding {
		var err error
		if earlier, err = b.s.cfg.Supervisor.Undelivered(ctx, binding); err != nil {
			return api.ChatReply{}, &api.Error{Code: api.CodeUnavailable, Message: "listing undelivered replies: " + err.Error()}
		}
	}
	sub := b.s.cfg.Supervisor.Subscribe(binding)
	defer b.s.cfg.Supervisor.Unsubscribe(sub)
	id, seq, err := b.s.cfg.Supervisor.Send(ctx, binding, b.who.Actor, r.Text)
	if err != nil {
		return api.ChatReply{}, &api.Error{Code: api.CodeUnavailable, Message: "sending: " + err.Error(), Hint: "see the session's state in `sessions`"}
	}
	out := api.ChatReply{Session: id.String(), Seq: seq}
	var handed []uint64
	for _, e := range earlier {
		if e.Session == id {
			out.Earlier = append(out.Earlier, e.Text)
			handed = append(handed, e.Seq)
		}
	}
	done := func() (api.ChatReply, error) {
		for _, s := range handed {
			if err := b.s.cfg.Supervisor.Delivered(context.WithoutCancel(ctx), id, s); err != nil {
				return out, &api.Error{Code: api.CodeUnavailable, Message: "recording the delivery: " + err.Error()}
			}
		}
		return out, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case rep := <-sub:
			if rep.Session == id && rep.InReplyTo == seq {
				out.Reply, out.Replied = rep.Text, true
				if binding == b.s.cfg.LocalBinding {
					handed = append(handed, rep.Seq)
				}
				return done()
			}
		case <-timer.C:
			return done()
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// --- audit -----------------------------------------------------------------

func (b *bound) AuditEntries(ctx context.Context, q api.AuditQuery) ([]api.AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = api.DefaultAuditLimit
	}
	limit = min(limit, api.MaxAuditLimit)
	needle := strings.ToLower(q.Contains)
	// From the end of the file backwards: the newest entries of a long log
	// cost only their own lines.
	var out []api.AuditEntry
	err := audit.Tail(b.s.cfg.AuditPath, func(e audit.Entry) bool {
		if ctx.Err() != nil {
			return false
		}
		if needle == "" || matches(e, needle) {
			out = append(out, api.AuditEntry{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action,
				Subject: e.Subject, Decision: e.Decision, Result: e.Result, Count: e.Count})
		}
		return len(out) < limit
	})
	if err != nil {
		return nil, internal("reading the audit log", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	slices.Reverse(out) // oldest first, as documented
	return out, nil
}

func matches(e audit.Entry, needle string) bool {
	for _, f := range []string{e.Actor, e.Action, e.Subject, e.Decision, e.Result} {
		if strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}

func (b *bound) VerifyAudit(ctx context.Context) (api.AuditReport, error) {
	anchor, err := b.s.cfg.Anchor(ctx)
	if err != nil {
		return api.AuditReport{}, internal("reading the audit anchor", err)
	}
	rep, err := b.s.cfg.Audit.Verify(anchor)
	out := api.AuditReport{Entries: rep.Entries, Proved: []string{"hash chain"}}
	if rep.MACVerified {
		out.Proved = append(out.Proved, "MACs")
	}
	if rep.Anchored {
		out.Proved = append(out.Proved, "anchor")
	}
	var ve *audit.VerifyError
	switch {
	case errors.As(err, &ve):
		out.Failure = fmt.Sprintf("entry %d (line %d): %s", ve.Seq, ve.Line, ve.Reason)
		out.Proved = nil
		return out, nil
	case err != nil:
		return api.AuditReport{}, internal("verifying the audit log", err)
	}
	out.OK = true
	return out, nil
}

// --- model health ----------------------------------------------------------

// How often and how long Status asks the model server about the model: the
// overview refreshes often, the probe is an HTTP round trip.
const (
	ModelProbeTTL     = 10 * time.Second
	ModelProbeTimeout = 2 * time.Second
)

// modelCache holds the last probe's answer; one probe runs at a time and
// callers that come while it runs wait for it rather than start another.
type modelCache struct {
	mu     sync.Mutex
	at     time.Time
	health string
	hint   string
}

// modelHealth is "ok", "unreachable", "model missing" or "error" with a
// hint (what the probe said), or "" when there is no probe.
func (s *Service) modelHealth(ctx context.Context) (string, string) {
	if s.cfg.ModelProbe == nil {
		return "", ""
	}
	c := &s.model
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < ModelProbeTTL {
		return c.health, c.hint
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ModelProbeTimeout)
	defer cancel()
	err := s.cfg.ModelProbe(pctx)
	c.at, c.hint = time.Now(), ""
	switch {
	case err == nil:
		c.health = "ok"
	case errors.Is(err, proxy.ErrModelMissing):
		c.health, c.hint = "model missing", err.Error()
	case errors.Is(err, proxy.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		c.health, c.hint = "unreachable", err.Error()
	default:
		c.health, c.hint = "error", err.Error()
	}
	return c.health, c.hint
}

// --- events ----------------------------------------------------------------

func (b *bound) Subscribe(ctx context.Context) <-chan api.Event { return b.s.hub.Subscribe(ctx) }
