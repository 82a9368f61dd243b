package images

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/config"
)

// TestSystemdUnitVerifies lints images/ironclaw.service with systemd's own
// `systemd-analyze verify` (these machines have the systemd package but not
// systemd as PID 1, which verify does not need). verify exits 0 even for an
// unknown or misspelt key, so any output at all fails the test. ExecStart
// must name an executable file: it is pointed at a stand-in, the one change.
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: install Debian's systemd package (.ci/bootstrap does)")
	}
	unit, err := os.ReadFile("ironclaw.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "ironclaw")
	os.WriteFile(stand, []byte("#!/bin/sh\n"), 0o755)
	const exec1 = "ExecStart=/opt/ironclaw/bin/ironclaw serve"
	if !strings.Contains(string(unit), exec1) {
		t.Fatalf("the unit does not run %q", exec1)
	}
	p := filepath.Join(dir, "ironclaw.service")
	os.WriteFile(p, []byte(strings.Replace(string(unit), exec1, "ExecStart="+stand+" serve", 1)), 0o644)
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The linter catches what it should: a misspelt key is reported.
	bad := filepath.Join(dir, "bad.service")
	os.WriteFile(bad, []byte(strings.Replace(string(unit), "Delegate=yes", "Delegat=yes", 1)), 0o644)
	if out, _ := exec.Command(sa, "verify", bad).CombinedOutput(); !strings.Contains(string(out), "Unknown key") {
		t.Fatalf("verify did not report a misspelt key: %s", out)
	}
}

// TestSystemdUnitSettings checks what the unit must say, and that every
// hardening option left out is only mentioned in a comment.
func TestSystemdUnitSettings(t *testing.T) {
	f, err := os.Open("ironclaw.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		set[k] = v
	}
	for k, want := range map[string]string{
		"LoadCredential":       config.Default().Keys.CredentialName + ":/etc/ironclaw/master.key",
		"Environment":          "IRONCLAW_KEYS_CUSTODY=systemd-credential",
		"Restart":              "on-failure",
		"StateDirectory":       "ironclaw",
		"StateDirectoryMode":   "0700",
		"RuntimeDirectory":     "ironclaw",
		"RuntimeDirectoryMode": "0700",
		"ProtectSystem":        "strict",
		"NoNewPrivileges":      "yes",
	} {
		if set[k] != want {
			t.Errorf("%s=%q, want %q", k, set[k], want)
		}
	}
	for _, k := range []string{"ProtectControlGroups", "PrivateDevices", "RestrictNamespaces", "PrivateNetwork", "SystemCallFilter", "ProtectHostname"} {
		if _, ok := set[k]; ok {
			t.Errorf("%s is set: it breaks runsc (see the comment in the unit)", k)
		}
	}
	// The environment line selects custody through the config's own env rule.
	k, v, _ := strings.Cut(set["Environment"], "=")
	cfg, err := config.Load("", func(name string) string {
		if name == k {
			return v
		}
		return ""
	})
	if err != nil || cfg.Keys.Custody != config.CustodySystemdCredential {
		t.Fatalf("%s does not select systemd-credential custody: %v %q", set["Environment"], err, cfg.Keys.Custody)
	}
	if cfg.StateDir != "/var/lib/ironclaw" || cfg.RuntimeDir != "/run/ironclaw" {
		t.Fatalf("StateDirectory/RuntimeDirectory do not match the config defaults %s, %s", cfg.StateDir, cfg.RuntimeDir)
	}
}
