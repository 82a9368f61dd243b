// Package images holds what the sandbox image is pinned to, compiled into
// the daemon so that a daemon never trusts a runsc it was not built for:
// the sha256 of the pinned gVisor runsc build (runsc.sha256, written by
// .ci/install-runsc.sh's maintainers after a reviewed rebuild).
package images

import _ "embed"

// RunscPin is the content of images/runsc.sha256.
//
//go:embed runsc.sha256
var RunscPin []byte
