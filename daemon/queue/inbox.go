package queue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Gate orders inbox writes with the agent's read leases (see package lease).
type Gate interface {
	LockWrite(ctx context.Context) error
	UnlockWrite()
}

// Inbox appends sealed rows to one session's inbox. It is safe for
// concurrent use.
type Inbox struct {
	session wire.SessionID
	key     *wire.Key
	gate    Gate
	now     func() time.Time

	mu   sync.Mutex
	conn *sqlite.Conn // guarded by mu
	head uint64       // guarded by mu: seq of the last committed row
}

// OpenInbox opens the inbox at path for appending. Opening read-write also
// rolls back a transaction a crashed daemon left in a hot journal: the daemon
// owns this file, so recovering it is the daemon's job.
func OpenInbox(path string, session wire.SessionID, key *wire.Key, gate Gate) (*Inbox, error) {
	if gate == nil {
		return nil, fmt.Errorf("queue: an inbox needs a lease gate")
	}
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		return nil, fmt.Errorf("queue: opening inbox %s: %w", path, err)
	}
	in := &Inbox{session: session, key: key, gate: gate, now: time.Now, conn: conn}
	// TRUNCATE: a commit empties the journal rather than creating, fsyncing
	// into its directory and deleting it (every message is a commit on a
	// turn's critical path), and an empty journal is one stat to the
	// agent's reader, which must find it not hot on every read through
	// gVisor (a kept non-empty journal would cost it an open, a read and a
	// close each time).
	err = queuedb.Pragmas(conn, "PRAGMA journal_mode=TRUNCATE", "PRAGMA synchronous=FULL")
	if err == nil {
		err = queuedb.CheckSchema(conn)
	}
	if err == nil {
		err = sqlitex.Execute(conn, "SELECT coalesce(max(seq), 0) FROM rows", &sqlitex.ExecOptions{
			ResultFunc: func(s *sqlite.Stmt) error { in.head = uint64(s.ColumnInt64(0)); return nil },
		})
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("queue: opening inbox %s: %w", path, err)
	}
	return in, nil
}

// Head returns the sequence number of the last committed row (0 if none).
func (in *Inbox) Head() uint64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.head
}

// Append seals bodies and commits them in one transaction, with consecutive
// sequence numbers. It returns the last sequence number written.
func (in *Inbox) Append(ctx context.Context, bodies ...wire.Body) (uint64, error) {
	return in.AppendChecked(ctx, nil, bodies...)
}

// Check runs after rows are sealed and before they are committed, with the
// sequence numbers they will have and the size of their encoded bodies; an
// error stops the commit. The daemon audits there: a message that cannot be
// audited is never written.
type Check func(first, last uint64, size int) error

// AppendChecked is Append with check run just before the commit.
func (in *Inbox) AppendChecked(ctx context.Context, check Check, bodies ...wire.Body) (uint64, error) {
	sealed := make([][]byte, len(bodies))
	size := 0
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conn == nil {
		return 0, fmt.Errorf("queue: inbox is closed")
	}
	now := in.now()
	for i, b := range bodies {
		data, err := wire.Encode(b)
		if err != nil {
			return 0, fmt.Errorf("queue: encoding inbox row: %w", err)
		}
		size += len(data)
		h := wire.Header{Session: in.session, Queue: wire.Inbox, Seq: in.head + uint64(i) + 1, Kind: b.Kind(), Time: now}
		if sealed[i], err = wire.Seal(in.key, h, data); err != nil {
			return 0, fmt.Errorf("queue: sealing inbox row: %w", err)
		}
	}
	if err := in.gate.LockWrite(ctx); err != nil {
		return 0, fmt.Errorf("queue: waiting for the agent's read lease: %w", err)
	}
	defer in.gate.UnlockWrite()
	if check != nil {
		if err := check(in.head+1, in.head+uint64(len(sealed)), size); err != nil {
			return 0, err
		}
	}
	if err := in.insert(sealed); err != nil {
		return 0, err
	}
	in.head += uint64(len(sealed))
	return in.head, nil
}

