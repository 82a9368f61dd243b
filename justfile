# IronClaw tasks. `just` is not in Debian 12: .ci/bootstrap installs it and
# then runs a recipe, e.g. `.ci/bootstrap test` (as root).

set shell := ["bash", "-euo", "pipefail", "-c"]

bindir := env_var_or_default("IRONCLAW_BINDIR", "/opt/ironclaw/bin")
# The Ollama server the model tests run against (tests only; never shipped).
# Test-only servers (Ollama, Dendrite) are built into one directory of their own.
test_bindir := "/opt/ironclaw-test/bin"
ollama_bindir := test_bindir
version := `git describe --always --dirty 2>/dev/null || echo dev`
ldflags := "-s -w -X github.com/ironclaw/ironclaw/daemon.Version=" + version

# List the recipes.
default:
    @just --list

# Build ironclaw and the static agent image (images/out, with its manifest).
build:
    mkdir -p bin
    CGO_ENABLED=0 go build -tags goolm -trimpath -ldflags '{{ldflags}}' -o bin/ironclaw ./cmd/ironclaw
    images/build.sh ./cmd/agentd images/out

# Record the digest of the agentd this source builds (images/agentd.sha256) for a release.
release-pin:
    images/build.sh ./cmd/agentd images/out
    sed -i "s/^[0-9a-f]\{64\}  agentd$/$(sha256sum images/out/agentd | cut -d' ' -f1)  agentd/" images/agentd.sha256
    grep agentd$ images/agentd.sha256

# Install runsc (pinned) and the binaries into {{bindir}}.
setup: build
    .ci/install-runsc.sh {{bindir}}
    install -d -m 0755 -o root -g root {{bindir}}
    install -m 0555 -o root -g root bin/ironclaw {{bindir}}/ironclaw
    install -m 0555 -o root -g root images/out/agentd {{bindir}}/agentd

# Set up, initialise the state directory once, and run the daemon on its defaults.
up: setup
    test -e /var/lib/ironclaw/master.check || {{bindir}}/ironclaw init $(.ci/operator-key)
    exec {{bindir}}/ironclaw serve

# Format, vet, and the whole test suite with the race detector, as root, inside a
# private network namespace (only loopback exists there).
test: check
    .ci/install-runsc.sh {{bindir}}
    .ci/install-ollama.sh {{ollama_bindir}}
    .ci/install-dendrite.sh {{test_bindir}}
    go mod download
    go test -tags goolm -race -count=1 -run '^$' ./... > /dev/null
    unshare -n -- bash -c 'ip link set lo up && IRONCLAW_TEST_OLLAMA={{ollama_bindir}}/ollama GOFLAGS=-mod=mod GOPROXY=off go test -tags goolm -race -count=1 -timeout 20m ./...'

# gofmt and go vet.
check:
    test -z "$(gofmt -l $(git ls-files '*.go'))" || { gofmt -l $(git ls-files '*.go'); echo "run gofmt -w"; exit 1; }
    go vet -tags goolm ./...

# Benchmarks (no race detector) and the slow measurements; prints tables.
bench:
    .ci/install-runsc.sh {{bindir}}
    go test -tags goolm -run '^$' -bench . -benchtime 2s ./daemon/queue/ ./daemon/audit/ ./daemon/keys/ ./policy/ ./daemon/store/ ./daemon/gateway/
    go test -run '^$' -bench DoorbellRoundTrip -benchtime 300x ./daemon/session/
    .ci/install-ollama.sh {{ollama_bindir}}
    IRONCLAW_TEST_OLLAMA={{ollama_bindir}}/ollama go test -run '^$' -bench . -benchtime 50x ./daemon/proxy/
    go test -run '^$' -bench 'ColdStart|SendToReplyCold|IdleMemory' -benchtime 20x ./daemon/containment/
    IRONCLAW_BENCH=1 go test -run 'TestLeaseOverhead' -v ./daemon/session/ | grep -E 'runsc_test|ok'
    IRONCLAW_BENCH=1 go test -run 'TestHundredSandboxes' -v -timeout 20m ./daemon/containment/
    IRONCLAW_BENCH=1 go test -run 'TestWarmTurnOverhead' -v ./daemon/containment/ | grep -E '\||targets|ok'
    IRONCLAW_BENCH=1 go test -run 'TestHostileLoad' -v -timeout 20m ./daemon/containment/ | grep -E 'hostile_test|ok'
    .ci/install-dendrite.sh {{test_bindir}} && IRONCLAW_BENCH=1 unshare -n -- bash -c 'ip link set lo up && go test -tags goolm -run TestMatrixRoundTripBenchmark -v ./daemon/' | grep -E 'matrix round trip|ok'

# Run every fuzz target for a while (default 30s each).
fuzz time="30s":
    #!/usr/bin/env bash
    set -euo pipefail
    for pkg in $(go list ./...); do
      for f in $(go test -tags goolm -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
        echo "== $pkg $f"; go test -tags goolm -run '^$' -fuzz "^$f\$" -fuzztime {{time}} "$pkg"
      done
    done
