// Package containment is IronClaw's containment suite: tests only. It starts real gVisor
// sandboxes through the real supervisor — the same Spec, mounts, seccomp profile, outbox
// filesystem and handshake as production — with a hostile agent (testdata/evil) inside,
// and fails if any wall gives. It also checks that agentd links no inbox writer, and holds
// the lifecycle tests and the sandbox benchmarks (docs/benchmarks.md).
//
// It must run as root with the pinned runsc installed (.ci/install-runsc.sh), as CI does;
// without them it fails rather than skips: a skipped containment suite proves nothing.
package containment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"golang.org/x/sys/unix"
)

var (
	// evilPath, agentdPath and trivialPath are built once by TestMain (static, like
	// images/build.sh).
	evilPath, agentdPath, trivialPath string
	// scriptedPath is agentd's loop, Brain and tools with a scripted model built in;
	// echoPath is agentd's loop with agent.Echo (lifecycle tests and benchmarks).
	scriptedPath, echoPath string
	// runscRoot is the runsc --root shared by every test here: runsc bind-mounts a network
	// namespace at <root>/null-netns and never unmounts it, so one root per process.
	runscRoot string
	// setupErr is why TestMain could not prepare; every test fails with it.
	setupErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ironclaw-containment-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "containment:", err)
		os.Exit(1)
	}
	evilPath = filepath.Join(dir, "evil")
	agentdPath = filepath.Join(dir, "agentd")
	trivialPath = filepath.Join(dir, "trivial")
	scriptedPath = filepath.Join(dir, "scripted")
	echoPath = filepath.Join(dir, "echo")
	setupErr = errors.Join(
		buildStatic(evilPath, "./daemon/containment/testdata/evil"),
		buildStatic(agentdPath, "./cmd/agentd"),
		buildStatic(trivialPath, "./daemon/containment/testdata/trivial"),
		buildStatic(scriptedPath, "./daemon/containment/testdata/scripted"),
		buildStatic(echoPath, "./daemon/testdata/echo"),
	)
	if setupErr == nil {
		runscRoot, setupErr = os.MkdirTemp("/tmp", "icc-runsc-")
	}
	code := m.Run()
	os.RemoveAll(dir)
	if runscRoot != "" {
		_ = unix.Unmount(filepath.Join(runscRoot, "null-netns"), unix.MNT_DETACH)
		if err := os.RemoveAll(runscRoot); err != nil {
			fmt.Fprintln(os.Stderr, "containment: remove runsc root:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// repoRoot is the module root (tests run in their package directory).
func repoRoot() string { return filepath.Join("..", "..") }

// buildStatic builds pkg the way images/build.sh does: CGO_ENABLED=0, trimpath, stripped.
func buildStatic(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// requireSandbox fails (never skips) unless the suite can run for real.
func requireSandbox(t testing.TB) {
	t.Helper()
	if setupErr != nil {
		t.Fatalf("containment setup: %v", setupErr)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the containment suite must run as root (CI does): runsc needs root for cgroups and namespaces, the outbox filesystem needs loop mounts")
	}
	if _, err := os.Stat(runscPath()); err != nil {
		t.Fatalf("runsc not found at %s (%v): run `.ci/install-runsc.sh` (or point IRONCLAW_RUNSC at the pinned build)", runscPath(), err)
	}
}

func runscPath() string {
	if p := os.Getenv("IRONCLAW_RUNSC"); p != "" {
		return p
	}
	return sandbox.DefaultPath
}

// daemon is the host side of a test: the supervisor and what it is wired to, like
// daemon.Open wires it.
type daemon struct {
	t        testing.TB
	dir      string // short: sockets live under it
	sup      *supervisor.Supervisor
	store    *store.Store
	audit    *audit.Log
	master   *keys.Master
	keyFile  string
	runsc    *sandbox.Runsc
	cfg      supervisor.Config
	reapErr  error // what Reap said at start
	closeOne sync.Once
	supOnce  sync.Once
}

// daemonOpts tweak the supervisor config before New.
type daemonOpts func(*supervisor.Config)

// newDaemon wires a supervisor to a fresh state directory, runs Reap as daemon.Open does,
// and closes everything at the end of the test.
func newDaemon(t testing.TB, agent string, opts ...daemonOpts) *daemon {
	t.Helper()
	requireSandbox(t)
	dir, err := os.MkdirTemp("/tmp", "icc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, keyFile: filepath.Join(dir, "master.key")}
	d.master, err = keys.Init(keys.Source{Custody: keys.CustodyKeyFile, StateDir: state, KeyFile: d.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	ck := d.master.SubKey("test store")
	if d.store, err = store.Open(filepath.Join(state, "ironclaw.db"), &ck); err != nil {
		t.Fatal(err)
	}
	ak := d.master.SubKey("test audit")
	if d.audit, err = audit.Open(filepath.Join(state, "audit.log"), audit.WithKey(ak[:])); err != nil {
		t.Fatal(err)
	}
	digest, err := supervisor.FileDigest(agent)
	if err != nil {
		t.Fatal(err)
	}
	runscDigest, err := sandbox.ParseDigestFile(filepath.Join(repoRoot(), "images", "runsc.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	d.runsc = &sandbox.Runsc{Path: runscPath(), Root: runscRoot, WantDigest: runscDigest}
	d.cfg = supervisor.Config{
		StateDir: state, RuntimeDir: filepath.Join(dir, "run"),
		Master: d.master, Store: d.store, Audit: d.audit, Runsc: d.runsc,
		AgentBinary: agent, AgentDigest: digest, Model: "tiny",
		MemoryMiB: 256, CPUMillis: 1000, // the default profile's memory
		TmpMiB: 8, OutboxMiB: 16, OutboxInodes: 256,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		d.cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for _, o := range opts {
		o(&d.cfg)
	}
	if err := os.MkdirAll(d.cfg.RuntimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if d.sup, err = supervisor.New(d.cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	// What daemon.Open must do before any message (the lead's hook). A test that breaks
	// runsc on purpose expects Reap to fail too.
	_, d.reapErr = d.sup.Reap(context.Background())
	if d.reapErr != nil && d.cfg.Runsc == d.runsc {
		t.Fatalf("Reap: %v", d.reapErr)
	}
	return d
}

// closeSupervisor stops the supervisor (once) and leaves store, audit and keys open.
func (d *daemon) closeSupervisor() {
	d.supOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := d.sup.Close(ctx); err != nil {
			d.t.Errorf("supervisor Close: %v", err)
		}
	})
}

func (d *daemon) close() {
	d.closeOne.Do(func() {
		d.closeSupervisor()
		d.audit.Close()
		d.store.Close()
		d.master.Destroy()
		// Nothing of ours may survive Close: no mounted outbox, no container.
		if ents, _ := os.ReadDir(filepath.Join(d.cfg.StateDir, "sessions")); len(ents) > 0 {
			for _, e := range ents {
				if ok, _ := sandbox.OutboxMounted(filepath.Join(d.cfg.StateDir, "sessions", e.Name(), "outbox")); ok {
					d.t.Errorf("session %s: outbox still mounted after Close", e.Name())
					_ = sandbox.ReleaseOutbox(filepath.Join(d.cfg.StateDir, "sessions", e.Name(), "outbox"))
				}
			}
		}
	})
}

// send sends text to binding and fails the test on error.
func (d *daemon) send(binding, text string) (wire.SessionID, uint64) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, seq, err := d.sup.Send(ctx, binding, "test", text)
	if err != nil {
		d.t.Fatalf("Send(%s, %.40q): %v", binding, text, err)
	}
	return id, seq
}

// ask sends text and waits for the reply to it.
func (d *daemon) ask(binding, text string, within time.Duration) string {
	d.t.Helper()
	ch := d.sup.Subscribe(binding)
	defer d.sup.Unsubscribe(ch)
	id, seq := d.send(binding, text)
	deadline := time.After(within)
	for {
		select {
		case r := <-ch:
			if r.InReplyTo == seq {
				return r.Text
			}
		case <-deadline:
			st, _ := d.sup.Status(id)
			d.t.Fatalf("no reply from %s to %.40q within %v; status %+v\nstdout tail: %s\nstderr tail: %s",
				binding, text, within, st, tailStr(st.Stdout, 2000), tailStr(st.Stderr, 2000))
		}
	}
}

// waitStatus polls until cond holds for session id's status.
func (d *daemon) waitStatus(id wire.SessionID, within time.Duration, what string, cond func(supervisor.Status) bool) supervisor.Status {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, ok := d.sup.Status(id)
		if ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("session %s: %s did not happen within %v; status %+v\nstderr: %s", id, what, within, st, tailStr(st.Stderr, 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessionKey returns the session key bound to binding, as the test's ground truth for what
// must never leak.
func (d *daemon) sessionKey(binding string) (wire.SessionID, *wire.Key) {
	d.t.Helper()
	s, err := d.store.SessionByBinding(context.Background(), binding)
	if err != nil {
		d.t.Fatal(err)
	}
	k, err := d.master.Unwrap(s.ID, s.WrappedKey)
	if err != nil {
		d.t.Fatal(err)
	}
	return s.ID, k
}

func (d *daemon) sessionDir(id wire.SessionID) string {
	return filepath.Join(d.cfg.StateDir, "sessions", id.String())
}

// auditEntries reads the audit log as written so far.
func (d *daemon) auditEntries() []audit.Entry {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.cfg.StateDir, "audit.log"))
	if err != nil {
		d.t.Fatal(err)
	}
	var out []audit.Entry
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var w struct {
			Time, Actor, Action, Subject, Decision, Result string
			Count                                          uint64
		}
		if err := json.Unmarshal([]byte(line), &w); err != nil {
			d.t.Fatalf("audit line %q: %v", line, err)
		}
		tm, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			d.t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, audit.Entry{Time: tm, Actor: w.Actor, Action: w.Action, Subject: w.Subject, Decision: w.Decision, Result: w.Result, Count: w.Count})
	}
	return out
}

// waitAudit polls the audit log until an entry matches.
func (d *daemon) waitAudit(within time.Duration, what string, match func(audit.Entry) bool) audit.Entry {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, e := range d.auditEntries() {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no audit entry for %s within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tailStr(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
