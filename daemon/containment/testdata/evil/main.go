// Command evil is the containment suite's hostile agent: a test-only stand-in for agentd
// that is launched exactly as agentd is (same supervisor, same Spec, same handshake on
// stdin) and then tries to break every wall. Each attempt is one JSON line on stdout:
//
//	{"attack":"inbox.create","ok":false,"errno":"EROFS","err":"..."}
//
// "ok": true means the attack SUCCEEDED, and the test fails. The test does not trust these
// lines alone: it also checks, from the host, that nothing changed where it should not have.
//
// It speaks the real protocol (leases, outbox rows, doorbell) so the daemon sees a normal
// agent, and takes orders from its inbox messages:
//
//	echo:<text>          reply <text> (a well-behaved session, to prove others keep working)
//	attack:<json Config> try every wall, print the results, reply with a summary
//	oom                  record progress, then allocate until the memory cgroup kills it
//	crash                exit 3 at once, leaving the message unread (a crash loop)
//	crashonce            exit 3 the first time, answer "survived" after the restart
//	tamper:symlink:<p>   replace outbox.db with a symlink to host path p, ring the doorbell
//	tamper:fifo          replace outbox.db with a FIFO, ring the doorbell
//	hostile:<shape>      leave a hostile outbox.db and ring (outboxShapes: sparse, freepages,
//	                     grow, rows, hugerow, slowschema, panic) — the daemon must fail this
//	                     session alone and stay within its memory bound
//	flood                ring the outbox doorbell and ask for leases as fast as it can, forever
//	chat:<model>         one chat call through the model proxy with agentd's real provider;
//	                     reply with what the model said (or the error)
//	model:<model>        chat:<model>, then every request the model proxy must refuse
//
// Built by the test with CGO_ENABLED=0, like agentd: the rootfs holds only this file.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/ironclaw/ironclaw/agentd/coord"
	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"golang.org/x/sys/unix"
	"zombiezen.com/go/sqlite"
)

// Config is what the test tells the evil agent about the host, so that it can aim.
type Config struct {
	HostTCPPort  int      `json:"tcp_port"`      // a listener on the host's 127.0.0.1
	HostUDPPort  int      `json:"udp_port"`      // a UDP socket on the host's 127.0.0.1
	Abstract     string   `json:"abstract"`      // a host abstract unix socket name
	CanaryPID    int      `json:"canary_pid"`    // a host process running as uid 65534
	HostPaths    []string `json:"host_paths"`    // host files and sockets it must not reach
	OtherSession string   `json:"other_session"` // another session's id
	HostRoot     string   `json:"host_root"`     // the daemon's state and runtime directories' parent
}

// Result is one attempt.
type Result struct {
	Attack string `json:"attack"`
	OK     bool   `json:"ok"` // the attack succeeded: a breach
	Errno  string `json:"errno,omitempty"`
	Err    string `json:"err,omitempty"`
	N      int64  `json:"n,omitempty"`
	Detail string `json:"detail,omitempty"`
}

var (
	// startFDs are the descriptors open when the agent started, beyond 0–2 (see openFDs).
	startFDs []string
	stdout   = json.NewEncoder(os.Stdout)
	hs       *wire.Handshake
	tried    int
	broke    int
)

func emit(r Result) {
	tried++
	if r.OK {
		broke++
	}
	_ = stdout.Encode(r)
}

// attempt records err as the outcome of an attack: nil means it worked.
func attempt(name string, err error) {
	r := Result{Attack: name, OK: err == nil}
	if err != nil {
		r.Err = err.Error()
		var en syscall.Errno
		if errors.As(err, &en) {
			r.Errno = unix.ErrnoName(en)
		}
	}
	emit(r)
}

