package hostcheck

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// LockDownProcess makes the calling process non-dumpable and gives it no
// core file size: a crash writes no core holding the master key, and
// /proc/<pid>/mem and ptrace are closed to other processes of the same user.
// Call it before any secret is read.
func LockDownProcess() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("hostcheck: setting RLIMIT_CORE to 0: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("hostcheck: prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}

// Dumpable reports prctl(PR_GET_DUMPABLE) for the calling process.
func Dumpable() (bool, error) {
	v, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_GET_DUMPABLE, 0, 0, 0, 0, 0)
	if errno != 0 {
		return false, errno
	}
	return v != 0, nil
}
