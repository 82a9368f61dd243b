//go:build ironclaw_faults

package matrix

import (
	"os"
	"syscall"
)

// fault kills the daemon with SIGKILL at point p when the crash tests armed
// it: IRONCLAW_TEST_FAULT names the point and IRONCLAW_TEST_FAULT_FILE a
// file that must exist (it is removed first, so the restarted daemon runs
// through). Built only into test binaries (-tags ironclaw_faults).
func fault(p string) {
	if os.Getenv("IRONCLAW_TEST_FAULT") != p {
		return
	}
	if os.Remove(os.Getenv("IRONCLAW_TEST_FAULT_FILE")) != nil {
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}
