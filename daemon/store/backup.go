package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// BackupTo writes a consistent copy of the store to path (which must not
// exist) with VACUUM INTO: one read transaction, so the copy is the store
// as of one commit, taken while the daemon keeps running (writers wait for
// the connection only as long as the copy takes). Sealed columns and wrapped
// keys are copied as they are: the copy holds no byte the store does not.
// The copy is created 0600 and fsynced.
func (s *Store) BackupTo(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: backup target %s already exists", path)
	}
	// VACUUM INTO creates the file with the process umask: create it
	// first, empty, with the right mode (SQLite accepts an empty file).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	f.Close()
	err = s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "VACUUM INTO ?", &sqlitex.ExecOptions{Args: []any{path}})
	})
	if err == nil {
		err = syncFile(path)
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("store: backup: %w", err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// SnapshotFile writes a consistent copy of another SQLite database of the
// daemon's (the Matrix crypto store) to dst, from a read-only connection of
// its own: one read transaction, so the copy is that database as of one
// commit, while its owner keeps writing. dst must not exist.
func SnapshotFile(ctx context.Context, src, dst string) error {
	if err := prepareExisting(src); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: backup target %s already exists", dst)
	}
	c, err := sqlite.OpenConn(src, sqlite.OpenReadOnly)
	if err != nil {
		return fmt.Errorf("store: opening %s read-only: %w", src, err)
	}
	defer c.Close()
	c.SetBusyTimeout(busyTimeout)
	c.SetInterrupt(ctx.Done())
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	f.Close()
	err = sqlitex.Execute(c, "VACUUM INTO ?", &sqlitex.ExecOptions{Args: []any{dst}})
	if err == nil {
		err = syncFile(dst)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("store: backup of %s: %w", src, err)
	}
	return nil
}
