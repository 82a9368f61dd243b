package doctor

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// sameFilesystem reports whether a and b live on the same filesystem (the
// same st_dev), following symbolic links: a key file on the disk it is
// meant to protect.
func sameFilesystem(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev, nil
}

// freeSpace returns the bytes available to unprivileged users and the total
// size of the filesystem holding path.
func freeSpace(path string) (avail, total uint64, err error) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return s.Bavail * uint64(s.Bsize), s.Blocks * uint64(s.Bsize), nil
}