func (in *Inbox) insert(sealed [][]byte) (err error) {
	defer sqlitex.Save(in.conn)(&err)
	stmt := in.conn.Prep("INSERT INTO rows (seq, sealed) VALUES (?, ?)")
	for i, s := range sealed {
		stmt.BindInt64(1, int64(in.head+uint64(i)+1))
		stmt.BindBytes(2, s)
		if _, err := stmt.Step(); err != nil {
			stmt.Reset()
			return fmt.Errorf("queue: writing inbox row: %w", err)
		}
		if err := stmt.Reset(); err != nil {
			return fmt.Errorf("queue: writing inbox row: %w", err)
		}
	}
	return nil
}

// Read returns the verified rows after seq after, read through the
// writer's own connection (the daemon reading back what it wrote; the
// agent's side reads under a lease instead).
func (in *Inbox) Read(after uint64) ([]queuedb.Row, error) { return in.ReadPage(after, 0) }

// ReadPage is Read, at most max rows (all if max <= 0): an inbox an agent
// never reported reading can hold hundreds of MiB, which the daemon reads
// back a page at a time, never at once.
func (in *Inbox) ReadPage(after uint64, max int) ([]queuedb.Row, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conn == nil {
		return nil, fmt.Errorf("queue: inbox is closed")
	}
	// Rows compacted away (Compact) are not there to read: start at the
	// oldest row kept.
	var oldest int64
	if err := sqlitex.Execute(in.conn, "SELECT coalesce(min(seq), 0) FROM rows", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error { oldest = st.ColumnInt64(0); return nil },
	}); err != nil {
		return nil, fmt.Errorf("queue: reading back the inbox: %w", err)
	}
	if oldest > 0 && uint64(oldest)-1 > after {
		after = uint64(oldest) - 1
	}
	rows, err := queuedb.Read(in.conn, in.session, wire.Inbox, in.key, after, max)
	if err != nil {
		return nil, fmt.Errorf("queue: reading back the inbox: %w", err)
	}
	return rows, nil
}

// Close closes the database.
func (in *Inbox) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conn == nil {
		return nil
	}
	err := in.conn.Close()
	in.conn = nil
	return err
}

// Compact deletes the inbox rows up to and including through, and gives
// their pages back to the filesystem (incremental vacuum). It is a write
// like Append: it holds the inbox lock and waits for the agent's read
// leases, so a reader never sees the database mid-change. It never deletes
// the newest row: the sequence continues from the highest row on disk, and
// an empty inbox would start it again at 1.
//
// The caller decides how far is safe (see the supervisor's retention
// policy): never past what the agent has consumed and the daemon recorded
// (store cursor inbox.consumed), because the agent reads on from its own
// progress and refuses a gap after it. It returns how many rows went.
func (in *Inbox) Compact(ctx context.Context, through uint64) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conn == nil {
		return 0, ErrInboxClosed
	}
	if in.head == 0 {
		return 0, nil
	}
	through = min(through, in.head-1)
	if through == 0 {
		return 0, nil
	}
	if err := in.gate.LockWrite(ctx); err != nil {
		return 0, fmt.Errorf("queue: waiting for the agent's read lease: %w", err)
	}
	defer in.gate.UnlockWrite()
	if err := sqlitex.Execute(in.conn, "DELETE FROM rows WHERE seq <= ?", &sqlitex.ExecOptions{Args: []any{int64(through)}}); err != nil {
		return 0, fmt.Errorf("queue: compacting the inbox: %w", err)
	}
	n := in.conn.Changes()
	// auto_vacuum=INCREMENTAL was set at creation (queue.Create).
	if err := sqlitex.ExecuteTransient(in.conn, "PRAGMA incremental_vacuum", nil); err != nil {
		return n, fmt.Errorf("queue: compacting the inbox: %w", err)
	}
	return n, nil
}
