package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/ironclaw/ironclaw/daemon/proxy/ollamatest"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End to end: the real ironclaw binary, the real agentd in real runsc, the
// CLI a user types. Runs as root (CI does); fails without runsc.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func buildBinaries(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test runs sandboxes and must run as root (CI does)")
	}
	if _, err := os.Stat("/opt/ironclaw/bin/runsc"); err != nil {
		t.Fatal("runsc is not installed at /opt/ironclaw/bin/runsc: run .ci/install-runsc.sh")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "icbin")
		if binErr != nil {
			return
		}
		for _, p := range []string{"ironclaw", "agentd"} {
			cmd := exec.Command("go", "build", "-tags", "goolm", "-trimpath", "-o", filepath.Join(binDir, p), "../cmd/"+p)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("building %s: %v\n%s", p, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

type install struct {
	t      *testing.T
	bin    string
	root   string
	config string
	agent  string // sandbox.agent_binary
	model  *ollamatest.Scripted
}

func newInstall(t *testing.T) *install {
	bin := buildBinaries(t)
	root, err := os.MkdirTemp("/tmp", "ice2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	etc := filepath.Join(root, "etc")
	os.Mkdir(etc, 0o700)
	// The real agentd asks a model through the daemon's proxy: an Ollama-wire
	// server that echoes the user's message, so a chat's round trip is checkable.
	model := ollamatest.NewEcho(t)
	in := &install{t: t, bin: bin, root: root, config: filepath.Join(etc, "ironclaw.toml"), agent: filepath.Join(bin, "agentd"), model: model}
	in.writeConfig("")
	return in
}

func (in *install) writeConfig(extra string) {
	// The echo model, unless the test names its own.
	model := fmt.Sprintf("[model]\nollama_url = %q\n", in.model.URL)
	if strings.Contains(extra, "[model]") {
		model = ""
	}
	cfg := fmt.Sprintf(`state_dir = %q
runtime_dir = %q
[keys]
key_file = %q
%s[sandbox]
agent_binary = %q
%s`, filepath.Join(in.root, "state"), filepath.Join(in.root, "run"), filepath.Join(in.root, "etc", "master.key"),
		model, in.agent, extra)
	if err := os.WriteFile(in.config, []byte(cfg), 0o600); err != nil {
		in.t.Fatal(err)
	}
}

func (in *install) run(args ...string) (string, error) {
	// Bounded: a "serve" that should have refused to start must not hang
	// the suite.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(in.bin, "ironclaw"), append([]string{"--config", in.config}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (in *install) mustRun(args ...string) string {
	in.t.Helper()
	out, err := in.run(args...)
	if err != nil {
		in.t.Fatalf("ironclaw %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// syncBuffer is a log buffer written by one goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteString(x string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(x)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve starts the daemon and waits until it says it is ready.
func (in *install) serve() (*exec.Cmd, *syncBuffer) {
	in.t.Helper()
	cmd := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "serve")
	logs := &syncBuffer{}
	pr, pw, _ := os.Pipe()
	cmd.Stderr, cmd.Stdout = pw, pw
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	pw.Close()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		said := false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if !said && strings.Contains(sc.Text(), "ironclaw ready") {
				ready <- true
				said = true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			in.t.Fatalf("daemon did not start:\n%s", logs.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		in.t.Fatal("daemon not ready in 20 s")
	}
	// Stop it as an operator would, so it unmounts and removes what it made.
	in.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	return cmd, logs
}

func TestEndToEnd(t *testing.T) {
	in := newInstall(t)
	pub := filepath.Join(in.root, "op.pub")
	os.WriteFile(pub, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop\n"), 0o644)
	out := in.mustRun("init", "--operator-key", pub)
	if !strings.Contains(out, "initialised") || !strings.Contains(out, "SHA256:") {
		t.Fatalf("init said:\n%s", out)
	}
	// A second init refuses and changes nothing.
	keyBefore, _ := os.ReadFile(filepath.Join(in.root, "etc", "master.key"))
	if out, err := in.run("init"); err == nil || !strings.Contains(out, "already initialised") {
		t.Fatalf("second init: %v\n%s", err, out)
	}
	if keyAfter, _ := os.ReadFile(filepath.Join(in.root, "etc", "master.key")); !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("second init changed the master key")
	}

	cmd, logs := in.serve()
	// The running daemon writes no core file (RLIMIT_CORE 0; that it is
	// not dumpable is hostcheck's TestLockDownProcess).
	if got := coreLimit(t, cmd.Process.Pid); got != "0 0" {
		t.Errorf("the daemon's core file limit is %q, want 0 0", got)
	}
	markers := []string{"MARKER-alpha-7f3a91", "MARKER-bravo-c04e22", "MARKER-charlie-9d81bb"}
	for _, m := range markers {
		start := time.Now()
		reply := strings.TrimSpace(in.mustRun("chat", "tell me about "+m))
		if reply != "tell me about "+m {
			t.Fatalf("reply %q", reply)
		}
		t.Logf("chat round trip %v", time.Since(start))
	}
	// Disk theft, with the session live: nothing under the state or runtime
	// directory holds the conversation's plaintext (queues, store, audit,
	// outbox filesystem image, sockets' directories).
	noPlaintext(t, in, markers)

	// Without a message argument, every line of standard input is sent.
	multi := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "chat")
	multi.Stdin = strings.NewReader("line one\nline two\n\nline three")
	if out, err := multi.CombinedOutput(); err != nil || string(out) != "line one\nline two\nline three\n" {
		t.Fatalf("chat from stdin: %v %q", err, out)
	}
	if st := in.mustRun("status"); !strings.Contains(st, "sessions: 1") {
		t.Fatalf("status:\n%s", st)
	}
	// Crypto-erase: after typing "erase", the session is gone and the next
	// message starts a new one.
	m := regexp.MustCompile(`(?m)^([0-9a-f]{32})\s+active`).FindStringSubmatch(in.mustRun("sessions"))
	if m == nil {
		t.Fatalf("no active session:\n%s", in.mustRun("sessions"))
	}
	erase := exec.Command(filepath.Join(in.bin, "ironclaw"), "--config", in.config, "sessions", "erase", m[1])
	erase.Stdin = strings.NewReader("erase\n")
	if out, err := erase.CombinedOutput(); err != nil {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	if list := in.mustRun("sessions"); !regexp.MustCompile(m[1] + `\s+erased`).MatchString(list) {
		t.Fatalf("after erase:\n%s", list)
	}
	if _, err := os.Stat(filepath.Join(in.root, "state", "sessions", m[1])); !os.IsNotExist(err) {
		t.Fatalf("the erased session's files are still there: %v", err)
	}
	if reply := strings.TrimSpace(in.mustRun("chat", "again")); reply != "again" {
		t.Fatalf("chat after erase: %q", reply)
	}
	// SIGTERM stops it cleanly.
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v:\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop in 20 s after SIGTERM")
	}
	if !strings.Contains(logs.String(), "ironclaw stopped") {
		t.Fatalf("no clean stop in the logs:\n%s", logs.String())
	}

	// And with the daemon stopped.
	noPlaintext(t, in, []string{"line one", "line two", "again"})

	// The audit log verifies; a flipped byte is caught and named.
	if out := in.mustRun("audit", "verify"); !strings.Contains(out, "audit: OK") || !strings.Contains(out, "verified: hash chain, MACs, anchor") {
		t.Fatalf("audit verify:\n%s", out)
	}
	logPath := filepath.Join(in.root, "state", "audit.log")
	data, _ := os.ReadFile(logPath)
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) < 5 {
		t.Fatalf("audit log has %d lines", len(lines))
	}
	i := bytes.Index(lines[2], []byte(`"action":"`)) + len(`"action":"`)
	lines[2][i] ^= 0x01
	os.WriteFile(logPath, bytes.Join(lines, nil), 0o600)
	out, err := in.run("audit", "verify")
	if err == nil || !strings.Contains(out, "FAILED at entry 3") {
		t.Fatalf("tampered audit log: %v\n%s", err, out)
	}
	// A cut tail is caught against the anchor the daemon keeps in its store.
	lines[2][i] ^= 0x01
	os.WriteFile(logPath, bytes.Join(lines[:len(lines)-2], nil), 0o600)
	out, err = in.run("audit", "verify")
	if err == nil || !strings.Contains(out, "anchor") {
		t.Fatalf("truncated audit log: %v\n%s", err, out)
	}
}

// noPlaintext fails if any file under the install's state or runtime
// directory, or any outbox filesystem mounted there, holds one of marks.
func noPlaintext(t *testing.T, in *install, marks []string) {
	t.Helper()
	files := 0
	for _, dir := range []string{filepath.Join(in.root, "state"), filepath.Join(in.root, "run")} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			files++
			data, _ := os.ReadFile(p)
			for _, m := range marks {
				if bytes.Contains(data, []byte(m)) {
					t.Errorf("%s holds plaintext %q", p, m)
				}
			}
			return nil
		})
	}
	if files < 5 {
		t.Fatalf("scanned only %d files", files)
	}
}

// Fail closed: without a usable runsc, or with an agent binary that is not
// the pinned one, the daemon does not start at all.
func TestServeFailsClosed(t *testing.T) {
	in := newInstall(t)
	in.mustRun("init")
	in.writeConfig(`runsc = "/nonexistent/runsc"`)
	out, err := in.run("serve")
	if err == nil || !strings.Contains(out, "no sandbox, no agents") || !strings.Contains(out, "install-runsc") {
		t.Fatalf("serve without runsc: %v\n%s", err, out)
	}
	// A runsc that is not the pinned build (one appended byte), in a
	// root-only directory so that only the digest can be what refuses it.
	dir, err := os.MkdirTemp("/root", "icrunsc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	data, err := os.ReadFile("/opt/ironclaw/bin/runsc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "runsc"), append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	in.writeConfig(fmt.Sprintf("runsc = %q", filepath.Join(dir, "runsc")))
	out, err = in.run("serve")
	if err == nil || !strings.Contains(out, "no sandbox, no agents") || !strings.Contains(out, "sha256") {
		t.Fatalf("serve with a tampered runsc: %v\n%s", err, out)
	}
	// A state directory others can write is refused before the key is
	// loaded, naming the path and the fix.
	in.writeConfig("")
	state := filepath.Join(in.root, "state")
	os.Chmod(state, 0o777)
	out, err = in.run("serve")
	if err == nil || !strings.Contains(out, state) || !strings.Contains(out, "chmod go-w") {
		t.Fatalf("serve with a world-writable state directory: %v\n%s", err, out)
	}
	os.Chmod(state, 0o700)
	// So is a runtime directory reached through a symbolic link.
	os.Symlink(filepath.Join(in.root, "run"), filepath.Join(in.root, "runlink"))
	os.MkdirAll(filepath.Join(in.root, "run"), 0o700)
	in.writeConfig("")
	cfg, _ := os.ReadFile(in.config)
	os.WriteFile(in.config, []byte(strings.Replace(string(cfg), filepath.Join(in.root, "run"), filepath.Join(in.root, "runlink"), 1)), 0o600)
	out, err = in.run("serve")
	if err == nil || !strings.Contains(out, "symbolic link") {
		t.Fatalf("serve with a symlinked runtime directory: %v\n%s", err, out)
	}
}

// coreLimit reads the "Max core file size" soft and hard limits of pid.
func coreLimit(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max core file size"); ok {
			return strings.Join(strings.Fields(rest)[:2], " ")
		}
	}
	t.Fatalf("no core limit in /proc/%d/limits", pid)
	return ""
}

