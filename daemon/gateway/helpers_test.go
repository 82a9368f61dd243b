package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

var (
	digestA = "sha256:" + strings.Repeat("a1", 32)
	digestB = "sha256:" + strings.Repeat("b2", 32)
)

const (
	opKey   = "operator:SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
	opLocal = "operator:local:alice"
)

var ctx = context.Background()

func testHost() policy.Host {
	return policy.Host{
		Tools:                []string{"reply", "request_change", "schedule", "remember", "recall", "notes"},
		MaxMemoryMiB:         4096,
		MaxCPUMillis:         4000,
		MaxTmpMiB:            1024,
		MaxOutboxMiB:         1024,
		MaxOutboxInodes:      100000,
		MaxTokensPerDay:      10_000_000,
		MaxCallsPerMinute:    600,
		MaxInstructionsBytes: 16 << 10,
		Models:               []string{"llama3.2:3b", "qwen2.5:7b"},
		BuiltDigests:         []string{digestA, digestB},
	}
}

func baseProfile() profile.Profile {
	p := profile.Default("llama3.2:3b", digestA)
	p.Contacts = []string{"@alice:example.org"}
	return p
}

// recorder is an Applier that remembers what it was told.
type recorder struct {
	mu    sync.Mutex
	calls []appliedCall
	err   error
}

type appliedCall struct {
	session   wire.SessionID
	version   uint64
	canonical []byte
	restart   bool
}

func (r *recorder) ProfileApplied(_ context.Context, s wire.SessionID, v uint64, c []byte, restart bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, appliedCall{s, v, append([]byte(nil), c...), restart})
	return r.err
}

func (r *recorder) all() []appliedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]appliedCall(nil), r.calls...)
}

// faultyAudit passes everything to a real log, except that Append of the
// action named in failAction fails while it is set.
type faultyAudit struct {
	*audit.Log
	failAction atomic.Value // string
}

var errInjected = errors.New("injected audit failure")

func (f *faultyAudit) Append(r audit.Record) (audit.Entry, error) {
	if a, _ := f.failAction.Load().(string); a != "" && a == r.Action {
		return audit.Entry{}, errInjected
	}
	return f.Log.Append(r)
}

// offsetClock is real time plus an offset the test moves forward (the store
// stamps decisions with real time).
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }

type env struct {
	t      testing.TB
	dir    string
	dbPath string
	st     *store.Store
	log    *audit.Log
	faults *faultyAudit
	gw     *Gateway
	app    *recorder
	clock  *offsetClock
	cfg    Config
}

