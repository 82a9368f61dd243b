package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// probeReport mirrors testdata/probe's Report.
type probeReport struct {
	StdinSHA256   string   `json:"stdin_sha256"`
	StdinLen      int      `json:"stdin_len"`
	Root          []string `json:"root"`
	Run           []string `json:"run"`
	InboxWriteErr string   `json:"inbox_write_err"`
	InboxRead     string   `json:"inbox_read"`
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
	Cwd           string   `json:"cwd"`
	Status        []string `json:"status"`
	MemTotal      string   `json:"mem_total"`
}

// TestProbeInsideSandbox runs the probe agent in a real sandbox and checks, from inside and
// outside, every property the sandbox promises.
func TestProbeInsideSandbox(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	var tcpConns atomic.Int32
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			tcpConns.Add(1)
			c.Close()
		}
	}()
	port := tcp.Addr().(*net.TCPAddr).Port

	f := newFixture(t, "-mode=full", "-code=7", "-port="+strconv.Itoa(port))
	secret := randomSecret(t)
	f.spec.Stdin = secret
	agent, err := os.ReadFile(probePath)
	if err != nil {
		t.Fatal(err)
	}
	agentSum := sha256.Sum256(agent)
	f.spec.AgentSHA256 = hex.EncodeToString(agentSum[:]) // the pinned-digest path, positive case
	sb := f.start(t)

	// The probe writes /outbox/ok once it has run its checks, then waits for /inbox/release:
	// the outbox write reaching the host is itself one of the assertions.
	waitFile(t, sb, filepath.Join(f.spec.OutboxDir, "ok"), 30*time.Second)

	t.Run("secret not in runsc process tree argv or environ", func(t *testing.T) {
		pids := descendants(t, sb.Pid())
		if len(pids) < 3 { // runsc run, gofer, sandbox at least
			t.Fatalf("found only %d processes under runsc pid %d: %v", len(pids), sb.Pid(), pids)
		}
		for _, pid := range pids {
			for _, file := range []string{"cmdline", "environ"} {
				b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), file))
				if err != nil {
					continue // exited meanwhile
				}
				if bytes.Contains(b, secret) {
					t.Errorf("secret found in /proc/%d/%s", pid, file)
				}
				if file == "environ" && len(b) > 0 && pid == sb.Pid() {
					t.Errorf("runsc was given an environment (%d bytes); the daemon's env must not leak into it", len(b))
				}
			}
		}
	})
	t.Run("secret not in bundle or runsc state files", func(t *testing.T) {
		for _, dir := range []string{f.spec.BundleDir, f.r.Root} {
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return nil
				}
				if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, secret) {
					t.Errorf("secret found in %s", p)
				}
				return nil
			})
		}
	})
	t.Run("host rootfs holds only agentd and mount points", func(t *testing.T) {
		var got []string
		rootfs := filepath.Join(f.spec.BundleDir, "rootfs")
		_ = filepath.WalkDir(rootfs, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				t.Error(err)
				return nil
			}
			rel, _ := filepath.Rel(rootfs, p)
			if rel != "." {
				got = append(got, rel)
			}
			return nil
		})
		want := []string{"agentd", "inbox", "outbox", "proc", "run", "run/ironclaw.sock", "tmp"}
		if !slices.Equal(got, want) {
			t.Errorf("rootfs = %v, want %v", got, want)
		}
		fi, err := os.Stat(filepath.Join(rootfs, "agentd"))
		if err != nil || fi.Mode().Perm() != 0o555 {
			t.Errorf("rootfs/agentd: %v, mode %v, want 0555", err, fi.Mode())
		}
		cfg, err := os.Stat(filepath.Join(f.spec.BundleDir, "config.json"))
		if err != nil || cfg.Mode().Perm() != 0o600 {
			t.Errorf("config.json: %v, mode %v, want 0600", err, cfg.Mode())
		}
	})

	if err := os.WriteFile(filepath.Join(f.spec.InboxDir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st := waitExit(t, sb, 30*time.Second)
	if st.Code != 7 || st.Signal != 0 {
		t.Errorf("exit status %v, want exit code 7 (the agent's)\nstderr: %s", st, sb.Stderr())
	}

	var rep probeReport
	out := sb.Stdout()
	if err := json.Unmarshal(firstLine(out), &rep); err != nil {
		t.Fatalf("probe report: %v\nstdout: %q\nstderr: %s", err, out, sb.Stderr())
	}
	sum := sha256.Sum256(secret)
	if rep.StdinSHA256 != hex.EncodeToString(sum[:]) || rep.StdinLen != len(secret) {
		t.Errorf("stdin secret did not arrive intact: agent saw %d bytes, sha256 %s", rep.StdinLen, rep.StdinSHA256)
	}
	if !slices.Equal(rep.Env, []string{"HOME=/"}) {
		t.Errorf("agent env = %q, want only HOME=/", rep.Env)
	}
	for _, e := range rep.Env {
		if strings.Contains(e, string(secret)) {
			t.Errorf("secret in agent env")
		}
	}
	if rep.UID != 65534 || rep.GID != 65534 || rep.EUID != 65534 || len(rep.Groups) != 0 {
		t.Errorf("agent runs as uid %d euid %d gid %d groups %v, want 65534/65534 and no groups", rep.UID, rep.EUID, rep.GID, rep.Groups)
	}
	if rep.Cwd != "/" {
		t.Errorf("agent cwd %q, want /", rep.Cwd)
	}
	// Inside, / shows the rootfs plus what gVisor itself provides (/dev, /sys).
	allowed := []string{"agentd", "dev", "inbox", "outbox", "proc", "run", "sys", "tmp"}
	if !slices.Contains(rep.Root, "agentd") {
		t.Errorf("agentd missing from / inside: %v", rep.Root)
	}
	for _, n := range rep.Root {
		if !slices.Contains(allowed, n) {
			t.Errorf("unexpected entry /%s inside the sandbox (/ = %v)", n, rep.Root)
		}
	}
	if !slices.Equal(rep.Run, []string{"ironclaw.sock"}) {
		t.Errorf("/run inside = %v, want only ironclaw.sock", rep.Run)
	}
	if !strings.Contains(rep.InboxWriteErr, "read-only file system") {
		t.Errorf("writing /inbox/x: %q, want EROFS (the inbox dir is world-writable: only the ro mount may stop it)", rep.InboxWriteErr)
	}
	if _, err := os.Stat(filepath.Join(f.spec.InboxDir, "x")); err == nil {
		t.Errorf("the agent's inbox write reached the host")
	}
	if rep.InboxRead != "hi from the host" {
		t.Errorf("reading /inbox/hello: %q", rep.InboxRead)
	}
	if rep.TCPErr == "" || tcpConns.Load() != 0 {
		t.Errorf("TCP to host 127.0.0.1:%d: err %q, host accepted %d connections; want refused", port, rep.TCPErr, tcpConns.Load())
	}
	if rep.SocketReply != "pong" || f.conns.Load() == 0 {
		t.Errorf("daemon socket: reply %q err %q, want pong", rep.SocketReply, rep.SocketErr)
	}
	if rep.TmpWriteErr != "" || !strings.Contains(rep.TmpExecErr, "permission denied") {
		t.Errorf("/tmp: write err %q, exec err %q; want writable and noexec", rep.TmpWriteErr, rep.TmpExecErr)
	}
	for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !slices.Contains(rep.Status, want) {
			t.Errorf("/proc/self/status lacks %q: %q", want, rep.Status)
		}
	}
	if want := strconv.FormatInt(f.spec.MemoryBytes>>10, 10) + " kB"; !strings.HasSuffix(rep.MemTotal, want) {
		t.Errorf("MemTotal inside %q, want the %d-byte limit (%s)", rep.MemTotal, f.spec.MemoryBytes, want)
	}
	if b, err := os.ReadFile(filepath.Join(f.spec.OutboxDir, "ok")); err != nil || string(b) != "ok\n" {
		t.Errorf("outbox/ok on the host: %q, %v", b, err)
	}

	if err := sb.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertGone(t, f.r, sb, f.spec.BundleDir)
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

// descendants returns pid and all its descendants, from /proc.
func descendants(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func TestExitStatusPropagates(t *testing.T) {
	for _, code := range []int{0, 42} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			f := newFixture(t, "-mode=exit", "-code="+strconv.Itoa(code))
			sb := f.start(t)
			st := waitExit(t, sb, 30*time.Second)
			if st.Code != code || st.Signal != 0 || st.Success() != (code == 0) {
				t.Errorf("status %v, want exit code %d\nstderr: %s", st, code, sb.Stderr())
			}
			// Wait is repeatable.
			if st2, err := sb.Wait(); st2 != st || err != nil {
				t.Errorf("second Wait = %v, %v; want %v", st2, err, st)
			}
			if err := sb.Stop(context.Background()); err != nil {
				t.Fatalf("Stop after exit: %v", err)
			}
			assertGone(t, f.r, sb, f.spec.BundleDir)
		})
	}
}

