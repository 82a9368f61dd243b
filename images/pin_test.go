package images

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

var digestLine = regexp.MustCompile(`^([0-9a-f]{64})  (\S+)$`)

// pinned returns the one digest line of a pin file and the name it is for.
func pinned(t *testing.T, b []byte) (digest, name string) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := digestLine.FindStringSubmatch(line)
		if m == nil || digest != "" {
			t.Fatalf("pin file: bad or repeated digest line %q", line)
		}
		digest, name = m[1], m[2]
	}
	return digest, name
}

func TestPinsParse(t *testing.T) {
	if d, n := pinned(t, RunscPin); d == "" || n != "runsc" {
		t.Fatalf("runsc.sha256: %q %q", d, n)
	}
	if d, n := pinned(t, AgentdPin); d == "" || n != "agentd" {
		t.Fatalf("agentd.sha256: %q %q", d, n)
	}
}

// TestAgentdPinMatchesSource builds agentd from this checkout exactly as a release does and
// requires the recorded digest: a release's agentd.sha256 is provably its own source's.
func TestAgentdPinMatchesSource(t *testing.T) {
	if testing.Short() {
		t.Skip("builds agentd (-short)")
	}
	if runtime.Version() != ReleaseGoVersion {
		t.Skipf("the recorded digest is for %s; this is %s, which builds other bytes", ReleaseGoVersion, runtime.Version())
	}
	want, _ := pinned(t, AgentdPin)
	out := t.TempDir()
	cmd := exec.Command("./build.sh", "./cmd/agentd", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	b, err := os.ReadFile(filepath.Join(out, "agentd.manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ SHA256 string }
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != want {
		t.Fatalf("agentd built from this source is sha256 %s but images/agentd.sha256 records %s: run `just release-pin` and commit images/agentd.sha256", m.SHA256, want)
	}
}
