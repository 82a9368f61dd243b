package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	// probePath is the test-only static agent (testdata/probe), built once by TestMain.
	probePath string
	// stateRoot is the runsc --root shared by all tests. One root, not one per test: runsc
	// bind-mounts an empty network namespace at <root>/null-netns and never unmounts it.
	stateRoot string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ironclaw-probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox tests: temp dir:", err)
		os.Exit(1)
	}
	probePath = filepath.Join(dir, "probe")
	// CGO_ENABLED=0: the rootfs holds only this file, so it must be static, like agentd.
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", probePath, ".")
	build.Dir = filepath.Join("testdata", "probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox tests: building testdata/probe: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// Short, under /tmp: runsc's control socket lives in the root (108-byte limit).
	stateRoot, err = os.MkdirTemp("/tmp", "icsb-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox tests: state root:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if err := unix.Unmount(filepath.Join(stateRoot, "null-netns"), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		fmt.Fprintln(os.Stderr, "sandbox tests: unmount runsc null-netns:", err)
	}
	if err := os.RemoveAll(stateRoot); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox tests: remove state root:", err)
		code = 1
	}
	os.Exit(code)
}

// testRunsc returns the pinned runsc under test. It FAILS (never skips) when runsc is
// missing: a test suite that silently skips the sandbox would prove nothing.
func testRunsc(t testing.TB) *Runsc {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the sandbox tests must run as root (CI does): runsc needs root for cgroups and namespaces")
	}
	path := os.Getenv("IRONCLAW_RUNSC")
	if path == "" {
		path = DefaultPath
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("runsc not found at %s (%v): run `.ci/install-runsc.sh` (or `just setup`), or point IRONCLAW_RUNSC at the pinned build", path, err)
	}
	digest, err := ParseDigestFile(filepath.Join("..", "..", "images", "runsc.sha256"))
	if err != nil {
		t.Fatalf("pinned digest: %v", err)
	}
	return &Runsc{Path: path, Root: stateRoot, WantDigest: digest}
}

// shortTempDir returns a fresh directory with a short path: unix socket paths (ours and
// runsc's control socket under Root) must fit in 108 bytes, and t.TempDir() paths, which
// embed the test name, can be longer than that.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "icsb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// fixture is one session's host side: inbox, outbox, daemon socket and a spec.
type fixture struct {
	r     *Runsc
	spec  Spec
	conns atomic.Int32 // connections accepted on the daemon socket
}

func newFixture(t testing.TB, agentArgs ...string) *fixture {
	t.Helper()
	f := &fixture{r: testRunsc(t)}
	short := shortTempDir(t)
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	inbox, outbox := filepath.Join(short, "inbox"), filepath.Join(short, "outbox")
	for _, d := range []string{inbox, outbox} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		// World-writable on purpose: only the read-only mount may stop the inbox write.
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(inbox, "hello"), []byte("hi from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(short, "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// connect(2) needs write permission on the socket file; the agent runs as 65534.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				if strings.TrimSpace(line) == "ping" {
					fmt.Fprintln(c, "pong")
				}
			}()
		}
	}()
	// A deliberately long bundle path: only the socket's path is length-limited.
	bundle := filepath.Join(t.TempDir(), strings.Repeat("b", 80), "bundle")
	if err := os.MkdirAll(filepath.Dir(bundle), 0o700); err != nil {
		t.Fatal(err)
	}
	f.spec = Spec{
		ID: id, BundleDir: bundle, AgentPath: probePath,
		InboxDir: inbox, OutboxDir: outbox, SocketPath: sock,
		Args:        agentArgs,
		MemoryBytes: 256 << 20, CPUMillis: 1000,
	}
	return f
}

// start starts the fixture's sandbox and registers a Stop that must leave nothing behind.
func (f *fixture) start(t testing.TB) *Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := f.r.Start(ctx, f.spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return sb
}

// waitFile waits for a file the agent writes to its outbox to reach the host.
func waitFile(t testing.TB, sb *Sandbox, path string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-sb.Done():
			st, _ := sb.Wait()
			t.Fatalf("sandbox exited (%v) before writing %s\nstdout: %s\nstderr: %s", st, path, sb.Stdout(), sb.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not appear within %v\nstderr: %s", path, d, sb.Stderr())
}

func waitExit(t testing.TB, sb *Sandbox, d time.Duration) ExitStatus {
	t.Helper()
	select {
	case <-sb.Done():
	case <-time.After(d):
		t.Fatalf("sandbox did not exit within %v\nstderr: %s", d, sb.Stderr())
	}
	st, err := sb.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return st
}

// runscList returns the ids `runsc list` knows under r's root.
func runscList(t testing.TB, r *Runsc) []string {
	t.Helper()
	out, err := exec.Command(r.path(), append(r.globalArgs(), "list", "-quiet")...).CombinedOutput()
	if err != nil {
		t.Fatalf("runsc list: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}

// cgroupsNamed finds any cgroup directory named id in any hierarchy, at any depth up to 3 —
// deliberately not the same lookup RemoveCgroups uses, so it catches runsc putting a
// cgroup somewhere we did not expect.
func cgroupsNamed(t testing.TB, id string) []string {
	t.Helper()
	mounts, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range mounts {
		_ = filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(m, p)
			if strings.Count(rel, "/") >= 3 {
				return filepath.SkipDir
			}
			if d.Name() == id {
				found = append(found, p)
				return filepath.SkipDir
			}
			return nil
		})
	}
	return found
}

// assertGone checks that nothing of the sandbox survives Stop.
func assertGone(t testing.TB, r *Runsc, sb *Sandbox, bundle string) {
	t.Helper()
	for _, id := range runscList(t, r) {
		if id == sb.ID() {
			t.Errorf("container %s still in `runsc list` after Stop", id)
		}
	}
	if cg := cgroupsNamed(t, sb.ID()); len(cg) > 0 {
		t.Errorf("cgroups left after Stop: %v", cg)
	}
	if _, err := os.Lstat(bundle); err == nil {
		t.Errorf("bundle %s left after Stop", bundle)
	}
}

func randomSecret(t testing.TB) []byte {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return []byte("ironclaw-test-secret-" + hex.EncodeToString(b[:]))
}
