package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// fastKDF lowers the Argon2id cost for one test. Tests that call it must not
// run in parallel (it changes a package variable).
func fastKDF(t *testing.T) {
	t.Helper()
	old := defaultKDF
	defaultKDF.Time, defaultKDF.MemoryKiB, defaultKDF.Threads = 1, 64, 1
	t.Cleanup(func() { defaultKDF = old })
}

// keyfileSource returns a keyfile Source with the key outside the state dir.
func keyfileSource(t *testing.T) Source {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	return Source{Custody: CustodyKeyFile, StateDir: filepath.Join(root, "state"), KeyFile: filepath.Join(root, "etc", "master.key")}
}

func initKeyfile(t *testing.T) (*Master, Source) {
	t.Helper()
	src := keyfileSource(t)
	m, err := Init(src)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(m.Destroy)
	return m, src
}

func sid(t *testing.T) wire.SessionID {
	t.Helper()
	id, err := wire.NewSessionID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sessionKey(t *testing.T) *wire.Key {
	t.Helper()
	k, err := NewSessionKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// snapshot records every entry under the given paths (name, type, mode,
// size, content), so a test can prove that nothing was written, replaced or
// left behind.
func snapshot(t *testing.T, paths ...string) string {
	t.Helper()
	var lines []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				lines = append(lines, path+" (absent)")
				return nil
			}
			if err != nil {
				return err
			}
			info, err := os.Lstat(path)
			if err != nil {
				return err
			}
			line := fmt.Sprintf("%s %v %d %v", path, info.Mode(), info.Size(), info.ModTime().UnixNano())
			if info.Mode().IsRegular() {
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				line += " " + hex.EncodeToString(b)
			}
			lines = append(lines, line)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestWrapUnwrapRoundTrip(t *testing.T) {
	m, _ := initKeyfile(t)
	id, k := sid(t), sessionKey(t)
	w1, err := m.Wrap(id, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(w1) != WrappedSize {
		t.Fatalf("wrapped size %d, want %d", len(w1), WrappedSize)
	}
	if bytes.Contains(w1, k[:]) {
		t.Fatal("wrapped key contains the session key in the clear")
	}
	w2, err := m.Wrap(id, k)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(w1, w2) {
		t.Fatal("two wraps of the same key are identical: nonce is not random")
	}
	for _, w := range [][]byte{w1, w2} {
		got, err := m.Unwrap(id, w)
		if err != nil {
			t.Fatalf("Unwrap: %v", err)
		}
		if *got != *k {
			t.Fatal("unwrapped key differs from the original")
		}
	}
	if _, err := m.Wrap(id, nil); err == nil {
		t.Fatal("Wrap(nil) succeeded")
	}
}

func TestUnwrapRejectsEveryBitFlip(t *testing.T) {
	m, _ := initKeyfile(t)
	id, k := sid(t), sessionKey(t)
	w, err := m.Wrap(id, k)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(w) * 8 {
		bad := bytes.Clone(w)
		bad[i/8] ^= 1 << (i % 8)
		got, err := m.Unwrap(id, bad)
		if !errors.Is(err, ErrUnwrap) {
			t.Fatalf("flip of bit %d: Unwrap = %v, %v; want ErrUnwrap", i, got, err)
		}
	}
}

func TestUnwrapRejectsWrongLength(t *testing.T) {
	m, _ := initKeyfile(t)
	id := sid(t)
	w, err := m.Wrap(id, sessionKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, w[:len(w)-1], append(bytes.Clone(w), 0), w[:1]} {
		if _, err := m.Unwrap(id, bad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("length %d: err = %v, want ErrUnwrap", len(bad), err)
		}
	}
}

func TestUnwrapRejectsOtherSession(t *testing.T) {
	m, _ := initKeyfile(t)
	a, b := sid(t), sid(t)
	w, err := m.Wrap(a, sessionKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Unwrap(b, w); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("wrapped key moved to another session: err = %v, want ErrUnwrap", err)
	}
	// Ids differing in one bit, too.
	c := a
	c[len(c)-1] ^= 1
	if _, err := m.Unwrap(c, w); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("one-bit-different session id: err = %v, want ErrUnwrap", err)
	}
}

func TestUnwrapRejectsOtherMaster(t *testing.T) {
	m1, _ := initKeyfile(t)
	m2, _ := initKeyfile(t)
	id := sid(t)
	w, err := m1.Wrap(id, sessionKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Unwrap(id, w); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap under another master: err = %v, want ErrUnwrap", err)
	}
}

func TestLoadRoundTripKeyFile(t *testing.T) {
	m1, src := initKeyfile(t)
	id, k := sid(t), sessionKey(t)
	w, err := m1.Wrap(id, k)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, src.StateDir, filepath.Dir(src.KeyFile))
	m2, err := Load(src)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer m2.Destroy()
	got, err := m2.Unwrap(id, w)
	if err != nil || *got != *k {
		t.Fatalf("unwrap after reload: %v", err)
	}
	if m1.SubKey("audit-mac") != m2.SubKey("audit-mac") {
		t.Fatal("SubKey differs across loads of the same master")
	}
	if m2.Custody() != CustodyKeyFile {
		t.Fatalf("Custody = %q", m2.Custody())
	}
	if after := snapshot(t, src.StateDir, filepath.Dir(src.KeyFile)); after != before {
		t.Fatalf("Load changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The state directory holds only the check file, the key only the key.
	if names := listNames(t, src.StateDir); names != CheckFileName {
		t.Fatalf("state dir holds %q, want only %s", names, CheckFileName)
	}
	info, err := os.Stat(src.KeyFile)
	if err != nil || info.Mode().Perm() != 0o600 || info.Size() != MasterKeySize {
		t.Fatalf("key file: %v, %v", info, err)
	}
}

func listNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

func TestLoadWrongKeyFileChangesNothing(t *testing.T) {
	_, src := initKeyfile(t)
	other := keyfileSource(t)
	if err := CreateKeyFile(other.KeyFile); err != nil {
		t.Fatal(err)
	}
	src.KeyFile = other.KeyFile
	before := snapshot(t, src.StateDir, filepath.Dir(src.KeyFile))
	m, err := Load(src)
	if !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("Load with another key: %v, %v; want ErrWrongMaster", m, err)
	}
	if !strings.Contains(err.Error(), "wrong master key for this state directory (") {
		t.Fatalf("message %q lacks the expected wording", err)
	}
	if after := snapshot(t, src.StateDir, filepath.Dir(src.KeyFile)); after != before {
		t.Fatalf("a failed Load changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestInitRefusesExistingKeyFile(t *testing.T) {
	src := keyfileSource(t)
	old := bytes.Repeat([]byte{0xA5}, MasterKeySize)
	if err := os.WriteFile(src.KeyFile, old, 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, filepath.Dir(src.KeyFile), src.StateDir)
	if m, err := Init(src); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Init over an existing key file: %v, %v", m, err)
	}
	if after := snapshot(t, filepath.Dir(src.KeyFile), src.StateDir); after != before {
		t.Fatalf("refused Init changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if b, _ := os.ReadFile(src.KeyFile); !bytes.Equal(b, old) {
		t.Fatal("key file bytes changed")
	}

	// A dangling symlink at the key path is "something there" too.
	src2 := keyfileSource(t)
	if err := os.Symlink(filepath.Join(t.TempDir(), "nowhere"), src2.KeyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(src2); err == nil {
		t.Fatal("Init through a dangling symlink succeeded")
	}
	if err := CreateKeyFile(src2.KeyFile); err == nil {
		t.Fatal("CreateKeyFile through a dangling symlink succeeded")
	}
}

func TestInitRefusesExistingCheckFile(t *testing.T) {
	_, src := initKeyfile(t)
	fresh := keyfileSource(t)
	src.KeyFile = fresh.KeyFile // a new key for an already initialised state dir
	before := snapshot(t, src.StateDir, filepath.Dir(src.KeyFile))
	if m, err := Init(src); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Fatalf("Init over an initialised state dir: %v, %v", m, err)
	}
	if after := snapshot(t, src.StateDir, filepath.Dir(src.KeyFile)); after != before {
		t.Fatalf("refused Init changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Lstat(fresh.KeyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused Init created a key file: %v", err)
	}
}

func TestCreateKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	if err := CreateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(p)
	info, _ := os.Stat(p)
	if len(b1) != MasterKeySize || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %d bytes, mode %v", len(b1), info.Mode())
	}
	if err := CreateKeyFile(p); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second CreateKeyFile: %v", err)
	}
	if b2, _ := os.ReadFile(p); !bytes.Equal(b1, b2) {
		t.Fatal("CreateKeyFile overwrote an existing key")
	}
	if names := listNames(t, dir); names != "k" {
		t.Fatalf("directory holds %q; temporary files left behind?", names)
	}
}

func TestLoadRefusesLooseKeyFileMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602, 0o620} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			_, src := initKeyfile(t)
			if err := os.Chmod(src.KeyFile, mode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(src)
			if err == nil || !strings.Contains(err.Error(), "chmod 600 "+src.KeyFile) {
				t.Fatalf("Load of a %04o key file: %v; want a message with \"chmod 600\"", mode, err)
			}
		})
	}
}

