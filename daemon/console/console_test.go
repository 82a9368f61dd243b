package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/tuitest"
	gossh "golang.org/x/crypto/ssh"
)

type auditRec struct{ actor, action, subject, result string }

type harness struct {
	t        testing.TB
	addr     string
	opKey    gossh.Signer
	opsFile  string
	srv      *Server
	mu       sync.Mutex
	audits   []auditRec
	auditErr error
	now      time.Time
	daemon   *tuitest.Daemon
}

func newSigner(t testing.TB) gossh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	return startServerWith(t, mod, nil)
}

// startServerOn serves on a listener listen makes.
func startServerOn(t testing.TB, listen func(context.Context) (net.Listener, error)) *harness {
	t.Helper()
	return startServerWith(t, nil, listen)
}

func startServerWith(t testing.TB, mod func(*Config), listen func(context.Context) (net.Listener, error)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, opKey: newSigner(t), opsFile: filepath.Join(dir, "operators"), now: time.Unix(1e9, 0)}
	if err := os.WriteFile(h.opsFile, gossh.MarshalAuthorizedKey(h.opKey.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, HostKeyFile)
	if _, err := MakeHostKey(hostKey); err != nil {
		t.Fatal(err)
	}
	d := tuitest.NewDaemon()
	d.AddSession(api.Session{ID: "0123456789abcdef0123456789abcdef", Binding: "matrix:!evil\x1b[2J\u202e:x", State: "active"})
	d.File("0123456789abcdef0123456789abcdef", "tools", "agent:0123456789abcdef0123456789abcdef", "why", "b", "p", "+x\n")
	cfg := Config{
		HostKeyPath: hostKey,
		Operators:   Operators{Files: []string{h.opsFile}},
		Bind:        func(actor string) api.Operator { return d.Operator(actor) },
		Audit: func(actor, action, subject, result string) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.auditErr != nil {
				return h.auditErr
			}
			h.audits = append(h.audits, auditRec{actor, action, subject, result})
			return nil
		},
		Now: func() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if listen != nil {
		ln, err = listen(context.Background())
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	h.addr, h.srv, h.daemon = ln.Addr().String(), srv, d
	return h
}

func (h *harness) dial(key gossh.Signer) (*gossh.Client, error) {
	return gossh.Dial("tcp", h.addr, &gossh.ClientConfig{
		User:            "anyone",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(key)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
}

func (h *harness) mustDial() *gossh.Client {
	h.t.Helper()
	c, err := h.dial(h.opKey)
	if err != nil {
		h.t.Fatalf("operator refused: %v", err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, c *gossh.Client, cmd string) (string, string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errOut strings.Builder
	s.Stdout, s.Stderr = &out, &errOut
	err = s.Run(cmd)
	return out.String(), errOut.String(), err
}

func TestScriptsGetSafeJSON(t *testing.T) {
	h := startServer(t, nil)
	c := h.mustDial()
	out, _, err := run(t, c, "approvals --json")
	if err != nil {
		t.Fatal(err)
	}
	var list []api.ChangeSummary
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Kind != "tools" {
		t.Fatalf("approvals: %v %q", err, out)
	}
	out, _, err = run(t, c, "sessions --json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out, "\x1b\u202e") {
		t.Fatalf("raw control characters in JSON: %q", out)
	}
	var ss []api.Session
	if err := json.Unmarshal([]byte(out), &ss); err != nil || ss[0].Binding != "matrix:!evil\x1b[2J\u202e:x" {
		t.Fatalf("the JSON does not carry the same data: %v %+v", err, ss)
	}
	if out, _, err = run(t, c, "audit --json --limit 5"); err != nil || !strings.HasPrefix(out, "[") {
		t.Fatalf("audit: %v %q", err, out)
	}
	// Anything else is refused with a hint, and nothing writes.
	for _, bad := range []string{"approve x", "approvals", "sessions --json extra", "sh -c id"} {
		_, errOut, err := run(t, c, bad)
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() == 0 || !strings.Contains(errOut, "hint") {
			t.Errorf("%q: %v %q", bad, err, errOut)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	want := Actor(h.opKey.PublicKey())
	if len(h.audits) == 0 || h.audits[0].actor != want || h.audits[0].action != "console.command" {
		t.Fatalf("audit: %+v", h.audits)
	}
}

func TestUnknownKeyGetsNothing(t *testing.T) {
	h := startServer(t, nil)
	if c, err := h.dial(newSigner(t)); err == nil {
		c.Close()
		t.Fatal("an unknown key got in")
	}
	// Removing a key from the operators file locks it out at once.
	h.mustDial().Close()
	os.WriteFile(h.opsFile, nil, 0o600)
	if c, err := h.dial(h.opKey); err == nil {
		c.Close()
		t.Fatal("a removed operator got in")
	}
	// A damaged operators file refuses everyone rather than guessing.
	os.WriteFile(h.opsFile, append(gossh.MarshalAuthorizedKey(h.opKey.PublicKey()), "garbage\n"...), 0o600)
	if c, err := h.dial(h.opKey); err == nil {
		c.Close()
		t.Fatal("a damaged operators file let someone in")
	}
}

func TestOnlySessionAndPty(t *testing.T) {
	h := startServer(t, nil)
	c := h.mustDial()
	// Local forwarding (direct-tcpip) and stdio forwarding.
	if _, err := c.Dial("tcp", h.addr); err == nil {
		t.Fatal("direct-tcpip was accepted")
	}
	// Remote forwarding (tcpip-forward).
	if ln, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
		t.Fatal("tcpip-forward was accepted")
	}
	if ok, _, _ := c.SendRequest("tcpip-forward", true, gossh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 0})); ok {
		t.Fatal("tcpip-forward global request accepted")
	}
	// Other channel types.
	for _, typ := range []string{"direct-tcpip", "x11", "auth-agent@openssh.com", "forwarded-tcpip", "direct-streamlocal@openssh.com"} {
		if ch, _, err := c.OpenChannel(typ, nil); err == nil {
			ch.Close()
			t.Errorf("channel %s accepted", typ)
		}
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range []struct {
		typ     string
		payload []byte
		want    bool
	}{
		{"auth-agent-req@openssh.com", nil, false},
		{"x11-req", gossh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00", 0}), false},
		{"subsystem", gossh.Marshal(struct{ Name string }{"sftp"}), false},
		{"env", gossh.Marshal(struct{ K, V string }{"LD_PRELOAD", "/tmp/x.so"}), false},
		{"env", gossh.Marshal(struct{ K, V string }{"TERM", "xterm-256color"}), true},
	} {
		ok, err := s.SendRequest(r.typ, true, r.payload)
		if err != nil {
			t.Fatal(err)
		}
		if ok != r.want {
			t.Errorf("%s %q: accepted=%v, want %v", r.typ, r.payload, ok, r.want)
		}
	}
	// A shell without a pty is told what to do, and ends.
	var errOut strings.Builder
	s.Stderr = &errOut
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err == nil || !strings.Contains(errOut.String(), "needs a terminal") {
		t.Fatalf("shell without pty: %v %q", err, errOut.String())
	}
}

func TestFailedAuthIsRateLimited(t *testing.T) {
	h := startServer(t, func(c *Config) { c.MaxFailures = 3; c.FailWindow = time.Minute })
	for range 3 {
		if c, err := h.dial(newSigner(t)); err == nil {
			c.Close()
			t.Fatal("unknown key got in")
		}
	}
	// Blocked now, even with the right key.
	if c, err := h.dial(h.opKey); err == nil {
		c.Close()
		t.Fatal("a source over its failure budget got in")
	}
	h.mu.Lock()
	h.now = h.now.Add(2 * time.Minute)
	h.mu.Unlock()
	h.mustDial().Close()
}

func TestIdleConnectionsTimeOut(t *testing.T) {
	h := startServer(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := h.mustDial()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("an idle connection stayed open")
	}
}

// TestConsoleIdleCountsInputOnly: an open console whose screen keeps
// changing (a busy daemon: requests filed, events streaming) but whose
// operator types nothing is closed after the idle timeout, and says so; a
// keypress now and then keeps it open. The SSH server's own idle timeout
// counts the console's redraws as traffic, so it would never fire.
func TestConsoleIdleCountsInputOnly(t *testing.T) {
	h := startServer(t, func(c *Config) { c.IdleTimeout = 1500 * time.Millisecond })
	c := h.mustDial()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var screen strings.Builder
	var got int
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			got += n
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	ended := make(chan error, 1)
	go func() { ended <- s.Wait() }()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the daemon stays busy: the screen changes all along
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				h.daemon.File("0123456789abcdef0123456789abcdef", "tools", "agent:0123456789abcdef0123456789abcdef", fmt.Sprint("why ", i), "b", "p", "+x\n")
			}
		}
	}()
	// Typing keeps it open well past the timeout (a harmless key: the
	// next page, round and round).
	for range 12 {
		select {
		case err := <-ended:
			t.Fatalf("the console closed although the operator was typing: %v", err)
		case <-time.After(250 * time.Millisecond):
			in.Write([]byte("\t"))
		}
	}
	mu.Lock()
	before := got
	mu.Unlock()
	start := time.Now()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("a console with a changing screen and no input stayed open")
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("closed %v after the last keypress, before the 1.5 s idle timeout", waited)
	}
	mu.Lock()
	defer mu.Unlock()
	if got == before {
		t.Fatal("the screen did not change while idle: this case no longer tests that output is not input")
	}
	if !strings.Contains(screen.String(), "no input for") {
		t.Fatalf("the console closed without saying why:\n%q", tail(screen.String(), 300))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.audits) == 0 || h.audits[len(h.audits)-1].action != "console.idle" {
		t.Fatalf("the idle close was not audited: %+v", h.audits)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestAuditFailureRefuses(t *testing.T) {
	h := startServer(t, nil)
	h.mu.Lock()
	h.auditErr = errors.New("disk full")
	h.mu.Unlock()
	_, errOut, err := run(t, h.mustDial(), "approvals --json")
	if err == nil || !strings.Contains(errOut, "audit log failed") {
		t.Fatalf("%v %q", err, errOut)
	}
}

func TestMarshalJSONEscapesWhatTheSanitiserWould(t *testing.T) {
	in := map[string]string{"s": "a\x1b[31m\x7f\u0085\u202e\u200b\U000e0041\u2028 ok é"}
	out, err := MarshalJSON(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range string(out) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x202e || r == 0x200b || r == 0x2028 || r >= 0xe0000 {
			t.Fatalf("%U survived in %s", r, out)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(out, &back); err != nil || back["s"] != in["s"] {
		t.Fatalf("round trip: %v %q", err, back["s"])
	}
}

func FuzzMarshalJSON(f *testing.F) {
	f.Add("plain")
	f.Add("\x1b]0;x\a\u202e\U000e0041\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := MarshalJSON([]string{s})
		if err != nil {
			t.Fatal(err)
		}
		var back []string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("not JSON: %v %q", err, out)
		}
		want, _ := json.Marshal([]string{s})
		var orig []string
		json.Unmarshal(want, &orig)
		if back[0] != orig[0] {
			t.Fatalf("data changed: %q vs %q", back[0], orig[0])
		}
	})
}

// A command's flags are echoed in its errors: they must reach the terminal
// sanitised like everything else (a script may pass text it did not write).
func TestCommandErrorsAreSanitised(t *testing.T) {
	h := startServer(t, nil)
	c := h.mustDial()
	for _, bad := range []string{"audit --json --\x1b]0;pwned\x07\u202e", "audit --json --limit=\x1b[2J\u202e", "audit --json -\x1b[2J=1"} {
		_, errOut, err := run(t, c, bad)
		if err == nil {
			t.Errorf("%q was accepted", bad)
		}
		if strings.ContainsAny(errOut, "\x1b\x07\u202e") {
			t.Errorf("%q: raw control characters reached stderr: %q", bad, errOut)
		}
	}
}

// Bytes that are not UTF-8 can reach MarshalJSON inside a value that
// marshals itself (json.RawMessage): they must not pass raw either (0x9b is
// CSI to an 8-bit terminal).
func TestMarshalJSONEscapesInvalidUTF8(t *testing.T) {
	out, err := MarshalJSON(map[string]json.RawMessage{"s": json.RawMessage("\"a\x9b2J\xff\"")})
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(out) || strings.ContainsAny(string(out), "\x1b") {
		t.Fatalf("invalid UTF-8 passed raw: %q", out)
	}
}

// TestLoopbackUsersDoNotLockEachOtherOut: on loopback every local user has
// the same address, so the failure limiter keys loopback connections by
// the connecting user. Another local user (nobody, with the real ssh
// client) failing keys past the budget locks out only itself; root's
// operator key still gets in, and the same junk from root's own sockets
// does lock root out.
func TestLoopbackUsersDoNotLockEachOtherOut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another user (CI runs as root)")
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatal("the ssh client is needed (.ci/bootstrap installs openssh-client)")
	}
	h := startServer(t, func(c *Config) { c.MaxFailures = 3; c.FailWindow = time.Minute })
	dir, err := os.MkdirTemp("/tmp", "icwnobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	junk := filepath.Join(dir, "id_junk")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(junk, 65534, 65534)
	host, port, _ := net.SplitHostPort(h.addr)
	for range 5 {
		cmd := exec.Command(sshBin, "-F", "/dev/null", "-i", junk, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
			"-p", port, "nobody@"+host, "sessions", "--json")
		cmd.Dir = dir
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("a junk key got in as nobody:\n%s", out)
		}
	}
	// Root is another user: its operator key gets in.
	h.mustDial().Close()
	// Root's own failures count against root.
	for range 3 {
		if c, err := h.dial(newSigner(t)); err == nil {
			c.Close()
			t.Fatal("unknown key got in")
		}
	}
	if c, err := h.dial(h.opKey); err == nil {
		c.Close()
		t.Fatal("root over its own failure budget got in")
	}
}
