package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// fakeWrapper "wraps" by XOR with a byte, enough to see which master a
// value is under; it refuses a value wrapped under another byte.
type fakeWrapper struct{ b byte }

func (f fakeWrapper) WrapDaemonKey(purpose string, k *[32]byte) ([]byte, error) {
	out := append([]byte{f.b}, k[:]...)
	for i := 1; i < len(out); i++ {
		out[i] ^= f.b
	}
	return out, nil
}

func (f fakeWrapper) UnwrapDaemonKey(purpose string, w []byte) (*[32]byte, error) {
	if len(w) != 33 || w[0] != f.b {
		return nil, errors.New("does not unwrap")
	}
	var k [32]byte
	for i := range k {
		k[i] = w[i+1] ^ f.b
	}
	return &k, nil
}

func TestDaemonKeysAndRewrap(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ironclaw.db")
	legacy := [32]byte{9, 9, 9}
	w1 := fakeWrapper{1}
	s, err := OpenWrapped(path, w1, "content", &legacy)
	if err != nil {
		t.Fatal(err)
	}
	// The adopted key is the legacy one, so old sealed values still open.
	if s.key != legacy {
		t.Fatal("content key is not the adopted one")
	}
	other := [32]byte{5}
	if k, err := s.DaemonKey(ctx, w1, "content", &other); err != nil || *k != legacy {
		t.Fatalf("a recorded key was replaced: %v", err)
	}
	if _, err := s.DaemonKey(ctx, fakeWrapper{2}, "content", &other); err == nil {
		t.Fatal("a key that does not unwrap was accepted or replaced")
	}
	ids := []wire.SessionID{newID(t), newID(t), newID(t)}
	for i, id := range ids {
		if err := s.CreateSession(ctx, id, "b"+string(rune('0'+i)), []byte{1, byte(i)}, testProfile("")); err != nil {
			t.Fatal(err)
		}
	}
	if e, err := ReadEpoch(path); err != nil || e != "" {
		t.Fatalf("epoch before any rotation: %q %v", e, err)
	}
	// A rewrap that fails on the third session changes nothing at all.
	calls := 0
	_, err = s.Rewrap(ctx, "e1",
		func(id wire.SessionID, w []byte) ([]byte, error) {
			if calls++; calls == 3 {
				return nil, errors.New("boom")
			}
			return append([]byte{2}, w[1:]...), nil
		},
		func(p string, w []byte) ([]byte, error) { return w, nil })
	if err == nil {
		t.Fatal("failed rewrap reported success")
	}
	for _, id := range ids {
		if got, _ := s.GetSession(ctx, id); got.WrappedKey[0] != 1 {
			t.Fatal("a failed rewrap changed a session key")
		}
	}
	if e, _ := ReadEpoch(path); e != "" {
		t.Fatalf("a failed rewrap moved the epoch to %q", e)
	}
	n, err := s.Rewrap(ctx, "e2",
		func(id wire.SessionID, w []byte) ([]byte, error) { return append([]byte{2}, w[1:]...), nil },
		func(p string, w []byte) ([]byte, error) {
			k, err := w1.UnwrapDaemonKey(p, w)
			if err != nil {
				return nil, err
			}
			return fakeWrapper{2}.WrapDaemonKey(p, k)
		})
	if err != nil || n != 3 {
		t.Fatalf("rewrap: %d %v", n, err)
	}
	if e, _ := ReadEpoch(path); e != "e2" {
		t.Fatalf("epoch %q", e)
	}
	if k, err := s.DaemonKey(ctx, fakeWrapper{2}, "content", &other); err != nil || *k != legacy {
		t.Fatalf("daemon key after rewrap: %v", err)
	}
	if _, err := s.Rewrap(ctx, "", nil, nil); err == nil {
		t.Fatal("empty epoch accepted")
	}

	// Backup: a copy that opens with the same wrapper and holds the sessions.
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := s.BackupTo(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if err := s.BackupTo(ctx, cp); err == nil {
		t.Fatal("backup over an existing file")
	}
	s.Close()
	c, err := OpenWrapped(cp, fakeWrapper{2}, "content", &other)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.ListSessions(ctx)
	if err != nil || len(list) != 3 || !bytes.Equal(list[0].WrappedKey[:1], []byte{2}) {
		t.Fatalf("copy: %v %v", list, err)
	}
	if _, _, err := c.CurrentProfile(ctx, ids[0]); err != nil {
		t.Fatalf("sealed profile in the copy: %v", err)
	}
}

func TestAdvanceCursors(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:c")
	if err := s.AdvanceCursors(ctx, id, map[string]uint64{CursorOutboxDelivered: 5, CursorInboxConsumed: 3}); err != nil {
		t.Fatal(err)
	}
	// One going back: neither moves.
	err := s.AdvanceCursors(ctx, id, map[string]uint64{CursorOutboxDelivered: 9, CursorInboxConsumed: 2})
	if !errors.Is(err, ErrBackwards) {
		t.Fatalf("backwards: %v", err)
	}
	if v, _ := s.Cursor(ctx, id, CursorOutboxDelivered); v != 5 {
		t.Fatalf("delivered moved to %d in a refused transaction", v)
	}
}
