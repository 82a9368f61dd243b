package containment

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/supervisor"
	"golang.org/x/sys/unix"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// result mirrors testdata/evil's Result.
type result struct {
	Attack string `json:"attack"`
	OK     bool   `json:"ok"`
	Errno  string `json:"errno"`
	Err    string `json:"err"`
	N      int64  `json:"n"`
	Detail string `json:"detail"`
}

// evilConfig mirrors testdata/evil's Config.
type evilConfig struct {
	HostTCPPort  int      `json:"tcp_port"`
	HostUDPPort  int      `json:"udp_port"`
	Abstract     string   `json:"abstract"`
	CanaryPID    int      `json:"canary_pid"`
	HostPaths    []string `json:"host_paths"`
	OtherSession string   `json:"other_session"`
	HostRoot     string   `json:"host_root"`
}

// expected says, for each attack (by name or name prefix), which errors prove it was stopped
// by the wall meant to stop it. An attack that succeeded fails the test whatever is here; an
// attack that failed with another errno means a different layer answered, which is also a
// failure: that wall would be untested.
var expected = []struct {
	prefix string
	errnos []string // any of these; empty: any failure will do (the error text is checked elsewhere)
}{
	// (b): the agent may open the inbox read-write only to find every write refused.
	{"inbox.sqlite_rw_write", nil},
	{"inbox.open_rdwr", []string{"EROFS"}},
	{"inbox.reopen_rdwr_via_proc", []string{"EROFS"}},
	// (c): the read-only mount.
	{"inbox.chmod", []string{"EROFS", "EPERM"}}, // chmod needs ownership first
	{"inbox.", []string{"EROFS"}},
	// The root is read-only and its files are root's, 0555: either layer may answer.
	{"rootfs.", []string{"EROFS", "EACCES"}},
	// Only AF_UNIX sockets (seccomp); DNS and dials fail as a consequence.
	{"net.tcp_dial", nil}, {"net.tcp6_dial", nil}, {"net.dns_lookup", nil},
	{"net.unix_abstract_host", []string{"ECONNREFUSED", "ENOENT"}},
	{"net.unix_host_path", nil},
	{"net.", []string{"EPERM"}},
	{"socket.", nil},
	{"host.", []string{"ENOENT"}},
	{"other_session.", []string{"ENOENT"}},
	{"dev.tun_setiff", []string{"EPERM"}},
	{"dev.open", []string{"ENOENT"}},
	{"dev.mknod_block", []string{"EPERM"}},
	// seccomp answers EPERM; gVisor ignores errnoRet, so clone3 gets EPERM too (ENOSYS
	// where a runtime honours it).
	{"ns.clone3", []string{"EPERM", "ENOSYS"}},
	{"ns.", []string{"EPERM"}},
	{"mount.", []string{"EPERM"}},
	{"trace.", []string{"EPERM"}},
	{"keys.", []string{"EPERM"}},
	{"kernel.", []string{"EPERM"}},
	// Alone in its pid namespace: nobody to signal.
	{"signal.", []string{"ESRCH", "EPERM"}},
	{"proc.fork_bomb", []string{"EAGAIN"}},
	{"fill.", []string{"ENOSPC", "EDQUOT"}},
	{"secrets.", nil},
	{"tamper.", nil},
}

func expectedErrnos(attack string) ([]string, bool) {
	for _, e := range expected {
		if strings.HasPrefix(attack, e.prefix) {
			return e.errnos, true
		}
	}
	return nil, false
}

