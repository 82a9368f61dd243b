package daemon_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// stop ends a daemon started with serve as an operator would.
func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("serve did not stop in 30 s")
	}
}

func sessionIDs(t *testing.T, in *install) []string {
	t.Helper()
	return regexp.MustCompile(`(?m)^([0-9a-f]{32})\s+active`).FindAllString(in.mustRun("sessions"), -1)
}

// TestBackupUnderLoadRestores takes a backup while a conversation goes on,
// checks the archive holds no plaintext and no key, refuses a tampered and
// a truncated copy without writing anything, then restores into a fresh
// state directory: the restored daemon serves the same session, answers
// exactly once, and its audit chain verifies.
func TestBackupUnderLoadRestores(t *testing.T) {
	in := newInstall(t)
	in.mustRun("init")
	cmd, logs := in.serve()
	markers := []string{"MARKER-backup-1a2b3c", "MARKER-backup-4d5e6f"}
	for _, m := range markers {
		if reply := strings.TrimSpace(in.mustRun("chat", m)); reply != m {
			t.Fatalf("reply %q", reply)
		}
	}
	before := sessionIDs(t, in)

	// Load: a conversation goes on while the backup is taken.
	var wg sync.WaitGroup
	var loadErr error
	var loadSent []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 15; i++ {
			msg := fmt.Sprintf("load %d MARKER-load", i)
			loadSent = append(loadSent, msg)
			out, err := in.run("chat", msg)
			if err != nil || strings.TrimSpace(out) != msg {
				loadErr = fmt.Errorf("chat under backup: %v %q", err, out)
				return
			}
		}
	}()
	// A Matrix crypto store, as the channel keeps one: it goes along.
	os.Mkdir(filepath.Join(in.root, "state", "matrix"), 0o700)
	cryptoDB := filepath.Join(in.root, "state", "matrix", "crypto.db")
	makeSQLite(t, cryptoDB)
	archive := filepath.Join(in.root, "ironclaw.backup")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	out := in.mustRun("backup", archive)
	t.Logf("backup under load: %v: %s", time.Since(start), strings.TrimSpace(out))
	wg.Wait()
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	if _, err := in.run("backup", archive); err == nil {
		t.Fatal("backup over an existing file was allowed")
	}
	stop(t, cmd)
	_ = logs

	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(in.root, "etc", "master.key"))
	for _, m := range append(markers, "MARKER-load") {
		if bytes.Contains(data, []byte(m)) {
			t.Fatalf("the backup holds plaintext %q", m)
		}
	}
	if bytes.Contains(data, key) {
		t.Fatal("the backup holds the master key")
	}

	// A second machine with the same key and an empty state directory.
	to := newInstall(t)
	os.WriteFile(filepath.Join(to.root, "etc", "master.key"), key, 0o600)
	target := filepath.Join(to.root, "state")
	for name, bad := range map[string][]byte{
		"tampered":  flipByte(data, len(data)/2),
		"truncated": data[:len(data)*2/3],
	} {
		p := filepath.Join(to.root, name)
		os.WriteFile(p, bad, 0o600)
		out, err := to.run("restore", p)
		if err == nil || !strings.Contains(out, "does not authenticate") {
			t.Fatalf("%s backup: %v\n%s", name, err, out)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("%s backup wrote the state directory", name)
		}
		ents, _ := os.ReadDir(to.root)
		for _, e := range ents {
			if strings.Contains(e.Name(), "restore") {
				t.Fatalf("%s backup left %s", name, e.Name())
			}
		}
	}
	// Another key: refused, nothing written.
	other := newInstall(t)
	other.mustRun("init")
	otherKey, _ := os.ReadFile(filepath.Join(other.root, "etc", "master.key"))
	os.WriteFile(filepath.Join(to.root, "etc", "master.key"), otherKey, 0o600)
	if out, err := to.run("restore", archive); err == nil || !strings.Contains(out, "another master key") {
		t.Fatalf("restore under another key: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(to.root, "etc", "master.key"), key, 0o600)

	out = to.mustRun("restore", archive)
	if !strings.Contains(out, "audit chain verified") {
		t.Fatalf("restore said:\n%s", out)
	}
	if out, err := to.run("restore", archive); err == nil || !strings.Contains(out, "not empty") {
		t.Fatalf("restore over a state directory: %v\n%s", err, out)
	}
	if out := to.mustRun("audit", "verify"); !strings.Contains(out, "audit: OK") {
		t.Fatalf("restored audit log:\n%s", out)
	}
	checkSQLite(t, filepath.Join(target, "matrix", "crypto.db"))
	to.serve()
	if after := sessionIDs(t, to); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("sessions before %v, after restore %v", before, after)
	}
	// The restored agent continues: it answers the new message once, and
	// does not answer old ones again.
	// A reply the daemon had taken but the chat had not yet marked delivered
	// when the backup was made comes back once, marked "(earlier)": the
	// restored state is the state as of the backup.
	sent := append(append([]string{}, markers...), loadSent...)
	earlier := map[string]int{}
	for _, msg := range []string{"after restore MARKER-x", "and again"} {
		lines := strings.Split(in2(to, msg), "\n")
		if lines[len(lines)-1] != msg {
			t.Fatalf("reply to %q after restore: %q", msg, lines)
		}
		for _, l := range lines[:len(lines)-1] {
			text, ok := strings.CutPrefix(l, "(earlier) ")
			if !ok || !slices.Contains(sent, text) {
				t.Fatalf("unexpected line %q before the reply to %q", l, msg)
			}
			if earlier[text]++; earlier[text] > 1 {
				t.Fatalf("%q handed over twice after restore", text)
			}
		}
	}
	if after := sessionIDs(t, to); len(after) != len(before) {
		t.Fatalf("restore started a new session: %v", after)
	}
}

