package hostcheck

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The lock-down is checked in a child process (it cannot be undone): after
// LockDownProcess the process is not dumpable and its core limit is 0.
func TestLockDownProcess(t *testing.T) {
	if os.Getenv("HOSTCHECK_CHILD") == "1" {
		if err := LockDownProcess(); err != nil {
			t.Fatal(err)
		}
		d, err := Dumpable()
		if err != nil {
			t.Fatal(err)
		}
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_CORE, &rl); err != nil {
			t.Fatal(err)
		}
		if d || rl.Cur != 0 || rl.Max != 0 {
			t.Fatalf("after LockDownProcess: dumpable %v, RLIMIT_CORE %d/%d", d, rl.Cur, rl.Max)
		}
		return
	}
	if d, err := Dumpable(); err != nil || !d {
		t.Fatalf("the test process should start dumpable: %v %v", d, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDownProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "HOSTCHECK_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestCheckDir(t *testing.T) {
	base, err := os.MkdirTemp("", "hc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	uid := os.Geteuid()
	good := filepath.Join(base, "good")
	os.Mkdir(good, 0o700)
	if err := CheckDir(good, uid); err != nil {
		t.Fatalf("a 0700 directory of ours: %v", err)
	}
	cases := []struct {
		name, want string
		setup      func() string
	}{
		{"world-writable", "chmod go-w", func() string {
			p := filepath.Join(base, "ww")
			os.Mkdir(p, 0o700)
			os.Chmod(p, 0o777)
			return p
		}},
		{"group-writable parent", "parent directory", func() string {
			p := filepath.Join(base, "gw")
			os.Mkdir(p, 0o770)
			os.Chmod(p, 0o770)
			os.Mkdir(filepath.Join(p, "state"), 0o700)
			return filepath.Join(p, "state")
		}},
		{"symlink on the path", "symbolic link", func() string {
			os.Symlink(good, filepath.Join(base, "link"))
			return filepath.Join(base, "link")
		}},
		{"symlinked parent", "symbolic link", func() string {
			os.Mkdir(filepath.Join(good, "sub"), 0o700)
			os.Symlink(good, filepath.Join(base, "plink"))
			return filepath.Join(base, "plink", "sub")
		}},
		{"other owner", "owned by uid", func() string {
			p := filepath.Join(base, "other")
			os.Mkdir(p, 0o700)
			if err := os.Chown(p, 4242, 4242); err != nil {
				t.Skip("chown needs root (CI runs as root)")
			}
			return p
		}},
		{"relative", "absolute", func() string { return "state" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.setup()
			err := CheckDir(p, uid)
			if !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckDir(%s) = %v, want ErrUnsafeDir saying %q", p, err, c.want)
			}
		})
	}
}
