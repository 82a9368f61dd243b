package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// applicationID marks a database as an IronClaw daemon store ("ICLW"), so the
// daemon never migrates some other SQLite file it was pointed at by mistake.
const applicationID = 0x49434c57

// busyTimeout bounds how long a statement waits for a lock held by another
// process (for example an operator's read-only inspection). The daemon itself
// uses one connection, so it never waits on itself.
const busyTimeout = 5 * time.Second

// Errors callers can test with errors.Is.
var (
	// ErrNotFound means no such session (or profile version, intent...).
	ErrNotFound = errors.New("store: not found")
	// ErrExists means a session with this id was created before. Ids are
	// never reused, not even after erase.
	ErrExists = errors.New("store: session id already used")
	// ErrBindingTaken means another active session already has this binding.
	ErrBindingTaken = errors.New("store: binding already belongs to an active session")
	// ErrErased means the session was crypto-erased; nothing more can be
	// read from or written to it.
	ErrErased = errors.New("store: session was erased")
	// ErrStale means a compare-and-swap lost: the current version is not the
	// base the caller built on. Re-read, re-diff, re-approve; never rebase.
	ErrStale = errors.New("store: stale base version")
	// ErrBackwards means a forward-only value (cursor, audit anchor) would
	// move back.
	ErrBackwards = errors.New("store: value may only move forward")
	// ErrConflict means an idempotent write was repeated with different data.
	ErrConflict = errors.New("store: conflicting repeat of an earlier write")
	// ErrDelivered means the outbox row was already delivered: do not send it.
	ErrDelivered = errors.New("store: already delivered")
	// ErrNewerSchema means the database was written by a newer IronClaw.
	ErrNewerSchema = errors.New("store: state was written by a newer ironclaw; upgrade ironclaw (downgrading is not supported)")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Store is the daemon's database. It is safe for concurrent use: all access
// goes through one connection, taken in turn. That serialises the daemon's
// writes, which SQLite would do anyway, and keeps the store free of
// connection-pool subtleties (per-connection pragmas, WAL snapshots held by
// idle readers that would block the erase checkpoint).
type Store struct {
	// sem holds one token; whoever holds it owns conn, key and closed. A
	// channel rather than a mutex so that waiting honours the context.
	sem    chan struct{}
	conn   *sqlite.Conn
	key    [32]byte
	closed bool
	path   string
	now    func() time.Time
}

// Open opens (creating if needed) the store at path and brings its schema up
// to date. contentKey seals conversation content; it is a daemon subkey of
// the master key and is copied, so the caller may wipe its copy.
//
// The directory must exist. A new database file is created mode 0600; SQLite
// gives its -wal and -shm files the same mode. path must be a regular file or
// absent, never a symlink.
func Open(path string, contentKey *[32]byte) (*Store, error) {
	if contentKey == nil {
		return nil, errors.New("store: no content key given")
	}
	if path == "" {
		return nil, errors.New("store: no database path given")
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}
	// Explicit flags: with none, OpenConn adds WAL and URI on its own. No
	// OpenCreate: prepareFile made the file with the right mode already, and
	// no OpenURI: a path is a path.
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	s := &Store{sem: make(chan struct{}, 1), conn: conn, path: path, now: time.Now}
	s.key = *contentKey
	if err := s.setup(); err != nil {
		conn.Close()
		clear(s.key[:])
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return s, nil
}

// prepareFile refuses a symlink or special file at path and creates a
// missing database file 0600 (SQLite would create it 0644 under the umask).
func prepareFile(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("store: %s is not a regular file (%s); refusing to open it as the daemon's database", path, fi.Mode().Type())
		}
		// SQLite gives -wal and -shm the main file's mode, so a loose mode
		// here would spread; the database is the daemon's alone.
		if fi.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("store: %s has mode %v, open to other users; run: chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("store: %w", err)
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("store: directory for the database: %w (create the state directory first)", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: creating %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: creating %s: %w", path, err)
	}
	// Make the new name durable before anything is committed into it, or a
	// crash could lose the whole database file with its directory entry.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: syncing %s: %w", dir, err)
	}
	return nil
}

func (s *Store) setup() error {
	c := s.conn
	c.SetBusyTimeout(busyTimeout)
	if err := c.SetDefensive(true); err != nil {
		return fmt.Errorf("enabling defensive mode: %w", err)
	}
	mode, err := pragmaText(c, "PRAGMA journal_mode=WAL")
	if err != nil {
		return fmt.Errorf("setting WAL mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("setting WAL mode: journal mode is %q", mode)
	}
	// These are per-connection and cannot change inside a transaction, so
	// they are set here, once, and read back: a pragma SQLite ignores (for
	// example a misspelt one) would otherwise fail silently.
	for _, p := range []struct{ set, get, want string }{
		{"PRAGMA synchronous=FULL", "PRAGMA synchronous", "2"},
		{"PRAGMA foreign_keys=ON", "PRAGMA foreign_keys", "1"},
		{"PRAGMA secure_delete=ON", "PRAGMA secure_delete", "1"},
		{"PRAGMA trusted_schema=OFF", "PRAGMA trusted_schema", "0"},
	} {
		if err := sqlitex.ExecuteTransient(c, p.set, nil); err != nil {
			return fmt.Errorf("%s: %w", p.set, err)
		}
		got, err := pragmaText(c, p.get)
		if err != nil {
			return fmt.Errorf("%s: %w", p.get, err)
		}
		if got != p.want {
			return fmt.Errorf("%s did not take (reads back %q)", p.set, got)
		}
	}
	return migrate(c)
}

// migrate applies the steps of migrations that the database has not run.
func migrate(c *sqlite.Conn) error {
	version, err := pragmaInt(c, "PRAGMA user_version")
	if err != nil {
		return err
	}
	if version > int64(len(migrations)) {
		return fmt.Errorf("%w (database schema version %d, this ironclaw knows up to %d)", ErrNewerSchema, version, len(migrations))
	}
	appID, err := pragmaInt(c, "PRAGMA application_id")
	if err != nil {
		return err
	}
	if version == 0 {
		var objects int64
		err := sqlitex.ExecuteTransient(c, "SELECT count(*) FROM sqlite_schema", &sqlitex.ExecOptions{
			ResultFunc: func(st *sqlite.Stmt) error { objects = st.ColumnInt64(0); return nil },
		})
		if err != nil {
			return err
		}
		if objects != 0 || appID != 0 {
			return errors.New("not an ironclaw store (it has tables but no ironclaw schema version); point the daemon at its own state directory")
		}
	} else if appID != applicationID {
		return fmt.Errorf("not an ironclaw store (application id %#x); point the daemon at its own state directory", appID)
	}
	for v := version; v < int64(len(migrations)); v++ {
		if err := migrateStep(c, v); err != nil {
			return fmt.Errorf("migrating schema from version %d to %d: %w", v, v+1, err)
		}
	}
	return nil
}

func migrateStep(c *sqlite.Conn, from int64) (err error) {
	end, err := sqlitex.ImmediateTransaction(c)
	if err != nil {
		return err
	}
	defer end(&err)
	if err := sqlitex.ExecuteScript(c, migrations[from], nil); err != nil {
		return err
	}
	if from == 0 {
		if err := sqlitex.ExecuteTransient(c, fmt.Sprintf("PRAGMA application_id=%d", applicationID), nil); err != nil {
			return err
		}
	}
	// user_version lives in the database header, which is written in the
	// same transaction as the step.
	return sqlitex.ExecuteTransient(c, fmt.Sprintf("PRAGMA user_version=%d", from+1), nil)
}

// SchemaVersion is the schema version this code writes: the number of
// migration steps.
func SchemaVersion() int { return len(migrations) }

func pragmaText(c *sqlite.Conn, q string) (string, error) {
	var out string
	err := sqlitex.ExecuteTransient(c, q, &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error { out = st.ColumnText(0); return nil },
	})
	return out, err
}

func pragmaInt(c *sqlite.Conn, q string) (int64, error) {
	var out int64
	err := sqlitex.ExecuteTransient(c, q, &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error { out = st.ColumnInt64(0); return nil },
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", q, err)
	}
	return out, nil
}

// acquire takes the connection, waiting no longer than ctx allows, and arms
// ctx to interrupt any statement run while it is held.
func (s *Store) acquire(ctx context.Context) (*sqlite.Conn, func(), error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("store: waiting for the database: %w", ctx.Err())
	}
	if s.closed {
		<-s.sem
		return nil, nil, ErrClosed
	}
	s.conn.SetInterrupt(ctx.Done())
	return s.conn, func() {
		s.conn.SetInterrupt(nil)
		<-s.sem
	}, nil
}

