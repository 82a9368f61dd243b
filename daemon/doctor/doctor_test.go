package doctor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/config"
	"github.com/ironclaw/ironclaw/daemon/keys"
	"github.com/ironclaw/ironclaw/daemon/sandbox"
	"golang.org/x/sys/unix"
)

// fakeOllama speaks the two endpoints doctor uses, with the models given
// (name → capabilities).
func fakeOllama(t *testing.T, models map[string][]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/tags":
			var list []map[string]string
			for n := range models {
				list = append(list, map[string]string{"name": n, "model": n})
			}
			json.NewEncoder(w).Encode(map[string]any{"models": list})
		case "/api/show":
			var req struct{ Model string }
			json.NewDecoder(r.Body).Decode(&req)
			caps, ok := models[req.Model]
			if !ok {
				caps, ok = models[req.Model+":latest"]
			}
			if !ok {
				http.Error(w, `{"error":"model not found"}`, http.StatusNotFound)
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"capabilities": caps})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func goodCgroups() (*sandbox.CgroupHost, error) {
	return &sandbox.CgroupHost{Hierarchies: []sandbox.Hierarchy{{Mount: "/sys/fs/cgroup", V2: true, Controllers: []string{"cpu", "memory", "pids"}}}}, nil
}

// machine is a fake installation: a private state dir initialised with a
// key file elsewhere, an agentd file and its digest.
type machine struct {
	opt   Options
	state string
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	base, err := os.MkdirTemp("", "icdoc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	state := filepath.Join(base, "state")
	cfg := config.Default()
	cfg.StateDir, cfg.RuntimeDir = state, filepath.Join(base, "run")
	cfg.Keys.KeyFile = filepath.Join(base, "etc", "master.key")
	os.MkdirAll(filepath.Dir(cfg.Keys.KeyFile), 0o700)
	os.Mkdir(state, 0o700)
	m, err := keys.Init(keys.Source{Custody: keys.CustodyKeyFile, StateDir: state, KeyFile: cfg.Keys.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	m.Destroy()
	agent := filepath.Join(base, "agentd")
	os.WriteFile(agent, []byte("an agent binary"), 0o555)
	sum := sha256.Sum256([]byte("an agent binary"))
	cfg.Sandbox.AgentBinary = agent
	os.WriteFile(filepath.Join(state, "agentd.digest"), []byte("sha256:"+hex.EncodeToString(sum[:])+"\n"), 0o600)
	cfg.Model.OllamaURL = fakeOllama(t, map[string][]string{"tiny:latest": {"completion", "tools"}})
	cfg.Model.Default = "tiny"
	return &machine{state: state, opt: Options{
		Config: cfg, UID: os.Geteuid(), Cgroups: goodCgroups,
		RunscDigest: "00" + strings.Repeat("11", 31), AgentdDigest: hex.EncodeToString(sum[:]),
		NoSandboxStart: true,
	}}
}

func find(t *testing.T, r Report, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

func expect(t *testing.T, r Report, name string, want Status) Check {
	t.Helper()
	c := find(t, r, name)
	if c.Status != want {
		t.Fatalf("%s: status %s, want %s (%s)", name, c.Status, want, c.Detail)
	}
	if (want == Fail || want == Warn) && c.Remedy == "" {
		t.Fatalf("%s: %s without a remedy", name, want)
	}
	return c
}

func TestChecksPassOnAGoodMachine(t *testing.T) {
	m := newMachine(t)
	r := Run(context.Background(), m.opt)
	for _, n := range []string{"cgroups", "cgroups.memory", "cgroups.cpu", "cgroups.pids", "agentd", "agentd.release", "agentd.pin", "state_dir", "runtime_dir", "ollama", "ollama.model", "outbox.fs"} {
		expect(t, r, n, OK)
	}
	// The key file here is on the state's filesystem: a warning, not broken.
	expect(t, r, "keys.custody", Warn)
	// runsc is absent or not the fake pin here.
	expect(t, r, "runsc", Fail)
	var text, js bytes.Buffer
	r.Text(&text)
	r.JSON(&js)
	if !strings.Contains(text.String(), "fix: .ci/install-runsc.sh") {
		t.Fatalf("text report lacks the runsc remedy:\n%s", text.String())
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Checks) != len(r.Checks) || !back.Broken {
		t.Fatalf("json round trip: %v %+v", err, back)
	}
}

func TestRunscMissingAndWrongDigest(t *testing.T) {
	m := newMachine(t)
	m.opt.Config.Sandbox.Runsc = "/nonexistent/runsc"
	r := Run(context.Background(), m.opt)
	c := expect(t, r, "runsc", Fail)
	if !r.Broken || !strings.Contains(c.Remedy, ".ci/install-runsc.sh /nonexistent") {
		t.Fatalf("missing runsc: broken=%v %+v", r.Broken, c)
	}
	if find(t, r, "sandbox.start").Status != Skip {
		t.Fatal("sandbox start attempted without runsc")
	}
	if os.Geteuid() != 0 {
		t.Skip("the real runsc's checks need root")
	}
	if _, err := os.Stat(config.Default().Sandbox.Runsc); err != nil {
		t.Skip("runsc not installed: .ci/install-runsc.sh")
	}
	m.opt.Config.Sandbox.Runsc = config.Default().Sandbox.Runsc
	r = Run(context.Background(), m.opt) // RunscDigest is a fake pin: wrong digest
	if c := expect(t, r, "runsc", Fail); !strings.Contains(c.Detail, "sha256") {
		t.Fatalf("wrong digest: %+v", c)
	}
	m.opt.RunscDigest = realRunscDigest(t)
	r = Run(context.Background(), m.opt)
	expect(t, r, "runsc", OK)
	expect(t, r, "runsc.release", OK)
	m.opt.Config.Sandbox.RunscDigest = strings.Repeat("ab", 32)
	r = Run(context.Background(), m.opt)
	expect(t, r, "runsc", Fail) // the config pins another build than the one installed
}

func realRunscDigest(t *testing.T) string {
	b, err := os.ReadFile(config.Default().Sandbox.Runsc)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestAgentdDigest(t *testing.T) {
	m := newMachine(t)
	m.opt.AgentdDigest = strings.Repeat("cd", 32)
	r := Run(context.Background(), m.opt)
	if c := expect(t, r, "agentd.release", Fail); !strings.Contains(c.Detail, "not built from this source") {
		t.Fatalf("%+v", c)
	}
	os.WriteFile(filepath.Join(m.state, "agentd.digest"), []byte("sha256:"+strings.Repeat("ef", 32)+"\n"), 0o600)
	r = Run(context.Background(), m.opt)
	expect(t, r, "agentd.pin", Warn)
	os.Remove(m.opt.Config.Sandbox.AgentBinary)
	r = Run(context.Background(), m.opt)
	if expect(t, r, "agentd", Fail); !r.Broken {
		t.Fatal("missing agentd is not broken")
	}
}

func TestStateDir(t *testing.T) {
	m := newMachine(t)
	os.Chmod(m.state, 0o777)
	r := Run(context.Background(), m.opt)
	if c := expect(t, r, "state_dir", Fail); c.Remedy != "chmod go-w "+m.state || !r.Broken {
		t.Fatalf("world-writable state dir: %+v", c)
	}
	// Readable by others: serve starts, doctor warns.
	os.Chmod(m.state, 0o755)
	if c := expect(t, Run(context.Background(), m.opt), "state_dir", Warn); c.Remedy != "chmod 700 "+m.state {
		t.Fatalf("group-readable state dir: %+v", c)
	}
	os.Chmod(m.state, 0o700)
	os.Remove(filepath.Join(m.state, keys.CheckFileName))
	r = Run(context.Background(), m.opt)
	if c := expect(t, r, "state_dir", Fail); !strings.Contains(c.Remedy, "ironclaw init") {
		t.Fatalf("uninitialised: %+v", c)
	}
	m.opt.Config.StateDir = filepath.Join(m.state, "nope")
	expect(t, Run(context.Background(), m.opt), "state_dir", Fail)

	os.Mkdir(m.opt.Config.RuntimeDir, 0o700)
	os.Chmod(m.opt.Config.RuntimeDir, 0o777)
	if c := expect(t, Run(context.Background(), m.opt), "runtime_dir", Fail); c.Remedy != "chmod go-w "+m.opt.Config.RuntimeDir {
		t.Fatalf("world-writable runtime dir: %+v", c)
	}
	link := m.opt.Config.RuntimeDir + "l"
	os.Symlink(m.state, link)
	m.opt.Config.RuntimeDir = link
	expect(t, Run(context.Background(), m.opt), "runtime_dir", Fail)
}

func TestOllama(t *testing.T) {
	m := newMachine(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + l.Addr().String()
	l.Close()
	m.opt.Config.Model.OllamaURL = closed
	r := Run(context.Background(), m.opt)
	if c := expect(t, r, "ollama", Fail); !strings.Contains(c.Remedy, "ollama serve") || !r.Broken {
		t.Fatalf("unreachable: %+v", c)
	}
	m.opt.Config.Model.OllamaURL = fakeOllama(t, map[string][]string{"other:latest": {"completion", "tools"}})
	r = Run(context.Background(), m.opt)
	expect(t, r, "ollama", OK)
	if c := expect(t, r, "ollama.model", Fail); c.Remedy != "ollama pull tiny  (or `ollama create tiny -f Modelfile`), or set model.default to one of `ollama list`" {
		t.Fatalf("missing model: %+v", c)
	}
	m.opt.Config.Model.OllamaURL = fakeOllama(t, map[string][]string{"tiny:latest": {"completion"}})
	if c := expect(t, Run(context.Background(), m.opt), "ollama.model", Fail); !strings.Contains(c.Detail, "cannot call tools") {
		t.Fatalf("no tools: %+v", c)
	}
	// Something that is not Ollama on that port.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }))
	defer srv.Close()
	m.opt.Config.Model.OllamaURL = srv.URL
	if c := expect(t, Run(context.Background(), m.opt), "ollama", Fail); !strings.Contains(c.Detail, "not the expected API") {
		t.Fatalf("not ollama: %+v", c)
	}
}

func TestCgroupsMissing(t *testing.T) {
	m := newMachine(t)
	m.opt.Cgroups = func() (*sandbox.CgroupHost, error) { return &sandbox.CgroupHost{}, nil }
	r := Run(context.Background(), m.opt)
	expect(t, r, "cgroups", Fail)
	expect(t, r, "cgroups.memory", Fail)
	expect(t, r, "cgroups.pids", Warn)
	m.opt.Cgroups = func() (*sandbox.CgroupHost, error) {
		return &sandbox.CgroupHost{Hierarchies: []sandbox.Hierarchy{{Mount: "/sys/fs/cgroup", V2: true, Controllers: []string{"cpu", "pids"}}}}, nil
	}
	r = Run(context.Background(), m.opt)
	if c := expect(t, r, "cgroups.memory", Fail); !strings.Contains(c.Remedy, "cgroup.controllers") || !r.Broken {
		t.Fatalf("%+v", c)
	}
	expect(t, r, "cgroups.cpu", OK)
}

// tmpfsAt mounts a small tmpfs (root only): a filesystem of its own, and a
// nearly full one.
func tmpfsAt(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

func TestSameFilesystemAndFree(t *testing.T) {
	d := t.TempDir()
	if same, err := sameFilesystem(d, filepath.Dir(d)); err != nil || !same {
		t.Fatalf("same fs: %v %v", same, err)
	}
	if diff, err := sameFilesystem(d, "/proc"); err != nil || diff {
		t.Fatalf("/proc on a temp dir's filesystem: %v %v", diff, err)
	}
	if avail, total, err := freeSpace(d); err != nil || total == 0 || avail > total {
		t.Fatalf("free: %d %d %v", avail, total, err)
	}
}

func TestDiskAndCustody(t *testing.T) {
	m := newMachine(t)
	expect(t, Run(context.Background(), m.opt), "disk", OK)
	m.opt.Config.Keys.Custody = config.CustodyPassphrase
	expect(t, Run(context.Background(), m.opt), "keys.custody", OK)
	m.opt.Config.Keys.Custody = config.CustodySystemdCredential
	t.Setenv("CREDENTIALS_DIRECTORY", t.TempDir())
	if c := expect(t, Run(context.Background(), m.opt), "keys.custody", Fail); !strings.Contains(c.Remedy, "LoadCredential=") {
		t.Fatalf("%+v", c)
	}
	m.opt.Config.Keys.Custody = config.CustodyKeyFile
	os.Chmod(m.opt.Config.Keys.KeyFile, 0o644)
	expect(t, Run(context.Background(), m.opt), "keys.custody", Fail)
	os.Chmod(m.opt.Config.Keys.KeyFile, 0o600)

	// A key file on another filesystem than the state: no warning.
	keyDir := filepath.Dir(m.opt.Config.Keys.KeyFile)
	key, _ := os.ReadFile(m.opt.Config.Keys.KeyFile)
	tmpfsAt(t, keyDir, "1m")
	os.WriteFile(m.opt.Config.Keys.KeyFile, key, 0o600)
	expect(t, Run(context.Background(), m.opt), "keys.custody", OK)

	// A state directory on a nearly full filesystem.
	tmpfsAt(t, m.state, "8m")
	r := Run(context.Background(), m.opt)
	if c := expect(t, r, "disk", Fail); !r.Broken {
		t.Fatalf("%+v", c)
	}
}

// TestSandboxStart starts the real thing: runsc with the daemon's flags and a
// real agentd, which exits at once for want of a key.
func TestSandboxStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runsc needs root")
	}
	runsc := config.Default().Sandbox.Runsc
	if _, err := os.Stat(runsc); err != nil {
		t.Skip("runsc not installed: .ci/install-runsc.sh")
	}
	m := newMachine(t)
	agent := filepath.Join(t.TempDir(), "agentd")
	build := exec.Command("go", "build", "-trimpath", "-o", agent, "github.com/ironclaw/ironclaw/cmd/agentd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agentd: %v\n%s", err, out)
	}
	m.opt.Config.Sandbox.AgentBinary = agent
	m.opt.RunscDigest = realRunscDigest(t)
	m.opt.NoSandboxStart = false
	r := Run(context.Background(), m.opt)
	c := expect(t, r, "sandbox.start", OK)
	t.Log(c.Detail)

	// A binary that cannot run in the sandbox (a script: there is no shell).
	os.WriteFile(agent, []byte("#!/bin/sh\necho hi\n"), 0o555)
	r = Run(context.Background(), m.opt)
	if c := expect(t, r, "sandbox.start", Fail); !r.Broken {
		t.Fatalf("%+v", c)
	}
	if dirs, _ := sandbox.CgroupDirs(sandbox.IDPrefix + strings.Repeat("0", 32)); len(dirs) != 0 {
		t.Fatal("unexpected cgroups")
	}
}

func TestOutboxFS(t *testing.T) {
	if c := checkOutboxFS(); c.Status != OK {
		t.Skipf("this machine lacks them: %+v", c)
	}
	saved := loopControl
	loopControl = "/nonexistent/loop-control"
	c := checkOutboxFS()
	loopControl = saved
	if c.Status != Fail || !strings.Contains(c.Remedy, "modprobe loop") {
		t.Fatalf("%+v", c)
	}
	savedDirs := outboxToolDir
	outboxToolDir = []string{t.TempDir()}
	c = checkOutboxFS()
	outboxToolDir = savedDirs
	if c.Status != Fail || c.Remedy != "apt-get install e2fsprogs" {
		t.Fatalf("%+v", c)
	}
}

// fakeHomeserver answers /versions and /whoami for one token.
func fakeHomeserver(t *testing.T, token, user string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_matrix/client/versions":
			w.Write([]byte(`{"versions":["v1.1","v1.11"]}`))
		case "/_matrix/client/v3/account/whoami":
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN"}`))
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"user_id": user})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestMatrix(t *testing.T) {
	m := newMachine(t)
	if r := Run(context.Background(), m.opt); slices.ContainsFunc(r.Checks, func(c Check) bool { return strings.HasPrefix(c.Name, "matrix") }) {
		t.Fatal("matrix checked without [matrix]")
	}
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("syt_good\n"), 0o600)
	mx := &m.opt.Config.Matrix
	mx.Homeserver, mx.UserID, mx.AccessTokenFile = fakeHomeserver(t, "syt_good", "@bot:localhost"), "@bot:localhost", tok
	r := Run(context.Background(), m.opt)
	expect(t, r, "matrix", OK)
	expect(t, r, "matrix.login", OK)

	mx.UserID = "@other:localhost"
	if c := expect(t, Run(context.Background(), m.opt), "matrix.login", Fail); !strings.Contains(c.Detail, "belongs to @bot:localhost") {
		t.Fatalf("%+v", c)
	}
	mx.UserID = "@bot:localhost"
	os.WriteFile(tok, []byte("syt_revoked\n"), 0o600)
	if c := expect(t, Run(context.Background(), m.opt), "matrix.login", Fail); !strings.Contains(c.Remedy, "ironclaw matrix login") {
		t.Fatalf("%+v", c)
	}
	os.Chmod(tok, 0o644)
	expect(t, Run(context.Background(), m.opt), "matrix.login", Fail)

	// A password file: checked for presence and mode, never sent.
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("hunter2hunter2\n"), 0o600)
	mx.AccessTokenFile, mx.PasswordFile = "", pw
	expect(t, Run(context.Background(), m.opt), "matrix.login", OK)

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	mx.Homeserver = "http://" + l.Addr().String()
	l.Close()
	r = Run(context.Background(), m.opt)
	if expect(t, r, "matrix", Fail); !r.Broken {
		t.Fatal("an unreachable configured homeserver is not broken")
	}
}

func TestTailnet(t *testing.T) {
	m := newMachine(t)
	if r := Run(context.Background(), m.opt); slices.ContainsFunc(r.Checks, func(c Check) bool { return c.Name == "tailnet" }) {
		t.Fatal("tailnet checked with the console on loopback")
	}
	m.opt.Config.Console.Tailnet = true
	if c := expect(t, Run(context.Background(), m.opt), "tailnet", Fail); !strings.Contains(c.Remedy, "tailnet_auth_key_file") {
		t.Fatalf("%+v", c)
	}
	key := filepath.Join(t.TempDir(), "authkey")
	os.WriteFile(key, []byte("tskey-auth-x\n"), 0o644)
	m.opt.Config.Console.TailnetAuthKeyFile = key
	expect(t, Run(context.Background(), m.opt), "tailnet", Fail) // readable by others
	os.Chmod(key, 0o600)
	expect(t, Run(context.Background(), m.opt), "tailnet", OK)
	m.opt.Config.Console.TailnetAuthKeyFile = ""
	os.MkdirAll(filepath.Join(m.state, "tailnet"), 0o700)
	os.WriteFile(filepath.Join(m.state, "tailnet", tailnetStateFile), []byte("{}"), 0o600)
	if c := expect(t, Run(context.Background(), m.opt), "tailnet", OK); !strings.Contains(c.Detail, "joined before") {
		t.Fatalf("%+v", c)
	}
}
