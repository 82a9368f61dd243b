package containment

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/ironclaw/ironclaw/"

// TestAgentLinksNoInboxWriter is layer (a) of the read-only inbox: the agent's code has no
// way to write an inbox because nothing that can is linked into it. Checked twice, on the
// package graph and on the symbol table of the binary actually built.
func TestAgentLinksNoInboxWriter(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cmd/agentd")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/agentd: %v", err)
	}
	var ours []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, module) {
			ours = append(ours, strings.TrimPrefix(p, module))
		}
		if strings.HasPrefix(p, module+"daemon") {
			t.Errorf("agentd links %s: the agent must link nothing from daemon/ (the inbox writer lives there)", p)
		}
	}
	if len(ours) < 3 {
		t.Fatalf("go list found only %v of ours: is the package graph right?", ours)
	}

	// The symbol table: an unstripped build of the same package (the image is stripped,
	// which would make this check vacuous).
	bin := filepath.Join(t.TempDir(), "agentd")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/agentd")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building agentd: %v\n%s", err, b)
	}
	nm := exec.Command("go", "tool", "nm", bin)
	syms, err := nm.Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(syms))
	sc.Buffer(nil, 1<<20)
	sawInbox := false
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.Contains(line, module+"daemon/") {
			t.Errorf("agentd's symbol table holds a daemon symbol: %s", line)
		}
		if strings.Contains(line, module+"agentd/inbox.") {
			sawInbox = true
		}
		// The inbox writer's methods by name, wherever they might have been copied.
		for _, w := range []string{"queue.(*Inbox).Append", "queue.OpenInbox", "queue.Create"} {
			if strings.Contains(line, w) {
				t.Errorf("agentd's symbol table holds the inbox writer: %s", line)
			}
		}
	}
	if n < 1000 || !sawInbox {
		t.Fatalf("symbol table has %d symbols and agentd/inbox present=%v: the check would prove nothing", n, sawInbox)
	}
}
