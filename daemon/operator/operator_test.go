package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/proxy"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// fakeStore, fakeSup and fakeGW implement only what these tests call; the
// embedded nil interface panics on anything else.
type fakeStore struct {
	Store
	sessions []store.Session
	profiles []profile.Profile // version i+1
	changes  map[uint64]store.ChangeID
}

func (f *fakeStore) ListSessions(context.Context) ([]store.Session, error) { return f.sessions, nil }

func (f *fakeStore) GetSession(_ context.Context, id wire.SessionID) (store.Session, error) {
	for _, s := range f.sessions {
		if s.ID == id {
			return s, nil
		}
	}
	return store.Session{}, store.ErrNotFound
}

func (f *fakeStore) Profile(_ context.Context, _ wire.SessionID, v uint64) (profile.Profile, error) {
	if v == 0 || v > uint64(len(f.profiles)) {
		return profile.Profile{}, store.ErrNotFound
	}
	return f.profiles[v-1], nil
}

func (f *fakeStore) ProfileVersions(context.Context, wire.SessionID) ([]store.ProfileVersionInfo, error) {
	var out []store.ProfileVersionInfo
	for i := range f.profiles {
		v := store.ProfileVersionInfo{Version: uint64(i + 1), Created: time.Unix(int64(i), 0)}
		v.Change, v.HasChange = f.changes[v.Version]
		out = append(out, v)
	}
	return out, nil
}

type fakeSup struct {
	Supervisor
	status     map[wire.SessionID]supervisor.Status
	auditFails bool
	read       int // transcript reads that got past the audit
}

func (f *fakeSup) Status(id wire.SessionID) (supervisor.Status, bool) {
	s, ok := f.status[id]
	return s, ok
}

func (f *fakeSup) Transcript(_ context.Context, _ wire.SessionID, _ string) ([]wire.Turn, error) {
	if f.auditFails {
		return nil, errors.New("supervisor: audit: the log is closed")
	}
	f.read++
	return []wire.Turn{{Seq: 1, Role: wire.TurnUser, Text: "hi"}, {Seq: 2, Role: wire.TurnAssistant, Text: "hello"}}, nil
}

type fakeGW struct{ Gateway }

func (fakeGW) List(context.Context, gateway.Filter) ([]gateway.Summary, error) { return nil, nil }

