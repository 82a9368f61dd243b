package keys

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testPass = "correct horse battery staple"

func passSource(t *testing.T, pass string) Source {
	t.Helper()
	return Source{Custody: CustodyPassphrase, StateDir: filepath.Join(t.TempDir(), "state"), Passphrase: strings.NewReader(pass)}
}

func TestPassphraseRoundTrip(t *testing.T) {
	fastKDF(t)
	src := passSource(t, testPass+"\n")
	m1, err := Init(src)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	defer m1.Destroy()
	if names := listNames(t, src.StateDir); names != CheckFileName+","+KDFFileName {
		t.Fatalf("state dir holds %q", names)
	}
	id, k := sid(t), sessionKey(t)
	w, err := m1.Wrap(id, k)
	if err != nil {
		t.Fatal(err)
	}

	// The same passphrase from a prompt (with CRLF) and from a file (with
	// LF) opens it, and both derive the same master.
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte(testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]Source{
		"prompt": {Custody: CustodyPassphrase, StateDir: src.StateDir, Passphrase: strings.NewReader(testPass + "\r\nnext line")},
		"file":   {Custody: CustodyPassphrase, StateDir: src.StateDir, PassphraseFile: passFile},
	} {
		m2, err := Load(s)
		if err != nil {
			t.Fatalf("%s: Load: %v", name, err)
		}
		got, err := m2.Unwrap(id, w)
		if err != nil || *got != *k {
			t.Fatalf("%s: unwrap after reload: %v", name, err)
		}
		if m2.SubKey("store") != m1.SubKey("store") {
			t.Fatalf("%s: SubKey differs across loads", name)
		}
		m2.Destroy()
	}

	// The kdf file records what Init used, and no secret.
	var p kdfParams
	b, _ := os.ReadFile(filepath.Join(src.StateDir, KDFFileName))
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Alg != "argon2id" || p.Time != 1 || p.MemoryKiB != 64 || p.Threads != 1 || p.validate() != nil {
		t.Fatalf("kdf params %+v", p)
	}
	if strings.Contains(string(b), testPass) {
		t.Fatal("kdf file contains the passphrase")
	}
}

func TestPassphraseReaderStopsAtNewline(t *testing.T) {
	r := strings.NewReader(testPass + "\nrest")
	pass, err := readPassphrase(Source{Passphrase: r})
	if err != nil || string(pass) != testPass {
		t.Fatalf("readPassphrase = %q, %v", pass, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "rest" {
		t.Fatalf("reader consumed past the line; left %q", rest)
	}
}

func TestWrongPassphraseChangesNothing(t *testing.T) {
	fastKDF(t)
	src := passSource(t, testPass)
	m, err := Init(src)
	if err != nil {
		t.Fatal(err)
	}
	m.Destroy()
	before := snapshot(t, src.StateDir)
	for _, wrong := range []string{testPass + " ", "Correct horse battery staple", testPass[:len(testPass)-1]} {
		src.Passphrase = strings.NewReader(wrong)
		m, err := Load(src)
		if !errors.Is(err, ErrWrongMaster) {
			t.Fatalf("wrong passphrase %q: %v, %v; want ErrWrongMaster", wrong, m, err)
		}
		if !strings.Contains(err.Error(), "wrong master key for this state directory (") || !strings.Contains(err.Error(), "check the passphrase") {
			t.Fatalf("message %q is not clear", err)
		}
		if strings.Contains(err.Error(), wrong) {
			t.Fatal("error message contains the passphrase")
		}
	}
	// Init with a wrong passphrase must not reset anything either.
	src.Passphrase = strings.NewReader("a different long passphrase")
	if _, err := Init(src); err == nil {
		t.Fatal("Init over an initialised passphrase state dir succeeded")
	}
	if after := snapshot(t, src.StateDir); after != before {
		t.Fatalf("files changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestPassphraseRules(t *testing.T) {
	fastKDF(t)
	t.Run("empty", func(t *testing.T) {
		src := passSource(t, "\n")
		if _, err := Init(src); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("Init: %v", err)
		}
		assertAbsent(t, src.StateDir)
	})
	t.Run("short", func(t *testing.T) {
		src := passSource(t, "hunter2")
		if _, err := Init(src); err == nil || !strings.Contains(err.Error(), "at least") {
			t.Fatalf("Init: %v", err)
		}
		assertAbsent(t, src.StateDir)
	})
	t.Run("too long", func(t *testing.T) {
		src := passSource(t, strings.Repeat("x", maxPassphraseLen+1))
		if _, err := Init(src); err == nil {
			t.Fatal("Init with an over-long passphrase succeeded")
		}
	})
	t.Run("file rules", func(t *testing.T) {
		dir := t.TempDir()
		state := filepath.Join(dir, "state")
		write := func(name, content string, mode os.FileMode) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(content), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			return p
		}
		for name, tc := range map[string]struct {
			path, want string
		}{
			"two lines":  {write("two", testPass+"\nmore\n", 0o600), "more than one line"},
			"loose mode": {write("loose", testPass+"\n", 0o644), "chmod 600"},
			"missing":    {filepath.Join(dir, "nope"), "does not exist"},
		} {
			_, err := Init(Source{Custody: CustodyPassphrase, StateDir: state, PassphraseFile: tc.path})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: Init: %v; want %q", name, err, tc.want)
			}
			assertAbsent(t, state)
		}
		link := filepath.Join(dir, "link")
		if err := os.Symlink(write("ok", testPass, 0o600), link); err != nil {
			t.Fatal(err)
		}
		if _, err := Init(Source{Custody: CustodyPassphrase, StateDir: state, PassphraseFile: link}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("symlinked passphrase file: %v", err)
		}
	})
}

func assertAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s was created by a refused call (%v)", path, err)
	}
}

