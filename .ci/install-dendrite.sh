#!/usr/bin/env bash
# install-dendrite.sh [BINDIR] — install the Matrix homeserver the daemon/matrix tests run against.
#
# Dendrite v0.13.8 (dendrite, create-account, generate-keys) built from the Go module proxy with
# cgo (its SQLite driver needs it; ~80 s cold). It is test tooling only: IronClaw never links or
# runs it in production, and it is never added to IronClaw's go.mod (the build runs from a
# temporary directory outside the module).
#
# Idempotent: if BINDIR holds all three binaries and BINDIR/dendrite.version names the pinned
# version, nothing is done. Default BINDIR is /opt/ironclaw-test/bin; the tests look there (or
# at $IRONCLAW_DENDRITE_BIN) and skip with a hint when it is missing.
set -euo pipefail

DENDRITE_MODULE="github.com/matrix-org/dendrite"
DENDRITE_VERSION="v0.13.8"

bindir="${1:-/opt/ironclaw-test/bin}"
stamp="${bindir}/dendrite.version"

log() { printf 'install-dendrite: %s\n' "$*"; }
die() { printf 'install-dendrite: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go not found in PATH; install Go 1.26+ first"
command -v gcc >/dev/null || die "gcc not found: Dendrite's SQLite driver needs cgo (apt-get install gcc)"

if [[ -x "$bindir/dendrite" && -x "$bindir/create-account" && -x "$bindir/generate-keys" &&
	"$(cat "$stamp" 2>/dev/null)" == "$DENDRITE_VERSION" ]]; then
	log "${bindir}/dendrite already at ${DENDRITE_VERSION}; nothing to do"
	exit 0
fi

install -d -m 0755 "$bindir"
work="$(mktemp -d /tmp/install-dendrite.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

log "building ${DENDRITE_MODULE}@${DENDRITE_VERSION} (about 80 s cold)"
start=$(date +%s)
(
	cd "$work"
	GOBIN="$work/bin" CGO_ENABLED=1 GOFLAGS=-mod=mod GO111MODULE=on GOWORK=off \
		go install -trimpath \
		"${DENDRITE_MODULE}/cmd/dendrite@${DENDRITE_VERSION}" \
		"${DENDRITE_MODULE}/cmd/create-account@${DENDRITE_VERSION}" \
		"${DENDRITE_MODULE}/cmd/generate-keys@${DENDRITE_VERSION}"
)
for b in dendrite create-account generate-keys; do
	[[ -f "$work/bin/$b" ]] || die "go install finished but produced no $b"
	install -m 0755 "$work/bin/$b" "$bindir/$b.new"
	mv -f "$bindir/$b.new" "$bindir/$b"
done
printf '%s\n' "$DENDRITE_VERSION" >"$stamp.new"
mv -f "$stamp.new" "$stamp"
log "installed dendrite ${DENDRITE_VERSION} into ${bindir} in $(( $(date +%s) - start ))s"