func sessionID(t *testing.T, n int) wire.SessionID {
	id, err := wire.ParseSessionID(fmt.Sprintf("%032x", n))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func testBound(cfg Config) *bound {
	if cfg.Gateway == nil {
		cfg.Gateway = fakeGW{}
	}
	cfg.Status = func(context.Context) api.Status { return api.Status{} }
	return &bound{s: &Service{cfg: cfg, hub: NewHub()}, who: api.Identity{Actor: "operator:local:root", Via: "admin"}}
}

// The model server is asked at most once per ModelProbeTTL however often
// Status is called, and its answer is classified with the probe's hint.
func TestModelHealthCachedAndClassified(t *testing.T) {
	var calls atomic.Int32
	answer := error(nil)
	b := testBound(Config{Store: &fakeStore{}, Supervisor: &fakeSup{}, ModelProbe: func(ctx context.Context) error {
		calls.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the probe has no timeout")
		}
		return answer
	}})
	for range 50 {
		st, err := b.Status(context.Background())
		if err != nil || st.ModelHealth != "ok" {
			t.Fatalf("%+v %v", st, err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("50 status reads probed %d times, want 1", n)
	}
	for _, c := range []struct {
		err    error
		health string
	}{
		{fmt.Errorf("the Ollama server at x %w \"m\": run `ollama pull m` there", proxy.ErrModelMissing), "model missing"},
		{fmt.Errorf("%w at x: start it", proxy.ErrUnreachable), "unreachable"},
		{context.DeadlineExceeded, "unreachable"},
		{errors.New("answered 500"), "error"},
	} {
		answer = c.err
		b.s.model.at = time.Now().Add(-ModelProbeTTL - time.Second) // expire the cache
		st, _ := b.Status(context.Background())
		if st.ModelHealth != c.health || st.ModelHint != c.err.Error() {
			t.Errorf("%v: health %q hint %q", c.err, st.ModelHealth, st.ModelHint)
		}
	}
}

// The real probe against a closed port says "unreachable" within the
// timeout, with Preflight's hint.
func TestModelHealthUnreachable(t *testing.T) {
	b := testBound(Config{Store: &fakeStore{}, Supervisor: &fakeSup{}, ModelProbe: func(ctx context.Context) error {
		return proxy.Preflight(ctx, proxy.NewUpstreamClient(proxy.Limits{}), "http://127.0.0.1:1", "m")
	}})
	st, err := b.Status(context.Background())
	if err != nil || st.ModelHealth != "unreachable" || !strings.Contains(st.ModelHint, "ollama serve") {
		t.Fatalf("%+v %v", st, err)
	}
}

// A running sandbox's list line carries its cgroup usage; a stopped one
// none; a failed read is no usage, not an error.
func TestSessionUsage(t *testing.T) {
	a, c := sessionID(t, 1), sessionID(t, 2)
	st := &fakeStore{sessions: []store.Session{{ID: a, State: store.StateActive}, {ID: c, State: store.StateActive}}}
	sup := &fakeSup{status: map[wire.SessionID]supervisor.Status{
		a: {Running: true, ContainerID: "ic-a"}, c: {Running: false},
	}}
	var asked []string
	b := testBound(Config{Store: st, Supervisor: sup, Usage: func(id string) (sandbox.CgroupUsage, error) {
		asked = append(asked, id)
		return sandbox.CgroupUsage{MemoryBytes: 64 << 20, CPUUsec: 1500}, nil
	}})
	list, err := b.ListSessions(context.Background())
	if err != nil || len(list) != 2 {
		t.Fatal(list, err)
	}
	if list[0].MemoryBytes != 64<<20 || list[0].CPUUsec != 1500 || list[0].UsageAt.IsZero() {
		t.Fatalf("running: %+v", list[0])
	}
	if list[1].MemoryBytes != 0 || !list[1].UsageAt.IsZero() || len(asked) != 1 || asked[0] != "ic-a" {
		t.Fatalf("not running: %+v, asked %v", list[1], asked)
	}
	b.s.cfg.Usage = func(string) (sandbox.CgroupUsage, error) { return sandbox.CgroupUsage{}, errors.New("gone") }
	if list, err = b.ListSessions(context.Background()); err != nil || !list[0].UsageAt.IsZero() {
		t.Fatalf("failed read: %+v %v", list, err)
	}
}

// No audit, no transcript: the operator returns an error and no turn.
func TestTranscriptFailsClosed(t *testing.T) {
	a := sessionID(t, 1)
	sup := &fakeSup{}
	b := testBound(Config{Store: &fakeStore{sessions: []store.Session{{ID: a, State: store.StateActive}}}, Supervisor: sup})
	tr, err := b.Transcript(context.Background(), a.String())
	if err != nil || len(tr.Turns) != 2 || tr.Turns[1].Text != "hello" {
		t.Fatalf("%+v %v", tr, err)
	}
	sup.auditFails = true
	tr, err = b.Transcript(context.Background(), a.String())
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeUnavailable || tr.Turns != nil || sup.read != 1 {
		t.Fatalf("audit failure showed %+v (%v), reads %d", tr, err, sup.read)
	}
	if _, err := b.Transcript(context.Background(), "nope"); !errors.As(err, &ae) || ae.Code != api.CodeInvalid {
		t.Fatalf("bad id: %v", err)
	}
}

// A version is shown with its canonical text and the diff against the one
// before it, computed by agentd/profile.Diff; the list names the change.
func TestProfileAtDiffsAgainstPrevious(t *testing.T) {
	a := sessionID(t, 1)
	p1 := profile.Default("tiny", "sha256:"+strings.Repeat("ab", 32))
	p2 := p1
	p2.Instructions = "be brief"
	var ch store.ChangeID
	ch[0] = 7
	st := &fakeStore{sessions: []store.Session{{ID: a, State: store.StateActive}}, profiles: []profile.Profile{p1, p2},
		changes: map[uint64]store.ChangeID{2: ch}}
	b := testBound(Config{Store: st, Supervisor: &fakeSup{}})
	vs, err := b.ProfileHistory(context.Background(), a.String())
	if err != nil || len(vs) != 2 || vs[0].Change != "" || vs[1].Change != ch.String() || vs[1].Canonical != "" {
		t.Fatalf("history %+v %v", vs, err)
	}
	v, err := b.ProfileAt(context.Background(), a.String(), 2)
	if err != nil || v.Canonical != string(p2.Canonical()) || v.Diff != profile.Diff(p1.Canonical(), p2.Canonical()) || v.Change != ch.String() {
		t.Fatalf("version 2: %+v %v", v, err)
	}
	if !strings.Contains(v.Diff, "+") || !strings.Contains(v.Diff, "be brief") {
		t.Fatalf("diff %q", v.Diff)
	}
	v, err = b.ProfileAt(context.Background(), a.String(), 1)
	if err != nil || v.Diff != profile.Diff(nil, p1.Canonical()) {
		t.Fatalf("version 1: %+v %v", v, err)
	}
	var ae *api.Error
	if _, err := b.ProfileAt(context.Background(), a.String(), 3); !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
		t.Fatalf("missing version: %v", err)
	}
}

// chatSup is a supervisor whose agent answers at once: the reply is a
// pending delivery intent (which does not say what it answers) before Send
// has even returned, as a fast agent's can be.
type chatSup struct {
	Supervisor
	id        wire.SessionID
	mu        sync.Mutex
	pending   []supervisor.Reply
	delivered []uint64
	sub       chan supervisor.Reply
}

func (c *chatSup) Subscribe(string) chan supervisor.Reply { return c.sub }
func (c *chatSup) Unsubscribe(chan supervisor.Reply)      {}

func (c *chatSup) Send(_ context.Context, _, _, text string) (wire.SessionID, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq := uint64(len(c.pending)+len(c.delivered)) + 1
	r := supervisor.Reply{Session: c.id, Text: text, Seq: seq + 100}
	c.pending = append(c.pending, r) // recorded before it is handed on
	r.InReplyTo = seq
	c.sub <- r
	return c.id, seq, nil
}

func (c *chatSup) Undelivered(context.Context, string) ([]supervisor.Reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pending), nil
}

