package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
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
