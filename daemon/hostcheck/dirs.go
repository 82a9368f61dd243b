package hostcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnsafeDir is matched by every CheckDir refusal.
var ErrUnsafeDir = errors.New("hostcheck: unsafe directory")

// CheckDir checks that dir can be trusted by a daemon running as uid:
//
//   - dir is an absolute path and no component of it is a symbolic link;
//   - dir itself is a directory owned by root or uid, with no group or
//     world write permission;
//   - every ancestor is owned by root or uid and not writable by group or
//     others, except a root-owned ancestor with the sticky bit (like /tmp),
//     where others may create names but not replace ours.
//
// The error names the path and the fix.
func CheckDir(dir string, uid int) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%w: %q is not an absolute path: give the full path in the configuration", ErrUnsafeDir, dir)
	}
	clean := filepath.Clean(dir)
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	cur := "/"
	for i := 0; i <= len(parts); i++ {
		if i > 0 {
			if parts[i-1] == "" {
				continue
			}
			cur = filepath.Join(cur, parts[i-1])
		}
		var st unix.Stat_t
		if err := unix.Lstat(cur, &st); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrUnsafeDir, cur, err)
		}
		last := cur == clean
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return fmt.Errorf("%w: %s is a symbolic link; point the configuration at the real directory (%s) or replace the link with it", ErrUnsafeDir, cur, resolved(cur))
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return fmt.Errorf("%w: %s is not a directory", ErrUnsafeDir, cur)
		case st.Uid != 0 && int(st.Uid) != uid:
			return fmt.Errorf("%w: %s is owned by uid %d, not root or the daemon's uid %d: chown root %s", ErrUnsafeDir, cur, st.Uid, uid, cur)
		}
		if st.Mode&0o022 == 0 {
			continue
		}
		if !last && st.Mode&unix.S_ISVTX != 0 && st.Uid == 0 {
			continue // /tmp-like: others may add names, not replace ours
		}
		what := "directory"
		if !last {
			what = "parent directory"
		}
		return fmt.Errorf("%w: %s %s is writable by group or others (mode %o): chmod go-w %s", ErrUnsafeDir, what, cur, st.Mode&0o7777, cur)
	}
	return nil
}

// resolved is where a link leads, for the error message.
func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	if r, err := os.Readlink(p); err == nil {
		return r
	}
	return "its target"
}