// read runs fn, a single statement, on the connection.
func (s *Store) read(ctx context.Context, fn func(c *sqlite.Conn) error) error {
	c, release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	return ctxErr(ctx, fn(c))
}

// readTx runs fn in one read transaction, so that several statements see one
// snapshot. It never commits anything.
func (s *Store) readTx(ctx context.Context, fn func(c *sqlite.Conn) error) error {
	c, release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := sqlitex.ExecuteTransient(c, "BEGIN DEFERRED", nil); err != nil {
		return ctxErr(ctx, fmt.Errorf("store: beginning a read: %w", err))
	}
	defer func() {
		if c.AutocommitEnabled() {
			return // an interrupt already ended the transaction
		}
		c.SetInterrupt(nil) // ending the read must not itself be interrupted
		_ = sqlitex.ExecuteTransient(c, "ROLLBACK", nil)
	}()
	return ctxErr(ctx, fn(c))
}

// write runs fn in one IMMEDIATE transaction: all of it commits, or none.
func (s *Store) write(ctx context.Context, fn func(c *sqlite.Conn) error) error {
	c, release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	return ctxErr(ctx, inTx(c, fn))
}

// ctxErr makes an interrupted statement's error also say why: a cancelled or
// expired context, testable with errors.Is.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

func inTx(c *sqlite.Conn, fn func(c *sqlite.Conn) error) (err error) {
	end, err := sqlitex.ImmediateTransaction(c)
	if err != nil {
		return fmt.Errorf("store: beginning a transaction: %w", err)
	}
	defer end(&err)
	return fn(c)
}