// TestContainment runs the hostile agent through the real supervisor, beside a
// well-behaved session, and checks from inside (its report) and from outside (the host)
// that every wall held. See docs/sandbox.md for what each check proves.
func TestContainment(t *testing.T) {
	canaryEnv := "ironclaw-canary-env-" + randHex(t)
	t.Setenv("IRONCLAW_TEST_CANARY", canaryEnv) // in the "daemon's" environment: must not leak

	// Host services the agent must not reach.
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	var tcpConns atomic.Int32
	go acceptCount(tcp, &tcpConns)
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	var udpPackets atomic.Int32
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := udp.ReadFrom(buf); err != nil {
				return
			}
			udpPackets.Add(1)
		}
	}()
	abstract := "ironclaw-canary-" + randHex(t)
	abs, err := net.Listen("unix", "@"+abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer abs.Close()
	var absConns atomic.Int32
	go acceptCount(abs, &absConns)
	// A host process with the agent's own uid: signals or ptrace that escaped would hit it.
	canary := exec.Command("sleep", "600")
	canary.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := canary.Start(); err != nil {
		t.Fatal(err)
	}
	canaryDone := make(chan struct{})
	go func() { canary.Wait(); close(canaryDone) }()
	defer func() { canary.Process.Kill(); <-canaryDone }()
	canaryFile := filepath.Join(t.TempDir(), "shadow")
	canaryText := "ironclaw-canary-file-" + randHex(t)
	if err := os.WriteFile(canaryFile, []byte(canaryText), 0o644); err != nil {
		t.Fatal(err)
	}

	d := newDaemon(t, evilPath)
	var statfsBefore unix.Statfs_t
	if err := unix.Statfs(d.cfg.StateDir, &statfsBefore); err != nil {
		t.Fatal(err)
	}
	stateBefore := diskUsage(t, d.cfg.StateDir)

	// The well-behaved session, B, first.
	if got := d.ask("victim", "echo:hello", 30*time.Second); got != "hello" {
		t.Fatalf("victim replied %q", got)
	}
	bID, bKey := d.sessionKey("victim")
	bDir := d.sessionDir(bID)
	bInbox := inboxRows(t, filepath.Join(bDir, "inbox", "inbox.db"))

	// The evil session, A: created by a harmless message so the test knows its key first.
	if got := d.ask("evil", "echo:warm-up", 30*time.Second); got != "warm-up" {
		t.Fatalf("evil warm-up replied %q", got)
	}
	aID, aKey := d.sessionKey("evil")
	aDir := d.sessionDir(aID)
	// Layer (c) on its own: open the inbox's file modes to everyone, so that only the
	// read-only mount stands between the agent and a write (as root's files, 0644 in a 0755
	// directory, the agent would get EACCES before the mount is even asked).
	for p, mode := range map[string]os.FileMode{filepath.Join(aDir, "inbox"): 0o777, filepath.Join(aDir, "inbox", "inbox.db"): 0o666} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	masterKey, err := os.ReadFile(d.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := evilConfig{
		HostTCPPort: tcp.Addr().(*net.TCPAddr).Port,
		HostUDPPort: udp.LocalAddr().(*net.UDPAddr).Port,
		Abstract:    abstract,
		CanaryPID:   canary.Process.Pid,
		HostPaths: []string{
			canaryFile, d.keyFile,
			filepath.Join(d.cfg.StateDir, "ironclaw.db"), filepath.Join(d.cfg.StateDir, "audit.log"),
			filepath.Join(bDir, "inbox", "inbox.db"), filepath.Join(bDir, "outbox", "outbox.db"),
			filepath.Join(bDir, "outbox.img"),
			filepath.Join(d.cfg.RuntimeDir, "s", bID.String()+".sock"),
			filepath.Join(d.cfg.RuntimeDir, "s", aID.String()+".sock"),
		},
		OtherSession: bID.String(),
		HostRoot:     d.dir,
	}
	order, _ := json.Marshal(cfg)
	_, attackSeq := d.send("evil", "attack:"+string(order))
	aInbox := inboxRows(t, filepath.Join(aDir, "inbox", "inbox.db"))
	st := d.waitStatus(aID, 90*time.Second, "the attack run", func(st supervisor.Status) bool {
		return st.Progress >= attackSeq || !st.Running
	})
	if !st.Running {
		t.Fatalf("the evil agent's sandbox ended during the attacks: %v\nstdout: %s\nstderr: %s", st.LastExit, tailStr(st.Stdout, 6000), tailStr(st.Stderr, 4000))
	}
	results, start := parseReport(t, st.Stdout)
	if testing.Verbose() {
		t.Logf("evil agent report:\n%s", st.Stdout)
	}
	if len(results) < 80 {
		t.Fatalf("only %d attack results (want the full run); stdout tail:\n%s", len(results), tailStr(st.Stdout, 4000))
	}

	t.Run("no attack succeeded, each stopped by its wall", func(t *testing.T) {
		for _, r := range results {
			if strings.HasPrefix(r.Attack, "info.") {
				continue
			}
			if r.OK {
				t.Errorf("BREACH: %s succeeded (n=%d, detail %q)", r.Attack, r.N, r.Detail)
				continue
			}
			want, known := expectedErrnos(r.Attack)
			if !known {
				t.Errorf("attack %s has no expectation in this test: add one", r.Attack)
				continue
			}
			if len(want) > 0 && !slices.Contains(want, r.Errno) {
				t.Errorf("%s failed with %s (%s), want %v: a different layer answered than the one under test", r.Attack, r.Errno, r.Err, want)
			}
		}
	})
	byName := map[string]result{}
	for _, r := range results {
		byName[r.Attack] = r
	}
	t.Run("inbox (c) vs a read-write SQLite handle: the read-only mount refuses it", func(t *testing.T) {
		r := byName["inbox.sqlite_rw_write"]
		if r.Attack == "" || !strings.Contains(strings.ToLower(r.Err), "readonly") && !strings.Contains(strings.ToLower(r.Err), "read-only") {
			t.Errorf("SQLite write attempt: %+v, want SQLITE_READONLY", r)
		}
		// The daemon itself appends (it echoes delivered replies as history
		// rows); nothing else may change a byte.
		checkInboxOnlyGrew(t, filepath.Join(aDir, "inbox", "inbox.db"), aInbox, aID, aKey)
	})
	t.Run("the sandbox shows no host descriptor and no host path", func(t *testing.T) {
		// The checks themselves ran: a missing result would pass silently.
		if r := byName["secrets.fds_beyond_stdio"]; r.Attack == "" || r.Err != "" {
			t.Errorf("descriptor check did not run: %+v", r)
		}
		if r := byName["secrets.mountinfo_host_path"]; r.Attack == "" || r.N == 0 || !strings.Contains(r.Detail, "/outbox") {
			t.Errorf("mountinfo check did not see the mounts: %+v", r)
		}
	})
	t.Run("seccomp filter is installed", func(t *testing.T) {
		info := byName["info.status"].Detail
		for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"} {
			if !strings.Contains(info, want) {
				t.Errorf("/proc/self/status inside lacks %q:\n%s", want, info)
			}
		}
	})
	t.Run("processes: RLIMIT_NPROC holds", func(t *testing.T) {
		nproc := byName["info.rlimit_nproc"].N
		if r := byName["proc.fork_bomb"]; nproc == 0 || r.N >= nproc {
			t.Errorf("fork bomb made %d processes with RLIMIT_NPROC %d", r.N, nproc)
		}
	})
	t.Run("tmp and outbox fill up at their caps", func(t *testing.T) {
		if n := byName["fill.tmp_bytes"].N; n > int64(d.cfg.TmpMiB)<<20 {
			t.Errorf("/tmp took %d bytes, cap %d MiB", n, d.cfg.TmpMiB)
		}
		if n := byName["fill.outbox_bytes"].N; n > int64(d.cfg.OutboxMiB)<<20 || n < 1<<20 {
			t.Errorf("outbox took %d bytes, cap %d MiB", n, d.cfg.OutboxMiB)
		}
		if n := byName["fill.outbox_inodes"].N; n >= d.cfg.OutboxInodes || n < 16 {
			t.Errorf("outbox took %d inodes, cap %d", n, d.cfg.OutboxInodes)
		}
		var img unix.Stat_t
		if err := unix.Stat(filepath.Join(aDir, "outbox.img"), &img); err != nil {
			t.Fatal(err)
		}
		if img.Blocks*512 > d.cfg.OutboxMiB<<20 {
			t.Errorf("the outbox image holds %d bytes of host disk, cap %d MiB", img.Blocks*512, d.cfg.OutboxMiB)
		}
		// What this daemon's state directory holds (allocated blocks, so a
		// sparse file counts for what it really takes): the images the
		// agents could fill plus the daemon's own small files.
		if used := diskUsage(t, d.cfg.StateDir) - stateBefore; used > 2*d.cfg.OutboxMiB<<20+16<<20 {
			t.Errorf("the state directory grew by %d bytes during the attacks, cap two %d MiB outbox images", used, d.cfg.OutboxMiB)
		}
		// And the whole disk, as a gross check against a write anywhere
		// else: other test packages share this disk while CI runs, so the
		// slack is wide; the exact bound is the one above.
		var after unix.Statfs_t
		if err := unix.Statfs(d.cfg.StateDir, &after); err != nil {
			t.Fatal(err)
		}
		used := (int64(statfsBefore.Bavail) - int64(after.Bavail)) * after.Bsize
		if used > 2*d.cfg.OutboxMiB<<20+1<<30 {
			t.Errorf("host disk lost %d bytes during the attacks", used)
		}
	})
	t.Run("network: nothing reached the host", func(t *testing.T) {
		time.Sleep(100 * time.Millisecond) // let stray packets land
		if n := tcpConns.Load() + absConns.Load() + udpPackets.Load(); n != 0 {
			t.Errorf("host listeners saw %d tcp, %d abstract unix, %d udp arrivals", tcpConns.Load(), absConns.Load(), udpPackets.Load())
		}
	})
	t.Run("signals and ptrace: the host canary lives", func(t *testing.T) {
		select {
		case <-canaryDone:
			t.Errorf("the host canary process (uid 65534) died")
		default:
		}
	})
	t.Run("other session untouched", func(t *testing.T) {
		// Only the daemon's own echo of the victim's reply may follow.
		checkInboxOnlyGrew(t, filepath.Join(bDir, "inbox", "inbox.db"), bInbox, bID, bKey)
	})
	t.Run("no key, host secret or host environment visible", func(t *testing.T) {
		secrets := map[string][]byte{
			"evil session key":   aKey[:],
			"victim session key": bKey[:],
			"master key":         masterKey,
			"host environment":   []byte(canaryEnv),
			"host canary file":   []byte(canaryText),
		}
		var env, argv []string
		_ = json.Unmarshal(start["env"], &env)
		_ = json.Unmarshal(start["argv"], &argv)
		if !slices.Equal(env, []string{"HOME=/"}) || !slices.Equal(argv, []string{"/agentd"}) {
			t.Errorf("agent env %q argv %q, want [HOME=/] [/agentd]", env, argv)
		}
		recon, err := os.ReadFile(filepath.Join(aDir, "outbox", "recon.jsonl"))
		if err != nil {
			t.Fatalf("the evil agent's file dump: %v", err)
		}
		files := 0
		sc := bufio.NewScanner(bytes.NewReader(recon))
		sc.Buffer(nil, 1<<20)
		var haystack [][]byte
		for sc.Scan() {
			var f struct {
				Path string
				Data []byte
			}
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
				t.Fatal(err)
			}
			files++
			haystack = append(haystack, append([]byte(f.Path+"\x00"), f.Data...))
		}
		if files < 20 {
			t.Errorf("the file dump holds only %d files", files)
		}
		haystack = append(haystack, []byte(strings.Join(env, "\x00")), []byte(strings.Join(argv, "\x00")),
			[]byte(byName["info.proc1_environ"].Detail), st.Stdout, st.Stderr)
		for what, secret := range secrets {
			for _, form := range encodings(secret) {
				for _, h := range haystack {
					if bytes.Contains(h, form) {
						t.Errorf("BREACH: %s visible inside the sandbox (in %.80q)", what, h)
					}
				}
			}
		}
		if r := byName["secrets.key_in_env_argv_files"]; r.N < 20 {
			t.Errorf("the agent's own key search covered %d files", r.N)
		}
	})
	t.Run("refused socket requests are audited, floods aggregated", func(t *testing.T) {
		// Aggregated counts are written when their window (1 s) closes.
		var lines, total uint64
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			lines, total = 0, 0
			for _, e := range d.auditEntries() {
				if e.Actor == "agent:"+aID.String() && e.Action == "socket.refused" {
					lines++
					total += e.Count
				}
			}
			if total >= 50+5 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if total < 50+5 || lines >= total/4 {
			t.Errorf("audit: %d refused-socket entries standing for %d refusals; want >= 55 refusals in far fewer entries", lines, total)
		}
	})
	t.Run("the victim still works", func(t *testing.T) {
		if got := d.ask("victim", "echo:after-attacks", 30*time.Second); got != "after-attacks" {
			t.Errorf("victim replied %q", got)
		}
	})

	// Memory: the cgroup OOM-kills the sandbox; status 137 is kept and audited; nothing
	// else notices, and the session starts again on demand.
	t.Run("memory exhaustion kills only that sandbox", func(t *testing.T) {
		_, seq := d.send("evil", "oom")
		st := d.waitStatus(aID, 60*time.Second, "the OOM kill", func(st supervisor.Status) bool {
			return !st.Running && st.LastExit != nil && st.Progress >= seq
		})
		if st.LastExit.Code != 137 {
			t.Errorf("exit status %v after exhausting memory, want exit code 137 (OOM kill)\nstdout: %s", st.LastExit, tailStr(st.Stdout, 1000))
		}
		d.waitAudit(10*time.Second, "sandbox.exit 137", func(e audit.Entry) bool {
			return e.Action == "sandbox.exit" && e.Subject == aID.String() && strings.Contains(e.Result, "exit code 137")
		})
		if got := d.ask("victim", "echo:after-oom", 30*time.Second); got != "after-oom" {
			t.Errorf("victim replied %q", got)
		}
		if got := d.ask("evil", "echo:back", 30*time.Second); got != "back" {
			t.Errorf("evil session after its OOM replied %q", got)
		}
	})

	// The outbox is hostile input: a symlink to a host secret in place of outbox.db is
	// refused, the session is stopped, and the victim keeps working.
	t.Run("symlinked outbox refused", func(t *testing.T) {
		d.send("evil", "tamper:symlink:"+canaryFile)
		st := d.waitStatus(aID, 30*time.Second, "the stop after a refused outbox", func(st supervisor.Status) bool {
			return !st.Running && st.Stopped != ""
		})
		if !strings.Contains(st.Stopped, "symbolic link") {
			t.Errorf("stopped because %q, want the refused symlink", st.Stopped)
		}
		d.waitAudit(5*time.Second, "outbox.refused", func(e audit.Entry) bool {
			return e.Action == "outbox.refused" && e.Subject == aID.String()
		})
		d.waitAudit(5*time.Second, "sandbox.failed", func(e audit.Entry) bool {
			return e.Action == "sandbox.failed" && e.Subject == aID.String()
		})
		if got := d.ask("victim", "echo:after-symlink", 30*time.Second); got != "after-symlink" {
			t.Errorf("victim replied %q", got)
		}
		ctxSend := func() error {
			_, _, err := d.sup.Send(t.Context(), "evil", "test", "echo:again")
			return err
		}
		if err := ctxSend(); err == nil {
			t.Errorf("a stopped session accepted a start")
		}
	})
	t.Run("FIFO outbox refused", func(t *testing.T) {
		if got := d.ask("fifo", "echo:hi", 30*time.Second); got != "hi" {
			t.Fatalf("fifo session replied %q", got)
		}
		cID, _ := d.sessionKey("fifo")
		d.send("fifo", "tamper:fifo")
		st := d.waitStatus(cID, 30*time.Second, "the stop after a refused outbox", func(st supervisor.Status) bool {
			return !st.Running && st.Stopped != ""
		})
		if !strings.Contains(st.Stopped, "outbox") {
			t.Errorf("stopped because %q, want the refused outbox", st.Stopped)
		}
		if got := d.ask("victim", "echo:after-fifo", 30*time.Second); got != "after-fifo" {
			t.Errorf("victim replied %q", got)
		}
	})
}