// errnoErr turns a raw syscall result into an error (nil on success).
func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func main() {
	buf := make([]byte, wire.HandshakeSize)
	if _, err := io.ReadFull(os.Stdin, buf); err != nil {
		fmt.Fprintln(os.Stderr, "evil: handshake:", err)
		os.Exit(2)
	}
	// Before anything of ours is opened: what did the sandbox hand us?
	startFDs = openFDs()
	var err error
	if hs, err = wire.ParseHandshake(buf); err != nil {
		fmt.Fprintln(os.Stderr, "evil:", err)
		os.Exit(2)
	}
	_ = stdout.Encode(map[string]any{"event": "start", "argv": os.Args, "env": os.Environ(), "uid": os.Getuid(), "pid": os.Getpid()})
	if err := serve(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "evil:", err)
		os.Exit(1)
	}
}

type agent struct {
	in  *inbox.Reader
	out *outbox.Writer
	co  *coord.Client
}

// serve is agentd's loop, with orders instead of an echo.
func serve(ctx context.Context) error {
	in, err := inbox.Open(wire.SandboxInbox, hs.Session, &hs.Key)
	if err != nil {
		return err
	}
	out, err := outbox.Open(wire.SandboxOutbox, hs.Session, &hs.Key)
	if err != nil {
		return err
	}
	a := &agent{in: in, out: out, co: coord.New(wire.SandboxSocket)}
	cursor, err := out.Progress()
	if err != nil {
		return err
	}
	if out.Head() > 0 {
		if _, err := a.co.OutboxCommitted(ctx, out.Head()); err != nil {
			return err
		}
	}
	for {
		g, err := a.co.Lease(ctx, cursor, 25*time.Second)
		if err != nil {
			return err
		}
		if g.Lease == 0 {
			continue
		}
		rows, rerr := in.Read(cursor, 16)
		valid, err := a.co.Release(ctx, g.Lease)
		if err != nil {
			return err
		}
		if !valid {
			continue
		}
		if rerr != nil {
			return rerr
		}
		for _, r := range rows {
			m, ok := r.Body.(wire.Message)
			if ok {
				if err := a.handle(ctx, r.Header.Seq, m.Text); err != nil {
					return err
				}
			}
			cursor = r.Header.Seq
		}
	}
}

// commit appends bodies plus progress up to seq and rings the doorbell.
func (a *agent) commit(ctx context.Context, seq uint64, bodies ...wire.Body) error {
	head, err := a.out.Append(append(bodies, wire.Progress{Inbox: seq})...)
	if err != nil {
		return err
	}
	_, err = a.co.OutboxCommitted(ctx, head)
	return err
}

