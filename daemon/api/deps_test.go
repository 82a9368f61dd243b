package api_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ironclaw/ironclaw/"

// deps lists the non-standard packages pkg links (itself included).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// The seam holds plain types: the standard library and nothing else, so
// every surface can depend on it without pulling the daemon in.
func TestAPIIsStandardLibraryOnly(t *testing.T) {
	for _, p := range deps(t, module+"daemon/api/...") {
		if p != module+"daemon/api" {
			t.Errorf("daemon/api links %s", p)
		}
	}
}

// The console's UI talks to the daemon only through daemon/api: a tui that
// linked the store, the gateway or the keys could bypass the operator
// binding.
func TestTUILinksOnlyTheAPI(t *testing.T) {
	ps := deps(t, module+"tui/...")
	if len(ps) == 0 {
		t.Fatal("no tui packages")
	}
	for _, p := range ps {
		// Exactly daemon/api: not a package below it either.
		if strings.HasPrefix(p, module+"daemon/") && p != module+"daemon/api" {
			t.Errorf("tui links %s (only daemon/api is allowed)", p)
		}
		if strings.HasPrefix(p, module+"agentd/") || strings.HasPrefix(p, module+"policy") {
			t.Errorf("tui links %s", p)
		}
	}
}