func TestLoadRefusesSymlinkedKeyFile(t *testing.T) {
	_, src := initKeyfile(t)
	link := filepath.Join(filepath.Dir(src.KeyFile), "link.key")
	if err := os.Symlink(src.KeyFile, link); err != nil {
		t.Fatal(err)
	}
	src.KeyFile = link
	if _, err := Load(src); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Load through a symlink: %v", err)
	}
}

func TestLoadRefusesBadKeyFileContent(t *testing.T) {
	_, src := initKeyfile(t)
	good, _ := os.ReadFile(src.KeyFile)
	cases := map[string][]byte{
		"empty":    {},
		"short":    good[:31],
		"newline":  append(bytes.Clone(good), '\n'),
		"hex":      []byte(hex.EncodeToString(good)),
		"huge":     bytes.Repeat([]byte{1}, 10000),
		"all zero": make([]byte, MasterKeySize),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(filepath.Dir(src.KeyFile), "bad-"+strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s := src
			s.KeyFile = p
			if _, err := Load(s); err == nil || errors.Is(err, ErrWrongMaster) {
				t.Fatalf("Load: %v; want a size/content error before any key check", err)
			}
		})
	}
	t.Run("fifo", func(t *testing.T) {
		p := filepath.Join(filepath.Dir(src.KeyFile), "fifo")
		if err := mkfifo(p); err != nil {
			t.Skip("mkfifo:", err)
		}
		s := src
		s.KeyFile = p
		if _, err := Load(s); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Load of a FIFO: %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		s := src
		s.KeyFile = filepath.Dir(src.KeyFile)
		if _, err := Load(s); err == nil {
			t.Fatal("Load of a directory succeeded")
		}
	})
	t.Run("missing", func(t *testing.T) {
		s := src
		s.KeyFile += ".nope"
		if _, err := Load(s); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("Load of a missing key file: %v", err)
		}
	})
}

