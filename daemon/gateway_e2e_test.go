package daemon_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The owner approves every change, end to end: the sandboxed agent files a
// change request; `ironclaw changes` shows the full diff and the untrusted
// reason, sanitised; nothing changes until the operator types "approve";
// then the agent receives exactly the approved profile.
func TestChangeGatewayEndToEnd(t *testing.T) {
	in := newInstall(t)
	in.useRequester("")
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

// Upgrading agentd: a session keeps running only the binary its profile
// names. After a new binary is installed, the session refuses to start until
// the owner approves a software change naming the new digest; then it runs
// the new binary. New sessions move only when the owner pins it.
func TestAgentUpgradeThroughTheGateway(t *testing.T) {
	in := newInstall(t)
	in.mustRun("init")
	cmd, _ := in.serve()
	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); got != "profile?" {
		t.Fatalf("echo agent: %q", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	// Install another agent binary (the requester test agent).
	agent := filepath.Join(in.root, "agentd-v2")
	build := exec.Command("go", "build", "-trimpath", "-o", agent, "./testdata/requester")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the new agent: %v\n%s", err, out)
	}
	in.agent = agent
	in.writeConfig("")
	in.serve()
	out, err := in.run("chat", "--wait", "5s", "profile?")
	if err == nil || !strings.Contains(out, "--kind software") {
		t.Fatalf("a session pinned to the old agent ran the new one: %v\n%s", err, out)
	}
	sessions := in.mustRun("sessions")
	id := regexp.MustCompile(`(?m)^([0-9a-f]{32})\s+active`).FindStringSubmatch(sessions)[1]
	prof := in.mustRun("sessions", "profile", id)
	prof = prof[strings.Index(prof, "ironclaw-profile 1"):] // the "# session" note goes to stderr
	sum := sha256.Sum256(mustRead(t, agent))
	newDigest := "sha256:" + hex.EncodeToString(sum[:])
	proposed := regexp.MustCompile(`agent\.digest = "[^"]*"`).ReplaceAllString(prof, `agent.digest = "`+newDigest+`"`)
	file := filepath.Join(in.root, "proposed.txt")
	os.WriteFile(file, []byte(proposed), 0o600)
	out = in.mustRun("changes", "propose", "--session", id, "--kind", "software", "--file", file, "--reason", "upgrade", "--base", "1")
	m := regexp.MustCompile(`change request ([0-9a-f]{32}): pending`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("propose:\n%s", out)
	}
	approve := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "changes", "approve", m[1])
	approve.Stdin = strings.NewReader("approve\n")
	if out, err := approve.CombinedOutput(); err != nil || !strings.Contains(string(out), "+agent.digest = \""+newDigest) {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); !strings.HasPrefix(got, "profile v2: ") {
		t.Fatalf("after the software change the session answered %q, want the new agent", got)
	}
	// New sessions still pin the old agent until the owner pins the new one.
	if st := in.mustRun("status"); !strings.Contains(st, "installed: "+newDigest) || strings.Contains(st, "new sessions: "+newDigest) {
		t.Fatalf("status:\n%s", st)
	}
	// A new conversation cannot start on an agent that is not installed:
	// it is refused, with the fix, until the owner pins the installed one.
	erase := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "sessions", "erase", id)
	erase.Stdin = strings.NewReader("erase\n")
	if out, err := erase.CombinedOutput(); err != nil {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	if out, err := in.run("chat", "--wait", "5s", "hello"); err == nil || !strings.Contains(out, "ironclaw agent pin") {
		t.Fatalf("a new conversation before the pin: %v\n%s", err, out)
	}
	pin := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "agent", "pin")
	pin.Stdin = strings.NewReader("pin\n")
	if out, err := pin.CombinedOutput(); err != nil {
		t.Fatalf("pin: %v\n%s", err, out)
	}
	if st := in.mustRun("status"); !strings.Contains(st, "new sessions: "+newDigest) {
		t.Fatalf("status after pin:\n%s", st)
	}
	// The new conversation runs the new agent from its first profile.
	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); !strings.HasPrefix(got, "profile v1: You are a helpful") {
		t.Fatalf("a new conversation after the pin answered %q, want the new agent at profile v1", got)
	}
}

// useRequester makes the install run the requester test agent, with extra
// config lines.
func (in *install) useRequester(extra string) {
	in.t.Helper()
	agent := filepath.Join(in.root, "requester")
	cmd := exec.Command("go", "build", "-trimpath", "-o", agent, "./testdata/requester")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		in.t.Fatalf("building the requester agent: %v\n%s", err, out)
	}
	in.agent = agent
	in.writeConfig(extra)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A binary replaced while the daemon runs is seen at once: `status` and
// `agent pin` hash the installed agent when asked (not the digest taken at
// start), and a new conversation then starts on it without a restart.
func TestReplacedAgentSeenWithoutRestart(t *testing.T) {
	in := newInstall(t)
	in.agent = filepath.Join(in.root, "agentd")
	if err := os.WriteFile(in.agent, mustRead(t, filepath.Join(in.bin, "agentd")), 0o755); err != nil {
		t.Fatal(err)
	}
	in.writeConfig("")
	in.mustRun("init")
	in.serve()
	next := filepath.Join(in.root, "agentd.next")
	build := exec.Command("go", "build", "-trimpath", "-o", next, "./testdata/requester")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the new agent: %v\n%s", err, out)
	}
	if err := os.Rename(next, in.agent); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mustRead(t, in.agent))
	newDigest := "sha256:" + hex.EncodeToString(sum[:])
	if st := in.mustRun("status"); !strings.Contains(st, "installed: "+newDigest) {
		t.Fatalf("status after replacing the binary does not show it:\n%s", st)
	}
	pin := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "agent", "pin")
	pin.Stdin = strings.NewReader("pin\n")
	out, err := pin.CombinedOutput()
	if err != nil || strings.Contains(string(out), "already") || !strings.Contains(string(out), "new sessions pin "+newDigest) {
		t.Fatalf("pin after replacing the binary: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); !strings.HasPrefix(got, "profile v1: ") {
		t.Fatalf("a new conversation after the pin answered %q, want the new agent", got)
	}
}
