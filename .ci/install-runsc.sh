#!/usr/bin/env bash
# install-runsc.sh [BINDIR] — install the pinned gVisor runsc that IronClaw sandboxes run on.
#
# Why build it: Debian's runsc package is from 2022 and misses years of sandbox fixes. A
# current gVisor builds from the Go module proxy in about a minute. The version is pinned
# here and the resulting binary's sha256 is pinned in images/runsc.sha256; the daemon
# refuses a runsc whose digest differs (daemon/sandbox Runsc.Check).
#
# gVisor is never added to IronClaw's go.mod: the install runs from a temporary directory
# outside the module, so it resolves its own dependency graph.
#
# Idempotent: if BINDIR/runsc exists and its sha256 matches the pinned digest, nothing is
# done. Default BINDIR is /opt/ironclaw/bin (root-owned; runsc must not be writable by
# anyone but root, or the sandbox is only as strong as that user).
set -euo pipefail

RUNSC_MODULE="gvisor.dev/gvisor/runsc"
RUNSC_VERSION="v0.0.0-20260905035102-160fafc42237"

bindir="${1:-/opt/ironclaw/bin}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pin_file="${repo_root}/images/runsc.sha256"
target="${bindir}/runsc"

log() { printf 'install-runsc: %s\n' "$*"; }
die() { printf 'install-runsc: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go not found in PATH; install Go 1.26+ first"
command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"

# The pinned digest: first field of the first non-comment line of images/runsc.sha256.
want=""
if [[ -f "$pin_file" ]]; then
	want="$(grep -v '^[[:space:]]*#' "$pin_file" | awk 'NF {print $1; exit}')"
fi
if [[ -z "$want" ]]; then
	log "warning: no pinned digest in ${pin_file}; the built binary will not be verified against a pin"
fi

if [[ -f "$target" && -n "$want" ]]; then
	have="$(sha256sum "$target" | awk '{print $1}')"
	if [[ "$have" == "$want" ]]; then
		log "${target} already installed at ${RUNSC_VERSION} (sha256 ${have}); nothing to do"
		exit 0
	fi
	log "${target} has sha256 ${have}, want ${want}: rebuilding"
fi

[[ "$(id -u)" -eq 0 ]] || die "run as root: the binary must be root-owned (sudo $0 ${1:-})"
install -d -m 0755 -o root -g root "$bindir"

# Build into a private temp dir, verify, then move into place atomically so a half-written
# or unverified binary never sits at the path the daemon executes.
work="$(mktemp -d /tmp/install-runsc.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

log "building ${RUNSC_MODULE}@${RUNSC_VERSION} (about a minute cold)"
start=$(date +%s)
# cd out of any module so gVisor's graph never touches IronClaw's go.mod/go.sum.
# -trimpath and -buildvcs=false keep paths and VCS stamps out, so the digest is stable.
(
	cd "$work"
	GOBIN="$work/bin" CGO_ENABLED=0 GOFLAGS=-mod=mod GO111MODULE=on GOWORK=off \
		go install -trimpath -buildvcs=false -ldflags='-s -w' "${RUNSC_MODULE}@${RUNSC_VERSION}"
)
built="$work/bin/runsc"
[[ -f "$built" ]] || die "go install finished but produced no ${built}"
got="$(sha256sum "$built" | awk '{print $1}')"
log "built in $(( $(date +%s) - start ))s, sha256 ${got}"

if [[ -n "$want" && "$got" != "$want" ]]; then
	die "built runsc has sha256 ${got} but images/runsc.sha256 pins ${want}.
  The build is expected to be reproducible for the same Go toolchain ($(go env GOVERSION)).
  If you changed Go or the pinned version on purpose, update images/runsc.sha256 (review it!);
  otherwise treat this as a supply-chain alarm and do not install."
fi

install -m 0755 -o root -g root "$built" "${target}.new"
mv -f "${target}.new" "$target"
# Record what was installed, for operators and for Runsc.Check when no pin is configured.
printf '%s  runsc\n' "$got" >"${bindir}/runsc.sha256.new"
chmod 0644 "${bindir}/runsc.sha256.new"
mv -f "${bindir}/runsc.sha256.new" "${bindir}/runsc.sha256"

"$target" --version >/dev/null 2>&1 || die "${target} --version failed after install"
log "installed ${target} (${RUNSC_VERSION}, sha256 ${got})"
