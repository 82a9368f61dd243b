package daemon_test

import (
	"strings"
	"testing"
	"time"
)

// The local console chat delivers each reply exactly once: a reply whose
// client stopped waiting is kept (sealed, as a delivery intent) and comes
// with the next chat, once.
func TestConsoleChatExactlyOnce(t *testing.T) {
	in := newInstall(t)
	in.mustRun("init")
	in.serve()
	if out, err := in.run("chat", "--wait", "0s", "first MARKER-chat-1"); err == nil || !strings.Contains(out, "next chat") {
		t.Fatalf("a chat that does not wait: %v\n%s", err, out)
	}
	time.Sleep(3 * time.Second) // the agent answers; nobody is waiting
	if out := in.mustRun("chat", "second"); out != "(earlier) first MARKER-chat-1\nsecond\n" {
		t.Fatalf("second chat:\n%q", out)
	}
	if out := in.mustRun("chat", "third"); out != "third\n" {
		t.Fatalf("the earlier reply came twice:\n%q", out)
	}
	noPlaintext(t, in, []string{"MARKER-chat-1"})
}