// Passphrase custody end to end: init and verify with a passphrase file; a
// wrong passphrase is refused clearly and changes nothing.
func TestPassphraseCustody(t *testing.T) {
	in := newInstall(t)
	pass := filepath.Join(in.root, "etc", "passphrase")
	os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600)
	custody := fmt.Sprintf("[keys]\ncustody = \"passphrase\"\npassphrase_file = %q\n", pass)
	// The [keys] table in writeConfig sets key_file; a second [keys] would be
	// a duplicate table, so write this config whole.
	cfg := fmt.Sprintf("state_dir = %q\nruntime_dir = %q\n%s[sandbox]\nagent_binary = %q\n",
		filepath.Join(in.root, "state"), filepath.Join(in.root, "run"), custody, in.agent)
	os.WriteFile(in.config, []byte(cfg), 0o600)
	if out := in.mustRun("init"); !strings.Contains(out, "custody: passphrase") {
		t.Fatalf("init:\n%s", out)
	}
	if out := in.mustRun("audit", "verify"); !strings.Contains(out, "audit: OK") {
		t.Fatalf("verify:\n%s", out)
	}
	before, _ := os.ReadFile(filepath.Join(in.root, "state", "audit.log"))
	os.WriteFile(pass, []byte("wrong horse battery staple\n"), 0o600)
	out, err := in.run("audit", "verify")
	if err == nil || !strings.Contains(out, "wrong") {
		t.Fatalf("verify with a wrong passphrase: %v\n%s", err, out)
	}
	if strings.Contains(out, "horse") {
		t.Fatal("the passphrase appeared in an error message")
	}
	after, _ := os.ReadFile(filepath.Join(in.root, "state", "audit.log"))
	if string(before) != string(after) {
		t.Fatal("a wrong passphrase changed the state directory")
	}
}
