package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
)

// The lifecycle against real sandboxes (idle stop, restart, crash loop, reap, fail closed)
// is tested in daemon/containment; these are the parts that need no runsc.

func testSupervisor(t *testing.T, cfg Config) *Supervisor {
	t.Helper()
	cfg.StateDir, cfg.RuntimeDir = t.TempDir(), t.TempDir()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfigDefaults(t *testing.T) {
	s := testSupervisor(t, Config{})
	c := s.cfg
	if c.IdleTimeout != DefaultIdleTimeout || c.BackoffMin != DefaultBackoffMin || c.BackoffMax != DefaultBackoffMax ||
		c.CrashLoopCount != DefaultCrashLoopCount || c.CrashLoopWindow != DefaultCrashLoopWindow || c.MaxRunning != DefaultMaxRunning ||
		c.TmpMiB != DefaultMaxTmpMiB || c.OutboxMiB != DefaultMaxOutboxMiB || c.OutboxInodes != DefaultMaxOutboxInodes || c.Log == nil {
		t.Errorf("zero config did not get the documented defaults: %+v", c)
	}
	// Zero memory and CPU maxima are not defaulted: they refuse every start.
	if c.MemoryMiB != 0 || c.CPUMillis != 0 {
		t.Errorf("memory/CPU maxima were defaulted: %d, %d", c.MemoryMiB, c.CPUMillis)
	}
}

func TestBackoff(t *testing.T) {
	s := testSupervisor(t, Config{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second})
	want := []time.Duration{100, 100, 200, 400, 800, 1000, 1000}
	for exits, w := range want {
		if got := s.backoff(exits); got != w*time.Millisecond {
			t.Errorf("backoff after %d exits = %v, want %v", exits, got, w*time.Millisecond)
		}
	}
}

func TestSandboxPlan(t *testing.T) {
	s := testSupervisor(t, Config{
		AgentBinary: "/opt/ironclaw/bin/agentd", AgentDigest: "sha256:" + strings.Repeat("ab", 32),
		MemoryMiB: 200, CPUMillis: 300, TmpMiB: 4, OutboxMiB: 2048, OutboxInodes: 100,
	})
	id, err := wire.NewSessionID()
	if err != nil {
		t.Fatal(err)
	}
	p := profile.Default("tiny", s.cfg.AgentDigest)
	hs := []byte("handshake")
	plan, err := s.SandboxPlan(id, p, hs)
	if err != nil {
		t.Fatal(err)
	}
	sp := plan.Spec
	if sp.ID != sandbox.IDPrefix+id.String() || len(sp.ID) != sandbox.IDLength {
		t.Errorf("container id %q is not the fixed-length %s<session>", sp.ID, sandbox.IDPrefix)
	}
	if sp.AgentSHA256 != strings.Repeat("ab", 32) {
		t.Errorf("agent digest %q not passed for the per-launch check", sp.AgentSHA256)
	}
	if string(sp.Stdin) != "handshake" || len(sp.Args) != 0 {
		t.Errorf("the handshake goes on stdin only: stdin %q args %q", sp.Stdin, sp.Args)
	}
	// Each limit is the smaller of profile (256 MiB, 500 m, 16 MiB tmp, 64 MiB / 1024
	// inodes outbox) and host maximum.
	if sp.MemoryBytes != 200<<20 || sp.CPUMillis != 300 || sp.TmpBytes != 4<<20 || plan.OutboxMiB != 64 || plan.OutboxInodes != 100 {
		t.Errorf("limits: mem %d cpu %d tmp %d outbox %d MiB %d inodes", sp.MemoryBytes, sp.CPUMillis, sp.TmpBytes, plan.OutboxMiB, plan.OutboxInodes)
	}
	if plan.OutboxDir != sp.OutboxDir || !strings.HasSuffix(sp.OutboxDir, "/sessions/"+id.String()+"/outbox") {
		t.Errorf("outbox dir %q / %q", plan.OutboxDir, sp.OutboxDir)
	}

	p.AgentDigest = "sha256:" + strings.Repeat("cd", 32)
	if _, err := s.SandboxPlan(id, p, hs); err == nil || !strings.Contains(err.Error(), "--kind software") {
		t.Errorf("a profile pinning another agent = %v, want a refusal saying how to propose a software change", err)
	}
}