func (a *agent) handle(ctx context.Context, seq uint64, text string) error {
	cmd, arg, _ := strings.Cut(text, ":")
	switch cmd {
	case "echo":
		return a.commit(ctx, seq, wire.Reply{Text: arg, InReplyTo: seq})
	case "crash":
		os.Exit(3)
	case "crashonce":
		// The outbox persists across restarts: crash the first time only.
		if _, err := os.Stat("/outbox/crashed"); err != nil {
			if err := os.WriteFile("/outbox/crashed", nil, 0o600); err != nil {
				return err
			}
			os.Exit(3)
		}
		return a.commit(ctx, seq, wire.Reply{Text: "survived", InReplyTo: seq})
	case "oom":
		if err := a.commit(ctx, seq, wire.Reply{Text: "allocating", InReplyTo: seq}); err != nil {
			return err
		}
		oom()
		return a.commit(ctx, seq, wire.Reply{Text: "oom survived", InReplyTo: seq})
	case "attack":
		var cfg Config
		if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
			return err
		}
		attacks(ctx, a, cfg)
		summary := fmt.Sprintf("attacks: %d tried, %d succeeded", tried, broke)
		_ = stdout.Encode(map[string]any{"event": "done", "tried": tried, "succeeded": broke})
		return a.commit(ctx, seq, wire.Reply{Text: summary, InReplyTo: seq})
	case "hostile":
		if err := a.commit(ctx, seq, wire.Reply{Text: "hostile " + arg, InReplyTo: seq}); err != nil {
			return err
		}
		a.hostileOutbox(ctx, arg)
		time.Sleep(time.Hour) // the daemon should stop us now
	case "flood":
		// flood:<seconds>:<shape>: flood the socket, then leave a hostile outbox too.
		secs, shape, _ := strings.Cut(arg, ":")
		n, _ := strconv.Atoi(secs)
		if err := a.commit(ctx, seq, wire.Reply{Text: "flooding", InReplyTo: seq}); err != nil {
			return err
		}
		a.flood(ctx)
		time.Sleep(time.Duration(n) * time.Second)
		a.hostileOutbox(ctx, shape)
		time.Sleep(time.Hour)
	case "chat":
		return a.commit(ctx, seq, wire.Reply{Text: chatOnce(ctx, arg), InReplyTo: seq})
	case "model":
		said := chatOnce(ctx, arg)
		tried, broke = 0, 0
		modelAttacks(ctx, arg)
		_ = stdout.Encode(map[string]any{"event": "done", "tried": tried, "succeeded": broke})
		return a.commit(ctx, seq, wire.Reply{Text: fmt.Sprintf("%s | attacks: %d tried, %d succeeded", said, tried, broke), InReplyTo: seq})
	case "tamper":
		if err := a.commit(ctx, seq, wire.Reply{Text: "tampering", InReplyTo: seq}); err != nil {
			return err
		}
		a.tamper(ctx, arg)
		time.Sleep(time.Hour) // the daemon should stop us now
	}
	return a.commit(ctx, seq, wire.Reply{Text: "unknown order " + strconv.Quote(cmd), InReplyTo: seq})
}

// tamper replaces outbox.db by a link or special file and asks the daemon to read it.
func (a *agent) tamper(ctx context.Context, how string) {
	head := a.out.Head()
	a.out.Close()
	if err := os.Rename(wire.SandboxOutbox, wire.SandboxOutbox+".real"); err != nil {
		attempt("tamper.rename", err)
		return
	}
	kind, target, _ := strings.Cut(how, ":")
	var err error
	switch kind {
	case "symlink":
		err = os.Symlink(target, wire.SandboxOutbox)
	case "fifo":
		err = syscall.Mkfifo(wire.SandboxOutbox, 0o600)
	default:
		err = fmt.Errorf("unknown tamper %q", kind)
	}
	if err != nil {
		emit(Result{Attack: "tamper." + kind + ".plant", Err: err.Error(), Detail: "could not plant: the test must notice"})
		return
	}
	// The daemon must refuse to read it: the doorbell fails.
	_, err = a.co.OutboxCommitted(ctx, head+1)
	r := Result{Attack: "tamper." + kind, OK: err == nil}
	if err != nil {
		r.Err = err.Error()
	}
	emit(r)
}