func in2(in *install, msg string) string { return strings.TrimSpace(in.mustRun("chat", msg)) }

func flipByte(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

// TestKeysRotateCLI rotates the master key of a real install in place and
// moves it to a passphrase file, and the same session keeps answering.
func TestKeysRotateCLI(t *testing.T) {
	in := newInstall(t)
	in.mustRun("init")
	cmd, _ := in.serve()
	in2(in, "before rotation")
	before := sessionIDs(t, in)
	if out, err := in.run("keys", "rotate", "--to", "keyfile"); err == nil || !strings.Contains(out, "stop the daemon") {
		t.Fatalf("rotation under a running daemon: %v\n%s", err, out)
	}
	stop(t, cmd)
	keyPath := filepath.Join(in.root, "etc", "master.key")
	old, _ := os.ReadFile(keyPath)
	out := in.mustRun("keys", "rotate", "--to", "keyfile")
	if !strings.Contains(out, "1 session keys rewrapped") {
		t.Fatalf("rotate said:\n%s", out)
	}
	if now, _ := os.ReadFile(keyPath); bytes.Equal(now, old) {
		t.Fatal("the key file did not change")
	}
	passFile := filepath.Join(in.root, "etc", "pass")
	os.WriteFile(passFile, []byte("a long enough test passphrase\n"), 0o600)
	out = in.mustRun("keys", "rotate", "--to", "passphrase", "--passphrase-file", passFile)
	if !strings.Contains(out, `custody = "passphrase"`) {
		t.Fatalf("rotate said:\n%s", out)
	}
	// The config names the new custody (the [keys] table is written whole).
	cfg := fmt.Sprintf("state_dir = %q\nruntime_dir = %q\n[keys]\ncustody = \"passphrase\"\npassphrase_file = %q\n[model]\nollama_url = %q\n[sandbox]\nagent_binary = %q\n",
		filepath.Join(in.root, "state"), filepath.Join(in.root, "run"), passFile, in.model.URL, in.agent)
	os.WriteFile(in.config, []byte(cfg), 0o600)
	in.serve()
	if reply := in2(in, "after rotation"); reply != "after rotation" {
		t.Fatalf("reply %q", reply)
	}
	if after := sessionIDs(t, in); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("sessions before %v after %v", before, after)
	}
	if out := in.mustRun("audit", "verify"); !strings.Contains(out, "audit: OK") {
		t.Fatalf("audit after rotation:\n%s", out)
	}
	if out := in.mustRun("keys", "recover"); !strings.Contains(out, "nothing to do") {
		t.Fatalf("recover:\n%s", out)
	}
}

// TestDoctorCLI runs the real command: on this install Ollama is not running,
// so it must say so, name the fix and exit 1; --json parses.
func TestDoctorCLI(t *testing.T) {
	in := newInstall(t)
	in.mustRun("init")
	// An Ollama URL where nothing listens, whatever else runs on this host.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	os.WriteFile(in.config, []byte(fmt.Sprintf("state_dir = %q\nruntime_dir = %q\n[keys]\nkey_file = %q\n[model]\nollama_url = %q\n[sandbox]\nagent_binary = %q\n",
		filepath.Join(in.root, "state"), filepath.Join(in.root, "run"), filepath.Join(in.root, "etc", "master.key"), closed, in.agent)), 0o600)
	out, err := in.run("doctor", "--json")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("doctor exit: %v\n%s", err, out)
	}
	var rep struct {
		Checks []struct{ Name, Status, Remedy string }
		Broken bool
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Broken {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	found := map[string]string{}
	for _, c := range rep.Checks {
		found[c.Name] = c.Status
	}
	for name, want := range map[string]string{"runsc": "ok", "state_dir": "ok", "ollama": "fail", "cgroups.memory": "ok"} {
		if found[name] != want {
			t.Errorf("%s: %s, want %s (%v)", name, found[name], want, found)
		}
	}
}

// makeSQLite writes a small SQLite database at path (0600).
func makeSQLite(t *testing.T, path string) {
	t.Helper()
	c, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sqlitex.ExecuteScript(c, "CREATE TABLE crypto_version (version INTEGER); INSERT INTO crypto_version VALUES (7);", nil); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o600)
}

// checkSQLite requires the database makeSQLite wrote.
func checkSQLite(t *testing.T, path string) {
	t.Helper()
	c, err := sqlite.OpenConn(path, sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var v int64
	if err := sqlitex.ExecuteTransient(c, "SELECT version FROM crypto_version", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error { v = s.ColumnInt64(0); return nil }}); err != nil || v != 7 {
		t.Fatalf("restored %s: %v %d", path, err, v)
	}
}