func TestSecretFileInsideStateDirRefused(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	// Lexically inside, and inside through a symlinked parent directory.
	link := filepath.Join(root, "alias")
	if err := os.Symlink(state, link); err != nil {
		t.Fatal(err)
	}
	for _, kf := range []string{filepath.Join(state, "master.key"), filepath.Join(state, "sub", "..", "master.key"), filepath.Join(link, "master.key")} {
		before := snapshot(t, root)
		_, err := Init(Source{Custody: CustodyKeyFile, StateDir: state, KeyFile: kf})
		if err == nil || !strings.Contains(err.Error(), "inside the state directory") {
			t.Fatalf("Init with key file %s: %v", kf, err)
		}
		if after := snapshot(t, root); after != before {
			t.Fatalf("refused Init changed files:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}
	_, err := Init(Source{Custody: CustodyPassphrase, StateDir: state, PassphraseFile: filepath.Join(link, "pass")})
	if err == nil || !strings.Contains(err.Error(), "inside the state directory") {
		t.Fatalf("Init with passphrase file inside state dir: %v", err)
	}
}

func TestLoadWithoutInit(t *testing.T) {
	src := keyfileSource(t)
	if err := CreateKeyFile(src.KeyFile); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, filepath.Dir(src.StateDir))
	_, err := Load(src)
	if err == nil || !strings.Contains(err.Error(), "never initialised") {
		t.Fatalf("Load of an uninitialised state dir: %v", err)
	}
	if after := snapshot(t, filepath.Dir(src.StateDir)); after != before {
		t.Fatal("Load wrote something")
	}
}

func TestDamagedCheckFileRefused(t *testing.T) {
	_, src := initKeyfile(t)
	p := filepath.Join(src.StateDir, CheckFileName)
	good, _ := os.ReadFile(p)
	for name, content := range map[string]string{
		"garbage":       "not json",
		"unknown field": strings.Replace(string(good), `"format"`, `"extra": 1, "format"`, 1),
		"format":        strings.Replace(string(good), `"format": 1`, `"format": 2`, 1),
		"trailing":      string(good) + "{}",
	} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(src); err == nil {
			t.Fatalf("%s: Load with a damaged check file succeeded", name)
		}
	}
	// A tampered seal is a wrong key, not an accepted one.
	var cf checkFile
	if err := json.Unmarshal(good, &cf); err != nil {
		t.Fatal(err)
	}
	sealed, _ := base64.StdEncoding.DecodeString(cf.Sealed)
	sealed[0] ^= 1
	cf.Sealed = base64.StdEncoding.EncodeToString(sealed)
	b, _ := json.Marshal(cf)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(src); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("tampered check seal: %v, want ErrWrongMaster", err)
	}
}