func (c *chatSup) Delivered(_ context.Context, _ wire.SessionID, seq uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = slices.DeleteFunc(c.pending, func(r supervisor.Reply) bool { return r.Seq == seq })
	c.delivered = append(c.delivered, seq)
	return nil
}

// A chat shows its own reply once, as the reply, even when the agent
// answered before the chat looked for earlier undelivered replies; a reply
// nobody waited for comes with the next chat as "earlier", once.
func TestChatShowsItsOwnReplyOnce(t *testing.T) {
	sup := &chatSup{id: sessionID(t, 7), sub: make(chan supervisor.Reply, 4)}
	b := testBound(Config{Store: &fakeStore{}, Supervisor: sup, LocalBinding: "console:local"})
	got, err := b.Chat(t.Context(), api.ChatRequest{Text: "hello", WaitSeconds: 5})
	if err != nil || got.Reply != "hello" || len(got.Earlier) != 0 {
		t.Fatalf("chat: %+v %v, want the reply once and nothing earlier", got, err)
	}
	// Nobody waits for this one: it stays pending.
	sup.mu.Lock()
	sup.pending = append(sup.pending, supervisor.Reply{Session: sup.id, Text: "late", Seq: 500})
	sup.mu.Unlock()
	got, err = b.Chat(t.Context(), api.ChatRequest{Text: "again", WaitSeconds: 5})
	if err != nil || got.Reply != "again" || !slices.Equal(got.Earlier, []string{"late"}) {
		t.Fatalf("second chat: %+v %v, want the late reply once as earlier", got, err)
	}
	if len(sup.pending) != 0 {
		t.Fatalf("still pending after the chats: %+v", sup.pending)
	}
}
