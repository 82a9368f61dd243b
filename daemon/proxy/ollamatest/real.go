package ollamatest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TinyModel is the name StartReal serves the tiny model under.
const TinyModel = "ironclaw-tiny"

// DefaultOllamaBinary is where .ci/install-ollama.sh installs the server.
const DefaultOllamaBinary = "/opt/ironclaw-test/bin/ollama"

// EnvOllamaBinary names another Ollama binary. When it is set (the justfile
// sets it), a missing binary fails the test instead of skipping it.
const EnvOllamaBinary = "IRONCLAW_TEST_OLLAMA"

// tinyModelfile makes the tiny GGUF a chat model: a template over the
// messages (without tools, so a call offering tools is answered "does not
// support tools", as a real model without tool support is), and short
// defaults. One thread: on a busy two-core machine llama.cpp's spinning
// worker threads made each token cost ~75 ms instead of well under one.
const tinyModelfile = `FROM ./tiny.gguf
TEMPLATE """{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}
{{ end }}<|assistant|>"""
PARAMETER num_ctx 512
PARAMETER num_predict 16
PARAMETER num_thread 1
PARAMETER stop "<|"
`

// Real is a running Ollama server serving TinyModel.
type Real struct {
	// URL is the server's base URL.
	URL string
	// Binary is the ollama executable.
	Binary string
	cmd    *exec.Cmd
	done   chan struct{}
	logs   *lockedBuffer
}

// OllamaBinary returns the Ollama binary tests use, skipping t when it is
// not installed (failing instead when EnvOllamaBinary names it).
func OllamaBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvOllamaBinary)
	required := bin != ""
	if bin == "" {
		bin = DefaultOllamaBinary
	}
	if _, err := os.Stat(bin); err != nil {
		if required {
			t.Fatalf("%s=%s: %v (install it with .ci/install-ollama.sh)", EnvOllamaBinary, bin, err)
		}
		t.Skipf("no Ollama server at %s: run .ci/install-ollama.sh (or `just test`, which does)", bin)
	}
	return bin
}

// StartReal starts the real Ollama server on a free loopback port with its
// models in a temporary directory, writes the tiny model and creates it as
// TinyModel. The server stops when t ends.
func StartReal(t testing.TB) *Real {
	t.Helper()
	bin := OllamaBinary(t)
	dir := t.TempDir()
	if err := WriteTinyGGUF(filepath.Join(dir, "tiny.gguf")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Modelfile"), []byte(tinyModelfile), 0o600); err != nil {
		t.Fatal(err)
	}
	host := freeAddr(t)
	env := []string{
		"OLLAMA_HOST=" + host,
		"OLLAMA_MODELS=" + filepath.Join(dir, "models"),
		"HOME=" + dir, // its key pair and history go here, not in the user's home
		"OLLAMA_NUM_PARALLEL=2",
		"OLLAMA_MAX_LOADED_MODELS=1",
		"OLLAMA_NOPRUNE=1",
		"PATH=/usr/bin:/bin",
	}
	r := &Real{URL: "http://" + host, Binary: bin, done: make(chan struct{}), logs: &lockedBuffer{}}
	r.cmd = exec.Command(bin, "serve")
	r.cmd.Env = env
	r.cmd.Dir = dir
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting %s serve: %v", bin, err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(r.stop)
	if err := r.waitReady(30 * time.Second); err != nil {
		t.Fatalf("ollama serve: %v\n%s", err, r.logs.String())
	}
	create := exec.Command(bin, "create", TinyModel, "-f", filepath.Join(dir, "Modelfile"))
	create.Env, create.Dir = env, dir
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("ollama create: %v\n%s", err, out)
	}
	return r
}

func (r *Real) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return fmt.Errorf("exited early")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/api/version", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v", limit)
}

// Stop stops the server (tests of "upstream down" call it early).
func (r *Real) Stop() { r.stop() }

func (r *Real) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	// The runner it spawns is in its process group.
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
}

// Logs returns what the server printed (for a failing test's message).
func (r *Real) Logs() string { return r.logs.String() }

// lockedBuffer collects the server's output while tests may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
