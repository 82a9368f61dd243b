package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"golang.org/x/sys/unix"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// wantClass fails unless err is a refusal of class want.
func wantClass(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refusal %q", want)
	}
	if !errors.Is(err, ErrHostile) || HostileClass(err) != want {
		t.Fatalf("refused with %v (class %q), want class %q", err, HostileClass(err), want)
	}
}

// A sparse file is refused before a byte of it is read: its apparent size
// is not backed by blocks (a 64 MiB filesystem can hold a 1,000 MiB one).
func TestSparseOutboxRefused(t *testing.T) {
	s := newSession(t)
	writeOutbox(t, s, 3)
	if err := os.Truncate(s.outboxPath(), 32<<20); err != nil {
		t.Fatal(err)
	}
	b := NewBudget(256 << 20)
	r := s.reader()
	r.Budget = b
	_, err := r.Snapshot(0, 0)
	wantClass(t, err, RefusedSparse)
	if b.Used() != 0 {
		t.Fatalf("budget still holds %d bytes", b.Used())
	}
}

// The copy cap is the filesystem the outbox sits on when that is smaller
// than the reader's cap.
func TestOutboxCapIsItsFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	s := newSession(t)
	dir := filepath.Join(s.dir, wire.OutboxDir)
	data, err := os.ReadFile(s.outboxPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if err := os.WriteFile(s.outboxPath(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.reader().Snapshot(0, 0); err != nil {
		t.Fatalf("honest outbox on a small filesystem: %v", err)
	}
	if err := os.Truncate(s.outboxPath(), 2<<20); err != nil {
		t.Fatal(err)
	}
	_, err = s.reader().Snapshot(0, 0)
	wantClass(t, err, RefusedTooLarge)
}

// A file that grows between the fstat and the read is refused, whatever it
// grew to: the agent must not be writing while the daemon reads.
func TestOutboxGrownWhileReadRefused(t *testing.T) {
	s := newSession(t)
	writeOutbox(t, s, 3)
	afterStat = func() {
		f, err := os.OpenFile(s.outboxPath(), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.Write(make([]byte, 4096))
		f.Close()
	}
	defer func() { afterStat = nil }()
	_, err := s.reader().Snapshot(0, 0)
	wantClass(t, err, RefusedChanged)
}

// Free pages cost the daemon a copy and carry nothing: a file that is
// mostly free pages is refused.
func TestOutboxOfFreePagesRefused(t *testing.T) {
	s := newSession(t)
	writeOutbox(t, s, 1)
	execSQL(t, s.outboxPath(), "CREATE TABLE pad (b BLOB); INSERT INTO pad SELECT zeroblob(1<<20) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 12) SELECT x FROM c); DROP TABLE pad;")
	_, err := s.reader().Snapshot(0, 0)
	wantClass(t, err, RefusedFreePages)
}

// More rows pending than an honest agent could have is refused before one
// is decoded.
func TestTooManyPendingRowsRefused(t *testing.T) {
	s := newSession(t)
	writeOutbox(t, s, 3)
	execSQL(t, s.outboxPath(), fmt.Sprintf("INSERT INTO rows VALUES (%d, x'00');", MaxPendingRows+10))
	_, err := s.reader().Snapshot(0, 0)
	wantClass(t, err, RefusedTooMany)
}

// Rows are decoded in bounded batches.
func TestRowsDecodedInBatches(t *testing.T) {
	s := newSession(t)
	writeOutboxBulk(t, s, MaxRowsPerBatch*2+5)
	snap, err := s.reader().Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var sizes []int
	for {
		rows, err := snap.Next()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		sizes = append(sizes, len(rows))
	}
	if fmt.Sprint(sizes) != fmt.Sprint([]int{MaxRowsPerBatch, MaxRowsPerBatch, 5}) {
		t.Fatalf("batches %v", sizes)
	}
}

// writeOutboxBulk writes n valid rows in one transaction (the agent's
// writer commits each row alone, which is slow for thousands).
func writeOutboxBulk(t testing.TB, s session, n int) {
	t.Helper()
	conn, err := sqlite.OpenConn(s.outboxPath(), sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = func() (err error) {
		defer sqlitex.Save(conn)(&err)
		for i := 1; i <= n; i++ {
			body, _ := wire.Encode(wire.Reply{Text: "r"})
			sealed, err := wire.Seal(s.key, wire.Header{Session: s.id, Queue: wire.Outbox, Seq: uint64(i), Kind: wire.KindReply, Time: time.Now()}, body)
			if err != nil {
				return err
			}
			if err := sqlitex.Execute(conn, "INSERT INTO rows (seq, sealed) VALUES (?, ?)", &sqlitex.ExecOptions{Args: []any{i, sealed}}); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		t.Fatal(err)
	}
}

// A schema SQLite would be slow to load (5,000 entries written straight
// into sqlite_schema) is refused from the raw file, before SQLite parses it.
func TestHugeSchemaRefusedBeforeParsing(t *testing.T) {
	s := newSession(t)
	execSQL(t, s.outboxPath(), "SELECT 1; PRAGMA writable_schema=ON; INSERT INTO sqlite_schema SELECT 'table', 't'||x, 't'||x, 2, 'CREATE TABLE t'||x||' (a, b, c, d, e, f, g, h)' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 5000) SELECT x FROM c);")
	start := time.Now()
	_, err := s.reader().Snapshot(0, 0)
	wantClass(t, err, RefusedSchema)
	if !strings.Contains(err.Error(), "page 1") {
		t.Fatalf("refused by a later check: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

// A query that runs past the deadline is interrupted and refuses the outbox.
func TestSlowQueryHitsDeadline(t *testing.T) {
	s := newSession(t)
	writeOutbox(t, s, 1)
	data, err := os.ReadFile(s.outboxPath())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := openPrivate(data, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	snap := &Snapshot{conn: conn, timeout: 50 * time.Millisecond}
	start := time.Now()
	err = snap.deadline("counting", func() error {
		return sqlitex.ExecuteTransient(conn, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c", nil)
	})
	wantClass(t, err, RefusedSlow)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// A panic while decoding a row fails that read as hostile, and the next
// session's read is unaffected.
func TestDecoderPanicRecovered(t *testing.T) {
	s, other := newSession(t), newSession(t)
	writeOutbox(t, s, 2)
	writeOutbox(t, other, 2)
	restore := SetDecodeHookForTest(func(r Row) {
		if r.Header.Session == s.id {
			panic("decoder blew up")
		}
	})
	defer restore()
	_, err := s.reader().Snapshot(0, 0)
	wantClass(t, err, RefusedPanic)
	if rows, err := other.reader().Snapshot(0, 0); err != nil || len(rows) != 2 {
		t.Fatalf("other session: %d rows, %v", len(rows), err)
	}
}

// The shared budget: a copy that does not fit waits for one that does to
// close; a file that could never fit is refused.
func TestBudgetSharedAcrossReaders(t *testing.T) {
	a, b := newSession(t), newSession(t)
	writeOutbox(t, a, 3)
	writeOutbox(t, b, 3)
	fi, err := os.Stat(a.outboxPath())
	if err != nil {
		t.Fatal(err)
	}
	budget := NewBudget(1 << 20)
	if copyCost(fi.Size())*2 <= budget.Size() {
		// Pad a so that two copies do not fit at once.
		execSQL(t, a.outboxPath(), "PRAGMA auto_vacuum=NONE")
	}
	ra, rb := a.reader(), b.reader()
	ra.Budget, rb.Budget = budget, budget
	sa, err := ra.Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if budget.Used() == 0 {
		t.Fatal("an open snapshot holds no budget")
	}
	// Fill the rest of the budget so that b must wait.
	hold, err := budget.acquire(context.Background(), (budget.Size()-budget.Used())/2-1)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { _, err := rb.Snapshot(0, 0); got <- err }()
	select {
	case err := <-got:
		t.Fatalf("read did not wait for the budget: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	sa.Close()
	hold()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if budget.Used() != 0 {
		t.Fatalf("budget still holds %d", budget.Used())
	}
	// A file larger than half the budget is refused outright.
	if err := os.WriteFile(a.outboxPath(), make([]byte, budget.MaxFile()+4096), 0o600); err != nil {
		t.Fatal(err)
	}
	ra.MaxBytes = 64 << 20
	_, err = ra.Snapshot(0, 0)
	wantClass(t, err, RefusedOverBudget)
}

// The private copy runs with defensive mode and trusted_schema off: with
// query_only lifted, the schema still cannot be written.
func TestCopyIsDefensive(t *testing.T) {
	s := newSession(t)
	writeOutbox(t, s, 1)
	data, err := os.ReadFile(s.outboxPath())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := openPrivate(data, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var trusted int64 = -1
	if err := sqlitex.ExecuteTransient(conn, "PRAGMA trusted_schema", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error { trusted = st.ColumnInt64(0); return nil }}); err != nil {
		t.Fatal(err)
	}
	if trusted != 0 {
		t.Fatalf("trusted_schema = %d on the copy", trusted)
	}
	if err := sqlitex.ExecuteTransient(conn, "PRAGMA query_only=OFF", nil); err != nil {
		t.Fatal(err)
	}
	if err := sqlitex.ExecuteTransient(conn, "PRAGMA writable_schema=ON", nil); err != nil {
		t.Fatal(err)
	}
	err = sqlitex.ExecuteTransient(conn, "UPDATE sqlite_schema SET sql = 'CREATE TABLE rows (x)'", nil)
	if err == nil {
		t.Fatal("the schema of the copy could be rewritten: defensive mode is off")
	}
}

// Bytes past the last page (a file grown by hand) are refused.
func TestTrailingBytesRefused(t *testing.T) {
	s := newSession(t)
	writeOutbox(t, s, 2)
	f, err := os.OpenFile(s.outboxPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4093))
	f.Close()
	_, err = s.reader().Snapshot(0, 0)
	wantClass(t, err, RefusedTrailing)
}
