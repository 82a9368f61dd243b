package containment

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
)

// TestHostRestartDiscardsTheOutbox: the agent commits its outbox without
// waiting for the disk, so only the host going down can tear it. A sandbox's
// start is marked with the host's boot id and the mark cleared on a clean
// stop; at the next start a mark from another boot means the host went down
// while the agent could be writing: the outbox is discarded (audited) and the
// conversation goes on. A mark from this boot (only the daemon restarted)
// keeps the outbox, and a torn one is refused as hostile, as ever.
func TestHostRestartDiscardsTheOutbox(t *testing.T) {
	d := newDaemon(t, echoPath, func(c *supervisor.Config) {
		c.BootID = func() (string, error) { return "boot-one", nil }
	})
	d.ask("host-down", "before", 30*time.Second)
	d.ask("daemon-down", "before", 30*time.Second)
	down, _ := d.sessionKey("host-down")
	kept, _ := d.sessionKey("daemon-down")
	mark := func(id wire.SessionID) string { return filepath.Join(d.sessionDir(id), "outbox.boot") }
	for _, id := range []wire.SessionID{down, kept} {
		if b, err := os.ReadFile(mark(id)); err != nil || string(b) != "boot-one\n" {
			t.Fatalf("a running sandbox's start mark: %q %v", b, err)
		}
	}
	d.closeSupervisor()
	for _, id := range []wire.SessionID{down, kept} {
		if _, err := os.Stat(mark(id)); !os.IsNotExist(err) {
			t.Fatalf("a clean stop left the start mark: %v", err)
		}
	}

	// As the host's going down mid-commit would leave them: the marks back,
	// the outboxes torn. One mark is from the boot before; the other from
	// this one (the daemon alone went down).
	torn := append([]byte("SQLite format 3\x00"), make([]byte, 3*4096)...)
	rand.Read(torn[100:])
	for _, id := range []wire.SessionID{down, kept} {
		dir := filepath.Join(d.sessionDir(id), wire.OutboxDir)
		if err := os.Remove(dir + ".img"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, wire.OutboxFile), torn, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(filepath.Join(dir, wire.OutboxFile), supervisor.AgentUID, supervisor.AgentUID)
	}
	os.WriteFile(mark(down), []byte("boot-zero\n"), 0o600)
	os.WriteFile(mark(kept), []byte("boot-one\n"), 0o600)

	next, err := supervisor.New(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close(context.Background())
	if _, err := next.Reap(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.sup = next
	if got := d.ask("host-down", "after the host restarted", 30*time.Second); got != "after the host restarted" {
		t.Fatalf("reply %q", got)
	}
	d.waitAudit(5*time.Second, "outbox.reset", func(e audit.Entry) bool {
		return e.Action == "outbox.reset" && e.Subject == down.String() && strings.Contains(e.Result, "host restarted")
	})
	if b, err := os.ReadFile(mark(down)); err != nil || string(b) != "boot-one\n" {
		t.Fatalf("the new sandbox's start mark: %q %v", b, err)
	}
	// Only the daemon went down: the outbox is kept, and this torn one is
	// refused as hostile, never discarded quietly.
	if _, _, err := next.Send(t.Context(), "daemon-down", "test", "after the daemon restarted"); err == nil || !strings.Contains(err.Error(), "refusing the outbox") {
		t.Fatalf("a torn outbox after a daemon restart: %v, want it refused", err)
	}
	if class := d.waitFailed(kept, 30*time.Second); class == "" {
		t.Fatal("no refusal class")
	}
	for _, e := range d.auditEntries() {
		if e.Action == "outbox.reset" && e.Subject == kept.String() {
			t.Fatal("an outbox was discarded although the host did not restart")
		}
	}
}
