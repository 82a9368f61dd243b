package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

func testKey(t testing.TB) *[32]byte {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return &k
}

func openTest(t testing.TB) (*Store, string, *[32]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ironclaw.db")
	key := testKey(t)
	s, err := Open(path, key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path, key
}

func newID(t testing.TB) wire.SessionID {
	t.Helper()
	id, err := wire.NewSessionID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func testProfile(instructions string) profile.Profile {
	p := profile.Default("tiny", "sha256:"+strings.Repeat("ab", 32))
	if instructions != "" {
		p.Instructions = instructions
	}
	return p
}

func mustCreate(t testing.TB, s *Store, binding string) (wire.SessionID, []byte) {
	t.Helper()
	id := newID(t)
	wk := randBytes(t, 73)
	if err := s.CreateSession(context.Background(), id, binding, wk, testProfile("")); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return id, wk
}

// rawConn opens the database file directly, for tests that inspect or
// tamper with it while the store is closed.
func rawConn(t testing.TB, path string) *sqlite.Conn {
	t.Helper()
	c, err := sqlite.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rawInt(t testing.TB, c *sqlite.Conn, q string) int64 {
	t.Helper()
	v, err := pragmaInt(c, q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// dirBytes returns the contents of every file under dir, by name.
func dirBytes(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[filepath.Base(p)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// filesWithFragment returns the files holding any 8-byte window of secret:
// a partly overwritten key is still a leak. (A false hit on random bytes is
// about 2^-64 per window and position.)
func filesWithFragment(files map[string][]byte, secret []byte) []string {
	var hits []string
	for name, b := range files {
		for i := 0; i+8 <= len(secret); i++ {
			if bytes.Contains(b, secret[i:i+8]) {
				hits = append(hits, fmt.Sprintf("%s (bytes %d-%d)", name, i, i+8))
				break
			}
		}
	}
	return hits
}

func filesContaining(files map[string][]byte, needle []byte) []string {
	var hits []string
	for name, b := range files {
		if bytes.Contains(b, needle) {
			hits = append(hits, name)
		}
	}
	return hits
}

func TestMigrateFromEmpty(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "console:local") // the schema works
	if _, _, ok, err := s.AuditAnchor(ctx); err != nil || ok {
		t.Fatalf("AuditAnchor on a new store: ok=%v err=%v", ok, err)
	}
	for _, name := range []string{"ironclaw.db", "ironclaw.db-wal", "ironclaw.db-shm"} {
		fi, err := os.Stat(filepath.Join(filepath.Dir(path), name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c := rawConn(t, path)
	if v := rawInt(t, c, "PRAGMA user_version"); v != int64(len(migrations)) {
		t.Errorf("user_version = %d, want %d", v, len(migrations))
	}
	if v := rawInt(t, c, "PRAGMA application_id"); v != applicationID {
		t.Errorf("application_id = %#x", v)
	}
	if m, _ := pragmaText(c, "PRAGMA journal_mode"); m != "wal" {
		t.Errorf("journal_mode = %q, want wal", m)
	}
}

func TestPragmasPerConnection(t *testing.T) {
	s, _, _ := openTest(t)
	err := s.read(context.Background(), func(c *sqlite.Conn) error {
		for q, want := range map[string]int64{
			"PRAGMA synchronous":    2, // FULL
			"PRAGMA foreign_keys":   1,
			"PRAGMA secure_delete":  1,
			"PRAGMA trusted_schema": 0,
		} {
			if got := rawInt(t, c, q); got != want {
				t.Errorf("%s = %d, want %d", q, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReopenIdempotent(t *testing.T) {
	s, path, key := openTest(t)
	ctx := context.Background()
	id, wk := mustCreate(t, s, "console:local")
	s.Close()
	for range 3 {
		s2, err := Open(path, key)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		got, err := s2.GetSession(ctx, id)
		if err != nil || !bytes.Equal(got.WrappedKey, wk) || got.ProfileVersion != 1 {
			t.Fatalf("after reopen: %+v, %v", got, err)
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if v := rawInt(t, rawConn(t, path), "PRAGMA user_version"); v != int64(len(migrations)) {
		t.Errorf("user_version = %d after reopening", v)
	}
}

func TestRefuseNewerSchema(t *testing.T) {
	s, path, key := openTest(t)
	s.Close()
	c := rawConn(t, path)
	if err := sqlitex.ExecuteTransient(c, fmt.Sprintf("PRAGMA user_version=%d", len(migrations)+1), nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, err := Open(path, key)
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open of a newer database: %v, want ErrNewerSchema", err)
	}
	if !strings.Contains(err.Error(), "newer ironclaw; upgrade") {
		t.Errorf("error does not tell the operator what to do: %v", err)
	}
}

func TestRefuseForeignDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	c, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlitex.ExecuteTransient(c, "CREATE TABLE t (x)", nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, testKey(t)); err == nil || !strings.Contains(err.Error(), "not an ironclaw store") {
		t.Fatalf("Open of a foreign database: %v", err)
	}
	// A database other users can read is refused.
	s, own, key := openTest(t)
	s.Close()
	if err := os.Chmod(own, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(own, key); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Open of a 0644 database: %v", err)
	}
	// A symlink is refused too.
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, testKey(t)); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Open of a symlink: %v", err)
	}
}

// A failing step rolls back entirely: no half-made table, no version bump.
func TestMigrationStepIsAtomic(t *testing.T) {
	s, path, key := openTest(t)
	s.Close()
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = append(saved[:len(saved):len(saved)], "CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1);")
	if _, err := Open(path, key); err == nil {
		t.Fatal("Open succeeded with a failing migration step")
	}
	c := rawConn(t, path)
	if v := rawInt(t, c, "PRAGMA user_version"); v != int64(len(saved)) {
		t.Errorf("user_version = %d after a failed step, want %d", v, len(saved))
	}
	if n := rawInt(t, c, "SELECT count(*) FROM sqlite_schema WHERE name = 'half'"); n != 0 {
		t.Error("the failed step's table survived")
	}
	c.Close()
	// And a good appended step applies on the next open.
	migrations = append(saved[:len(saved):len(saved)], "CREATE TABLE later (x INTEGER) STRICT;")
	s2, err := Open(path, key)
	if err != nil {
		t.Fatalf("Open with an appended step: %v", err)
	}
	s2.Close()
	if v := rawInt(t, rawConn(t, path), "PRAGMA user_version"); v != int64(len(saved)+1) {
		t.Errorf("user_version = %d, want %d", v, len(saved)+1)
	}
}

func TestSessionCRUD(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	if _, err := s.GetSession(ctx, newID(t)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession of unknown id: %v", err)
	}
	if _, err := s.SessionByBinding(ctx, "console:local"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SessionByBinding of unknown binding: %v", err)
	}
	a, wkA := mustCreate(t, s, "console:local")
	b, _ := mustCreate(t, s, "matrix:!room:server")

	got, err := s.GetSession(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a || got.Binding != "console:local" || got.State != StateActive ||
		!bytes.Equal(got.WrappedKey, wkA) || got.ProfileVersion != 1 || got.Created.IsZero() {
		t.Fatalf("GetSession = %+v", got)
	}
	byB, err := s.SessionByBinding(ctx, "matrix:!room:server")
	if err != nil || byB.ID != b {
		t.Fatalf("SessionByBinding = %+v, %v", byB, err)
	}
	list, err := s.ListSessions(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListSessions = %d sessions, %v", len(list), err)
	}

	if err := s.EraseSession(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetSession(ctx, a)
	if err != nil || got.State != StateErased || got.WrappedKey != nil || got.ProfileVersion != 0 {
		t.Fatalf("after erase: %+v, %v", got, err)
	}
	if err := s.EraseSession(ctx, a); err != nil {
		t.Fatalf("second erase: %v", err)
	}
	if _, _, err := s.CurrentProfile(ctx, a); !errors.Is(err, ErrErased) {
		t.Errorf("CurrentProfile of erased: %v", err)
	}
	if _, err := s.Profile(ctx, a, 1); !errors.Is(err, ErrErased) {
		t.Errorf("Profile of erased: %v", err)
	}
	if _, err := s.Cursor(ctx, a, CursorInboxNext); !errors.Is(err, ErrErased) {
		t.Errorf("Cursor of erased: %v", err)
	}
	if err := s.SetCursor(ctx, a, CursorInboxNext, 1); !errors.Is(err, ErrErased) {
		t.Errorf("SetCursor of erased: %v", err)
	}
	if err := s.RecordIntent(ctx, a, 1, "t1"); !errors.Is(err, ErrErased) {
		t.Errorf("RecordIntent of erased: %v", err)
	}
	if _, err := s.putProfileVersion(ctx, a, 0, testProfile("")); !errors.Is(err, ErrErased) {
		t.Errorf("putProfileVersion of erased: %v", err)
	}
	if _, err := s.SessionByBinding(ctx, "console:local"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SessionByBinding finds an erased session: %v", err)
	}
	// The id is never reused, even after erase.
	if err := s.CreateSession(ctx, a, "console:other", randBytes(t, 73), testProfile("")); !errors.Is(err, ErrExists) {
		t.Errorf("CreateSession reusing an erased id: %v", err)
	}
	// The binding is free again for a new session.
	c, _ := mustCreate(t, s, "console:local")
	if got, err := s.SessionByBinding(ctx, "console:local"); err != nil || got.ID != c {
		t.Errorf("SessionByBinding after rebinding = %+v, %v", got, err)
	}
	if err := s.EraseSession(ctx, newID(t)); !errors.Is(err, ErrNotFound) {
		t.Errorf("EraseSession of unknown id: %v", err)
	}
	list, _ = s.ListSessions(ctx)
	if len(list) != 3 {
		t.Errorf("ListSessions after erase = %d, want 3 (erased rows stay)", len(list))
	}
}

func TestCreateSessionRefusesBadInput(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	p := testProfile("")
	for name, err := range map[string]error{
		"empty binding":   s.CreateSession(ctx, newID(t), "", randBytes(t, 73), p),
		"control binding": s.CreateSession(ctx, newID(t), "console:\x1b[2J", randBytes(t, 73), p),
		"no key":          s.CreateSession(ctx, newID(t), "console:x", nil, p),
		"huge key":        s.CreateSession(ctx, newID(t), "console:x", make([]byte, MaxWrappedKeyLen+1), p),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if l, _ := s.ListSessions(ctx); len(l) != 0 {
		t.Errorf("refused sessions left %d rows", len(l))
	}
}

func TestBindingUnique(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	a, _ := mustCreate(t, s, "matrix:!room:server")
	b := newID(t)
	err := s.CreateSession(ctx, b, "matrix:!room:server", randBytes(t, 73), testProfile(""))
	if !errors.Is(err, ErrBindingTaken) {
		t.Fatalf("second session on one binding: %v", err)
	}
	if _, err := s.GetSession(ctx, b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused session was written: %v", err)
	}
	if got, _ := s.SessionByBinding(ctx, "matrix:!room:server"); got.ID != a {
		t.Fatal("binding moved")
	}
}

func TestProfileCAS(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:local")
	v, p1, err := s.CurrentProfile(ctx, id)
	if err != nil || v != 1 || !bytes.Equal(p1.Canonical(), testProfile("").Canonical()) {
		t.Fatalf("CurrentProfile = %d, %v", v, err)
	}
	p2 := testProfile("version two")
	nv, err := s.putProfileVersion(ctx, id, 1, p2)
	if err != nil || nv != 2 {
		t.Fatalf("putProfileVersion = %d, %v", nv, err)
	}
	// A change made against version 1 is now stale: refused, nothing written.
	_, err = s.putProfileVersion(ctx, id, 1, testProfile("lost update"))
	if !errors.Is(err, ErrStale) {
		t.Fatalf("stale putProfileVersion: %v, want ErrStale", err)
	}
	if _, err := s.putProfileVersion(ctx, id, 5, testProfile("future base")); !errors.Is(err, ErrStale) {
		t.Fatalf("future base: %v, want ErrStale", err)
	}
	v, cur, err := s.CurrentProfile(ctx, id)
	if err != nil || v != 2 || cur.Instructions != "version two" {
		t.Fatalf("after stale write: version %d %q, %v", v, cur.Instructions, err)
	}
	if _, err := s.Profile(ctx, id, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stale write left version 3: %v", err)
	}
	old, err := s.Profile(ctx, id, 1)
	if err != nil || old.Instructions != p1.Instructions {
		t.Fatalf("old version: %q, %v", old.Instructions, err)
	}
	if sess, _ := s.GetSession(ctx, id); sess.ProfileVersion != 2 {
		t.Fatalf("session profile_version = %d", sess.ProfileVersion)
	}
}

func TestCursorsForwardOnly(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:local")
	if v, err := s.Cursor(ctx, id, CursorInboxNext); err != nil || v != 0 {
		t.Fatalf("unset cursor = %d, %v", v, err)
	}
	if err := s.AdvanceCursor(ctx, id, CursorInboxNext, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.AdvanceCursor(ctx, id, CursorInboxNext, 5); err != nil {
		t.Fatalf("advancing to the same value (a retry): %v", err)
	}
	if err := s.AdvanceCursor(ctx, id, CursorInboxNext, 4); !errors.Is(err, ErrBackwards) {
		t.Fatalf("moving back: %v, want ErrBackwards", err)
	}
	if v, _ := s.Cursor(ctx, id, CursorInboxNext); v != 5 {
		t.Fatalf("cursor = %d after refused move, want 5", v)
	}
	if err := s.SetCursor(ctx, id, CursorInboxNext, 2); err != nil {
		t.Fatalf("SetCursor (explicit repair): %v", err)
	}
	if v, _ := s.Cursor(ctx, id, CursorInboxNext); v != 2 {
		t.Fatalf("cursor = %d after SetCursor, want 2", v)
	}
	if err := s.SetCursor(ctx, id, CursorInboxNext, 1<<63); err == nil {
		t.Error("cursor beyond int64 accepted")
	}
	if err := s.SetCursor(ctx, id, "bad name", 1); err == nil {
		t.Error("cursor name with a space accepted")
	}
	if err := s.SetCursor(ctx, newID(t), CursorInboxNext, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("cursor of unknown session: %v", err)
	}
	// Cursors are per session.
	other, _ := mustCreate(t, s, "console:other")
	if v, _ := s.Cursor(ctx, other, CursorInboxNext); v != 0 {
		t.Errorf("other session's cursor = %d", v)
	}
}

func TestIntents(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "matrix:!room:server")
	if err := s.RecordIntent(ctx, id, 1, "txn-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIntent(ctx, id, 1, "txn-1"); err != nil {
		t.Fatalf("repeating an intent: %v", err)
	}
	if err := s.RecordIntent(ctx, id, 1, "txn-other"); !errors.Is(err, ErrConflict) {
		t.Fatalf("same seq, other txn: %v, want ErrConflict", err)
	}
	if err := s.RecordIntent(ctx, id, 2, "txn-2"); err != nil {
		t.Fatal(err)
	}
	pend, err := s.PendingIntents(ctx, id, 0)
	if err != nil || len(pend) != 2 || pend[0].OutboxSeq != 1 || pend[0].TxnID != "txn-1" || pend[1].OutboxSeq != 2 {
		t.Fatalf("PendingIntents = %+v, %v", pend, err)
	}
	if err := s.MarkDelivered(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDelivered(ctx, id, 1); err != nil {
		t.Fatalf("repeating MarkDelivered: %v", err)
	}
	if v, _ := s.Cursor(ctx, id, CursorOutboxDelivered); v != 1 {
		t.Fatalf("outbox.delivered = %d, want 1", v)
	}
	if err := s.RecordIntent(ctx, id, 1, "txn-1"); !errors.Is(err, ErrDelivered) {
		t.Fatalf("intent for a delivered row: %v, want ErrDelivered", err)
	}
	if err := s.MarkDelivered(ctx, id, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkDelivered without intent: %v, want ErrNotFound", err)
	}
	if v, _ := s.Cursor(ctx, id, CursorOutboxDelivered); v != 1 {
		t.Fatalf("outbox.delivered moved without an intent: %d", v)
	}
	pend, _ = s.PendingIntents(ctx, id, 0)
	if len(pend) != 1 || pend[0].OutboxSeq != 2 {
		t.Fatalf("PendingIntents after delivery = %+v", pend)
	}
	if err := s.RecordIntent(ctx, id, 0, "x"); err == nil {
		t.Error("outbox seq 0 accepted")
	}
	if err := s.RecordIntent(ctx, id, 4, ""); err == nil {
		t.Error("empty txn id accepted")
	}
}

func TestAuditAnchor(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	h1 := [32]byte{1}
	h2 := [32]byte{2}
	if err := s.SetAuditAnchor(ctx, 10, h1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAuditAnchor(ctx, 10, h1); err != nil {
		t.Fatalf("repeating the anchor: %v", err)
	}
	if err := s.SetAuditAnchor(ctx, 10, h2); !errors.Is(err, ErrBackwards) {
		t.Fatalf("same seq, other hash: %v", err)
	}
	if err := s.SetAuditAnchor(ctx, 9, h2); !errors.Is(err, ErrBackwards) {
		t.Fatalf("anchor moved back: %v", err)
	}
	if err := s.SetAuditAnchor(ctx, 11, h2); err != nil {
		t.Fatal(err)
	}
	seq, h, ok, err := s.AuditAnchor(ctx)
	if err != nil || !ok || seq != 11 || h != h2 {
		t.Fatalf("AuditAnchor = %d %x %v %v", seq, h[:2], ok, err)
	}
}

// The promise of crypto-erase: after EraseSession the wrapped key's bytes are
// in no file of the database, while the daemon keeps running and after.
// Victims with bindings of several lengths shift where the key sits in its
// cell, so the test sees a leak whichever layout SQLite picks (measured:
// with secure_delete off, a short binding leaves part of the key behind).
func TestEraseRemovesWrappedKeyFromFiles(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	dir := filepath.Dir(path)
	var keep [][]byte
	for i := range 5 {
		_, wk := mustCreate(t, s, fmt.Sprintf("console:keep%d", i))
		keep = append(keep, wk)
	}
	type victim struct {
		id wire.SessionID
		wk []byte
	}
	var victims []victim
	for _, n := range []int{1, 4, 8, 16, 32, 64} {
		id, wk := mustCreate(t, s, "m:"+strings.Repeat("v", n))
		victims = append(victims, victim{id, wk})
		_, k := mustCreate(t, s, fmt.Sprintf("console:after%d", n))
		keep = append(keep, k)
	}
	// Put the keys in the database file proper too, not only in the WAL,
	// and write more so their pages are rewritten in later WAL frames.
	if err := s.read(ctx, func(c *sqlite.Conn) error { return checkpoint(c) }); err != nil {
		t.Fatal(err)
	}
	for _, v := range victims {
		if err := s.SetCursor(ctx, v.id, CursorInboxNext, 7); err != nil {
			t.Fatal(err)
		}
		if hits := filesContaining(dirBytes(t, dir), v.wk); len(hits) == 0 {
			t.Fatal("test is blind: a wrapped key is not in any file before erase")
		}
	}

	for _, v := range victims {
		if err := s.EraseSession(ctx, v.id); err != nil {
			t.Fatal(err)
		}
	}
	files := dirBytes(t, dir)
	for _, v := range victims {
		if hits := filesWithFragment(files, v.wk); len(hits) != 0 {
			t.Errorf("wrapped key still in %v after erase (store open)", hits)
		}
	}
	if wal := files["ironclaw.db-wal"]; len(wal) != 0 {
		t.Errorf("-wal is %d bytes after erase, want truncated", len(wal))
	}
	// The other sessions' keys survive erase.
	for i, k := range keep {
		if len(filesContaining(files, k)) == 0 {
			t.Errorf("session %d's key was lost by another session's erase", i)
		}
	}
	s.Close()
	files = dirBytes(t, dir)
	for _, v := range victims {
		if hits := filesWithFragment(files, v.wk); len(hits) != 0 {
			t.Errorf("wrapped key in %v after close", hits)
		}
	}
}

// Promise 3 for the store: profile text (owner-private instructions) never
// reaches any file in plaintext.
func TestSealedProfileNotInFiles(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	marker := "MARKER-" + fmt.Sprintf("%x", randBytes(t, 12))
	id := newID(t)
	if err := s.CreateSession(ctx, id, "console:local", randBytes(t, 73), testProfile("first "+marker)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.putProfileVersion(ctx, id, 1, testProfile("second "+marker+"\nline two")); err != nil {
		t.Fatal(err)
	}
	_, p, err := s.CurrentProfile(ctx, id)
	if err != nil || !strings.Contains(p.Instructions, marker) {
		t.Fatalf("marker not read back: %q, %v", p.Instructions, err)
	}
	dir := filepath.Dir(path)
	if len(dirBytes(t, dir)["ironclaw.db-wal"]) == 0 {
		t.Fatal("test is blind: nothing in the WAL")
	}
	if hits := filesContaining(dirBytes(t, dir), []byte(marker)); len(hits) != 0 {
		t.Fatalf("profile plaintext found in %v (store open)", hits)
	}
	s.Close()
	if hits := filesContaining(dirBytes(t, dir), []byte(marker)); len(hits) != 0 {
		t.Fatalf("profile plaintext found in %v (store closed)", hits)
	}
}

// A sealed value moved to another row or session, or read with another key,
// is refused.
func TestSealedValueBoundToItsRow(t *testing.T) {
	s, path, key := openTest(t)
	ctx := context.Background()
	a, _ := mustCreate(t, s, "console:a")
	b, _ := mustCreate(t, s, "console:b")
	if _, err := s.putProfileVersion(ctx, a, 1, testProfile("a two")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	tamper := func(t *testing.T, q string) {
		t.Helper()
		c := rawConn(t, path)
		if err := sqlitex.ExecuteTransient(c, q, nil); err != nil {
			t.Fatal(err)
		}
		if c.Changes() != 1 {
			t.Fatalf("tamper changed %d rows", c.Changes())
		}
		c.Close()
	}
	reopen := func(t *testing.T, k *[32]byte) *Store {
		t.Helper()
		s, err := Open(path, k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	// Wrong key: nothing opens.
	s2 := reopen(t, testKey(t))
	if _, err := s2.Profile(ctx, a, 1); !errors.Is(err, ErrSealed) {
		t.Fatalf("profile under another key: %v, want ErrSealed", err)
	}
	s2.Close()

	// Another session's value.
	tamper(t, fmt.Sprintf(`UPDATE profiles SET canonical = (SELECT canonical FROM profiles WHERE session_id = '%s' AND version = 1)
		WHERE session_id = '%s' AND version = 1`, a, b))
	// Another version's value within one session.
	tamper(t, fmt.Sprintf(`UPDATE profiles SET canonical = (SELECT canonical FROM profiles WHERE session_id = '%s' AND version = 1)
		WHERE session_id = '%s' AND version = 2`, a, a))
	s3 := reopen(t, key)
	if _, err := s3.Profile(ctx, b, 1); !errors.Is(err, ErrSealed) {
		t.Errorf("profile moved from another session: %v, want ErrSealed", err)
	}
	if _, _, err := s3.CurrentProfile(ctx, a); !errors.Is(err, ErrSealed) {
		t.Errorf("profile moved from another version: %v, want ErrSealed", err)
	}
	if _, err := s3.Profile(ctx, a, 1); err != nil {
		t.Errorf("untouched profile: %v", err)
	}
	s3.Close()

	// A flipped byte.
	c := rawConn(t, path)
	var blob []byte
	err := sqlitex.Execute(c, "SELECT canonical FROM profiles WHERE session_id = ? AND version = 1", &sqlitex.ExecOptions{
		Args: []any{a.String()},
		ResultFunc: func(st *sqlite.Stmt) error {
			blob = make([]byte, st.ColumnLen(0))
			st.ColumnBytes(0, blob)
			return nil
		},
	})
	if err != nil || len(blob) < 50 {
		t.Fatalf("reading the sealed blob: %d bytes, %v", len(blob), err)
	}
	blob[40] ^= 1
	if err := sqlitex.Execute(c, "UPDATE profiles SET canonical = ? WHERE session_id = ? AND version = 1", &sqlitex.ExecOptions{
		Args: []any{blob, a.String()},
	}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s4 := reopen(t, key)
	if _, err := s4.Profile(ctx, a, 1); !errors.Is(err, ErrSealed) {
		t.Errorf("tampered profile: %v, want ErrSealed", err)
	}
}

func TestSealColumnBinding(t *testing.T) {
	key := testKey(t)
	a, b := newID(t), newID(t)
	sealed, err := sealColumn(key, "profiles", a, 3, []byte("body"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := openColumn(key, "profiles", a, 3, sealed); err != nil || string(got) != "body" {
		t.Fatalf("openColumn = %q, %v", got, err)
	}
	for name, f := range map[string]func() ([]byte, error){
		"other table":   func() ([]byte, error) { return openColumn(key, "changes", a, 3, sealed) },
		"other session": func() ([]byte, error) { return openColumn(key, "profiles", b, 3, sealed) },
		"other row":     func() ([]byte, error) { return openColumn(key, "profiles", a, 4, sealed) },
		"truncated":     func() ([]byte, error) { return openColumn(key, "profiles", a, 3, sealed[:len(sealed)-1]) },
		"empty":         func() ([]byte, error) { return openColumn(key, "profiles", a, 3, nil) },
	} {
		if _, err := f(); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: %v, want ErrSealed", name, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	const workers, each = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	ids := make([][]wire.SessionID, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := newID(t)
				ids[w] = append(ids[w], id)
				if err := s.CreateSession(ctx, id, fmt.Sprintf("console:%d-%d", w, i), randBytes(t, 73), testProfile("")); err != nil {
					errs <- err
					return
				}
				for seq := uint64(1); seq <= 3; seq++ {
					if err := s.AdvanceCursor(ctx, id, CursorInboxNext, seq); err != nil {
						errs <- err
					}
				}
				if _, _, err := s.CurrentProfile(ctx, id); err != nil {
					errs <- err
				}
				if _, err := s.ListSessions(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	// Meanwhile, many goroutines race compare-and-swaps on one session:
	// each base version must be won exactly once.
	shared, _ := mustCreate(t, s, "console:shared")
	const racers, rounds = 8, 5
	var mu sync.Mutex
	wins := map[uint64]int{}
	for range racers {
		wg.Go(func() {
			for range rounds {
				base, _, err := s.CurrentProfile(ctx, shared)
				if err != nil {
					errs <- err
					return
				}
				nv, err := s.putProfileVersion(ctx, shared, base, testProfile(fmt.Sprint("v", base+1)))
				if errors.Is(err, ErrStale) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				wins[nv]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := s.ListSessions(ctx)
	if err != nil || len(list) != workers*each+1 {
		t.Fatalf("ListSessions = %d, %v", len(list), err)
	}
	for w := range ids {
		for _, id := range ids[w] {
			if v, err := s.Cursor(ctx, id, CursorInboxNext); err != nil || v != 3 {
				t.Fatalf("cursor = %d, %v", v, err)
			}
		}
	}
	final, _, err := s.CurrentProfile(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	for v := uint64(2); v <= final; v++ {
		if wins[v] != 1 {
			t.Errorf("version %d was written %d times", v, wins[v])
		}
	}
	if len(wins) != int(final-1) {
		t.Errorf("%d wins for %d versions", len(wins), final-1)
	}
}

func TestContextAndClose(t *testing.T) {
	s, _, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.ListSessions(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.ListSessions(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("use after Close: %v", err)
	}
	if s.key != [32]byte{} {
		t.Error("content key not wiped on Close")
	}
}

func TestOpenNeedsKeyAndDirectory(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), nil); err == nil {
		t.Error("nil key accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "x.db"), testKey(t)); err == nil {
		t.Error("missing directory accepted")
	}
}

func BenchmarkCreateSession(b *testing.B) {
	s, _, _ := openTest(b)
	ctx := context.Background()
	p := testProfile("")
	wk := randBytes(b, 73)
	i := 0
	for b.Loop() {
		i++
		if err := s.CreateSession(ctx, newID(b), fmt.Sprint("console:", i), wk, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetCursor(b *testing.B) {
	s, _, _ := openTest(b)
	ctx := context.Background()
	id, _ := mustCreate(b, s, "console:bench")
	v := uint64(0)
	for b.Loop() {
		v++
		if err := s.SetCursor(ctx, id, CursorInboxNext, v); err != nil {
			b.Fatal(err)
		}
	}
}