func TestSourceValidation(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]Source{
		"no custody":        {StateDir: dir},
		"unknown custody":   {Custody: "tpm", StateDir: dir},
		"no state dir":      {Custody: CustodyKeyFile, KeyFile: "/x"},
		"no key file":       {Custody: CustodyKeyFile, StateDir: dir},
		"no passphrase":     {Custody: CustodyPassphrase, StateDir: dir},
		"two passphrases":   {Custody: CustodyPassphrase, StateDir: dir, PassphraseFile: "/x", Passphrase: strings.NewReader("x")},
		"bad credential":    {Custody: CustodySystemdCredential, StateDir: dir, CredentialName: "../x"},
		"dotdot credential": {Custody: CustodySystemdCredential, StateDir: dir, CredentialName: ".."},
	} {
		if _, err := Init(src); err == nil {
			t.Errorf("%s: Init succeeded", name)
		}
		if _, err := Load(src); err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
	}
	if names := listNames(t, dir); names != "" {
		t.Fatalf("invalid sources wrote %q", names)
	}
}

func TestNewSessionKey(t *testing.T) {
	seen := map[wire.Key]bool{}
	for range 64 {
		k := sessionKey(t)
		if *k == (wire.Key{}) || seen[*k] {
			t.Fatal("session key is zero or repeated")
		}
		seen[*k] = true
	}
}

func TestSubKeySeparation(t *testing.T) {
	m, _ := initKeyfile(t)
	purposes := []string{"audit-mac", "store-seal", "audit-mac2", "a", "wrap-session-key", "master-check", "\x00", labelWrap, labelCheck, labelSubKey}
	seen := map[[32]byte]string{
		m.s.root:                      "master",
		m.s.wrap:                      "wrap key",
		derive(&m.s.root, labelCheck): "check key",
	}
	for _, p := range purposes {
		k := m.SubKey(p)
		if other, dup := seen[k]; dup {
			t.Fatalf("SubKey(%q) equals %s", p, other)
		}
		seen[k] = "SubKey(" + p + ")"
		if k != m.SubKey(p) {
			t.Fatalf("SubKey(%q) is not deterministic", p)
		}
	}
	// Another master gives other subkeys.
	m2, _ := initKeyfile(t)
	if m.SubKey("audit-mac") == m2.SubKey("audit-mac") {
		t.Fatal("two masters give the same subkey")
	}
	mustPanic(t, "SubKey(\"\")", func() { m.SubKey("") })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s did not panic", what)
		}
	}()
	f()
}