func TestStopKillsSleepingAgent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ignoreTerm bool
		wantCode   int
		maxTime    time.Duration
	}{
		// SIGTERM ends a well-behaved agent at once: runsc reports 128+15.
		{"honours SIGTERM", false, 143, StopGrace},
		// An agent that ignores SIGTERM is SIGKILLed after the grace period: 128+9.
		{"ignores SIGTERM", true, 137, StopGrace + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "-mode=sleep", "-ignore-term="+strconv.FormatBool(tc.ignoreTerm))
			sb := f.start(t)
			waitFile(t, sb, filepath.Join(f.spec.OutboxDir, "ready"), 30*time.Second)
			if !slices.Contains(runscList(t, f.r), sb.ID()) {
				t.Fatalf("running container %s missing from runsc list", sb.ID())
			}
			if cg := cgroupsNamed(t, sb.ID()); len(cg) == 0 {
				t.Fatalf("no cgroup found for a running sandbox: the leftover check below would prove nothing")
			}
			start := time.Now()
			if err := sb.Stop(context.Background()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			took := time.Since(start)
			t.Logf("Stop took %v", took)
			if took > tc.maxTime {
				t.Errorf("Stop took %v, want under %v", took, tc.maxTime)
			}
			st, err := sb.Wait()
			if err != nil || st.Code != tc.wantCode {
				t.Errorf("status after Stop %v (%v), want code %d", st, err, tc.wantCode)
			}
			assertGone(t, f.r, sb, f.spec.BundleDir)
			if err := sb.Stop(context.Background()); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

// TestStopWithCancelledContext: a caller whose ctx is already done still gets a full cleanup
// (SIGKILL at once instead of a grace period).
func TestStopWithCancelledContext(t *testing.T) {
	f := newFixture(t, "-mode=sleep", "-ignore-term=true")
	sb := f.start(t)
	waitFile(t, sb, filepath.Join(f.spec.OutboxDir, "ready"), 30*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := sb.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took >= StopGrace {
		t.Errorf("Stop with a done ctx took %v; it should skip the grace period", took)
	}
	assertGone(t, f.r, sb, f.spec.BundleDir)
}

// TestRemoveCgroupsReapsRealLeak makes runsc leak for real (a 1 MiB memory limit gets runsc
// itself OOM-killed while creating the sandbox, measured) and checks RemoveCgroups — which
// Stop calls — reaps every leaked directory.
func TestRemoveCgroupsReapsRealLeak(t *testing.T) {
	f := newFixture(t, "-mode=exit")
	f.spec.MemoryBytes = 1 << 20 // below MinMemoryBytes: bypasses validate on purpose
	if err := ensureStateRoot(f.r.root()); err != nil {
		t.Fatal(err)
	}
	if err := f.spec.writeBundle(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(f.r.path(), append(f.r.globalArgs(), "run", "-bundle", f.spec.BundleDir, f.spec.ID)...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("runsc run with 1 MiB succeeded; this test needs a failing create\n%s", out)
	}
	t.Cleanup(func() {
		_ = exec.Command(f.r.path(), append(f.r.globalArgs(), "delete", "--force", f.spec.ID)...).Run()
		_ = RemoveCgroups(f.spec.ID)
	})
	leaked := cgroupsNamed(t, f.spec.ID)
	if len(leaked) == 0 {
		t.Fatalf("runsc did not leak a cgroup this time (%v); the leak this test covers was not reproduced", err)
	}
	t.Logf("runsc leaked %d cgroups, e.g. %s", len(leaked), leaked[0])
	if err := RemoveCgroups(f.spec.ID); err != nil {
		t.Fatalf("RemoveCgroups: %v", err)
	}
	if left := cgroupsNamed(t, f.spec.ID); len(left) > 0 {
		t.Errorf("cgroups left after RemoveCgroups: %v", left)
	}
}

func TestCheckAcceptsPinnedRunsc(t *testing.T) {
	r := testRunsc(t)
	start := time.Now()
	if err := r.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	t.Logf("full Check (sha256 of %s + --version): %v", r.path(), time.Since(start))
}

func TestCheckRejects(t *testing.T) {
	real := testRunsc(t)
	dir := t.TempDir()
	writable := filepath.Join(dir, "writable")
	if err := os.WriteFile(writable, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real.path(), link); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("0", 64)
	for _, tc := range []struct {
		name string
		r    *Runsc
		want string // a substring that tells the user what to do
	}{
		{"missing binary", &Runsc{Path: filepath.Join(dir, "nope"), Root: real.Root}, "install-runsc.sh"},
		{"wrong digest", &Runsc{Path: real.Path, Root: real.Root, WantDigest: wrong}, "install-runsc.sh"},
		{"writable by others", &Runsc{Path: writable, Root: real.Root}, "chmod"},
		{"symlink", &Runsc{Path: link, Root: real.Root}, "symlink"},
		{"kvm", &Runsc{Path: real.Path, Root: real.Root, Platform: "kvm"}, "use systrap"},
		{"relative path", &Runsc{Path: "runsc", Root: real.Root}, "absolute"},
		{"root too long for runsc's socket", &Runsc{Path: real.Path, Root: "/" + strings.Repeat("r", 60)}, "108 bytes"},
		{"malformed pin", &Runsc{Path: real.Path, Root: real.Root, WantDigest: "abc"}, "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Check(context.Background())
			if err == nil {
				t.Fatal("Check passed")
			}
			if !errors.Is(err, ErrRunscUnusable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check error %q: want ErrRunscUnusable mentioning %q", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

// TestStartRefusesUnverifiedRunsc: no fallback. A failed Check means no sandbox and nothing
// left on disk.
func TestStartRefusesUnverifiedRunsc(t *testing.T) {
	f := newFixture(t, "-mode=exit")
	f.r.WantDigest = strings.Repeat("0", 64)
	sb, err := f.r.Start(context.Background(), f.spec)
	if err == nil {
		sb.Stop(context.Background())
		t.Fatal("Start succeeded with a runsc that fails its digest check")
	}
	if !errors.Is(err, ErrRunscUnusable) || !strings.Contains(err.Error(), "install-runsc.sh") {
		t.Errorf("Start error %q: want ErrRunscUnusable with a fix", err)
	}
	if _, err := os.Lstat(f.spec.BundleDir); err == nil {
		t.Errorf("Start left a bundle behind after refusing")
	}
}

// TestStartUndoesHalfBuiltBundle: a failure after the bundle is written removes it.
func TestStartUndoesHalfBuiltBundle(t *testing.T) {
	f := newFixture(t, "-mode=exit")
	f.spec.AgentSHA256 = strings.Repeat("0", 64) // copy succeeds, digest check fails
	if sb, err := f.r.Start(context.Background(), f.spec); err == nil {
		sb.Stop(context.Background())
		t.Fatal("Start accepted an agent binary with the wrong digest")
	} else if !strings.Contains(err.Error(), "sha256") {
		t.Errorf("error %q should name the digest mismatch", err)
	}
	if _, err := os.Lstat(f.spec.BundleDir); err == nil {
		t.Errorf("half-built bundle %s left behind", f.spec.BundleDir)
	}
}

func TestSpecValidation(t *testing.T) {
	f := newFixture(t)
	longSock := "/" + strings.Repeat("s", MaxSocketPathLen)
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"ok", func(*Spec) {}, ""},
		{"short id", func(s *Spec) { s.ID = "ironclaw-1" }, "32 lowercase hex"},
		{"uppercase id", func(s *Spec) { s.ID = strings.ToUpper(s.ID) }, "32 lowercase hex"},
		{"relative bundle", func(s *Spec) { s.BundleDir = "bundle" }, "absolute"},
		{"comma in inbox", func(s *Spec) { s.InboxDir = "/tmp/a,b" }, "comma"},
		{"socket path too long", func(s *Spec) { s.SocketPath = longSock }, "108 bytes"},
		{"socket not a socket", func(s *Spec) { s.SocketPath = s.AgentPath }, "not a unix socket"},
		{"inbox missing", func(s *Spec) { s.InboxDir = "/nonexistent/inbox" }, "InboxDir"},
		{"stdin too big", func(s *Spec) { s.Stdin = make([]byte, MaxStdin+1) }, "stdin"},
		{"secret in args", func(s *Spec) { s.Stdin = []byte("topsecretkey"); s.Args = []string{"-k=topsecretkey"} }, "secret"},
		{"memory too low", func(s *Spec) { s.MemoryBytes = 1 << 20 }, "memory"},
		{"cpu too low", func(s *Spec) { s.CPUMillis = 0 }, "CPU"},
		{"tmp too small", func(s *Spec) { s.TmpBytes = 4096 }, "/tmp"},
		{"tmp above memory", func(s *Spec) { s.TmpBytes = s.MemoryBytes + 1 }, "/tmp"},
		{"bad agent digest", func(s *Spec) { s.AgentSHA256 = "xyz" }, "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.spec
			tc.mod(&s)
			err := s.validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid spec rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate() = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestOCISpec(t *testing.T) {
	s := Spec{
		ID: IDPrefix + strings.Repeat("a", 32), BundleDir: "/b", AgentPath: "/a",
		InboxDir: "/in", OutboxDir: "/out", SocketPath: "/s.sock", Args: []string{"-x"},
		Stdin: []byte("secret-never-in-spec"), MemoryBytes: 64 << 20, CPUMillis: 500,
	}
	o := s.OCI()
	cfg, _ := json.Marshal(o)
	if bytes.Contains(cfg, s.Stdin) {
		t.Fatal("stdin secret in the OCI spec")
	}
	p := o.Process
	if p.User.UID != 65534 || p.User.GID != 65534 || len(p.User.AdditionalGids) != 0 {
		t.Errorf("user %+v", p.User)
	}
	if !p.NoNewPrivileges || p.Terminal {
		t.Errorf("noNewPrivileges %v terminal %v", p.NoNewPrivileges, p.Terminal)
	}
	c := p.Capabilities
	if c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("capabilities %+v, want all empty", c)
	}
	if !slices.Equal(p.Args, []string{"/agentd", "-x"}) || !slices.Equal(p.Env, []string{"HOME=/"}) || p.Cwd != "/" {
		t.Errorf("args %q env %q cwd %q", p.Args, p.Env, p.Cwd)
	}
	rl := map[string]uint64{}
	for _, r := range p.Rlimits {
		rl[r.Type] = r.Hard
		if r.Soft != r.Hard {
			t.Errorf("%s soft %d != hard %d", r.Type, r.Soft, r.Hard)
		}
	}
	if rl["RLIMIT_NPROC"] == 0 || rl["RLIMIT_NOFILE"] == 0 {
		t.Errorf("rlimits %v lack NPROC/NOFILE", rl)
	}
	if o.Root == nil || !o.Root.Readonly || o.Root.Path != "rootfs" {
		t.Errorf("root %+v", o.Root)
	}
	mounts := map[string]string{}
	for _, m := range o.Mounts {
		mounts[m.Destination] = m.Type + " " + m.Source + " " + strings.Join(m.Options, ",")
	}
	want := map[string]string{
		"/proc":              "proc proc nosuid,nodev,noexec",
		"/inbox":             "bind /in bind,ro,nosuid,nodev,noexec",
		"/outbox":            "bind /out bind,rw,nosuid,nodev,noexec",
		"/run/ironclaw.sock": "bind /s.sock bind,ro,nosuid,nodev,noexec",
		"/tmp":               "tmpfs tmpfs size=16384k,mode=1777,nosuid,nodev,noexec",
	}
	if len(mounts) != len(want) {
		t.Errorf("mounts %v, want %v", mounts, want)
	}
	for d, w := range want {
		if mounts[d] != w {
			t.Errorf("mount %s = %q, want %q", d, mounts[d], w)
		}
	}
	l := o.Linux
	if l.Resources.Memory.Limit == nil || *l.Resources.Memory.Limit != 64<<20 {
		t.Errorf("memory limit %v", l.Resources.Memory.Limit)
	}
	if *l.Resources.CPU.Quota != 50000 || *l.Resources.CPU.Period != 100000 {
		t.Errorf("cpu quota %d period %d, want 50000/100000 for 500 millicores", *l.Resources.CPU.Quota, *l.Resources.CPU.Period)
	}
	if l.CgroupsPath != "/ironclaw/"+s.ID {
		t.Errorf("cgroupsPath %q", l.CgroupsPath)
	}
	ns := map[string]bool{}
	for _, n := range l.Namespaces {
		ns[string(n.Type)] = n.Path == ""
	}
	for _, n := range []string{"pid", "network", "ipc", "uts", "mount"} {
		if !ns[n] {
			t.Errorf("missing fresh %s namespace: %v", n, l.Namespaces)
		}
	}
	if l.Seccomp == nil || l.Seccomp.DefaultAction != "SCMP_ACT_ALLOW" {
		t.Fatalf("seccomp %+v, want the agent profile", l.Seccomp)
	}
	denied := map[string]bool{}
	for _, sc := range l.Seccomp.Syscalls {
		if sc.Action == "SCMP_ACT_ERRNO" && len(sc.Args) == 0 {
			for _, n := range sc.Names {
				denied[n] = true
			}
		}
	}
	for _, n := range []string{"unshare", "setns", "mount", "umount2", "pivot_root", "ptrace", "process_vm_readv",
		"process_vm_writev", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "kexec_load",
		"init_module", "finit_module", "userfaultfd", "personality", "clone3"} {
		if !denied[n] {
			t.Errorf("seccomp does not refuse %s outright", n)
		}
	}

	s.TmpBytes = 3 << 20
	if got := s.OCI().Mounts[4].Options[0]; got != "size=3072k" {
		t.Errorf("tmp size option %q, want size=3072k", got)
	}
}

func TestNewID(t *testing.T) {
	a, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewID()
	if len(a) != IDLength || !idPattern.MatchString(a) || a == b {
		t.Errorf("NewID = %q, %q", a, b)
	}
}

func TestBoundedBuffer(t *testing.T) {
	b := newBoundedBuffer(8)
	for _, s := range []string{"abc", "defgh", "ij", "0123456789", "x"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	got, dropped := b.snapshot()
	if string(got) != "3456789x" || dropped != 21-8 {
		t.Errorf("kept %q dropped %d; want the last 8 bytes and 13 dropped", got, dropped)
	}
}

func TestParseDigestFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	d := strings.Repeat("ab", 32)
	os.WriteFile(good, []byte("# comment\n\n"+d+"  runsc\n"), 0o644)
	if got, err := ParseDigestFile(good); err != nil || got != d {
		t.Errorf("ParseDigestFile = %q, %v", got, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("# only a comment\n"), 0o644)
	if _, err := ParseDigestFile(bad); err == nil {
		t.Error("a file without a digest was accepted")
	}
	if got, err := ParseDigestFile(filepath.Join("..", "..", "images", "runsc.sha256")); err != nil || !isHexDigest(got) {
		t.Errorf("images/runsc.sha256: %q, %v", got, err)
	}
}

// TestGlobalArgs pins the runsc flags every invocation carries. --network=none and the spec's
// fresh network namespace are independent layers (measured: the probe reaches the host only
// when both are removed), so each is pinned by its own test.
func TestGlobalArgs(t *testing.T) {
	r := &Runsc{Root: "/run/x"}
	got := strings.Join(r.globalArgs(), " ")
	if want := "--root /run/x --network=none --host-uds=open --oci-seccomp --overlay2=none --platform systrap"; got != want {
		t.Errorf("global args %q, want %q", got, want)
	}
}

// TestImagesBuildScript builds the probe with images/build.sh (cmd/agentd gets the same
// treatment), twice, and checks the manifest describes the binary and the build reproduces.
func TestImagesBuildScript(t *testing.T) {
	var digests []string
	for i := range 2 {
		out := filepath.Join(t.TempDir(), "img"+strconv.Itoa(i))
		cmd := exec.Command(filepath.Join("..", "..", "images", "build.sh"), "./daemon/sandbox/testdata/probe", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("images/build.sh: %v\n%s", err, b)
		}
		var m struct {
			Path      string `json:"path"`
			SHA256    string `json:"sha256"`
			Size      int64  `json:"size"`
			GoVersion string `json:"go_version"`
			Package   string `json:"package"`
			CGO       bool   `json:"cgo"`
		}
		raw, err := os.ReadFile(filepath.Join(out, "agentd.manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("manifest is not JSON: %v\n%s", err, raw)
		}
		bin, err := os.ReadFile(filepath.Join(out, m.Path))
		if err != nil {
			t.Fatalf("manifest path %q: %v", m.Path, err)
		}
		sum := sha256.Sum256(bin)
		if m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(bin)) {
			t.Errorf("manifest says sha256 %s size %d; binary has %x, %d bytes", m.SHA256, m.Size, sum, len(bin))
		}
		if m.GoVersion != runtime.Version() || m.CGO || m.Package != "./daemon/sandbox/testdata/probe" {
			t.Errorf("manifest %+v", m)
		}
		digests = append(digests, m.SHA256)
	}
	if digests[0] != digests[1] {
		t.Errorf("images/build.sh is not reproducible: %s then %s", digests[0], digests[1])
	}
}

// TestSeccompAndNetworkEachHold runs the probe's "layers" mode twice on the real bundle:
// as Start writes it, and with linux.seccomp removed. Without the profile gVisor lets an
// unprivileged agent create a user namespace (what the profile is for); with it, EPERM.
// TCP to the host's loopback fails both ways: --network=none holds on its own, the
// profile's AF_UNIX-only socket rule is a second wall in front of it.
func TestSeccompAndNetworkEachHold(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	port := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
	run := func(t *testing.T, strip bool) string {
		f := newFixture(t, "-mode=layers", "-port="+port)
		if err := ensureStateRoot(f.r.root()); err != nil {
			t.Fatal(err)
		}
		if err := f.spec.writeBundle(); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(f.spec.BundleDir)
		defer RemoveCgroups(f.spec.ID)
		if strip {
			cfgPath := filepath.Join(f.spec.BundleDir, "config.json")
			var cfg map[string]any
			b, _ := os.ReadFile(cfgPath)
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			delete(cfg["linux"].(map[string]any), "seccomp")
			b, _ = json.Marshal(cfg)
			if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(f.r.path(), append(f.r.globalArgs(), "run", "-bundle", f.spec.BundleDir, f.spec.ID)...)
		out, err := cmd.Output()
		_ = exec.Command(f.r.path(), append(f.r.globalArgs(), "delete", "--force", f.spec.ID)...).Run()
		if err != nil {
			t.Fatalf("runsc run: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	with := run(t, false)
	without := run(t, true)
	if !strings.HasPrefix(with, "userns=operation not permitted ") {
		t.Errorf("with the seccomp profile: %q, want user namespace creation refused with EPERM", with)
	}
	if !strings.HasPrefix(without, "userns=ok ") {
		t.Errorf("without the profile: %q; gVisor alone allows clone(CLONE_NEWUSER) (docs/facts.md) — if that changed, update docs/sandbox.md", without)
	}
	for _, out := range []string{with, without} {
		if strings.HasSuffix(out, "tcp=ok") {
			t.Errorf("TCP to the host's loopback connected: %q", out)
		}
	}
	if conns.Load() != 0 {
		t.Errorf("the host listener accepted %d connections", conns.Load())
	}
	t.Logf("with seccomp: %s; without: %s", with, without)
}
