package store

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// KeyWrapper is what the store needs of the master key to keep daemon keys
// (keys.Master implements it).
type KeyWrapper interface {
	WrapDaemonKey(purpose string, k *[32]byte) ([]byte, error)
	UnwrapDaemonKey(purpose string, wrapped []byte) (*[32]byte, error)
}

// OpenWrapped opens the store at path with its content key kept wrapped in
// the store itself (table daemon_keys, purpose). A store that has none yet
// (new, or made before key rotation existed) adopts adopt, wrapped, in the
// same call: pass the master-derived subkey the daemon used before, so old
// sealed values keep opening. adopt is copied; the caller may wipe it.
func OpenWrapped(path string, w KeyWrapper, purpose string, adopt *[32]byte) (*Store, error) {
	var zero [32]byte
	s, err := Open(path, &zero)
	if err != nil {
		return nil, err
	}
	k, err := s.DaemonKey(context.Background(), w, purpose, adopt)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.key = *k
	clear(k[:])
	return s, nil
}

// DaemonKey returns the daemon key recorded for purpose, unwrapped. If none
// is recorded it records adopt (wrapped) and returns a copy of it. A
// recorded key that does not unwrap is an error: never silently replaced.
func (s *Store) DaemonKey(ctx context.Context, w KeyWrapper, purpose string, adopt *[32]byte) (*[32]byte, error) {
	if w == nil || adopt == nil {
		return nil, errors.New("store: daemon key: no key wrapper or key to adopt")
	}
	var out *[32]byte
	err := s.write(ctx, func(c *sqlite.Conn) error {
		wrapped, ok, err := daemonKeyRow(c, purpose)
		if err != nil {
			return err
		}
		if ok {
			k, err := w.UnwrapDaemonKey(purpose, wrapped)
			if err != nil {
				return fmt.Errorf("%w (the master key does not open this store's %q key: is a key rotation unfinished? `ironclaw keys recover` finishes or undoes it)", err, purpose)
			}
			out = k
			return nil
		}
		wrapped, err = w.WrapDaemonKey(purpose, adopt)
		if err != nil {
			return err
		}
		if err := sqlitex.Execute(c, "INSERT INTO daemon_keys (purpose, wrapped) VALUES (?, ?)", &sqlitex.ExecOptions{Args: []any{purpose, wrapped}}); err != nil {
			return err
		}
		k := *adopt
		out = &k
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: daemon key %q: %w", purpose, err)
	}
	return out, nil
}

func daemonKeyRow(c *sqlite.Conn, purpose string) ([]byte, bool, error) {
	var wrapped []byte
	found := false
	err := sqlitex.Execute(c, "SELECT wrapped FROM daemon_keys WHERE purpose = ?", &sqlitex.ExecOptions{
		Args: []any{purpose},
		ResultFunc: func(st *sqlite.Stmt) error {
			wrapped = make([]byte, st.ColumnLen(0))
			st.ColumnBytes(0, wrapped)
			found = true
			return nil
		},
	})
	return wrapped, found, err
}

// Rewrap replaces, in ONE transaction, every active session's wrapped key
// and every daemon key with what rewrapSession and rewrapDaemon return, and
// records epoch. Either all of it commits or none: a crash leaves every
// wrapped key under the old master or every one under the new. Then the WAL
// is checkpointed so the old wrapped forms leave the -wal file. It returns
// how many session keys were rewrapped.
func (s *Store) Rewrap(ctx context.Context, epoch string,
	rewrapSession func(id wire.SessionID, wrapped []byte) ([]byte, error),
	rewrapDaemon func(purpose string, wrapped []byte) ([]byte, error)) (int, error) {
	if epoch == "" || len(epoch) > 64 {
		return 0, errors.New("store: rewrap: epoch must be 1 to 64 characters")
	}
	c, release, err := s.acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	n := 0
	err = inTx(c, func(c *sqlite.Conn) error {
		type row struct {
			id      string
			wrapped []byte
		}
		var sessions, daemon []row
		if err := sqlitex.Execute(c, "SELECT id, wrapped_key FROM sessions WHERE state = 'active' ORDER BY id", &sqlitex.ExecOptions{
			ResultFunc: func(st *sqlite.Stmt) error {
				b := make([]byte, st.ColumnLen(1))
				st.ColumnBytes(1, b)
				sessions = append(sessions, row{st.ColumnText(0), b})
				return nil
			},
		}); err != nil {
			return err
		}
		if err := sqlitex.Execute(c, "SELECT purpose, wrapped FROM daemon_keys ORDER BY purpose", &sqlitex.ExecOptions{
			ResultFunc: func(st *sqlite.Stmt) error {
				b := make([]byte, st.ColumnLen(1))
				st.ColumnBytes(1, b)
				daemon = append(daemon, row{st.ColumnText(0), b})
				return nil
			},
		}); err != nil {
			return err
		}
		for _, r := range sessions {
			id, err := wire.ParseSessionID(r.id)
			if err != nil {
				return fmt.Errorf("corrupt session row: %w", err)
			}
			nw, err := rewrapSession(id, r.wrapped)
			if err != nil {
				return fmt.Errorf("session %s: %w", id, err)
			}
			if len(nw) == 0 || len(nw) > MaxWrappedKeyLen {
				return fmt.Errorf("session %s: rewrapped key has length %d", id, len(nw))
			}
			if err := sqlitex.Execute(c, "UPDATE sessions SET wrapped_key = ? WHERE id = ?", &sqlitex.ExecOptions{Args: []any{nw, r.id}}); err != nil {
				return err
			}
			n++
		}
		for _, r := range daemon {
			nw, err := rewrapDaemon(r.id, r.wrapped)
			if err != nil {
				return fmt.Errorf("daemon key %q: %w", r.id, err)
			}
			if err := sqlitex.Execute(c, "UPDATE daemon_keys SET wrapped = ? WHERE purpose = ?", &sqlitex.ExecOptions{Args: []any{nw, r.id}}); err != nil {
				return err
			}
		}
		return sqlitex.Execute(c, "INSERT INTO key_epoch (id, epoch) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch", &sqlitex.ExecOptions{Args: []any{epoch}})
	})
	if err != nil {
		return 0, fmt.Errorf("store: rewrapping keys (nothing changed): %w", ctxErr(ctx, err))
	}
	c.SetInterrupt(nil)
	if err := checkpoint(c); err != nil {
		return n, fmt.Errorf("store: keys rewrapped, but: %w", err)
	}
	return n, nil
}

// ReadEpoch reads the key epoch of the store at path without its key and
// without writing ("" if no rotation ever committed). The daemon must not be
// running a rotation at the same time; recovery runs before anything opens
// the store.
func ReadEpoch(path string) (string, error) {
	if err := prepareExisting(path); err != nil {
		return "", err
	}
	c, err := sqlite.OpenConn(path, sqlite.OpenReadOnly)
	if err != nil {
		return "", fmt.Errorf("store: opening %s read-only: %w", path, err)
	}
	defer c.Close()
	c.SetBusyTimeout(busyTimeout)
	var epoch string
	err = sqlitex.ExecuteTransient(c, "SELECT epoch FROM key_epoch WHERE id = 1", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error { epoch = st.ColumnText(0); return nil },
	})
	if err != nil && sqlite.ErrCode(err) == sqlite.ResultError {
		// No such table: a store from before rotation existed has epoch "".
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: reading the key epoch of %s: %w", path, err)
	}
	return epoch, nil
}

// prepareExisting refuses a missing, special or symlinked database file
// (and, unlike prepareFile, never creates one).
func prepareExisting(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("store: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return nil
}
