// Package outbox is the agent's writer for its outbox: the only place the
// agent's words leave the sandbox. The daemon reads a copy of this file as
// hostile input; nothing written here is trusted by anyone.
//
// The agent owns this file: opening it read-write rolls back a transaction a
// crashed agent left behind in its journal.
package outbox

import (
	"fmt"
	"time"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Writer appends sealed rows. It is not safe for concurrent use.
type Writer struct {
	conn    *sqlite.Conn
	session wire.SessionID
	key     *wire.Key
	head    uint64
	now     func() time.Time
}

// Open opens the outbox the daemon created at path.
func Open(path string, session wire.SessionID, key *wire.Key) (*Writer, error) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		return nil, fmt.Errorf("outbox: opening %s: %w", path, err)
	}
	w := &Writer{conn: conn, session: session, key: key, now: time.Now}
	err = queuedb.Pragmas(conn, "PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL")
	if err == nil {
		err = queuedb.CheckSchema(conn)
	}
	if err == nil {
		err = sqlitex.Execute(conn, "SELECT coalesce(max(seq), 0) FROM rows", &sqlitex.ExecOptions{
			ResultFunc: func(s *sqlite.Stmt) error { w.head = uint64(s.ColumnInt64(0)); return nil },
		})
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("outbox: opening %s: %w", path, err)
	}
	return w, nil
}

// Continue makes the next row follow seq if the outbox is behind it: a fresh
// outbox (the old one was lost or reset) must not reuse sequence numbers the
// daemon has already taken.
func (w *Writer) Continue(seq uint64) {
	if w.head < seq {
		w.head = seq
	}
}

// Head is the sequence number of the last committed row.
func (w *Writer) Head() uint64 { return w.head }

// Append seals bodies and commits them in one transaction. It returns the
// last sequence number written.
func (w *Writer) Append(bodies ...wire.Body) (last uint64, err error) {
	now := w.now()
	defer sqlitex.Save(w.conn)(&err)
	stmt := w.conn.Prep("INSERT INTO rows (seq, sealed) VALUES (?, ?)")
	seq := w.head
	for _, b := range bodies {
		seq++
		data, err := wire.Encode(b)
		if err != nil {
			return 0, fmt.Errorf("outbox: %w", err)
		}
		sealed, err := wire.Seal(w.key, wire.Header{Session: w.session, Queue: wire.Outbox, Seq: seq, Kind: b.Kind(), Time: now}, data)
		if err != nil {
			return 0, fmt.Errorf("outbox: %w", err)
		}
		stmt.BindInt64(1, int64(seq))
		stmt.BindBytes(2, sealed)
		_, err = stmt.Step()
		if rerr := stmt.Reset(); err == nil {
			err = rerr
		}
		if err != nil {
			return 0, fmt.Errorf("outbox: writing row %d: %w", seq, err)
		}
	}
	w.head = seq
	return seq, nil
}

// Close closes the database.
func (w *Writer) Close() error { return w.conn.Close() }

// Progress finds how far the agent had consumed its inbox when it last
// committed: the newest Progress row. Every transaction ends with one, so it
// is normally the last row. Rows that do not open are an error: the agent's
// own outbox is damaged and it must not guess.
func (w *Writer) Progress() (uint64, error) {
	_, inbox, _, err := w.progress()
	return inbox, err
}

// progress returns the seq and content of the newest Progress row among the
// last 64, and whether there was one.
func (w *Writer) progress() (seq, inbox uint64, ok bool, err error) {
	err = sqlitex.Execute(w.conn, "SELECT seq, sealed FROM rows ORDER BY seq DESC LIMIT 64", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			if ok {
				return nil
			}
			sealed := make([]byte, s.ColumnLen(1))
			s.ColumnBytes(1, sealed)
			h, body, err := wire.Open(w.key, w.session, wire.Outbox, uint64(s.ColumnInt64(0)), sealed)
			if err != nil {
				return err
			}
			if h.Kind != wire.KindProgress {
				return nil
			}
			b, err := wire.DecodeBody(h.Kind, body)
			if err != nil {
				return err
			}
			seq, inbox, ok = h.Seq, b.(wire.Progress).Inbox, true
			return nil
		},
	})
	if err != nil {
		return 0, 0, false, fmt.Errorf("outbox: finding progress: %w", err)
	}
	return seq, inbox, ok, nil
}

// Prune deletes, in one transaction, the rows before seq before: call it
// with what the daemon answered it had taken. It always keeps the newest
// Progress row (which a restarted agent resumes from) and everything after
// it, so the head and the sequence go on unchanged; the daemon reads only
// rows after what it took. SQLite reuses the freed pages, so the file stays
// the size of the largest backlog instead of growing forever.
func (w *Writer) Prune(before uint64) (err error) {
	seq, _, ok, err := w.progress()
	if err != nil || !ok {
		return err // no progress row to keep: prune nothing
	}
	before = min(before, seq)
	if before <= 1 {
		return nil
	}
	if err := w.deleteBefore(before); err != nil {
		return err
	}
	// Give the freed pages back to the filesystem (the daemon created the
	// outbox with auto_vacuum=INCREMENTAL), so the file the daemon copies
	// on every doorbell shrinks with the backlog.
	if err := queuedb.Pragmas(w.conn, "PRAGMA incremental_vacuum"); err != nil {
		return fmt.Errorf("outbox: vacuuming: %w", err)
	}
	return nil
}

func (w *Writer) deleteBefore(before uint64) (err error) {
	defer sqlitex.Save(w.conn)(&err)
	if err := sqlitex.Execute(w.conn, "DELETE FROM rows WHERE seq < ?", &sqlitex.ExecOptions{Args: []any{int64(before)}}); err != nil {
		return fmt.Errorf("outbox: pruning: %w", err)
	}
	return nil
}
