package admin

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const clientEnv = "IRONCLAW_TEST_ADMIN_CLIENT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(clientEnv); sock != "" {
		// Child: ask the daemon, as whatever user we were started as.
		err := NewClient(sock).Do(context.Background(), "GET", "/v1/ping", nil, nil)
		if err != nil {
			os.Stdout.WriteString("refused: " + err.Error())
			os.Exit(1)
		}
		os.Stdout.WriteString("allowed")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serve(t *testing.T) string {
	dir, err := os.MkdirTemp("/tmp", "icadm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		p, _ := PeerFrom(r.Context())
		Reply(w, map[string]string{"actor": p.Actor()})
	})
	s, err := Listen(sock, mux)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return sock
}

func asUser(t *testing.T, sock string, uid uint32) (string, error) {
	// The test binary sits in a root-only build directory: copy it where
	// the other user can run it.
	self := filepath.Join(filepath.Dir(sock), "client")
	if _, err := os.Stat(self); err != nil {
		data, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(self, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+sock)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	out, err := cmd.Output()
	return string(out), err
}

// Root gets in; another local user is refused twice over: by the socket's
// 0600 mode, and — with the mode opened up — by the peer-credential check.
func TestOnlyRootOrDaemonUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test switches users and must run as root (CI does)")
	}
	sock := serve(t)
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %o, want 600", fi.Mode().Perm())
	}
	if out, err := asUser(t, sock, 0); err != nil || out != "allowed" {
		t.Fatalf("root: %v %s", err, out)
	}
	os.Chmod(filepath.Dir(sock), 0o755)
	if out, err := asUser(t, sock, 65534); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("nobody through a 0600 socket: %v %s", err, out)
	}
	os.Chmod(sock, 0o666) // only the peer check is left
	if out, err := asUser(t, sock, 65534); err == nil || !strings.Contains(out, "only root") {
		t.Fatalf("nobody with the socket open: %v %s", err, out)
	}
}

func TestActorIsThePeer(t *testing.T) {
	sock := serve(t)
	var got map[string]string
	if err := NewClient(sock).Do(context.Background(), "GET", "/v1/ping", nil, &got); err != nil {
		t.Fatal(err)
	}
	if got["actor"] != "operator:local:root" {
		t.Fatalf("actor %q", got["actor"])
	}
}
