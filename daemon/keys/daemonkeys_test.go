package keys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

func initKeyFile(t *testing.T) (*Master, Source) {
	t.Helper()
	base := t.TempDir()
	src := Source{Custody: CustodyKeyFile, StateDir: filepath.Join(base, "state"), KeyFile: filepath.Join(base, "k")}
	m, err := Init(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Destroy)
	return m, src
}

func TestDaemonKeyWrapping(t *testing.T) {
	m, _ := initKeyFile(t)
	k := [32]byte{1, 2, 3}
	w, err := m.WrapDaemonKey("store", &k)
	if err != nil || len(w) != WrappedDaemonKeySize {
		t.Fatal(err, len(w))
	}
	got, err := m.UnwrapDaemonKey("store", w)
	if err != nil || *got != k {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := m.UnwrapDaemonKey("audit", w); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("opened under another purpose: %v", err)
	}
	// A wrapped daemon key never opens as a session key, or the reverse.
	var id wire.SessionID
	if _, err := m.Unwrap(id, w); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("daemon key opened as a session key: %v", err)
	}
	sk := wire.Key(k)
	sw, _ := m.Wrap(id, &sk)
	if _, err := m.UnwrapDaemonKey(string(id[:]), sw); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("session key opened as a daemon key: %v", err)
	}
	w[5] ^= 1
	if _, err := m.UnwrapDaemonKey("store", w); !errors.Is(err, ErrUnwrap) {
		t.Fatal("tampered wrapped key opened")
	}
	other, _ := initKeyFile(t)
	w[5] ^= 1
	if _, err := other.UnwrapDaemonKey("store", w); !errors.Is(err, ErrUnwrap) {
		t.Fatal("opened under another master")
	}
}

func TestStageCommitAbort(t *testing.T) {
	_, src := initKeyFile(t)
	before, _ := os.ReadFile(src.KeyFile)
	// Over the key in force only when it is the one being replaced.
	if _, err := Stage(src, ""); err == nil {
		t.Fatal("staged over an existing key file")
	}
	moves, err := Plan(src)
	if err != nil {
		t.Fatal(err)
	}
	nm, err := Stage(src, src.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer nm.Destroy()
	// Staged, not in force: the old key still loads.
	if m, err := Load(src); err != nil {
		t.Fatalf("old key after staging: %v", err)
	} else {
		m.Destroy()
	}
	if err := AbortStaged(moves); err != nil {
		t.Fatal(err)
	}
	for _, mv := range moves {
		if _, err := os.Stat(mv.Staged); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left", mv.Staged)
		}
	}
	if _, err := Stage(src, src.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := CommitStaged(moves); err != nil {
		t.Fatal(err)
	}
	if err := CommitStaged(moves); err != nil {
		t.Fatalf("commit is not idempotent: %v", err)
	}
	after, _ := os.ReadFile(src.KeyFile)
	if string(after) == string(before) {
		t.Fatal("key file not replaced")
	}
	if m, err := Load(src); err != nil {
		t.Fatalf("new key after commit: %v", err)
	} else {
		m.Destroy()
	}
	// Credential custody needs a path for the new credential's bytes.
	if _, err := Plan(Source{Custody: CustodySystemdCredential, StateDir: src.StateDir}); err == nil {
		t.Fatal("credential without a key file path planned")
	}
}
