package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The console end to end: the real daemon with its real SSH server, driven
// by the real OpenSSH client inside tmux, as an operator would.

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func sshKey(t *testing.T, dir, name string) (key, fingerprint string) {
	t.Helper()
	key = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.Fields(string(out))[1]
}

func sshArgs(port, key string, extra ...string) []string {
	return append([]string{"-F", "/dev/null", "-p", port, "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}, extra...)
}

// tmux is one terminal running one command.
type tmux struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T, w, h int, cmd []string) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (.ci/bootstrap installs it)")
	}
	tm := &tmux{t: t, socket: fmt.Sprintf("ic%d", time.Now().UnixNano())}
	args := append([]string{"-L", tm.socket, "-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", fmt.Sprint(w), "-y", fmt.Sprint(h)}, cmd...)
	c := exec.Command("tmux", args...)
	c.Env = append(os.Environ(), "TERM=xterm-256color")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *tmux) screen() string {
	out, _ := exec.Command("tmux", "-L", tm.socket, "capture-pane", "-p", "-t", "c").Output()
	return string(out)
}

func (tm *tmux) send(keys ...string) {
	tm.t.Helper()
	for _, k := range keys {
		if out, err := exec.Command("tmux", "-L", tm.socket, "send-keys", "-t", "c", k).CombinedOutput(); err != nil {
			tm.t.Fatalf("send-keys %q: %v\n%s", k, err, out)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func (tm *tmux) typeText(s string) {
	tm.t.Helper()
	if out, err := exec.Command("tmux", "-L", tm.socket, "send-keys", "-t", "c", "-l", s).CombinedOutput(); err != nil {
		tm.t.Fatalf("send-keys: %v\n%s", err, out)
	}
}

func (tm *tmux) waitFor(want ...string) string {
	tm.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := tm.screen()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the console never showed %q; screen:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (in *install) waitPending(kind string) string {
	in.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m := regexp.MustCompile(`(?m)^([0-9a-f]{32})\s+pending\s+` + kind).FindStringSubmatch(in.mustRun("changes", "list"))
		if m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.t.Fatalf("no pending %s request:\n%s", kind, in.mustRun("changes", "list", "--all"))
	return ""
}

func TestConsoleEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("the OpenSSH client is not installed (.ci/bootstrap installs openssh-client)")
	}
	in := newInstall(t)
	port := freePort(t)
	in.useRequester(fmt.Sprintf("[console]\nlisten = \"127.0.0.1:%s\"\n", port))
	opKey, fp := sshKey(t, in.root, "operator")
	stranger, _ := sshKey(t, in.root, "stranger")
	if out := in.mustRun("init", "--operator-key", opKey+".pub"); !strings.Contains(out, "ssh -p "+port+" 127.0.0.1") {
		t.Fatalf("init does not say how to reach the console:\n%s", out)
	}
	in.serve()

	// The agent files a request; the operator approves it by keys.
	in.mustRun("chat", "request instructions: Speak only French.")
	id := in.waitPending("instructions")
	con := newTmux(t, 100, 30, append([]string{"ssh"}, sshArgs(port, opKey, "-t", "127.0.0.1")...))
	con.waitFor("overview", "waiting for you")
	con.send("3")
	con.waitFor(id[:12])
	con.send("Enter")
	con.waitFor("change request "+id, "UNTRUSTED", "+++ proposed", "Speak only French")
	con.send("a")
	screen := con.waitFor("Approve and apply exactly this change?")
	bind := regexp.MustCompile(`binding ([0-9a-f]{64})`).FindStringSubmatch(screen)
	if bind == nil || !strings.Contains(screen, "request "+id) {
		t.Fatalf("the confirmation lacks the id or binding:\n%s", screen)
	}
	con.send("y")
	con.waitFor("DECIDED: applied")
	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); got != "profile v2: Speak only French." {
		t.Fatalf("after approving in the console the agent has %q", got)
	}
	audit := string(mustRead(t, filepath.Join(in.root, "state", "audit.log")))
	approval := regexp.MustCompile(`"actor":"operator:` + regexp.QuoteMeta(fp) + `","action":"change.approve","subject":"change:` + id + `[^"]*binding:` + bind[1])
	if !approval.MatchString(audit) {
		t.Fatalf("no approval by the operator's key %s bound to %s in the audit log", fp, bind[1])
	}
	if !strings.Contains(audit, `"actor":"operator:`+fp+`","action":"console.login"`) {
		t.Fatal("the console login is not audited")
	}

	// A second request, denied with a reason.
	in.mustRun("chat", "request instructions: Speak only German.")
	id2 := in.waitPending("instructions")
	con.send("Escape")
	con.waitFor(id2[:12])
	con.send("Enter")
	con.waitFor("change request "+id2, "+++ proposed")
	con.send("d")
	con.waitFor("reason:")
	con.typeText("not today")
	con.send("Enter")
	con.waitFor("DECIDED: denied")
	if !regexp.MustCompile(id2 + `\s+denied`).MatchString(in.mustRun("changes", "list", "--all")) {
		t.Fatalf("not denied:\n%s", in.mustRun("changes", "list", "--all"))
	}
	if got := strings.TrimSpace(in.mustRun("chat", "profile?")); got != "profile v2: Speak only French." {
		t.Fatalf("the denied change was applied: %q", got)
	}

	// Chat with the session from the console.
	con.send("5")
	con.waitFor("talking to")
	con.typeText("hello from the console")
	con.send("Enter")
	con.waitFor("agent  hello from the console")

	// Scripts: read-only JSON over the same server and operator check.
	out, err := exec.Command("ssh", sshArgs(port, opKey, "127.0.0.1", "approvals", "--json", "--all")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), id2) {
		t.Fatalf("approvals --json: %v\n%s", err, out)
	}

	// An unknown key gets nothing.
	out, err = exec.Command("ssh", sshArgs(port, stranger, "127.0.0.1", "approvals", "--json")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") || strings.Contains(string(out), id) {
		t.Fatalf("an unknown key: %v\n%s", err, out)
	}
	// Forwarding is refused: stdio forwarding (direct-tcpip) and a remote
	// forward (tcpip-forward).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err = exec.CommandContext(ctx, "ssh", sshArgs(port, opKey, "-W", "127.0.0.1:"+port, "127.0.0.1")...).CombinedOutput()
	if err == nil {
		t.Fatalf("stdio forwarding was accepted:\n%s", out)
	}
	out, err = exec.CommandContext(ctx, "ssh", sshArgs(port, opKey, "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:"+port, "-N", "127.0.0.1")...).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("remote forwarding was not refused: %v\n%s", err, out)
	}

	// Quitting the console ends the ssh session.
	con.send("Tab")
	con.send("q")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(con.screen(), "$") && exec.Command("tmux", "-L", con.socket, "has-session", "-t", "c").Run() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// Every socket the daemon listens on is private: TCP and UDP listeners are