func parseReport(t *testing.T, stdout []byte) ([]result, map[string]json.RawMessage) {
	t.Helper()
	var out []result
	var start map[string]json.RawMessage
	for _, line := range bytes.Split(stdout, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev map[string]json.RawMessage
		if err := json.Unmarshal(line, &ev); err != nil {
			continue // a line cut by the bounded buffer
		}
		if _, ok := ev["event"]; ok {
			if string(ev["event"]) == `"start"` {
				start = ev
			}
			continue
		}
		var r result
		if err := json.Unmarshal(line, &r); err == nil && r.Attack != "" {
			out = append(out, r)
		}
	}
	if start == nil {
		t.Fatalf("no start line in the evil agent's stdout:\n%s", tailStr(stdout, 2000))
	}
	return out, start
}

func encodings(secret []byte) [][]byte {
	return [][]byte{
		secret,
		[]byte(hex.EncodeToString(secret)),
		[]byte(strings.ToUpper(hex.EncodeToString(secret))),
		[]byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawURLEncoding.EncodeToString(secret)),
	}
}

func acceptCount(ln net.Listener, n *atomic.Int32) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		n.Add(1)
		c.Close()
	}
}

// inboxRows returns the sealed rows of an inbox, in order.
func inboxRows(t *testing.T, p string) [][]byte {
	t.Helper()
	c, err := sqlite.OpenConn(p, sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rows [][]byte
	err = sqlitex.Execute(c, "SELECT sealed FROM rows ORDER BY seq", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error {
			b := make([]byte, st.ColumnLen(0))
			st.ColumnBytes(0, b)
			rows = append(rows, b)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// checkInboxOnlyGrew fails unless the inbox holds exactly the rows it held
// before, followed only by the Delivered rows the daemon writes.
func checkInboxOnlyGrew(t *testing.T, p string, before [][]byte, id wire.SessionID, key *wire.Key) {
	t.Helper()
	now := inboxRows(t, p)
	if len(now) < len(before) {
		t.Fatalf("the evil session's inbox lost rows: %d, was %d", len(now), len(before))
	}
	for i := range before {
		if !bytes.Equal(now[i], before[i]) {
			t.Fatalf("the evil session's inbox row %d changed on the host", i+1)
		}
	}
	for i := len(before); i < len(now); i++ {
		h, _, err := wire.Open(key, id, wire.Inbox, uint64(i+1), now[i])
		if err != nil || h.Kind != wire.KindDelivered {
			t.Fatalf("the evil session's inbox grew by row %d (%v, %v), not a daemon echo", i+1, h.Kind, err)
		}
	}
}

func hashFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randHex(t *testing.T) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// diskUsage is the host disk allocated to the regular files under dir
// (st_blocks, never the apparent size), without following links.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while walking
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		n += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatalf("measuring %s: %v", dir, err)
	}
	return n
}
