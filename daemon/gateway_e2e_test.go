package daemon_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The owner approves every change, end to end: the sandboxed agent files a
// change request; `ironclaw changes` shows the full diff and the untrusted
// reason, sanitised; nothing changes until the operator types "approve";
// then the agent receives exactly the approved profile.
func TestChangeGatewayEndToEnd(t *testing.T) {
	in := newInstall(t)
	agent := filepath.Join(in.root, "requester")
	cmd := exec.Command("go", "build", "-trimpath", "-o", agent, "./testdata/requester")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the requester agent: %v\n%s", err, out)
	}
	in.agent = agent
	in.writeConfig("")
	in.mustRun("init")
	in.serve()

	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); !strings.HasPrefix(got, "profile v1: You are a helpful") {
		t.Fatalf("agent's first profile: %q", got)
	}
	in.mustRun("chat", "request instructions: Speak only French.")
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for id == "" && time.Now().Before(deadline) {
		m := regexp.MustCompile(`(?m)^([0-9a-f]{32})\s+pending\s+instructions`).FindStringSubmatch(in.mustRun("changes", "list"))
		if m != nil {
			id = m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id == "" {
		t.Fatalf("no pending change request:\n%s", in.mustRun("changes", "list", "--all"))
	}
	show := in.mustRun("changes", "show", id)
	t.Logf("ironclaw changes show:\n%s", show)
	for _, want := range []string{
		"-instructions.1 = \"You are a helpful personal assistant. Answer briefly and truthfully.\"",
		"+instructions.1 = \"Speak only French.\"",
		"UNTRUSTED",
		`\x1b[31m (trust me)`, // the escape is shown, not obeyed
		"binding:",
	} {
		if !strings.Contains(show, want) {
			t.Errorf("changes show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "\x1b") {
		t.Error("a raw escape reached the terminal")
	}
	// Not confirmed: nothing changes.
	no := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "changes", "approve", id)
	no.Stdin = strings.NewReader("yes\n")
	if out, err := no.CombinedOutput(); err == nil || !strings.Contains(string(out), "not confirmed") {
		t.Fatalf("approve without typing approve: %v\n%s", err, out)
	}
	if got := in.mustRun("chat", "profile?"); !strings.Contains(got, "profile v1:") {
		t.Fatalf("profile changed without approval: %s", got)
	}
	yes := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "changes", "approve", id)
	yes.Stdin = strings.NewReader("approve\n")
	if out, err := yes.CombinedOutput(); err != nil || !strings.Contains(string(out), "applied") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); got != "profile v2: Speak only French." {
		t.Fatalf("agent's profile after approval: %q", got)
	}
	all := in.mustRun("changes", "list", "--all")
	if !regexp.MustCompile(id + `\s+applied`).MatchString(all) {
		t.Fatalf("request not applied in the list:\n%s", all)
	}
	audit, _ := os.ReadFile(filepath.Join(in.root, "state", "audit.log"))
	if !strings.Contains(string(audit), `"actor":"operator:local:root"`) {
		t.Fatal("the approval's actor is not the local operator in the audit log")
	}
	if strings.Contains(string(audit), "French") || strings.Contains(string(audit), "trust me") {
		t.Fatal("change content leaked into the audit log")
	}
}
