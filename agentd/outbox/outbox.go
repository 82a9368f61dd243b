// Package outbox is the agent's writer for its outbox: the only place the
// agent's words leave the sandbox. The daemon reads a copy of this file as
// hostile input; nothing written here is trusted by anyone.
//
// The agent owns this file: opening it read-write rolls back a transaction a
// crashed agent left behind in its journal.
package outbox

import (
	"fmt"
	"log/slog"
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
	// Log gets what the writer recovers from on its own (a prune that
	// failed and is tried again with the next commit). Nil: discarded.
	Log *slog.Logger

	taken        uint64 // the daemon said it has taken rows up to here
	lastProgress uint64 // seq of the newest Progress row (0: not known)
	prunedBelow  uint64 // rows below this are gone
}

// Open opens the outbox the daemon created at path.
func Open(path string, session wire.SessionID, key *wire.Key) (*Writer, error) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		return nil, fmt.Errorf("outbox: opening %s: %w", path, err)
	}
	w := &Writer{conn: conn, session: session, key: key, now: time.Now}
	// Every system call here traps into gVisor's kernel, so a commit's cost
	// is mostly its count of them (docs/benchmarks.md). EXCLUSIVE locking:
	// the agent is the outbox's only SQLite user (the daemon copies bytes,
	// between commits, on the doorbell), so the lock is taken once and the
	// journal stays open, instead of lock, hot-journal check, open and
	// unlock around every commit. PERSIST: the journal is kept between
	// commits (its header zeroed, which the daemon reads as not hot) rather
	// than created, fsynced into the directory and deleted by each; its size
	// is capped so one large prune does not keep holding the filesystem's
	// space. synchronous=OFF: a commit does not wait for the disk (four
	// fsyncs through gVisor and a loop device made it 2.7 ms, not 0.7). A
	// killed agent, sandbox or daemon loses nothing by it — the writes, the
	// journal's first, are in the host's page cache, and the daemon takes
	// every row into its own fsynced store on the doorbell that follows —
	// and an outbox the host's going down may have torn is discarded by the
	// daemon at the next start, the agent redoing the turn it had not handed
	// over (daemon/supervisor/hostboot.go).
	err = queuedb.Pragmas(conn, "PRAGMA locking_mode=EXCLUSIVE", "PRAGMA journal_mode=PERSIST",
		"PRAGMA journal_size_limit=1048576", "PRAGMA synchronous=OFF")
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

// Append seals bodies and commits them in one transaction, which also
// deletes what the daemon has taken (see Taken). It returns the last
// sequence number written.
func (w *Writer) Append(bodies ...wire.Body) (last uint64, err error) {
	seq, progress, pruned, err := w.commit(bodies)
	if err != nil {
		return 0, err
	}
	w.head, w.lastProgress, w.prunedBelow = seq, progress, pruned
	return seq, nil
}

// commit is Append's transaction; the writer's fields change only once it
// has committed.
func (w *Writer) commit(bodies []wire.Body) (seq, progress, pruned uint64, err error) {
	now := w.now()
	defer sqlitex.Save(w.conn)(&err)
	stmt := w.conn.Prep("INSERT INTO rows (seq, sealed) VALUES (?, ?)")
	seq, progress = w.head, w.lastProgress
	for _, b := range bodies {
		seq++
		data, err := wire.Encode(b)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("outbox: %w", err)
		}
		sealed, err := wire.Seal(w.key, wire.Header{Session: w.session, Queue: wire.Outbox, Seq: seq, Kind: b.Kind(), Time: now}, data)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("outbox: %w", err)
		}
		stmt.BindInt64(1, int64(seq))
		stmt.BindBytes(2, sealed)
		_, err = stmt.Step()
		if rerr := stmt.Reset(); err == nil {
			err = rerr
		}
		if err != nil {
			return 0, 0, 0, fmt.Errorf("outbox: writing row %d: %w", seq, err)
		}
		if b.Kind() == wire.KindProgress {
			progress = seq
		}
	}
	// Pruning is housekeeping: if it fails (say the filesystem is full),
	// the rows stay and the next commit tries again; the agent must not die
	// over it and crash-loop its session.
	pruned, perr := w.prune()
	if perr != nil && w.Log != nil {
		w.Log.Warn("pruning the outbox; trying again with the next commit", "err", perr)
	}
	return seq, progress, pruned, nil
}

// Taken records the daemon's answer to a doorbell: it has taken the rows up
// to seq. The next Append deletes them in its own transaction, so a turn
// costs the agent one commit, not two.
func (w *Writer) Taken(seq uint64) { w.taken = max(w.taken, min(seq, w.head)) }

// prune deletes, inside the caller's transaction, the rows the daemon has
// taken before the newest Progress row, and gives the freed pages back to
// the filesystem. It runs in a savepoint of its own: a failure undoes only
// the prune. It returns what is now pruned below.
func (w *Writer) prune() (below uint64, err error) {
	below = min(w.taken, w.lastProgress)
	if below <= w.prunedBelow {
		return w.prunedBelow, nil
	}
	defer sqlitex.Save(w.conn)(&err)
	if err := sqlitex.Execute(w.conn, "DELETE FROM rows WHERE seq < ?", &sqlitex.ExecOptions{Args: []any{int64(below)}}); err != nil {
		return w.prunedBelow, fmt.Errorf("outbox: pruning: %w", err)
	}
	// The daemon created the outbox with auto_vacuum=INCREMENTAL: the file
	// it copies on every doorbell shrinks with the backlog.
	if err := sqlitex.Execute(w.conn, "PRAGMA incremental_vacuum", nil); err != nil {
		return w.prunedBelow, fmt.Errorf("outbox: vacuuming: %w", err)
	}
	return below, nil
}

// Close closes the database.
func (w *Writer) Close() error { return w.conn.Close() }

// Progress finds how far the agent had consumed its inbox when it last
// committed: the newest Progress row. Every transaction ends with one, so it
// is normally the last row. Rows that do not open are an error: the agent's
// own outbox is damaged and it must not guess.
func (w *Writer) Progress() (uint64, error) {
	seq, inbox, _, err := w.progress()
	if err == nil {
		w.lastProgress = seq
	}
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

// Prune deletes at once, in a transaction of its own, what Taken would
// leave to the next Append: the rows before seq before, always keeping the
// newest Progress row (which a restarted agent resumes from) and everything
// after it, so the head and the sequence go on unchanged; the daemon reads
// only rows after what it took. SQLite reuses the freed pages, so the file
// stays the size of the largest backlog instead of growing forever.
func (w *Writer) Prune(before uint64) error {
	if w.lastProgress == 0 {
		seq, _, _, err := w.progress()
		if err != nil {
			return err
		}
		w.lastProgress = seq
	}
	w.Taken(before)
	pruned, err := w.pruneNow()
	if err != nil {
		return err
	}
	w.prunedBelow = pruned
	return nil
}

func (w *Writer) pruneNow() (pruned uint64, err error) {
	defer sqlitex.Save(w.conn)(&err)
	return w.prune()
}
