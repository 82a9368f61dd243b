package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon"
	"github.com/ironclaw/ironclaw/daemon/admin"
)

// TestSessionCommandsEndToEnd drives the session commands through the real
// binaries: create, records (audited), stop, restart, reset-outbox; the
// conversation keeps working across each.
func TestSessionCommandsEndToEnd(t *testing.T) {
	in := newInstall(t)
	in.mustRun("init")
	in.serve()
	if reply := strings.TrimSpace(in.mustRun("chat", "hello")); reply != "hello" {
		t.Fatalf("reply %q", reply)
	}
	m := regexp.MustCompile(`(?m)^([0-9a-f]{32})\s+active`).FindStringSubmatch(in.mustRun("sessions"))
	if m == nil {
		t.Fatalf("no session:\n%s", in.mustRun("sessions"))
	}
	id := m[1]
	if out := in.mustRun("sessions", "records", id); !strings.Contains(out, "memory (0)") || !strings.Contains(out, "schedules (0)") {
		t.Fatalf("records:\n%s", out)
	}
	audit, _ := os.ReadFile(filepath.Join(in.root, "state", "audit.log"))
	if !regexp.MustCompile(`"action":"session.show"[^\n]*"subject":"` + id).Match(audit) {
		t.Fatalf("showing the records was not audited:\n%s", audit)
	}
	// The running sandbox's list line carries its real cgroup usage.
	list, err := admin.NewClient(filepath.Join(in.root, "run", daemon.AdminSocket)).ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == id && (!s.Running || s.MemoryBytes == 0 || s.UsageAt.IsZero()) {
			t.Fatalf("no usage for the running sandbox: %+v", s)
		}
	}
	// The transcript is the conversation the daemon keeps, audited first.
	if out := in.mustRun("sessions", "transcript", id); !strings.Contains(out, " user ---\nhello\n") || !strings.Contains(out, " assistant ---\nhello\n") {
		t.Fatalf("transcript:\n%s", out)
	}
	audit, _ = os.ReadFile(filepath.Join(in.root, "state", "audit.log"))
	if !regexp.MustCompile(`"action":"session.show"[^\n]*"subject":"` + id + `"[^\n]*"result":"transcript"`).Match(audit) {
		t.Fatalf("showing the transcript was not audited:\n%s", audit)
	}
	in.mustRun("sessions", "stop", id)
	if reply := strings.TrimSpace(in.mustRun("chat", "after stop")); reply != "after stop" {
		t.Fatalf("reply after stop %q", reply)
	}
	in.mustRun("sessions", "restart", id)
	if reply := strings.TrimSpace(in.mustRun("chat", "after restart")); reply != "after restart" {
		t.Fatalf("reply after restart %q", reply)
	}
	if out := in.mustRun("sessions", "reset-outbox", id); !strings.Contains(out, "nothing the daemon recorded was lost") {
		t.Fatalf("reset-outbox said %q", out)
	}
	if reply := strings.TrimSpace(in.mustRun("chat", "after reset")); reply != "after reset" {
		t.Fatalf("reply after the reset %q", reply)
	}
	if out := in.mustRun("sessions", "create", "console:work"); !strings.Contains(out, "created for console:work") {
		t.Fatalf("create said %q", out)
	}
	if out, err := in.run("sessions", "create", "console:work"); err == nil || !strings.Contains(out, "already has a session") {
		t.Fatalf("second create: %v %q", err, out)
	}
	audit, _ = os.ReadFile(filepath.Join(in.root, "state", "audit.log"))
	for _, action := range []string{"sandbox.stop", "outbox.reset", "session.create"} {
		if !strings.Contains(string(audit), `"action":"`+action+`"`) {
			t.Errorf("%s not audited", action)
		}
	}
}
