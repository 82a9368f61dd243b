package inbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// newInbox makes a session's queues with the daemon's own writer (a test-only import:
// agentd itself links nothing from daemon/) and appends three rows.
func newInbox(t *testing.T) (path string, id wire.SessionID, key *wire.Key) {
	t.Helper()
	id, err := wire.NewSessionID()
	if err != nil {
		t.Fatal(err)
	}
	key = new(wire.Key)
	rand.Read(key[:])
	dir := filepath.Join(t.TempDir(), id.String())
	if err := queue.Create(dir, queue.NoChown); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, wire.InboxDir, wire.InboxFile)
	w, err := queue.OpenInbox(path, id, key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Append(context.Background(), wire.Message{Text: "one"}, wire.Message{Text: "two"}, wire.Message{Text: "three"}); err != nil {
		t.Fatal(err)
	}
	return path, id, key
}

// TestOpenIsReadOnly is layer (b) of the read-only inbox on its own: the connection
// inbox.Open hands the agent refuses every write, even raw SQL on r.conn, even after the
// agent turns query_only off. The file and its directory are writable here (no mount, the
// test's own user), so only the open flags and query_only stand in the way.
//
// Each write is tried on a fresh Reader, so that one refused attempt cannot hide another.
// The last case is the one that guards the open flag itself: query_only alone would
// refuse the first ones, but the agent can switch it off, and then only
// SQLITE_OPEN_READONLY is left.
func TestOpenIsReadOnly(t *testing.T) {
	path, id, key := newInbox(t)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon keeps its journal between commits (PERSIST, header
	// zeroed): the agent must not have touched it either.
	journalBefore, _ := os.ReadFile(path + "-journal")
	cases := []struct {
		name  string
		stmts []string // run in order: the agent's preparation, which must work, then a write that must fail
	}{
		{"insert", []string{"INSERT INTO rows (seq, sealed) VALUES (4, x'00')"}},
		{"update", []string{"UPDATE rows SET sealed = x'00' WHERE seq = 1"}},
		{"delete", []string{"DELETE FROM rows"}},
		{"create table", []string{"CREATE TABLE t (x)"}},
		{"drop table", []string{"DROP TABLE rows"}},
		{"user_version", []string{"PRAGMA user_version = 7"}},
		{"query_only off, then insert", []string{"PRAGMA query_only=OFF", "INSERT INTO rows (seq, sealed) VALUES (4, x'00')"}},
		{"query_only off, then delete", []string{"PRAGMA query_only=OFF", "DELETE FROM rows"}},
		{"query_only off, then create table", []string{"PRAGMA query_only=OFF", "CREATE TABLE t (x)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Open(path, id, key)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for i, s := range c.stmts {
				err := sqlitex.ExecuteTransient(r.conn, s, nil)
				if i < len(c.stmts)-1 {
					if err != nil {
						t.Fatalf("preparation %s: %v (if SQLite now refuses it, this case no longer isolates the open flag)", s, err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("%s succeeded through the agent's inbox connection", s)
				}
				if code := sqlite.ErrCode(err); code.ToPrimary() != sqlite.ResultReadOnly {
					t.Fatalf("%s: got %v (%v), want SQLITE_READONLY", s, err, code)
				}
				t.Logf("refused: %s: %v", s, err)
			}
			// The reader still works: nothing it did broke it or the file.
			rows, err := r.Read(0, 0)
			if err != nil || len(rows) != 3 || rows[2].Body.(wire.Message).Text != "three" {
				t.Fatalf("read after the attempt: %d rows, %v", len(rows), err)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatalf("the inbox's bytes changed")
			}
			if j, _ := os.ReadFile(path + "-journal"); !bytes.Equal(j, journalBefore) {
				t.Fatalf("the journal beside the inbox changed (%d bytes, was %d)", len(j), len(journalBefore))
			}
		})
	}
}