// oom allocates and touches memory until the cgroup kills the sandbox (or 8 GiB).
func oom() {
	var keep [][]byte
	for i := 0; i < 512; i++ {
		b := make([]byte, 16<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
	}
	emit(Result{Attack: "memory.exhaust", OK: true, N: int64(len(keep)) * 16 << 20, Detail: "allocated 8 GiB without being killed"})
}

// attacks runs every attempt in order: the harmless first, the filling ones last.
func attacks(ctx context.Context, a *agent, cfg Config) {
	runtime.LockOSThread() // namespace attempts change the calling thread if they work
	recon()
	viewAttacks(cfg)
	inboxAttacks()
	networkAttacks(cfg)
	socketAttacks(ctx)
	hostFileAttacks(cfg)
	kernelAttacks(cfg)
	signalAttacks(cfg)
	forkBomb()
	fillTmp()
	fillOutbox()
}

// recon reports what the agent can see, for the test to search for keys: argv and env are
// in the start line; every readable file goes to /outbox/recon.jsonl (the outbox is the
// agent's own filesystem; the daemon never reads anything there but outbox.db). It also
// searches for its own key itself.
func recon() {
	f, err := os.Create("/outbox/recon.jsonl")
	if err != nil {
		attempt("recon.open", err)
		return
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	needles := keyForms(hs.Key[:])
	var found []string
	var files, total int64
	check := func(where string, data []byte) {
		for _, n := range needles {
			if bytes.Contains(data, n) {
				found = append(found, where)
				return
			}
		}
	}
	check("argv", []byte(strings.Join(os.Args, "\x00")))
	check("env", []byte(strings.Join(os.Environ(), "\x00")))
	_ = filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			switch {
			case p == "/dev", strings.HasSuffix(p, "/fd"), strings.HasSuffix(p, "/fdinfo"),
				strings.HasSuffix(p, "/task"), strings.HasSuffix(p, "/map_files"):
				return filepath.SkipDir // descriptors, devices: nothing stored, reads can block
			}
			return nil
		}
		// Our own memory holds our key by definition; reading it is not a breach.
		switch filepath.Base(p) {
		case "mem", "pagemap", "kcore", "clear_refs", "recon.jsonl", "inbox.db", "outbox.db", "outbox.db-journal":
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := readSmall(p, 64<<10)
		if err != nil {
			return nil
		}
		files++
		total += int64(len(data))
		check(p, data)
		if total < 4<<20 {
			_ = enc.Encode(map[string]any{"path": p, "data": data})
		}
		return nil
	})
	emit(Result{Attack: "secrets.key_in_env_argv_files", OK: len(found) > 0, N: files, Detail: strings.Join(found, " ")})
}

// keyForms are the encodings a leaked key could take.
func keyForms(k []byte) [][]byte {
	return [][]byte{
		k,
		[]byte(hex.EncodeToString(k)),
		[]byte(strings.ToUpper(hex.EncodeToString(k))),
		[]byte(base64.StdEncoding.EncodeToString(k)),
		[]byte(base64.RawURLEncoding.EncodeToString(k)),
	}
}

func readSmall(p string, max int64) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

