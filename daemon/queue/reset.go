package queue

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// ResetOutbox replaces a session's outbox with a fresh, empty one: it
// removes the outbox filesystem image (<dir>/outbox.img, see package
// sandbox) and whatever lies in the outbox directory, and creates a new
// outbox.db owned by the agent. Call it only while no sandbox runs and the
// outbox filesystem is not mounted. Nothing is lost: the daemon's store is
// the record, and a fresh agent continues from it.
func ResetOutbox(dir string, agent Owner) error {
	outDir := filepath.Join(dir, wire.OutboxDir)
	fi, err := os.Lstat(outDir)
	if err != nil {
		return fmt.Errorf("queue: reset outbox: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("queue: reset outbox: %s is not a directory", outDir)
	}
	if err := os.Remove(outDir + ".img"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("queue: reset outbox: %w", err)
	}
	// Everything in the agent-writable directory goes, links included
	// (RemoveAll never follows them).
	if err := os.RemoveAll(outDir); err != nil {
		return fmt.Errorf("queue: reset outbox: %w", err)
	}
	if err := os.Mkdir(outDir, 0o700); err != nil {
		return fmt.Errorf("queue: reset outbox: %w", err)
	}
	db := filepath.Join(outDir, wire.OutboxFile)
	if err := createDB(db); err != nil {
		return err
	}
	if agent != NoChown {
		for _, p := range []string{outDir, db} {
			if err := os.Lchown(p, agent.UID, agent.GID); err != nil {
				return fmt.Errorf("queue: reset outbox: handing it to the agent user: %w", err)
			}
		}
	}
	return nil
}
