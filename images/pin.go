// Package images holds what the sandbox image is pinned to, compiled into
// the daemon so that a daemon never trusts a runsc it was not built for, and
// so that an owner can prove their binaries were built from this source:
//
//   - runsc.sha256: the sha256 of the pinned gVisor runsc build (written by
//     .ci/install-runsc.sh's maintainers after a reviewed rebuild);
//   - agentd.sha256: the sha256 of the agentd that images/build.sh builds
//     from this very source (`just release-pin` rewrites it; a test fails
//     when it goes stale).
//
// Both builds are reproducible for the recorded Go toolchain, so anyone can
// rebuild and compare; `ironclaw doctor` compares the installed binaries.
package images

import _ "embed"

// RunscPin is the content of images/runsc.sha256.
//
//go:embed runsc.sha256
var RunscPin []byte

// AgentdPin is the content of images/agentd.sha256.
//
//go:embed agentd.sha256
var AgentdPin []byte

// ReleaseGoVersion is the Go toolchain both recorded digests were built with;
// another toolchain builds other bytes.
const ReleaseGoVersion = "go1.26.8"
