#!/usr/bin/env bash
# build.sh [PACKAGE] [OUTDIR] — build the agent binary for the sandbox image, plus its manifest.
#
# The sandbox's rootfs holds exactly one file, /agentd, so the binary must be static (no
# libc, no loader, no interpreter): CGO_ENABLED=0. -trimpath, -buildvcs=false and fixed
# ldflags make the build reproducible for a given Go toolchain, so the manifest's sha256 can
# be pinned and re-derived by anyone.
#
#   PACKAGE  Go package to build, default ./cmd/agentd (tests pass the probe agent)
#   OUTDIR   where agentd and agentd.manifest.json go, default images/out
#
# Output: OUTDIR/agentd and OUTDIR/agentd.manifest.json:
#   {"path":"agentd","sha256":"…","size":N,"go_version":"go1.26.8","package":"./cmd/agentd",
#    "goos":"linux","goarch":"amd64","cgo":false,"trimpath":true,"ldflags":"-s -w"}
# "path" is relative to the manifest's directory.
set -euo pipefail

die() { printf 'images/build.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'images/build.sh: %s\n' "$*"; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg="${1:-./cmd/agentd}"
outdir="${2:-${repo_root}/images/out}"

# The package path goes into JSON below: allow only plain import-path characters.
[[ "$pkg" =~ ^[A-Za-z0-9._/@-]+$ ]] || die "package path ${pkg@Q} has unexpected characters"
command -v go >/dev/null || die "go not found in PATH"

mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
tmp="$(mktemp "${outdir}/.agentd.XXXXXX")"
trap 'rm -f "$tmp" "${outdir}/.agentd.manifest.json.tmp"' EXIT

ldflags='-s -w'
(
	cd "$repo_root"
	CGO_ENABLED=0 GOWORK=off go build -trimpath -buildvcs=false -ldflags="$ldflags" -o "$tmp" "$pkg"
) || die "go build ${pkg} failed (does the package exist yet?)"

# Prove it is static before it can become an image: cgo off in the build info, and, where
# readelf exists, no ELF interpreter.
go version -m "$tmp" | grep -q $'\tbuild\tCGO_ENABLED=0$' || die "${pkg} was not built with CGO_ENABLED=0"
if command -v readelf >/dev/null && readelf -l "$tmp" | grep -q 'INTERP'; then
	die "${pkg} has an ELF interpreter: it is not static"
fi

sha="$(sha256sum "$tmp" | awk '{print $1}')"
size="$(stat -c %s "$tmp")"
gover="$(go env GOVERSION)"
goos="$(go env GOOS)"
goarch="$(go env GOARCH)"

chmod 0555 "$tmp"
mv -f "$tmp" "${outdir}/agentd"
printf '{\n  "path": "agentd",\n  "sha256": "%s",\n  "size": %s,\n  "go_version": "%s",\n  "package": "%s",\n  "goos": "%s",\n  "goarch": "%s",\n  "cgo": false,\n  "trimpath": true,\n  "ldflags": "%s"\n}\n' \
	"$sha" "$size" "$gover" "$pkg" "$goos" "$goarch" "$ldflags" >"${outdir}/.agentd.manifest.json.tmp"
mv -f "${outdir}/.agentd.manifest.json.tmp" "${outdir}/agentd.manifest.json"
log "built ${pkg} -> ${outdir}/agentd (${size} bytes, sha256 ${sha}, ${gover})"
