//go:build !unix

package audit

import "os"

const openFlags = 0

// lockFile is a no-op where flock is unavailable; IronClaw's daemon runs on
// Linux, this only keeps the package building elsewhere.
func lockFile(*os.File) error { return nil }
