package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// noSandboxSupervisor wires a supervisor to a real store, audit log and
// master key, for the conversation paths that need no sandbox.
func noSandboxSupervisor(t *testing.T, opts ...func(*Config)) (*Supervisor, *store.Store) {
	t.Helper()
	base, err := os.MkdirTemp("/tmp", "icsup") // short: socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	state, run := filepath.Join(base, "st"), filepath.Join(base, "r")
	os.MkdirAll(state, 0o700)
	m, err := keys.Init(keys.Source{Custody: keys.CustodyKeyFile, StateDir: state, KeyFile: filepath.Join(base, "k")})
	if err != nil {
		t.Fatal(err)
	}
	ck := m.SubKey("store")
	st, err := store.Open(filepath.Join(state, "db"), &ck)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := audit.Open(filepath.Join(state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{StateDir: state, RuntimeDir: run, Master: m, Store: st, Audit: lg,
		AgentDigest: "sha256:" + fmt.Sprintf("%064x", 0), Model: "m"}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()); lg.Close(); st.Close() })
	return s, st
}

// Crypto-erase cannot be undone by a message racing it: once Erase begins,
// no conversation for that session is opened again (with its key in
// memory and its socket serving).
func TestEraseCannotBeRacedOpen(t *testing.T) {
	s, st := noSandboxSupervisor(t)
	ctx := context.Background()
	for i := range 30 {
		binding := fmt.Sprintf("console:race%d", i)
		c, err := s.conversation(ctx, binding)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- s.Erase(ctx, c.id, "operator:local:root") }()
	race:
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				break race
			default:
				s.conversation(ctx, binding) // may open a NEW session; never the erased one
			}
		}
		s.mu.Lock()
		open := s.running[c.id]
		s.mu.Unlock()
		if open != nil {
			t.Fatalf("erased session %s is open again after Erase returned", c.id)
		}
		if sess, err := st.GetSession(ctx, c.id); err != nil || sess.State != store.StateErased || sess.WrappedKey != nil {
			t.Fatalf("session %s after erase: %+v %v", c.id, sess, err)
		}
	}
}

// An agent that rings its doorbell and hangs up cannot make the daemon hand
// the same rows on twice.
func TestDeliveryOnceWhenAgentHangsUp(t *testing.T) {
	s, st := noSandboxSupervisor(t)
	ctx := context.Background()
	c, err := s.conversation(ctx, "console:local")
	if err != nil {
		t.Fatal(err)
	}
	sub := s.Subscribe("console:local")
	var got atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-sub:
				got.Add(1)
			case <-stop:
				return
			}
		}
	}()
	defer close(stop)
	w, err := outbox.Open(filepath.Join(s.outboxDir(c.id), wire.OutboxFile), c.id, c.key)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		if _, err := w.Append(wire.Reply{Text: "hello", InReplyTo: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	body := fmt.Sprintf(`{"seq":%d}`, n)
	for range 20 {
		conn, err := net.Dial("unix", s.socketPath(c.id))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", wire.PathOutboxCommitted, len(body), body)
		conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
	// Condition-based waits with generous deadlines (a busy machine): the
	// cursor moves before the replies are audited and handed on one by one.
	waitFor(t, 30*time.Second, func() bool {
		cur, _ := st.Cursor(ctx, c.id, store.CursorOutboxDelivered)
		return cur == n
	}, "the delivered cursor to reach the last row")
	waitFor(t, 30*time.Second, func() bool { return got.Load() >= n }, "every reply to be handed on")
	// Then a quiet spell: a duplicate from one of the other commit notices
	// would arrive in it.
	last, quietSince := got.Load(), time.Now()
	waitFor(t, 30*time.Second, func() bool {
		if v := got.Load(); v != last {
			last, quietSince = v, time.Now()
		}
		return time.Since(quietSince) >= 500*time.Millisecond
	}, "the hand-offs to settle")
	if cur, _ := st.Cursor(ctx, c.id, store.CursorOutboxDelivered); cur != n {
		t.Fatalf("delivered cursor %d, want %d", cur, n)
	}
	if got.Load() != n {
		t.Fatalf("%d replies handed on for %d rows", got.Load(), n)
	}
}

// waitFor polls cond every 10 ms until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// A failed audit write fails the action: with the audit log unusable, no
// session is created and no session is erased.
func TestAuditFailureFailsTheAction(t *testing.T) {
	s, st := noSandboxSupervisor(t)
	ctx := context.Background()
	c, err := s.conversation(ctx, "console:kept")
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.Audit.Close()
	if _, err := s.conversation(ctx, "console:new"); err == nil {
		t.Fatal("a session was created without its audit entry")
	}
	if _, err := st.SessionByBinding(ctx, "console:new"); err == nil {
		t.Fatal("the session exists although its creation was not audited")
	}
	if err := s.Erase(ctx, c.id, "operator:local:root"); err == nil {
		t.Fatal("a session was erased without its audit entry")
	}
	if sess, err := st.GetSession(ctx, c.id); err != nil || sess.State != store.StateActive || sess.WrappedKey == nil {
		t.Fatalf("the session changed although its erasure was not audited: %+v %v", sess, err)
	}
}

// A transcript is audited before it is read, and not read at all when the
// audit cannot be written.
func TestTranscriptAuditedBeforeShown(t *testing.T) {
	s, st := noSandboxSupervisor(t)
	ctx := context.Background()
	c, err := s.conversation(ctx, "console:talk")
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.SessionKey(ctx, c.id)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AppendHistory(ctx, c.id, key, wire.Turn{Seq: 1, Role: wire.TurnUser, Text: "hello"},
		wire.Turn{Seq: 2, Role: wire.TurnAssistant, Text: "hi there"}); err != nil {
		t.Fatal(err)
	}
	turns, err := s.Transcript(ctx, c.id, "operator:local:root")
	if err != nil || len(turns) != 2 || turns[0].Text != "hello" || turns[1].Role != wire.TurnAssistant {
		t.Fatalf("transcript %+v %v", turns, err)
	}
	log, _ := os.ReadFile(filepath.Join(s.cfg.StateDir, "audit.log"))
	if !strings.Contains(string(log), `"action":"session.show"`) || !strings.Contains(string(log), `"result":"transcript"`) {
		t.Fatalf("the transcript read was not audited:\n%s", log)
	}
	s.cfg.Audit.Close()
	if turns, err := s.Transcript(ctx, c.id, "operator:local:root"); err == nil || turns != nil {
		t.Fatalf("a transcript was shown without its audit entry: %+v %v", turns, err)
	}
}

// A resume that cannot be audited does not happen: the call fails and the
// session stays failed. (Resume now audits before it changes anything, so
// no sandbox can start in between; this checks the outcome, not the order.)
func TestResumeAuditedBeforeActing(t *testing.T) {
	s, _ := noSandboxSupervisor(t)
	ctx := context.Background()
	c, err := s.conversation(ctx, "console:stuck")
	if err != nil {
		t.Fatal(err)
	}
	failure := errors.New("crash loop")
	c.mu.Lock()
	c.failed = failure
	c.mu.Unlock()
	s.cfg.Audit.Close()
	if err := s.Resume(ctx, c.id, "operator:local:root"); err == nil {
		t.Fatal("a resume succeeded without its audit entry")
	}
	c.mu.Lock()
	still := c.failed
	c.mu.Unlock()
	if still != failure {
		t.Fatalf("the unaudited resume changed the session: failed = %v", still)
	}
}
