package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/model"
	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
	"github.com/ironclaw/ironclaw/daemon/sessionsock"
)

const testModel = "scripted:1b"

// harness is one session's proxy served on a real session socket, in front
// of an upstream (a scripted server unless a test names another).
type harness struct {
	t        testing.TB
	up       *ollamatest.Scripted
	proxy    *Proxy
	sock     string
	auditLog string
	log      *audit.Log
	prof     profile.Profile
	profMu   sync.Mutex
	provider model.Provider
}

type harnessOpt struct {
	limits      Limits
	upstream    string // default: the scripted server
	readTimeout time.Duration
	budget      *Budget
	model       string // the profile's model (default testModel)
	auditor     func(*audit.Log) Auditor
}

func newHarness(t testing.TB, o harnessOpt, replies ...ollamatest.Reply) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "ic")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: t, up: ollamatest.NewScripted(t, replies...), auditLog: filepath.Join(dir, "audit.log")}
	h.prof = profile.Default(cmp.Or(o.model, testModel), "")
	h.log, err = audit.Open(h.auditLog, audit.WithRefuseWindow(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.log.Close() })
	upstream := o.upstream
	if upstream == "" {
		upstream = h.up.URL
	}
	var aud Auditor = h.log
	if o.auditor != nil {
		aud = o.auditor(h.log)
	}
	h.proxy, err = New(Config{
		Upstream: upstream,
		Session:  "0123456789abcdef0123456789abcdef",
		Profile: func(context.Context) (profile.Profile, error) {
			h.profMu.Lock()
			defer h.profMu.Unlock()
			return h.prof, nil
		},
		Budget: o.budget,
		Audit:  aud,
		Limits: o.limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(dir, "s")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	h.sock = filepath.Join(sockDir, "x.sock")
	srv, err := sessionsock.Listen(h.sock, &sessionsock.Session{
		Model: h.proxy, AgentUID: -1, AgentGID: -1, ReadTimeout: o.readTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h.provider = model.NewOllama(h.sock)
	return h
}

func (h *harness) setProfile(f func(p *profile.Profile)) {
	h.profMu.Lock()
	defer h.profMu.Unlock()
	f(&h.prof)
}

// chat makes a call for the profile's model through the agent's real
// provider.
func (h *harness) chat(msgs ...string) (model.Response, error) {
	h.profMu.Lock()
	name := h.prof.Model
	h.profMu.Unlock()
	return h.chatAs(name, msgs...)
}

// chatAs makes a call for the named model.
func (h *harness) chatAs(name string, msgs ...string) (model.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := model.Request{Model: name, NumCtx: 4096}
	for _, m := range msgs {
		req.Messages = append(req.Messages, model.Message{Role: model.RoleUser, Content: m})
	}
	return h.provider.Chat(ctx, req)
}

// raw sends one raw HTTP request over the socket and returns the status
// and body.
func (h *harness) raw(method, path, body string) (int, string) {
	h.t.Helper()
	c := unixClient(h.sock)
	defer c.CloseIdleConnections() // the socket serves few connections at once
	req, err := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// auditEntry is one line of the audit log, as the log writes it.
type auditEntry struct {
	Actor, Action, Subject, Decision, Result string
	Count                                    uint64
}

// entries closes the log (flushing aggregated counts) and reads it back.
func (h *harness) entries() []auditEntry {
	h.t.Helper()
	if err := h.log.Close(); err != nil {
		h.t.Fatal(err)
	}
	f, err := os.Open(h.auditLog)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	var out []auditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// refusals sums the counts of model.refused entries per class.
func refusals(es []auditEntry) map[string]uint64 {
	m := map[string]uint64{}
	for _, e := range es {
		if e.Action == ActionRefused {
			m[e.Result] += e.Count
		}
	}
	return m
}

func calls(es []auditEntry) []auditEntry {
	var out []auditEntry
	for _, e := range es {
		if e.Action == ActionCall {
			out = append(out, e)
		}
	}
	return out
}

// chatBody is a valid request body for raw requests.
func chatBody(extra string) string {
	return `{"model":"` + testModel + `","messages":[{"role":"user","content":"hi"}],"stream":false` + extra + `}`
}