// inboxAttacks: layers (b) and (c) of the read-only inbox. Layer (a), no writer linked into
// the agent, is tested on the agentd binary itself.
func inboxAttacks() {
	// (b) SQLite read-write: the handle opens, so try real writes through it.
	conn, err := sqlite.OpenConn(wire.SandboxInbox, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		attempt("inbox.sqlite_rw_open", err)
	} else {
		var errs []string
		for _, q := range []string{"PRAGMA user_version=666", "CREATE TABLE evil(x)", "DELETE FROM rows", "INSERT INTO rows (seq, sealed) VALUES (999999, x'00')"} {
			st, _, err := conn.PrepareTransient(q)
			if err == nil {
				_, err = st.Step()
				st.Finalize()
			}
			if err == nil {
				errs = nil
				emit(Result{Attack: "inbox.sqlite_rw_write", OK: true, Detail: q})
				break
			}
			errs = append(errs, err.Error())
		}
		if errs != nil {
			emit(Result{Attack: "inbox.sqlite_rw_write", Err: strings.Join(errs, "; ")})
		}
		conn.Close()
	}
	f, err := os.OpenFile(wire.SandboxInbox, os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	attempt("inbox.open_rdwr", err)
	// Reopening a read-only descriptor read-write through /proc.
	if ro, err := os.Open(wire.SandboxInbox); err == nil {
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", ro.Fd()), os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		attempt("inbox.reopen_rdwr_via_proc", err)
		ro.Close()
	}
	// (c) The read-only mount.
	attempt("inbox.create", os.WriteFile("/inbox/evil", []byte("x"), 0o644))
	attempt("inbox.unlink", os.Remove(wire.SandboxInbox))
	attempt("inbox.rename", os.Rename(wire.SandboxInbox, "/inbox/moved"))
	attempt("inbox.chmod", os.Chmod(wire.SandboxInbox, 0o666))
	attempt("inbox.truncate", os.Truncate(wire.SandboxInbox, 0))
	attempt("rootfs.create", os.WriteFile("/evil", []byte("x"), 0o644))
	attempt("rootfs.replace_agent", os.WriteFile("/agentd", []byte("x"), 0o755))
}

func networkAttacks(cfg Config) {
	sock := func(domain, typ, proto int) (int, error) {
		fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		return fd, err
	}
	// TCP to the host's loopback service, over IPv4 and IPv6.
	if fd, err := sock(unix.AF_INET, unix.SOCK_STREAM, 0); err != nil {
		attempt("net.tcp4_socket", err)
	} else {
		err := unix.Connect(fd, &unix.SockaddrInet4{Port: cfg.HostTCPPort, Addr: [4]byte{127, 0, 0, 1}})
		attempt("net.tcp4_host_loopback", err)
		unix.Close(fd)
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(cfg.HostTCPPort), 2*time.Second)
	if err == nil {
		c.Close()
	}
	attempt("net.tcp_dial_host_loopback", err)
	c, err = net.DialTimeout("tcp6", "[::1]:"+strconv.Itoa(cfg.HostTCPPort), 2*time.Second)
	if err == nil {
		c.Close()
	}
	attempt("net.tcp6_dial", err)
	c, err = net.DialTimeout("tcp", "1.1.1.1:443", 2*time.Second)
	if err == nil {
		c.Close()
	}
	attempt("net.tcp_dial_internet", err)
	// UDP: a datagram to the host's loopback (the test checks none arrives).
	if fd, err := sock(unix.AF_INET, unix.SOCK_DGRAM, 0); err != nil {
		attempt("net.udp_socket", err)
	} else {
		err := unix.Sendto(fd, []byte("evil"), 0, &unix.SockaddrInet4{Port: cfg.HostUDPPort, Addr: [4]byte{127, 0, 0, 1}})
		attempt("net.udp_send_host_loopback", err)
		unix.Close(fd)
	}
	// DNS through Go's own resolver (no resolv.conf: it tries 127.0.0.1:53 and ::1:53).
	r := &net.Resolver{PreferGo: true}
	dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	addrs, err := r.LookupHost(dctx, "example.com")
	cancel()
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	attempt("net.dns_lookup", err)
	for _, s := range []struct {
		name            string
		domain, typ, pr int
	}{
		{"net.raw_icmp_socket", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP},
		{"net.raw6_socket", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6},
		{"net.packet_socket", unix.AF_PACKET, unix.SOCK_RAW, 0x0300},
		{"net.netlink_route_socket", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE},
		{"net.vsock_socket", unix.AF_VSOCK, unix.SOCK_STREAM, 0},
		{"net.tcp6_socket", unix.AF_INET6, unix.SOCK_STREAM, 0},
	} {
		fd, err := sock(s.domain, s.typ, s.pr)
		if err == nil {
			unix.Close(fd)
		}
		attempt(s.name, err)
	}
	// Unix sockets: the host's abstract namespace, and host socket paths.
	if fd, err := sock(unix.AF_UNIX, unix.SOCK_STREAM, 0); err == nil {
		err := unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + cfg.Abstract})
		attempt("net.unix_abstract_host", err)
		unix.Close(fd)
	}
	for _, p := range cfg.HostPaths {
		if !strings.HasSuffix(p, ".sock") {
			continue
		}
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			c.Close()
		}
		attempt("net.unix_host_path "+p, err)
	}
}

