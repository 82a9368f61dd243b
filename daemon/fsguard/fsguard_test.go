package fsguard

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestCheck(t *testing.T) {
	base, err := os.MkdirTemp("", "fsg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// os.MkdirTemp's parent (/tmp) is sticky and world-writable: allowed.
	uid := os.Geteuid()
	good := filepath.Join(base, "state")
	if err := os.Mkdir(good, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Check(good, uid); err != nil {
		t.Fatalf("private dir refused: %v", err)
	}

	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	err = Check(open, uid)
	var p *Problem
	if !errors.As(err, &p) || !errors.Is(err, ErrNotPrivate) || p.Remedy != "chmod 700 "+open {
		t.Fatalf("world-writable dir: got %v", err)
	}

	link := filepath.Join(base, "link")
	os.Symlink(good, link)
	if err := Check(link, uid); !errors.As(err, &p) || p.What != "is a symbolic link" {
		t.Fatalf("symlink: got %v", err)
	}
	if err := Check(filepath.Join(link, "x"), uid); err == nil {
		t.Fatal("a path through a symlinked parent was accepted")
	}

	if err := Check(good, uid+1); !errors.As(err, &p) {
		t.Fatalf("foreign owner: got %v", err)
	}

	loose := filepath.Join(base, "loose")
	os.Mkdir(loose, 0o700)
	os.Chmod(loose, 0o777)
	inner := filepath.Join(loose, "state")
	os.Mkdir(inner, 0o700)
	if err := Check(inner, uid); !errors.As(err, &p) || p.Path != loose {
		t.Fatalf("world-writable parent: got %v", err)
	}

	if err := Check(filepath.Join(base, "missing"), uid); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: got %v", err)
	}
	if err := Check("relative/dir", uid); !errors.As(err, &p) {
		t.Fatalf("relative: got %v", err)
	}
	f := filepath.Join(base, "file")
	os.WriteFile(f, nil, 0o600)
	if err := Check(f, uid); !errors.As(err, &p) {
		t.Fatalf("file: got %v", err)
	}
}

func TestSameFilesystemAndFree(t *testing.T) {
	d := t.TempDir()
	same, err := SameFilesystem(d, filepath.Dir(d))
	if err != nil || !same {
		t.Fatalf("same fs: %v %v", same, err)
	}
	if _, err := SameFilesystem(d, "/proc"); err != nil {
		t.Fatal(err)
	}
	if diff, _ := SameFilesystem(d, "/proc"); diff {
		t.Fatal("/proc reported on the same filesystem as a temp dir")
	}
	avail, total, err := Free(d)
	if err != nil || total == 0 || avail > total {
		t.Fatalf("free: %d %d %v", avail, total, err)
	}
}
