package store

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// State is a session's lifecycle state.
type State string

const (
	// StateActive sessions have a wrapped key and can run.
	StateActive State = "active"
	// StateErased sessions were crypto-erased: no key, no profiles, no
	// cursors. The row stays so the id is never reused.
	StateErased State = "erased"
)

// Limits on caller-supplied metadata, so a bug upstream cannot bloat the
// database or smuggle content into plain columns.
const (
	MaxBindingLen    = 512
	MaxWrappedKeyLen = 512
)

// Session is a session's plain metadata.
type Session struct {
	ID wire.SessionID
	// Binding says where replies go, e.g. "console:local" or
	// "matrix:!room:server". Unique among active sessions.
	Binding string
	Created time.Time
	State   State
	// WrappedKey is the session key wrapped by the master key; nil once
	// erased.
	WrappedKey []byte
	// ProfileVersion is the current profile version (0 once erased).
	ProfileVersion uint64
}

const sessionCols = "id, binding, created, state, wrapped_key, profile_version"

func scanSession(st *sqlite.Stmt) (Session, error) {
	var s Session
	id, err := wire.ParseSessionID(st.ColumnText(0))
	if err != nil {
		return s, fmt.Errorf("store: corrupt session row: %w", err)
	}
	s.ID = id
	s.Binding = st.ColumnText(1)
	s.Created = time.Unix(0, st.ColumnInt64(2)).UTC()
	s.State = State(st.ColumnText(3))
	if !st.ColumnIsNull(4) {
		s.WrappedKey = make([]byte, st.ColumnLen(4))
		st.ColumnBytes(4, s.WrappedKey)
	}
	s.ProfileVersion = uint64(st.ColumnInt64(5))
	return s, nil
}

func checkBinding(b string) error {
	if b == "" || len(b) > MaxBindingLen || !utf8.ValidString(b) {
		return fmt.Errorf("store: binding must be 1 to %d bytes of UTF-8", MaxBindingLen)
	}
	for _, r := range b {
		if r < 0x20 || r == 0x7f {
			return errors.New("store: binding must not contain control characters")
		}
	}
	return nil
}

// CreateSession records a new session with its wrapped key and its first
// profile (version 1), in one transaction. It fails with ErrExists if the id
// was ever used and ErrBindingTaken if an active session has the binding.
func (s *Store) CreateSession(ctx context.Context, id wire.SessionID, binding string, wrappedKey []byte, first profile.Profile) error {
	if err := checkBinding(binding); err != nil {
		return err
	}
	if len(wrappedKey) == 0 || len(wrappedKey) > MaxWrappedKeyLen {
		return fmt.Errorf("store: wrapped key must be 1 to %d bytes", MaxWrappedKeyLen)
	}
	canon, err := canonical(first)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(c *sqlite.Conn) error {
		if _, err := sessionState(c, id); err == nil {
			return ErrExists
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		taken := false
		err := sqlitex.Execute(c, "SELECT 1 FROM sessions WHERE binding = ? AND state = 'active'", &sqlitex.ExecOptions{
			Args:       []any{binding},
			ResultFunc: func(*sqlite.Stmt) error { taken = true; return nil },
		})
		if err != nil {
			return err
		}
		if taken {
			return ErrBindingTaken
		}
		now := s.now().UnixNano()
		err = sqlitex.Execute(c, "INSERT INTO sessions ("+sessionCols+") VALUES (?, ?, ?, 'active', ?, 1)", &sqlitex.ExecOptions{
			Args: []any{id.String(), binding, now, wrappedKey},
		})
		if err != nil {
			return err
		}
		return insertProfile(c, &s.key, id, 1, canon, now)
	})
	if err != nil {
		return fmt.Errorf("store: creating session %s: %w", id, err)
	}
	return nil
}

// GetSession returns a session's metadata, erased or not.
func (s *Store) GetSession(ctx context.Context, id wire.SessionID) (Session, error) {
	return s.oneSession(ctx, "SELECT "+sessionCols+" FROM sessions WHERE id = ?", id.String(), "session "+id.String())
}

// SessionByBinding returns the active session with this binding, or
// ErrNotFound.
func (s *Store) SessionByBinding(ctx context.Context, binding string) (Session, error) {
	return s.oneSession(ctx, "SELECT "+sessionCols+" FROM sessions WHERE binding = ? AND state = 'active'", binding, "session for binding")
}

func (s *Store) oneSession(ctx context.Context, q, arg, what string) (Session, error) {
	var out Session
	found := false
	err := s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, q, &sqlitex.ExecOptions{
			Args: []any{arg},
			ResultFunc: func(st *sqlite.Stmt) error {
				var err error
				out, err = scanSession(st)
				found = true
				return err
			},
		})
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("store: reading %s: %w", what, err)
	}
	return out, nil
}

// ListSessions returns every session, erased ones included, oldest first.
func (s *Store) ListSessions(ctx context.Context) ([]Session, error) {
	var out []Session
	err := s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "SELECT "+sessionCols+" FROM sessions ORDER BY created, id", &sqlitex.ExecOptions{
			ResultFunc: func(st *sqlite.Stmt) error {
				sess, err := scanSession(st)
				out = append(out, sess)
				return err
			},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing sessions: %w", err)
	}
	return out, nil
}

// EraseSession crypto-erases a session: its wrapped key is overwritten, its
// profiles, cursors and pending intents deleted, and its state set to
// erased, in one transaction; then the WAL is checkpointed and truncated so
// the key's bytes leave the -wal file too (secure_delete zeroes them in the
// database file). The row stays so the id is never reused; the binding is
// freed for a new session. Erasing an erased session only checkpoints again.
//
// If the erase committed but the checkpoint could not finish, the error says
// so; the session is erased either way.
func (s *Store) EraseSession(ctx context.Context, id wire.SessionID) error {
	c, release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	err = inTx(c, func(c *sqlite.Conn) error {
		if _, err := sessionState(c, id); err != nil {
			return err
		}
		for _, q := range []string{
			"DELETE FROM profiles WHERE session_id = ?",
			"DELETE FROM cursors WHERE session_id = ?",
			"DELETE FROM delivery_intents WHERE session_id = ?",
			"UPDATE sessions SET wrapped_key = NULL, state = 'erased', profile_version = 0 WHERE id = ?",
		} {
			if err := sqlitex.Execute(c, q, &sqlitex.ExecOptions{Args: []any{id.String()}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: erasing session %s: %w", id, ctxErr(ctx, err))
	}
	// The checkpoint must not be cut short by ctx: the erase has committed,
	// and a half-done checkpoint only delays the key leaving the WAL.
	c.SetInterrupt(nil)
	if err := checkpoint(c); err != nil {
		return fmt.Errorf("store: session %s erased, but: %w", id, err)
	}
	return nil
}

// sessionState returns the state of a session, ErrNotFound if it never
// existed.
func sessionState(c *sqlite.Conn, id wire.SessionID) (State, error) {
	var st State
	found := false
	err := sqlitex.Execute(c, "SELECT state FROM sessions WHERE id = ?", &sqlitex.ExecOptions{
		Args:       []any{id.String()},
		ResultFunc: func(s *sqlite.Stmt) error { st = State(s.ColumnText(0)); found = true; return nil },
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "", ErrNotFound
	}
	return st, nil
}

// activeSession fails unless the session exists and is active.
func activeSession(c *sqlite.Conn, id wire.SessionID) error {
	st, err := sessionState(c, id)
	if err != nil {
		return err
	}
	if st != StateActive {
		return ErrErased
	}
	return nil
}
