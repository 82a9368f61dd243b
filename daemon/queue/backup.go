package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// ErrInboxClosed is returned by BackupTo on a closed Inbox.
var ErrInboxClosed = errors.New("queue: inbox is closed")

// BackupTo writes a consistent copy of the inbox to path (which must not
// exist). It holds the inbox's own lock, so no Append is half-way through:
// the copy ends at a commit. Reading needs no read lease (the agent never
// writes the inbox, and the daemon's read cannot disturb the agent's).
// Rows are copied sealed, byte for byte.
func (in *Inbox) BackupTo(path string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conn == nil {
		return ErrInboxClosed
	}
	return vacuumInto(in.conn, path)
}

// BackupInboxFile copies the inbox at src to dst like Inbox.BackupTo, for a
// session whose inbox no Inbox has open (the caller makes sure none opens
// meanwhile: the supervisor holds its lock).
func BackupInboxFile(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("queue: backup of %s: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("queue: backup of %s: not a regular file", src)
	}
	conn, err := sqlite.OpenConn(src, sqlite.OpenReadOnly|sqlite.OpenNoMutex)
	if err != nil {
		return fmt.Errorf("queue: backup of %s: %w", src, err)
	}
	defer conn.Close()
	if err := queuedb.CheckSchema(conn); err != nil {
		return fmt.Errorf("queue: backup of %s: %w", src, err)
	}
	return vacuumInto(conn, dst)
}

func vacuumInto(conn *sqlite.Conn, path string) error {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: backup target %s already exists", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("queue: backup: %w", err)
	}
	f.Close()
	if err := sqlitex.Execute(conn, "VACUUM INTO ?", &sqlitex.ExecOptions{Args: []any{path}}); err != nil {
		os.Remove(path)
		return fmt.Errorf("queue: backup into %s: %w", path, err)
	}
	return nil
}

// SeedOutbox makes a fresh outbox (dir/outbox/outbox.db, as Create makes
// it) that continues where a session's delivered outbox ended: if delivered
// is not zero it holds one sealed Progress row at sequence delivered saying
// the agent has handled the inbox through consumed. That is exactly what an
// agent's own outbox holds after the daemon took everything (it prunes all
// but its last Progress row), so an agent started on it neither repeats
// handled messages nor writes rows the daemon would skip as already taken.
// A restore uses it: an outbox is the agent's disposable copy, never backed
// up. It refuses to replace an existing outbox.
func SeedOutbox(dir string, session wire.SessionID, key *wire.Key, delivered, consumed uint64, agent Owner, now time.Time) error {
	outDir := filepath.Join(dir, wire.OutboxDir)
	if err := os.Mkdir(outDir, 0o700); err != nil {
		return fmt.Errorf("queue: creating the outbox directory: %w", err)
	}
	p := filepath.Join(outDir, wire.OutboxFile)
	if err := createDB(p); err != nil {
		return err
	}
	if delivered > 0 {
		data, err := wire.Encode(wire.Progress{Inbox: consumed})
		if err != nil {
			return fmt.Errorf("queue: seeding the outbox: %w", err)
		}
		h := wire.Header{Session: session, Queue: wire.Outbox, Seq: delivered, Kind: wire.KindProgress, Time: now}
		sealed, err := wire.Seal(key, h, data)
		if err != nil {
			return fmt.Errorf("queue: seeding the outbox: %w", err)
		}
		conn, err := sqlite.OpenConn(p, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
		if err != nil {
			return fmt.Errorf("queue: seeding the outbox: %w", err)
		}
		err = sqlitex.Execute(conn, "INSERT INTO rows (seq, sealed) VALUES (?, ?)", &sqlitex.ExecOptions{Args: []any{int64(delivered), sealed}})
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("queue: seeding the outbox: %w", err)
		}
	}
	if agent != NoChown {
		for _, q := range []string{outDir, p} {
			if err := os.Lchown(q, agent.UID, agent.GID); err != nil {
				return fmt.Errorf("queue: handing the outbox to the agent user: %w", err)
			}
		}
	}
	return nil
}
