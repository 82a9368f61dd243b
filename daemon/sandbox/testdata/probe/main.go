// Command probe is a test-only stand-in for agentd. The sandbox tests run it inside runsc
// and read its JSON report to check, from the inside, what the sandbox lets an agent see
// and do. It is built by the tests with CGO_ENABLED=0 (static), like agentd.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Report is what the probe observed. Errors are strings so the test can match errno text.
type Report struct {
	StdinSHA256   string   `json:"stdin_sha256"`
	StdinLen      int      `json:"stdin_len"`
	Root          []string `json:"root"`
	Run           []string `json:"run"`
	InboxWriteErr string   `json:"inbox_write_err"`
	InboxRead     string   `json:"inbox_read"`
	OutboxErr     string   `json:"outbox_err"`
	TCPErr        string   `json:"tcp_err"`
	SocketReply   string   `json:"socket_reply"`
	SocketErr     string   `json:"socket_err"`
	TmpWriteErr   string   `json:"tmp_write_err"`
	TmpExecErr    string   `json:"tmp_exec_err"`
	UID           int      `json:"uid"`
	GID           int      `json:"gid"`
	EUID          int      `json:"euid"`
	Groups        []int    `json:"groups"`
	Env           []string `json:"env"`
	Args          []string `json:"args"`
	Cwd           string   `json:"cwd"`
	Status        []string `json:"status"` // Cap*, NoNewPrivs lines of /proc/self/status
	MemTotal      string   `json:"mem_total"`
}

func main() {
	mode := flag.String("mode", "full", "full | exit | sleep | layers")
	code := flag.Int("code", 0, "exit code")
	port := flag.Int("port", 0, "host TCP port on 127.0.0.1 to try (must fail)")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM in sleep mode")
	flag.Parse()

	switch *mode {
	case "exit":
		os.Exit(*code)
	case "sleep":
		if *ignoreTerm {
			signal.Ignore(syscall.SIGTERM)
		}
		if err := os.WriteFile("/outbox/ready", []byte("ready\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "probe: write /outbox/ready:", err)
			os.Exit(3)
		}
		time.Sleep(time.Hour)
		os.Exit(*code)
	case "layers":
		// One line: what creating a user namespace (a child cloned with CLONE_NEWUSER: Go is
		// multithreaded, so unshare would say EINVAL) and a TCP dial to the host's loopback
		// did. The test runs this with and without the seccomp profile.
		unshare := "ok"
		if e := cloneNewUser(); e != 0 {
			unshare = e.Error()
		}
		tcp := "ok"
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", *port), 2*time.Second); err != nil {
			tcp = err.Error()
		} else {
			c.Close()
		}
		fmt.Printf("userns=%s tcp=%s\n", unshare, tcp)
		os.Exit(0)
	case "full":
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown mode", *mode)
		os.Exit(2)
	}

	var r Report
	in, _ := io.ReadAll(os.Stdin)
	sum := sha256.Sum256(in)
	r.StdinSHA256 = hex.EncodeToString(sum[:])
	r.StdinLen = len(in)

	r.Root = names("/")
	r.Run = names("/run")
	r.InboxWriteErr = errString(os.WriteFile("/inbox/x", []byte("x"), 0o644))
	if b, err := os.ReadFile("/inbox/hello"); err == nil {
		r.InboxRead = string(b)
	} else {
		r.InboxRead = "error: " + err.Error()
	}

	if *port != 0 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", *port), 2*time.Second)
		if err == nil {
			c.Close()
		}
		r.TCPErr = errString(err)
	}

	if c, err := net.DialTimeout("unix", "/run/ironclaw.sock", 2*time.Second); err != nil {
		r.SocketErr = err.Error()
	} else {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintln(c, "ping")
		line, err := bufio.NewReader(c).ReadString('\n')
		r.SocketReply = strings.TrimSpace(line)
		r.SocketErr = errString(err)
		c.Close()
	}

	// /tmp is writable but noexec: copy ourselves there and try to run the copy.
	self, err := os.ReadFile("/agentd")
	if err == nil {
		err = os.WriteFile("/tmp/copy", self, 0o755)
	}
	r.TmpWriteErr = errString(err)
	if err == nil {
		r.TmpExecErr = errString(syscall.Exec("/tmp/copy", []string{"/tmp/copy", "-mode=exit"}, nil))
	}

	r.UID, r.GID, r.EUID = os.Getuid(), os.Getgid(), os.Geteuid()
	r.Groups, _ = os.Getgroups()
	r.Env = os.Environ()
	r.Args = os.Args
	r.Cwd, _ = os.Getwd()
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") {
				r.Status = append(r.Status, l)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		r.MemTotal = strings.SplitN(string(b), "\n", 2)[0]
	}

	// Report on stdout (the host reads it after exit), then write /outbox/ok: that proves an
	// outbox write reaches the host and tells the host the checks are done, so it can
	// inspect the live process tree before releasing us.
	if err := json.NewEncoder(os.Stdout).Encode(&r); err != nil {
		os.Exit(4)
	}
	r.OutboxErr = errString(os.WriteFile("/outbox/ok", []byte("ok\n"), 0o644))
	if r.OutboxErr != "" {
		fmt.Fprintln(os.Stderr, "probe: write /outbox/ok:", r.OutboxErr)
		os.Exit(5)
	}
	// Wait for the host to say we may exit (it inspects the live process tree meanwhile).
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if _, err := os.Stat("/inbox/release"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.Exit(*code)
}

// cloneNewUser forks a child into a new user namespace; the child exits at once, running
// only raw system calls on the copied stack.
//
//go:nosplit
func cloneNewUser() syscall.Errno {
	pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, syscall.CLONE_NEWUSER|uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws syscall.WaitStatus
	syscall.Wait4(int(pid), &ws, 0, nil)
	return 0
}

func names(dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