func newEnv(t testing.TB, tweak ...func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, dbPath: filepath.Join(dir, "ironclaw.db"), app: &recorder{}, clock: &offsetClock{}}
	var err error
	if e.st, err = store.Open(e.dbPath, &key); err != nil {
		t.Fatal(err)
	}
	if e.log, err = audit.Open(filepath.Join(dir, "audit.log")); err != nil {
		t.Fatal(err)
	}
	e.faults = &faultyAudit{Log: e.log}
	t.Cleanup(func() {
		e.log.Close()
		e.st.Close()
	})
	e.cfg = Config{Store: e.st, Audit: e.faults, Applier: e.app, Host: testHost(), Now: e.clock.now}
	for _, f := range tweak {
		f(&e.cfg)
	}
	if e.gw, err = New(ctx, e.cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// reopen builds a new Gateway over the same store and log.
func (e *env) reopen() *Gateway {
	e.t.Helper()
	g, err := New(ctx, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

func (e *env) newSession() wire.SessionID {
	e.t.Helper()
	id, err := wire.NewSessionID()
	if err != nil {
		e.t.Fatal(err)
	}
	wk := make([]byte, 40)
	rand.Read(wk)
	if err := e.st.CreateSession(ctx, id, "console:"+id.String(), wk, baseProfile()); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) current(s wire.SessionID) (uint64, []byte) {
	e.t.Helper()
	v, p, err := e.st.CurrentProfile(ctx, s)
	if err != nil {
		e.t.Fatal(err)
	}
	return v, p.Canonical()
}

// proposal returns the session's current profile changed by mutate.
func (e *env) proposal(s wire.SessionID, mutate func(*profile.Profile)) []byte {
	e.t.Helper()
	_, p, err := e.st.CurrentProfile(ctx, s)
	if err != nil {
		e.t.Fatal(err)
	}
	mutate(&p)
	return p.Canonical()
}

func agentBody(t testing.TB, kind string, proposed []byte, reason string) []byte {
	t.Helper()
	b, err := wire.Encode(wire.ChangeRequest{Change: kind, Proposed: string(proposed), Reason: reason})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// agentAsk files an agent request for instructions text.
func (e *env) agentAsk(s wire.SessionID, kind string, mutate func(*profile.Profile), reason string) (Ticket, error) {
	e.t.Helper()
	return e.submitAgentBody(s, agentBody(e.t, kind, e.proposal(s, mutate), reason))
}

// submitAgentBody takes an agent's change-request row body the way
// production does: strictly decoded (as the outbox reader decodes every
// row), then through the same gateway function the supervisor's ChangeSink
// calls (SubmitAgentChange). A body that does not decode never reaches the
// gateway: errUndecodable.
func (e *env) submitAgentBody(s wire.SessionID, body []byte) (Ticket, error) {
	b, err := wire.DecodeBody(wire.KindChangeRequest, body)
	if err != nil {
		return Ticket{}, errUndecodable
	}
	return e.gw.SubmitAgentChange(ctx, s, b.(wire.ChangeRequest))
}

var errUndecodable = errors.New("undecodable body: the outbox reader refuses it")

func (e *env) mustPending(t Ticket, err error) Ticket {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("submit: %v", err)
	}
	if t.State != StatePending {
		e.t.Fatalf("ticket %+v, want pending", t)
	}
	return t
}

func (e *env) show(id ID) View {
	e.t.Helper()
	v, err := e.gw.Show(ctx, id)
	if err != nil {
		e.t.Fatalf("Show: %v", err)
	}
	if err := v.Check(); err != nil {
		e.t.Fatal(err)
	}
	return v
}

// installRules puts rules in place the only way there is: a rules change,
// approved by a human.
func (e *env) installRules(specs ...policy.RuleSpec) {
	e.t.Helper()
	version, _, _ := e.gw.Rules()
	tk, err := e.gw.SubmitRules(ctx, opKey, specs, version, "rules for the test")
	tk = e.mustPending(tk, err)
	if err := e.gw.Approve(ctx, tk.ID, opKey, e.show(tk.ID).Binding); err != nil {
		e.t.Fatalf("approving rules: %v", err)
	}
}

type entry struct {
	Seq      uint64 `json:"seq"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Subject  string `json:"subject"`
	Decision string `json:"decision"`
	Result   string `json:"result"`
	Count    uint64 `json:"count"`
}

// entries reads the audit log file as written so far.
func (e *env) entries() []entry {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.dir, "audit.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var en entry
		if err := json.Unmarshal(sc.Bytes(), &en); err != nil {
			e.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, en)
	}
	return out
}

// findEntry returns the audit entries matching all the non-empty fields.
func (e *env) findEntries(want entry) []entry {
	var out []entry
	for _, en := range e.entries() {
		if (want.Actor == "" || en.Actor == want.Actor) &&
			(want.Action == "" || en.Action == want.Action) &&
			(want.Decision == "" || en.Decision == want.Decision) &&
			(want.Result == "" || strings.Contains(en.Result, want.Result)) &&
			(want.Subject == "" || strings.Contains(en.Subject, want.Subject)) {
			out = append(out, en)
		}
	}
	return out
}

// raw opens the database directly, as an attacker with write access to the
// state directory (but not the master key) would.
func (e *env) raw() *sqlite.Conn {
	e.t.Helper()
	c, err := sqlite.OpenConn(e.dbPath, sqlite.OpenReadWrite)
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetBusyTimeout(5 * time.Second)
	e.t.Cleanup(func() { c.Close() })
	return c
}

func rawExec(t testing.TB, c *sqlite.Conn, q string, args ...any) {
	t.Helper()
	if err := sqlitex.Execute(c, q, &sqlitex.ExecOptions{Args: args}); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func rawBlob(t testing.TB, c *sqlite.Conn, q string, args ...any) []byte {
	t.Helper()
	var out []byte
	err := sqlitex.Execute(c, q, &sqlitex.ExecOptions{Args: args, ResultFunc: func(st *sqlite.Stmt) error {
		out = make([]byte, st.ColumnLen(0))
		st.ColumnBytes(0, out)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