func TestPassphraseKDFFileTamperRefused(t *testing.T) {
	fastKDF(t)
	src := passSource(t, testPass)
	if _, err := Init(src); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(src.StateDir, KDFFileName)
	good, _ := os.ReadFile(p)
	for name, edit := range map[string]func(*kdfParams){
		"huge memory":  func(k *kdfParams) { k.MemoryKiB = 1 << 31 },
		"huge time":    func(k *kdfParams) { k.Time = 1 << 20 },
		"zero threads": func(k *kdfParams) { k.Threads = 0 },
		"other alg":    func(k *kdfParams) { k.Alg = "argon2i" },
		"short salt":   func(k *kdfParams) { k.Salt = "AAAA" },
	} {
		var k kdfParams
		if err := json.Unmarshal(good, &k); err != nil {
			t.Fatal(err)
		}
		edit(&k)
		b, _ := json.Marshal(k)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		src.Passphrase = strings.NewReader(testPass)
		if _, err := Load(src); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("%s: Load: %v", name, err)
		}
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	src.Passphrase = strings.NewReader(testPass)
	if _, err := Load(src); err == nil || !strings.Contains(err.Error(), KDFFileName+" does not exist") {
		t.Fatalf("Load without kdf file: %v", err)
	}
}

// TestPassphraseRealParams runs Init and Load with the shipped Argon2id
// parameters, so the defaults are exercised and recorded as they are.
func TestPassphraseRealParams(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id parameters take a while (64 MiB each)")
	}
	src := passSource(t, testPass)
	m1, err := Init(src)
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Destroy()
	p, err := readKDFFile(filepath.Join(src.StateDir, KDFFileName), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Time != 3 || p.MemoryKiB != 64*1024 || p.Threads != 2 {
		t.Fatalf("shipped params %+v, want time=3 memory_kib=65536 threads=2", p)
	}
	src.Passphrase = strings.NewReader(testPass)
	m2, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Destroy()
	if m1.SubKey("x") != m2.SubKey("x") {
		t.Fatal("reload derived another master")
	}
}

// credDir makes a fake $CREDENTIALS_DIRECTORY holding name with content.
func credDir(t *testing.T, name string, content []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), content, 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	return dir
}

func TestSystemdCredential(t *testing.T) {
	key := make([]byte, MasterKeySize)
	for i := range key {
		key[i] = byte(i + 1)
	}
	credDir(t, DefaultCredentialName, key)
	state := filepath.Join(t.TempDir(), "state")
	src := Source{Custody: CustodySystemdCredential, StateDir: state}
	m1, err := Init(src)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	defer m1.Destroy()
	id, k := sid(t), sessionKey(t)
	w, _ := m1.Wrap(id, k)
	m2, err := Load(src)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, err := m2.Unwrap(id, w); err != nil || *got != *k {
		t.Fatalf("unwrap after reload: %v", err)
	}
	m2.Destroy()

	// The same bytes as a key file open the same state directory: moving
	// from a key file to a credential (or back) needs no re-initialisation.
	kf := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(kf, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if m3, err := Load(Source{Custody: CustodyKeyFile, StateDir: state, KeyFile: kf}); err != nil {
		t.Fatalf("key file with the credential's bytes: %v", err)
	} else {
		m3.Destroy()
	}

	// A custom name, and a wrong credential.
	other := make([]byte, MasterKeySize)
	other[0] = 1
	credDir(t, "other-name", other)
	before := snapshot(t, state)
	if _, err := Load(Source{Custody: CustodySystemdCredential, StateDir: state, CredentialName: "other-name"}); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("wrong credential: %v", err)
	}
	if snapshot(t, state) != before {
		t.Fatal("wrong credential changed the state dir")
	}
	if _, err := Load(src); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing credential name: %v", err)
	}
}

func TestSystemdCredentialRules(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	src := Source{Custody: CustodySystemdCredential, StateDir: state}

	t.Setenv("CREDENTIALS_DIRECTORY", "")
	_, err := Init(src)
	if err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY is not set") || !strings.Contains(err.Error(), "LoadCredential") {
		t.Fatalf("unset CREDENTIALS_DIRECTORY: %v", err)
	}
	assertAbsent(t, state)

	t.Setenv("CREDENTIALS_DIRECTORY", "relative/dir")
	if _, err := Init(src); err == nil {
		t.Fatal("relative CREDENTIALS_DIRECTORY accepted")
	}

	dir := credDir(t, DefaultCredentialName, []byte("0123456789abcdef0123456789abcdef\n"))
	if _, err := Init(src); err == nil || !strings.Contains(err.Error(), "exactly 32") {
		t.Fatalf("33-byte credential: %v", err)
	}
	p := filepath.Join(dir, DefaultCredentialName)
	if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o404); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(src); err == nil || !strings.Contains(err.Error(), "any user") {
		t.Fatalf("world-readable credential: %v", err)
	}
	// Group-readable is what systemd's ACL fallback looks like; accepted.
	if err := os.Chmod(p, 0o440); err != nil {
		t.Fatal(err)
	}
	m, err := Init(src)
	if err != nil {
		t.Fatalf("0440 credential: %v", err)
	}
	m.Destroy()
}