// on loopback, never a wildcard or public address (unix sockets are files
// in its 0700 runtime directory).
func TestDaemonListenersArePrivate(t *testing.T) {
	in := newInstall(t)
	port := freePort(t)
	in.writeConfig(fmt.Sprintf("[console]\nlisten = \"127.0.0.1:%s\"\n", port))
	in.mustRun("init")
	cmd, _ := in.serve()
	ls := listeners(t, cmd.Process.Pid)
	if len(ls) == 0 {
		t.Fatal("found no listener at all (the console should be one)")
	}
	sawConsole := false
	for _, l := range ls {
		t.Logf("listener: %s", l)
		host, p, _ := net.SplitHostPort(l.addr)
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			t.Errorf("%s listener on %s is not loopback", l.proto, l.addr)
		}
		sawConsole = sawConsole || p == port
	}
	if !sawConsole {
		t.Errorf("the console's listener on %s was not found among %v", port, ls)
	}
}

type listener struct{ proto, addr string }

func (l listener) String() string { return l.proto + " " + l.addr }

// listeners lists the listening TCP sockets and bound UDP sockets that
// process pid holds, from /proc.
func listeners(t *testing.T, pid int) []listener {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []listener
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			state := fields[3]
			if strings.HasPrefix(proto, "tcp") && state != "0A" { // LISTEN
				continue
			}
			if strings.HasPrefix(proto, "udp") && fields[2] != "00000000:0000" && !strings.HasPrefix(fields[2], "00000000000000000000000000000000:") {
				continue // connected, not listening
			}
			out = append(out, listener{proto, procAddr(fields[1])})
		}
		f.Close()
	}
	return out
}

// procAddr decodes /proc/net's hex "ADDR:PORT" (little-endian words).
func procAddr(s string) string {
	hexIP, hexPort, _ := strings.Cut(s, ":")
	var port int
	fmt.Sscanf(hexPort, "%x", &port)
	ip := make(net.IP, len(hexIP)/2)
	for i := 0; i < len(ip); i += 4 {
		var w uint32
		fmt.Sscanf(hexIP[2*i:2*i+8], "%08x", &w)
		ip[i], ip[i+1], ip[i+2], ip[i+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}
