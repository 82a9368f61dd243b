package containment

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// TestFailClosed: when runsc is missing, unverified, or the agent binary is not the pinned
// one, no agent runs — there is no fallback — and the error says how to fix it.
func TestFailClosed(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		name string
		mod  func(*supervisor.Config)
		want string
	}{
		{"runsc missing", func(c *supervisor.Config) {
			c.Runsc = &sandbox.Runsc{Path: "/nonexistent/runsc", Root: runscRoot}
		}, "install-runsc.sh"},
		{"runsc not the pinned build", func(c *supervisor.Config) {
			c.Runsc = &sandbox.Runsc{Path: runscPath(), Root: runscRoot, WantDigest: strings.Repeat("0", 64)}
		}, "images/runsc.sha256"},
		{"agent not the pinned digest", func(c *supervisor.Config) {
			c.AgentDigest = "sha256:" + strings.Repeat("0", 64)
		}, "images/build.sh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDaemon(t, evilPath, tc.mod)
			_, _, err := d.sup.Send(t.Context(), "local", "test", "echo:should never run")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Send = %v, want a refusal that says %q", err, tc.want)
			}
			id, _ := d.sessionKey("local")
			if st, _ := d.sup.Status(id); st.Running {
				t.Errorf("a sandbox runs: %+v", st)
			}
			if ok, _ := sandbox.OutboxMounted(filepath.Join(d.sessionDir(id), "outbox")); ok {
				t.Errorf("the outbox stayed mounted after the refused start")
			}
			if ents, _ := os.ReadDir(filepath.Join(d.cfg.StateDir, "bundles")); len(ents) != 0 {
				t.Errorf("bundles left: %v", ents)
			}
			for _, c := range runscList(t) {
				if strings.HasSuffix(c, id.String()) {
					t.Errorf("container %s exists", c)
				}
			}
			d.waitAudit(time.Second, "sandbox.start failed", func(e audit.Entry) bool {
				return e.Action == "sandbox.start" && strings.HasPrefix(e.Result, "failed:") && strings.Contains(e.Result, tc.want)
			})
		})
	}
}

// TestIdleStopAndStartOnDemand: a sandbox with nothing to do stops after IdleTimeout and
// releases its outbox filesystem; the next message starts it again, with its state.
func TestIdleStopAndStartOnDemand(t *testing.T) {
	d := newDaemon(t, echoPath, func(c *supervisor.Config) { c.IdleTimeout = 700 * time.Millisecond })
	if got := d.ask("idle", "first", 30*time.Second); got != "first" {
		t.Fatalf("reply %q", got)
	}
	id, _ := d.sessionKey("idle")
	st := d.waitStatus(id, 10*time.Second, "the idle stop", func(st supervisor.Status) bool { return !st.Running })
	if st.LastExit == nil || !st.LastExit.Success() || st.Exits != 0 || st.Stopped != "" {
		t.Errorf("after the idle stop: %+v, want a clean exit, no crash counted", st)
	}
	d.waitAudit(time.Second, "sandbox.stop idle", func(e audit.Entry) bool {
		return e.Action == "sandbox.stop" && e.Subject == id.String() && strings.HasPrefix(e.Result, "idle")
	})
	if ok, _ := sandbox.OutboxMounted(filepath.Join(d.sessionDir(id), "outbox")); ok {
		t.Errorf("outbox still mounted after the idle stop")
	}
	if got := d.ask("idle", "second", 30*time.Second); got != "second" {
		t.Errorf("reply after the restart on demand %q", got)
	}
}

// TestRestartAfterCrashWhileUnread: an agent that dies with a message unread is started
// again (after the backoff) and handles it; the exit status is audited.
func TestRestartAfterCrashWhileUnread(t *testing.T) {
	d := newDaemon(t, evilPath)
	if got := d.ask("crashy", "crashonce", 30*time.Second); got != "survived" {
		t.Fatalf("reply %q", got)
	}
	id, _ := d.sessionKey("crashy")
	st, _ := d.sup.Status(id)
	if st.Exits != 1 || st.LastExit == nil || st.LastExit.Code != 3 || !st.Running {
		t.Errorf("status %+v, want one exit with code 3 and a running sandbox", st)
	}
	d.waitAudit(time.Second, "sandbox.exit 3", func(e audit.Entry) bool {
		return e.Action == "sandbox.exit" && e.Subject == id.String() && strings.Contains(e.Result, "exit code 3")
	})
	d.waitAudit(time.Second, "the restart", func(e audit.Entry) bool {
		return e.Action == "sandbox.start" && e.Subject == id.String() && strings.HasPrefix(e.Result, "restarted")
	})
}

