package containment

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/lease"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/scheduler"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"github.com/ironclaw/ironclaw/policy"
)

// grantAll gives the session bound to binding every tool and permission
// through the real gateway, as the owner would.
func (d *daemon) grantAll(binding string) wire.SessionID {
	d.t.Helper()
	id, _ := d.sessionKey(binding)
	// Permissions first (no restart), then tools (the restart picks up both).
	d.approveChange(id, policy.KindPermissions, func(p *profile.Profile) {
		p.Permissions.Memory, p.Permissions.Notes, p.Permissions.Schedule = true, true, true
	})
	d.approveChange(id, policy.KindTools, func(p *profile.Profile) { p.Tools = wire.Tools() })
	// The restart runs in the background: wait for it, or the old sandbox
	// may take the next message and be stopped halfway through its turn.
	v, _, err := d.store.CurrentProfile(context.Background(), id)
	if err != nil {
		d.t.Fatal(err)
	}
	d.waitAudit(30*time.Second, "the stop for the new profile", func(e audit.Entry) bool {
		return e.Action == "sandbox.stop" && e.Subject == id.String() && strings.Contains(e.Result, fmt.Sprintf("profile v%d applied", v))
	})
	d.waitStatus(id, 30*time.Second, "the restart with the new profile", func(st supervisor.Status) bool { return st.Running })
	return id
}

// approveChange changes session id's profile through the real gateway — an
// operator proposes, then approves the exact binding — as the owner would (a
// profile version is written only for an approved change).
func (d *daemon) approveChange(id wire.SessionID, kind string, mutate func(p *profile.Profile)) {
	d.t.Helper()
	ctx := context.Background()
	gw, err := gateway.New(ctx, gateway.Config{Store: d.store, Audit: d.audit, Applier: d.sup, Host: policy.Host{
		Tools: wire.Tools(), MaxMemoryMiB: 4096, MaxCPUMillis: 4000, MaxTmpMiB: 1024, MaxOutboxMiB: 1024,
		MaxOutboxInodes: 1 << 20, MaxTokensPerDay: 1_000_000_000, MaxCallsPerMinute: 1_000_000, MaxInstructionsBytes: 32 << 10,
		Models: []string{d.cfg.Model}, BuiltDigests: []string{d.cfg.AgentDigest},
	}})
	if err != nil {
		d.t.Fatal(err)
	}
	const op = "operator:local:test"
	_, p, err := d.store.CurrentProfile(ctx, id)
	if err != nil {
		d.t.Fatal(err)
	}
	mutate(&p)
	tk, err := gw.Submit(ctx, gateway.Request{Session: id, Kind: kind, Requester: op, Proposed: p.Canonical()})
	if err != nil {
		d.t.Fatal(err)
	}
	if err := gw.Approve(ctx, tk.ID, op, tk.Binding); err != nil {
		d.t.Fatalf("approving %s: %v", kind, err)
	}
}

// TestBrainTurnsUnderRunsc: under real runsc, a message goes in, the model
// (scripted, inside the sandbox) calls tools, the tools' operations reach
// the daemon's sealed store, and the reply comes out; the next turn's
// context holds what the daemon recorded.
func TestBrainTurnsUnderRunsc(t *testing.T) {
	d := newDaemon(t, scriptedPath)
	if got := d.ask("brain", "hello", 30*time.Second); got != "heard: hello" {
		t.Fatalf("reply %q", got)
	}
	id := d.grantAll("brain")
	got := d.ask("brain", `call remember {"key":"tea","text":"green"}
call note_write {"name":"todo.md","text":"- milk"}
call schedule {"action":"add","text":"stretch","in_minutes":60}`, 30*time.Second)
	if !strings.HasPrefix(got, "done: remember=remembered tea | note_write=wrote todo.md | schedule=scheduled ") {
		t.Fatalf("reply %q", got)
	}
	recs, err := d.sup.Records(context.Background(), id, "test:operator")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs.Memory) != 1 || recs.Memory[0].Text != "green" || len(recs.Notes) != 1 || len(recs.Schedules) != 1 {
		t.Fatalf("the daemon's record %+v", recs)
	}
	d.waitAudit(time.Second, "session.show", func(e audit.Entry) bool { return e.Action == "session.show" && e.Actor == "test:operator" })
	// The reply tool sends a message mid-turn, before the final answer.
	if got := d.ask("brain", `call reply {"text":"one moment"}`, 30*time.Second); got != "one moment" {
		t.Fatalf("mid-turn reply %q", got)
	}
	got = d.ask("brain", "context?", 30*time.Second)
	if !strings.Contains(got, "memory: tea: green") || !strings.Contains(got, "user:hello / assistant:heard: hello") {
		t.Fatalf("context %q", got)
	}
}

// TestUngrantedToolRefusedUnderRunsc: the default profile grants no memory;
// a call to remember is refused inside the sandbox and the refusal reaches
// the daemon's audit log.
func TestUngrantedToolRefusedUnderRunsc(t *testing.T) {
	d := newDaemon(t, scriptedPath)
	got := d.ask("plain", `call remember {"key":"a","text":"b"}`, 30*time.Second)
	if !strings.Contains(got, "not granted") {
		t.Fatalf("reply %q", got)
	}
	id, _ := d.sessionKey("plain")
	d.waitAudit(5*time.Second, "tool.refused", func(e audit.Entry) bool {
		return e.Action == "tool.refused" && e.Subject == id.String() && e.Result == "tool not granted: remember"
	})
	if recs, _ := d.sup.Records(context.Background(), id, "test"); len(recs.Memory) != 0 {
		t.Fatalf("a refused call reached the store: %+v", recs)
	}
}

// TestOutboxLossLosesNothing: the sandbox's outbox (filesystem image and
// database) is deleted; memory, notes and history survive in the daemon's
// record, the fresh agent does not answer old messages again, and its
// outbox rows continue after what the daemon took.
func TestOutboxLossLosesNothing(t *testing.T) {
	d := newDaemon(t, scriptedPath)
	d.ask("lossy", "hello", 30*time.Second)
	id := d.grantAll("lossy")
	d.ask("lossy", "call remember {\"key\":\"tea\",\"text\":\"green\"}\ncall note_write {\"name\":\"n1\",\"text\":\"kept\"}", 30*time.Second)
	ch := d.sup.Subscribe("lossy")
	defer d.sup.Unsubscribe(ch)
	if err := d.sup.ResetOutbox(context.Background(), id, "test:operator"); err != nil {
		t.Fatal(err)
	}
	d.waitAudit(time.Second, "outbox.reset", func(e audit.Entry) bool { return e.Action == "outbox.reset" && e.Result == "reset" })
	if got := d.ask("lossy", `call note_read {"name":"n1"}`, 30*time.Second); got != "done: note_read=kept" {
		t.Fatalf("note after the reset: %q", got)
	}
	got := d.ask("lossy", "context?", 30*time.Second)
	if !strings.Contains(got, "tea: green") || !strings.Contains(got, "user:hello") {
		t.Fatalf("context after the reset: %q", got)
	}
	// Only the two questions asked since were answered: nothing old again.
	time.Sleep(300 * time.Millisecond)
	n := 0
	for len(ch) > 0 {
		<-ch
		n++
	}
	if n != 2 {
		t.Fatalf("%d replies since the reset, want 2 (old messages answered again?)", n)
	}
}

// fixedClock is a scheduler clock set by the test.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *fixedClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

// TestScheduleWakesStoppedSandbox: a schedule set by the agent fires at its
// time into a stopped session's inbox and wakes its sandbox; after a daemon
// restart, a firing missed while it was down fires once, marked late.
func TestScheduleWakesStoppedSandbox(t *testing.T) {
	d := newDaemon(t, scriptedPath)
	d.ask("sched", "hello", 30*time.Second)
	id := d.grantAll("sched")
	got := d.ask("sched", `call schedule {"action":"add","text":"stretch","in_minutes":1,"every_minutes":1}`, 30*time.Second)
	if !strings.HasPrefix(got, "done: schedule=scheduled") {
		t.Fatalf("reply %q", got)
	}
	ctx := context.Background()
	if err := d.sup.Stop(ctx, id, "test:operator"); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.sup.Status(id); st.Running {
		t.Fatal("still running after Stop")
	}
	firing := func(sup *supervisor.Supervisor, at time.Time) string {
		t.Helper()
		ch := sup.Subscribe("sched")
		defer sup.Unsubscribe(ch)
		s := scheduler.New(scheduler.Config{Store: d.store, Target: sup, Clock: &fixedClock{now: at}})
		if _, err := s.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			return r.Text
		case <-time.After(30 * time.Second):
			st, _ := sup.Status(id)
			t.Fatalf("no reply to the firing; status %+v %s", st, tailStr(st.Stderr, 2000))
		}
		return ""
	}
	got = firing(d.sup, time.Now().Add(61*time.Second))
	if !strings.Contains(got, "not a message from the user: a schedule you set fired") || !strings.Contains(got, "stretch") || strings.Contains(got, "late") {
		t.Fatalf("firing reply %q", got)
	}
	if st, _ := d.sup.Status(id); !st.Running {
		t.Fatal("the firing did not wake the sandbox")
	}
	// The daemon restarts; ten minutes pass while it is down.
	d.closeSupervisor()
	next, err := supervisor.New(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close(context.Background())
	if _, err := next.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	got = firing(next, time.Now().Add(11*time.Minute))
	if !strings.Contains(got, "late") || !strings.Contains(got, "stretch") {
		t.Fatalf("late firing reply %q", got)
	}

}

// TestRealAgentdTurnWithScriptedModel: the real agentd under runsc talks
// Ollama's wire format through the daemon's model proxy to a scripted
// server: a message in, tool calls, the tools' results back to the model, a
// reply out; an unavailable model gives the user a plain message.
func TestRealAgentdTurnWithScriptedModel(t *testing.T) {
	m := ollamatest.NewScripted(t, ollamatest.Text("hi there"))
	d := newDaemon(t, agentdPath, func(c *supervisor.Config) { c.ModelUpstream = m.URL })
	if got := d.ask("real", "hello", 30*time.Second); got != "hi there" {
		t.Fatalf("reply %q", got)
	}
	id := d.grantAll("real")
	m.Push(ollamatest.Calls(ollamatest.Call("remember", `{"key":"tea","text":"green"}`),
		ollamatest.Call("schedule", `{"action":"add","text":"tea time","in_minutes":30}`)),
		ollamatest.Text("Noted."))
	if got := d.ask("real", "I like green tea; remind me in half an hour", 30*time.Second); got != "Noted." {
		t.Fatalf("reply %q", got)
	}
	reqs := m.Requests()
	last := reqs[len(reqs)-1]
	var roles []string
	for _, msg := range last.Messages {
		roles = append(roles, msg.Role)
	}
	if got := strings.Join(roles, ","); got != "system,user,assistant,user,assistant,tool,tool" {
		t.Fatalf("the model saw %s", got)
	}
	if tool := last.Messages[len(last.Messages)-1]; !strings.HasPrefix(tool.Content, "scheduled ") {
		t.Fatalf("tool result %q", tool.Content)
	}
	if last.Messages[1].Content != "hello" || last.Messages[2].Content != "hi there" {
		t.Fatalf("history %q / %q", last.Messages[1].Content, last.Messages[2].Content)
	}
	if len(reqs[len(reqs)-2].Tools) != len(wire.Tools()) {
		t.Fatalf("offered %d tools", len(reqs[len(reqs)-2].Tools))
	}
	recs, err := d.sup.Records(context.Background(), id, "test")
	if err != nil || len(recs.Memory) != 1 || len(recs.Schedules) != 1 {
		t.Fatalf("records %+v %v", recs, err)
	}
	// A tool that is not compiled in is refused and audited.
	m.Push(ollamatest.Calls(ollamatest.Call("shell", `{"cmd":"id"}`)), ollamatest.Text("I can't."))
	if got := d.ask("real", "run id", 30*time.Second); got != "I can't." {
		t.Fatalf("reply %q", got)
	}
	d.waitAudit(5*time.Second, "tool.refused", func(e audit.Entry) bool {
		return e.Action == "tool.refused" && e.Result == "tool not compiled in"
	})
	// The model is missing: the user is told what is wrong and who fixes it.
	m.Push(ollamatest.NotFound("tiny"))
	if got := d.ask("real", "still there?", 30*time.Second); !strings.Contains(got, "ollama pull tiny") {
		t.Fatalf("reply to a missing model %q", got)
	}
}

// TestUnreadMessageAnsweredAfterRestart: a message that reached the inbox
// just before the daemon died is answered when the daemon comes back, not
// when the next message arrives.
func TestUnreadMessageAnsweredAfterRestart(t *testing.T) {
	d := newDaemon(t, echoPath)
	d.ask("wake", "hello", 30*time.Second)
	id, key := d.sessionKey("wake")
	d.closeSupervisor()
	// As if the dead daemon had written it and crashed before the sandbox ran.
	in, err := queue.OpenInbox(filepath.Join(d.sessionDir(id), "inbox", "inbox.db"), id, key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	seq, err := in.Append(t.Context(), wire.Message{From: "test", Text: "are you there?"})
	in.Close()
	if err != nil {
		t.Fatal(err)
	}
	next, err := supervisor.New(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close(context.Background())
	if _, err := next.Reap(t.Context()); err != nil {
		t.Fatal(err)
	}
	ch := next.Subscribe("wake")
	defer next.Unsubscribe(ch)
	if err := next.WakeUnread(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.InReplyTo != seq || r.Text != "are you there?" {
			t.Fatalf("reply %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the unread message was not answered after the restart")
	}
}