// checkpoint copies the WAL into the database and truncates the WAL to zero
// bytes, so that bytes overwritten by the last transactions (an erased key)
// no longer sit in the -wal file.
func checkpoint(c *sqlite.Conn) error {
	var busy int64 = -1
	err := sqlitex.ExecuteTransient(c, "PRAGMA wal_checkpoint(TRUNCATE)", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error { busy = st.ColumnInt64(0); return nil },
	})
	if err != nil {
		return fmt.Errorf("store: checkpointing the WAL: %w", err)
	}
	if busy != 0 {
		return errors.New("store: checkpointing the WAL: another process holds the database open; the old pages stay in the -wal file until the next erase or until the daemon closes the store")
	}
	return nil
}

// Close checkpoints the WAL, closes the database and wipes the content key.
// It is safe to call more than once.
func (s *Store) Close() error {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if s.closed {
		return nil
	}
	s.closed = true
	clear(s.key[:])
	cpErr := checkpoint(s.conn)
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("store: closing %s: %w", s.path, err)
	}
	return cpErr
}

// i64 converts a caller's uint64 (sequence, version, cursor) to SQLite's
// signed INTEGER, refusing values that would wrap.
func i64(what string, v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("store: %s %d is out of range (max %d)", what, v, int64(math.MaxInt64))
	}
	return int64(v), nil
}