// TestCrashLoopStopsSession: CrashLoopCount exits within the window stop the session, with
// backoff growing between restarts, the last exit status kept and "sandbox.crashloop"
// audited; Resume lets it run again.
func TestCrashLoopStopsSession(t *testing.T) {
	d := newDaemon(t, evilPath)
	id, _ := d.send("loop", "crash")
	st := d.waitStatus(id, 60*time.Second, "the crash loop stop", func(st supervisor.Status) bool { return st.Stopped != "" })
	if !strings.Contains(st.Stopped, "crash loop") || st.LastExit == nil || st.LastExit.Code != 3 || st.Running {
		t.Fatalf("status %+v, want stopped for a crash loop with exit code 3 kept", st)
	}
	loop := d.waitAudit(time.Second, "sandbox.crashloop", func(e audit.Entry) bool {
		return e.Action == "sandbox.crashloop" && e.Subject == id.String()
	})
	if !strings.Contains(loop.Result, "exit code 3") || !strings.Contains(loop.Result, "5 exits") {
		t.Errorf("crashloop entry %q, want the count and the last status", loop.Result)
	}
	// Backoff: the gaps between an exit and the next start grow (100, 200, 400, 400 ms).
	var starts, exits []time.Time
	for _, e := range d.auditEntries() {
		if e.Subject != id.String() {
			continue
		}
		switch e.Action {
		case "sandbox.start":
			starts = append(starts, e.Time)
		case "sandbox.exit":
			exits = append(exits, e.Time)
		}
	}
	if len(starts) != 5 || len(exits) != 5 {
		t.Fatalf("%d starts and %d exits audited, want 5 and 5", len(starts), len(exits))
	}
	for i, want := range []time.Duration{100, 200, 400, 400} {
		if gap := starts[i+1].Sub(exits[i]); gap < want*time.Millisecond-10*time.Millisecond {
			t.Errorf("restart %d came %v after the exit, want at least %v of backoff", i+1, gap, want*time.Millisecond)
		}
	}
	if _, _, err := d.sup.Send(t.Context(), "loop", "test", "echo:still there?"); err == nil || !strings.Contains(err.Error(), "crash loop") {
		t.Errorf("Send to a crash-looped session = %v, want it refused", err)
	}
	// Resume: rows are unread, so it starts at once (and, this agent being what it is,
	// crashes again: the count starts from zero).
	if err := d.sup.Resume(t.Context(), id, "operator:test"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	d.waitStatus(id, 30*time.Second, "an exit after Resume", func(st supervisor.Status) bool { return st.Exits >= 1 && st.Exits < 5 || st.Running })
	d.waitAudit(time.Second, "sandbox.resume", func(e audit.Entry) bool {
		return e.Action == "sandbox.resume" && e.Actor == "operator:test"
	})
}

// TestMaxRunning: no more sandboxes than the limit run at once.
func TestMaxRunning(t *testing.T) {
	d := newDaemon(t, echoPath, func(c *supervisor.Config) { c.MaxRunning = 1 })
	if got := d.ask("one", "hi", 30*time.Second); got != "hi" {
		t.Fatalf("reply %q", got)
	}
	_, _, err := d.sup.Send(t.Context(), "two", "test", "hi")
	if err == nil || !strings.Contains(err.Error(), "max_running_sandboxes") {
		t.Errorf("second sandbox = %v, want refused by the limit", err)
	}
}

// TestMaxSessions: limits.max_sessions refuses a new session, audited; an existing one
// keeps working, and erasing one frees a place.
func TestMaxSessions(t *testing.T) {
	d := newDaemon(t, evilPath, func(c *supervisor.Config) { c.MaxSessions = 2 })
	for _, b := range []string{"one", "two"} {
		if got := d.ask(b, "echo:hi", 30*time.Second); got != "hi" {
			t.Fatalf("%s replied %q", b, got)
		}
	}
	_, _, err := d.sup.Send(t.Context(), "three", "test", "echo:hi")
	if !errors.Is(err, supervisor.ErrTooManySessions) || !strings.Contains(err.Error(), "limits.max_sessions") {
		t.Fatalf("third session = %v, want ErrTooManySessions", err)
	}
	if _, err := d.store.SessionByBinding(t.Context(), "three"); err == nil {
		t.Fatal("the refused session was stored")
	}
	d.waitAudit(5*time.Second, "the refusal", func(e audit.Entry) bool {
		return e.Action == "session.create" && e.Decision == audit.DecisionDeny
	})
	if got := d.ask("one", "echo:still", 30*time.Second); got != "still" {
		t.Fatalf("one replied %q", got)
	}
	id, _ := d.sessionKey("two")
	if err := d.sup.Erase(t.Context(), id, "operator:local:test"); err != nil {
		t.Fatal(err)
	}
	if got := d.ask("three", "echo:now", 30*time.Second); got != "now" {
		t.Fatalf("three replied %q after an erase", got)
	}
}

// TestReapAfterDaemonDeath leaves what a daemon killed with SIGKILL leaves — a container
// whose `runsc run` died, its mounted outbox, its bundle — and checks that the next
// daemon's Reap removes all of it before anything starts.
func TestReapAfterDaemonDeath(t *testing.T) {
	d := newDaemon(t, evilPath)
	if got := d.ask("orphan", "echo:hi", 30*time.Second); got != "hi" {
		t.Fatalf("reply %q", got)
	}
	id, key := d.sessionKey("orphan")
	d.closeSupervisor()

	// The dead daemon's sandbox, started exactly as the supervisor starts one.
	_, p, err := d.store.CurrentProfile(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := d.sup.SandboxPlan(id, p, (&wire.Handshake{Session: id, Key: *key}).Marshal())
	if err != nil {
		t.Fatal(err)
	}
	// Its session socket: accepts and never answers, so the agent waits forever.
	ln, err := net.Listen("unix", plan.Spec.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(plan.Spec.SocketPath, 0o666)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if err := sandbox.PrepareOutbox(plan.OutboxDir, plan.OutboxMiB, plan.OutboxInodes); err != nil {
		t.Fatal(err)
	}
	box, err := d.runsc.Start(t.Context(), plan.Spec)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let it come up
	// The daemon dies: `runsc run` goes with it (Pdeathsig); nobody calls Stop.
	if err := syscall.Kill(box.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	box.Wait()
	if !slices.Contains(runscList(t), plan.Spec.ID) {
		t.Fatalf("the container vanished with its runsc run; nothing to reap (runsc list: %v)", runscList(t))
	}

	next, err := supervisor.New(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close(context.Background())
	rep, err := next.Reap(t.Context())
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if !slices.Contains(rep.Containers, plan.Spec.ID) || !slices.Contains(rep.Mounts, plan.OutboxDir) || !slices.Contains(rep.Bundles, plan.Spec.BundleDir) {
		t.Errorf("Reap report %+v, want container %s, mount %s and bundle %s", rep, plan.Spec.ID, plan.OutboxDir, plan.Spec.BundleDir)
	}
	if slices.Contains(runscList(t), plan.Spec.ID) {
		t.Errorf("container still listed after Reap")
	}
	if ok, _ := sandbox.OutboxMounted(plan.OutboxDir); ok {
		t.Errorf("outbox still mounted after Reap")
	}
	if dirs, _ := sandbox.CgroupDirs(plan.Spec.ID); len(dirs) != 0 {
		t.Errorf("cgroups left after Reap: %v", dirs)
	}
	if _, err := os.Stat(plan.Spec.BundleDir); err == nil {
		t.Errorf("bundle left after Reap")
	}
	d.waitAudit(time.Second, "sandbox.reap", func(e audit.Entry) bool {
		return e.Action == "sandbox.reap" && strings.Contains(e.Result, plan.Spec.ID)
	})
}

func runscList(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(runscPath(), "--root", runscRoot, "list", "-quiet").Output()
	if err != nil {
		t.Fatalf("runsc list: %v", err)
	}
	return strings.Fields(string(out))
}