func TestDestroy(t *testing.T) {
	m, _ := initKeyfile(t)
	id := sid(t)
	w, err := m.Wrap(id, sessionKey(t))
	if err != nil {
		t.Fatal(err)
	}
	copyOfHandle := *m
	m.Destroy()
	if m.s.root != ([32]byte{}) || m.s.wrap != ([32]byte{}) {
		t.Fatal("Destroy left key bytes in memory")
	}
	if _, err := m.Wrap(id, sessionKey(t)); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("Wrap after Destroy: %v", err)
	}
	if _, err := copyOfHandle.Unwrap(id, w); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("Unwrap through a copied handle after Destroy: %v", err)
	}
	mustPanic(t, "SubKey after Destroy", func() { m.SubKey("audit-mac") })
	m.Destroy() // twice is fine
	var zero Master
	if _, err := zero.Wrap(id, sessionKey(t)); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("zero Master Wrap: %v", err)
	}
	var nilM *Master
	if _, err := nilM.Unwrap(id, w); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("nil Master Unwrap: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	m, _ := initKeyfile(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				id, err := wire.NewSessionID()
				if err != nil {
					t.Error(err)
					return
				}
				k, _ := NewSessionKey()
				w, err := m.Wrap(id, k)
				if errors.Is(err, ErrDestroyed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				got, err := m.Unwrap(id, w)
				if errors.Is(err, ErrDestroyed) {
					return
				}
				if err != nil || *got != *k {
					t.Errorf("concurrent unwrap: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() { _ = m.SubKey("x"); m.Destroy() })
	wg.Wait()
}

func TestMasterDoesNotLeakThroughFmt(t *testing.T) {
	m, _ := initKeyfile(t)
	secrets := map[string][32]byte{
		"master":    m.s.root,
		"wrap key":  m.s.wrap,
		"check key": derive(&m.s.root, labelCheck),
	}
	type holder struct {
		M   Master
		P   *Master
		Any any
	}
	var outs []string
	outs = append(outs,
		fmt.Sprintf("%v %+v %#v %s", m, m, m, m),
		fmt.Sprintf("%x %X %q %d %v %+v %#v", m, m, m, m, *m, *m, *m),
		fmt.Sprint(m, *m), fmt.Sprintln(m),
		fmt.Sprintf("%v %+v %#v %x", holder{*m, m, *m}, holder{*m, m, *m}, holder{*m, m, *m}, holder{*m, m, *m}),
		fmt.Sprintf("%v %+v", []*Master{m}, map[string]Master{"k": *m}),
		fmt.Errorf("loading: %v", m).Error(),
	)
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "m", m, "v", *m, "h", holder{*m, m, nil})
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "m", m, "v", *m, "h", holder{*m, m, nil})
	outs = append(outs, logs.String())
	if j, err := json.Marshal(holder{*m, m, nil}); err == nil {
		outs = append(outs, string(j))
	}
	if got := fmt.Sprintf("%v %+v %#v %s", m, m, m, m); got != strings.Repeat(redacted+" ", 3)+redacted {
		t.Fatalf("fmt gives %q", got)
	}
	for _, out := range outs {
		for name, k := range secrets {
			for _, enc := range encodings(k) {
				if strings.Contains(out, enc) {
					t.Fatalf("%s leaked in %q", name, out)
				}
			}
		}
	}
}

// encodings lists the ways a key's bytes could show up in text: raw, hex in
// both cases, base64, and the decimal and Go-syntax forms fmt uses for byte
// arrays (the first 8 bytes are enough to spot those).
func encodings(k [32]byte) []string {
	dec := strings.Trim(fmt.Sprint(k[:8]), "[]")
	gox := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%#v", k[:8]), "[]byte{"), "}")
	return []string{
		string(k[:]),
		hex.EncodeToString(k[:]),
		strings.ToUpper(hex.EncodeToString(k[:])),
		base64.StdEncoding.EncodeToString(k[:]),
		base64.RawURLEncoding.EncodeToString(k[:]),
		dec,
		gox,
	}
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }
