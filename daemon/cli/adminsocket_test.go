package cli

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon"
	"github.com/ironclaw/ironclaw/daemon/admin"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/tui/tuitest"
)

// serveFake serves d's api on dir's admin socket until the test ends.
func serveFake(t *testing.T, dir string, d *tuitest.Daemon) {
	mux := http.NewServeMux()
	admin.Routes(mux, func(p admin.Peer) api.Operator { return d.Operator(p.Actor()) })
	s, err := admin.Listen(filepath.Join(dir, daemon.AdminSocket), mux)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
}

// `status` says what the model server answered, with its hint, sanitised.
func TestStatusShowsModelHealth(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "iccli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := tuitest.NewDaemon()
	d.SetModelHealth("unreachable", "no Ollama server answers at http://127.0.0.1:11434\x1b[2J: start it (`ollama serve`)")
	serveFake(t, dir, d)
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"--runtime-dir", dir, "status"}, strings.NewReader(""), &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), ": unreachable\n") || !strings.Contains(out.String(), "`ollama serve`") || strings.Contains(out.String(), "\x1b") {
		t.Fatalf("%d %q %q", code, out.String(), errOut.String())
	}
}

// `sessions transcript` shows the kept conversation, sanitised, over the
// admin socket; the read is audited as the socket's peer; and when the
// audit cannot be written it prints no turn and fails.
func TestSessionsTranscript(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "iccli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const id = "0123456789abcdef0123456789abcdef"
	d := tuitest.NewDaemon()
	d.AddSession(api.Session{ID: id, Binding: "console:local", State: "active"})
	d.SetTranscript(id, api.Turn{Seq: 1, Role: "user", Text: "hello"},
		api.Turn{Seq: 2, Role: "assistant", Text: "hi\x1b]0;PWNED\a\x1b[2J \u202eevil"})
	serveFake(t, dir, d)
	run := func() (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), []string{"--runtime-dir", dir, "sessions", "transcript", id}, strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := run()
	if code != 0 || !strings.Contains(out, "--- 1 user ---\nhello") || !strings.Contains(errOut, "audit log") {
		t.Fatalf("%d %q %q", code, out, errOut)
	}
	if strings.ContainsAny(out, "\x1b\a\u202e") || !strings.Contains(out, `\x1b]0;PWNED\x07\x1b[2J \u202eevil`) {
		t.Fatalf("the agent's text was not sanitised: %q", out)
	}
	n := 0
	for _, e := range d.Audit() {
		if e.Action == "session.show" && e.Result == "transcript" && strings.HasPrefix(e.Actor, "operator:local:") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d audited reads, want 1", n)
	}
	d.BreakAudit()
	if code, out, _ := run(); code == 0 || strings.Contains(out, "hello") {
		t.Fatalf("a transcript was printed without its audit entry: %d %q", code, out)
	}
}
