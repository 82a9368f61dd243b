//go:build unix

package audit

import (
	"fmt"
	"os"
	"syscall"
)

// openFlags: never follow a symlink planted where the log should be.
const openFlags = syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// lockFile takes an exclusive advisory lock so two processes never append to
// (and so fork) the same chain. Closing the file releases it.
func lockFile(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("audit: %s is in use by another process: %w", f.Name(), err)
	}
	return nil
}
