// Package fsguard checks that a directory holding the daemon's secrets or
// sockets (the state directory, the runtime directory) is private: a real
// directory, not a symbolic link, owned by the daemon's user, with no group
// or other permission bits, and reached through parents that nobody but
// root (or the owner) can rename or replace.
//
// Both the daemon's start-up and `ironclaw doctor` use it, so what doctor
// reports is exactly what serve would refuse. Each problem carries the
// command that fixes it.
//
// It must never change anything on disk: it only looks.
package fsguard

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrNotPrivate wraps every problem Check finds.
var ErrNotPrivate = errors.New("directory is not private")

// Problem is one thing wrong with a directory and the command that fixes it.
type Problem struct {
	Path   string
	What   string // what is wrong, e.g. "mode 0777 lets other users in"
	Remedy string // what to run or change
}

func (p *Problem) Error() string {
	return fmt.Sprintf("%v: %s: %s; fix: %s", ErrNotPrivate, p.Path, p.What, p.Remedy)
}

// Unwrap makes errors.Is(err, ErrNotPrivate) hold.
func (p *Problem) Unwrap() error { return ErrNotPrivate }

// Check reports the first problem with dir as the private directory of the
// user uid, or nil. A missing directory is reported wrapping fs.ErrNotExist
// (callers that create it later may accept that).
//
// Rules:
//   - dir is absolute and clean, and neither dir nor any parent is a symbolic
//     link (a link can be repointed by whoever owns it or its directory);
//   - dir is a directory owned by uid with no group or other bits (0700);
//   - every parent is owned by root or uid and not writable by group or
//     others unless sticky (otherwise someone else could rename dir away and
//     put their own in its place).
func Check(dir string, uid int) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return &Problem{Path: dir, What: "not an absolute, clean path", Remedy: "use an absolute path without . or .. in the config"}
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s does not exist: %w", dir, fs.ErrNotExist)
		}
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &Problem{Path: dir, What: "is a symbolic link", Remedy: "point the config at the real directory (readlink -f " + dir + ")"}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &Problem{Path: dir, What: "is not a directory", Remedy: "move it away and let ironclaw create the directory"}
	}
	if int(st.Uid) != uid {
		return &Problem{Path: dir, What: fmt.Sprintf("is owned by uid %d, not the daemon's uid %d", st.Uid, uid), Remedy: fmt.Sprintf("chown %d %s", uid, dir)}
	}
	if perm := st.Mode & 0o7777; perm&0o077 != 0 {
		return &Problem{Path: dir, What: fmt.Sprintf("has mode %04o, which lets other users in", perm), Remedy: "chmod 700 " + dir}
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if err := checkParent(p, uid); err != nil {
			return err
		}
		if p == "/" {
			return nil
		}
	}
}

func checkParent(p string, uid int) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &Problem{Path: p, What: "a parent directory is a symbolic link", Remedy: "point the config at the real path (readlink -f " + p + ")"}
	}
	if st.Uid != 0 && int(st.Uid) != uid {
		return &Problem{Path: p, What: fmt.Sprintf("a parent directory is owned by uid %d, who could replace what is below it", st.Uid), Remedy: "chown root " + p + " (or move the directory under a root-owned parent)"}
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return &Problem{Path: p, What: fmt.Sprintf("a parent directory has mode %04o, so other users could rename what is below it", st.Mode&0o7777), Remedy: "chmod go-w " + p}
	}
	return nil
}

// SameFilesystem reports whether a and b live on the same filesystem (the
// same st_dev), following symbolic links. Doctor uses it to warn when a key
// file sits on the disk it is meant to protect.
func SameFilesystem(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev, nil
}

// Free returns the bytes available to unprivileged users and the total size
// of the filesystem holding path.
func Free(path string) (avail, total uint64, err error) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return s.Bavail * uint64(s.Bsize), s.Blocks * uint64(s.Bsize), nil
}
