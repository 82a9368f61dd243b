#!/usr/bin/env bash
# install-ollama.sh [BINDIR] — build the pinned Ollama server that IronClaw's model tests run
# against (default BINDIR /opt/ironclaw-test/bin). Tests only: IronClaw never ships or runs
# Ollama itself; users point it at their own server (docs/proxy.md).
#
# Why build it: no weights can be downloaded on the test machines, but the real server with a
# tiny model the tests write themselves (daemon/proxy/ollamatest) proves the real path:
# streaming, errors, unknown models, refused endpoints.
#
# `go install github.com/ollama/ollama@v0.17.4` alone fails: module zips drop vendor/, and
# llama.cpp needs three vendored headers. Two come from Debian (nlohmann-json3-dev,
# libstb-dev); miniaudio.h comes from the Go module github.com/gen2brain/malgo@v0.11.24.
# About 3.5 min cold on 2 cores, seconds with a warm build cache.
#
# Idempotent: if BINDIR/ollama exists and reports the pinned version, nothing is done.
set -euo pipefail

OLLAMA_MODULE="github.com/ollama/ollama"
OLLAMA_VERSION="v0.17.4"
MALGO="github.com/gen2brain/malgo@v0.11.24"

bindir="${1:-/opt/ironclaw-test/bin}"
target="${bindir}/ollama"

log() { printf 'install-ollama: %s\n' "$*"; }
die() { printf 'install-ollama: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go not found in PATH; install Go 1.26+ first"

if [[ -x "$target" ]] && "$target" --version 2>/dev/null | grep -q "${OLLAMA_VERSION#v}\$"; then
	log "${target} already installed at ${OLLAMA_VERSION}; nothing to do"
	exit 0
fi

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
[[ -f /usr/include/nlohmann/json.hpp ]] || need+=(nlohmann-json3-dev)
[[ -f /usr/include/stb/stb_image.h ]] || need+=(libstb-dev)
if ((${#need[@]})); then
	[[ "$(id -u)" -eq 0 ]] || die "missing ${need[*]}: run as root or install them with apt"
	log "installing ${need[*]} with apt"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

install -d -m 0755 "$bindir"
work="$(mktemp -d /tmp/install-ollama.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/inc/miniaudio"

# cd out of any module so Ollama's graph never touches IronClaw's go.mod/go.sum.
cd "$work"
malgo_dir="$(GOFLAGS=-mod=mod GO111MODULE=on GOWORK=off go mod download -json "$MALGO" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -f "$malgo_dir/miniaudio.h" ]] || die "miniaudio.h not found in ${MALGO} (${malgo_dir})"
cp "$malgo_dir/miniaudio.h" "$work/inc/miniaudio/miniaudio.h"

log "building ${OLLAMA_MODULE}@${OLLAMA_VERSION} (about 3.5 min cold)"
start=$(date +%s)
GOBIN="$work/bin" CGO_ENABLED=1 CGO_CPPFLAGS="-I$work/inc" GOFLAGS=-mod=mod GO111MODULE=on GOWORK=off \
	go install -trimpath -buildvcs=false \
	-ldflags="-s -w -X github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v}" \
	"${OLLAMA_MODULE}@${OLLAMA_VERSION}"
[[ -f "$work/bin/ollama" ]] || die "go install finished but produced no ollama binary"
log "built in $(( $(date +%s) - start ))s"

install -m 0755 "$work/bin/ollama" "${target}.new"
mv -f "${target}.new" "$target"
"$target" --version >/dev/null 2>&1 || die "${target} --version failed after install"
log "installed ${target} (${OLLAMA_VERSION})"
