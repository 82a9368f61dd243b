package outbox

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

func newOutbox(t *testing.T) (string, wire.SessionID, *wire.Key) {
	t.Helper()
	path := filepath.Join(t.TempDir(), wire.OutboxFile)
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenNoMutex)
	if err != nil {
		t.Fatal(err)
	}
	if err := queuedb.Pragmas(conn, "PRAGMA journal_mode=DELETE", wire.RowsTable); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	id, err := wire.NewSessionID()
	if err != nil {
		t.Fatal(err)
	}
	var key wire.Key
	rand.Read(key[:])
	return path, id, &key
}

func count(t *testing.T, w *Writer) (n int, lo int64) {
	t.Helper()
	err := sqlitex.Execute(w.conn, "SELECT count(*), coalesce(min(seq), 0) FROM rows", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error { n, lo = s.ColumnInt(0), s.ColumnInt64(1); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, lo
}

// Pruning what the daemon took keeps the outbox to its backlog: the newest
// Progress row survives (so a restart resumes), the head and sequence go on
// across a reopen, the daemon can still read contiguously after what it
// took, and the file stops growing.
func TestPrune(t *testing.T) {
	path, id, key := newOutbox(t)
	w, err := Open(path, id, key)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("r", 300)
	var size int64
	for i := 1; i <= 1000; i++ {
		head, err := w.Append(wire.Reply{Text: text, InReplyTo: uint64(i)}, wire.Progress{Inbox: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Prune(head); err != nil {
			t.Fatal(err)
		}
		if i == 100 {
			fi, _ := os.Stat(path)
			size = fi.Size()
		}
	}
	if n, lo := count(t, w); n != 1 || uint64(lo) != w.Head() {
		t.Fatalf("after pruning: %d rows from %d, want only the head %d", n, lo, w.Head())
	}
	if fi, _ := os.Stat(path); fi.Size() > size {
		t.Fatalf("outbox grew from %d to %d bytes while pruned", size, fi.Size())
	}
	if p, err := w.Progress(); err != nil || p != 1000 {
		t.Fatalf("progress after prune: %d %v", p, err)
	}

	// A taken beyond the head, or rows after the last Progress row: the
	// Progress row is kept all the same.
	if _, err := w.Append(wire.Reply{Text: "a", InReplyTo: 1001}); err != nil {
		t.Fatal(err)
	}
	if err := w.Prune(w.Head() + 100); err != nil {
		t.Fatal(err)
	}
	if p, err := w.Progress(); err != nil || p != 1000 {
		t.Fatalf("progress after an over-eager prune: %d %v", p, err)
	}
	if n, _ := count(t, w); n != 2 {
		t.Fatalf("%d rows left, want the progress row and the reply after it", n)
	}
	w.Close()

	// Reopened, the sequence goes on; the daemon reads on from what it took.
	w, err = Open(path, id, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	taken := w.Head() - 1
	if _, err := w.Append(wire.Progress{Inbox: 1001}); err != nil {
		t.Fatal(err)
	}
	rows, err := queuedb.Read(w.conn, id, wire.Outbox, key, taken, 0)
	if err != nil || len(rows) != 2 || rows[1].Header.Seq != 2002 {
		t.Fatalf("reading after %d: %d rows, %v", taken, len(rows), err)
	}
}

// TestAppendPrunesTaken: what the daemon said it took (Taken) is deleted by
// the next Append, in the same commit, so a turn costs one transaction: the
// outbox holds the last turn's rows and the new ones, never a growing
// backlog, and the newest Progress row always survives.
func TestAppendPrunesTaken(t *testing.T) {
	path, id, key := newOutbox(t)
	w, err := Open(path, id, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Progress(); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("r", 300)
	var size int64
	for i := 1; i <= 500; i++ {
		head, err := w.Append(wire.Reply{Text: text, InReplyTo: uint64(i)}, wire.Progress{Inbox: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		// Before Taken, nothing this turn wrote is gone.
		if n, lo := count(t, w); uint64(lo) > head-1 || n > 4 {
			t.Fatalf("turn %d: %d rows from %d", i, n, lo)
		}
		w.Taken(head)
		if i == 50 {
			fi, _ := os.Stat(path)
			size = fi.Size()
		}
	}
	// The last turn's rows stay until the next commit: its reply goes, its
	// Progress row (the newest) stays.
	if _, err := w.Append(wire.Progress{Inbox: 501}); err != nil {
		t.Fatal(err)
	}
	if n, lo := count(t, w); n != 2 || uint64(lo) != w.Head()-1 {
		t.Fatalf("%d rows from %d, want the last two (head %d)", n, lo, w.Head())
	}
	if fi, _ := os.Stat(path); fi.Size() > size {
		t.Fatalf("outbox grew from %d to %d bytes while pruned", size, fi.Size())
	}
	// A Taken past the head is capped at the head: rows written later are
	// never pruned by it.
	w.Taken(w.Head() + 100)
	if _, err := w.Append(wire.Reply{Text: "late", InReplyTo: 502}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(wire.Progress{Inbox: 502}); err != nil {
		t.Fatal(err)
	}
	rows, err := queuedb.Read(w.conn, id, wire.Outbox, key, w.Head()-2, 0)
	if err != nil || len(rows) != 2 {
		t.Fatalf("the rows after the capped Taken: %d, %v", len(rows), err)
	}
	if p, err := w.Progress(); err != nil || p != 502 {
		t.Fatalf("progress %d %v", p, err)
	}
}