// socketAttacks send the daemon's socket requests it must refuse (and audit, aggregated).
func socketAttacks(ctx context.Context) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", wire.SandboxSocket)
		},
	}}
	do := func(method, path, body string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://ironclaw"+path, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, rq := range []struct{ name, method, path, body string }{
		{"socket.get_root", "GET", "/", ""},
		{"socket.ollama_pull", "POST", "/api/pull", `{"name":"evil"}`},
		{"socket.ollama_tags", "GET", "/api/tags", ""},
		{"socket.traversal", "GET", "/ironclaw/v1/../../../etc/shadow", ""},
		{"socket.lease_other_session", "POST", wire.PathInboxLease, `{"after":0,"wait_ms":0,"session":"other"}`},
		{"socket.lease_huge_wait", "POST", wire.PathInboxLease, `{"after":0,"wait_ms":99999999}`},
	} {
		code, err := do(rq.method, rq.path, rq.body)
		r := Result{Attack: rq.name, OK: err == nil && code/100 == 2, N: int64(code)}
		if err != nil {
			r.Err = err.Error()
		}
		emit(r)
	}
	// A flood of the same refused request: the audit log must aggregate, not drown.
	refused := 0
	for range 50 {
		if code, err := do("GET", "/flood", ""); err == nil && code/100 != 2 {
			refused++
		}
	}
	emit(Result{Attack: "socket.flood", OK: refused != 50, N: int64(refused)})
}

func hostFileAttacks(cfg Config) {
	read := func(name, p string) {
		data, err := readSmall(p, 1<<20)
		r := Result{Attack: name, OK: err == nil}
		if err != nil {
			r.Err = err.Error()
			var en syscall.Errno
			if errors.As(err, &en) {
				r.Errno = unix.ErrnoName(en)
			}
		} else {
			r.N = int64(len(data))
		}
		emit(r)
	}
	read("host.etc_shadow", "/etc/shadow")
	read("host.etc_passwd", "/etc/passwd")
	read("host.proc1_root_shadow", "/proc/1/root/etc/shadow")
	read("host.root_ssh", "/root/.ssh/authorized_keys")
	for _, p := range cfg.HostPaths {
		read("host.path "+p, p)
	}
	if cfg.OtherSession != "" {
		for _, p := range []string{
			"/outbox/../../sessions/" + cfg.OtherSession + "/inbox/inbox.db",
			"/inbox/../" + cfg.OtherSession + "/outbox/outbox.db",
			"/proc/self/root/../../sessions/" + cfg.OtherSession + "/outbox/outbox.db",
		} {
			read("other_session.path "+p, p)
		}
	}
	// What /proc/1/environ holds inside (the test checks for the daemon's environment).
	data, err := readSmall("/proc/1/environ", 1<<16)
	emit(Result{Attack: "info.proc1_environ", Detail: string(data), Err: errString(err)})
	// Devices that would be the host's if they were reachable.
	// A tun device would be a way onto a network; opening it is allowed (as on Linux),
	// creating an interface is not.
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err == nil {
		var ifr [40]byte
		copy(ifr[:], "evil0")
		binary.LittleEndian.PutUint16(ifr[16:], unix.IFF_TUN|unix.IFF_NO_PI)
		_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0])))
		attempt("dev.tun_setiff", errnoErr(e))
		f.Close()
	} else {
		emit(Result{Attack: "info.dev_tun", Detail: err.Error()})
	}
	for _, d := range []string{"/dev/kvm", "/dev/mem", "/dev/vda", "/dev/sda", "/dev/loop0", "/dev/loop-control"} {
		f, err := os.OpenFile(d, os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		attempt("dev.open "+d, err)
	}
	// gVisor always offers /dev/fuse (0666, as Linux does); it is inert without mount(2).
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err == nil {
		emit(Result{Attack: "info.dev_fuse", Detail: "opened"})
		opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=65534,group_id=65534", f.Fd())
		attempt("mount.fuse", unix.Mount("evil", "/tmp", "fuse", 0, opts))
		f.Close()
	} else {
		emit(Result{Attack: "info.dev_fuse", Detail: err.Error()})
	}
	attempt("dev.mknod_block", syscall.Mknod("/tmp/sda", syscall.S_IFBLK|0o600, 8<<8))
	status, _ := os.ReadFile("/proc/self/status")
	var lines []string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") || strings.HasPrefix(l, "Seccomp") || strings.HasPrefix(l, "Uid") {
			lines = append(lines, l)
		}
	}
	emit(Result{Attack: "info.status", Detail: strings.Join(lines, "\n")})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
