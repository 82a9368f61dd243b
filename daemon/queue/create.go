package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
)

// Owner is the uid/gid that owns the outbox directory and file, so that the
// agent (running as that user inside the sandbox) can write them. -1 leaves
// ownership alone (tests that do not run as root).
type Owner struct{ UID, GID int }

// NoChown keeps the creating user as the owner.
var NoChown = Owner{-1, -1}

// Create makes a session's queue directories and databases under dir:
// dir/inbox/inbox.db (0700 directory, daemon only) and dir/outbox/outbox.db
// (owned by agent so the sandboxed agent can write it). It refuses to touch a
// directory that already holds a queue.
func Create(dir string, agent Owner) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("queue: creating session directory: %w", err)
	}
	for _, sub := range []string{wire.InboxDir, wire.OutboxDir} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("queue: creating %s directory: %w", sub, err)
		}
	}
	for _, p := range []string{
		filepath.Join(dir, wire.InboxDir, wire.InboxFile),
		filepath.Join(dir, wire.OutboxDir, wire.OutboxFile),
	} {
		if err := createDB(p); err != nil {
			return err
		}
	}
	// The inbox directory is readable by the agent user through the read-only
	// bind mount only; the sandbox user needs search and read permission.
	if err := os.Chmod(filepath.Join(dir, wire.InboxDir), 0o755); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := os.Chmod(filepath.Join(dir, wire.InboxDir, wire.InboxFile), 0o644); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if agent != NoChown {
		outDir := filepath.Join(dir, wire.OutboxDir)
		for _, p := range []string{outDir, filepath.Join(outDir, wire.OutboxFile)} {
			if err := os.Lchown(p, agent.UID, agent.GID); err != nil {
				return fmt.Errorf("queue: handing the outbox to the agent user: %w", err)
			}
		}
	}
	// The session directory itself must let the sandbox user traverse it for
	// the bind mounts; it lists nothing secret (content is sealed).
	return os.Chmod(dir, 0o711)
}

func createDB(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("queue: %s already exists; refusing to overwrite a queue", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenNoMutex)
	if err != nil {
		return fmt.Errorf("queue: creating %s: %w", path, err)
	}
	defer conn.Close()
	// auto_vacuum must be set before the first table: it lets the agent
	// hand pruned pages back, so the outbox the daemon copies stays small.
	err = queuedb.Pragmas(conn, "PRAGMA auto_vacuum=INCREMENTAL", "PRAGMA journal_mode=DELETE", wire.RowsTable)
	if err != nil {
		return fmt.Errorf("queue: creating %s: %w", path, err)
	}
	return nil
}
