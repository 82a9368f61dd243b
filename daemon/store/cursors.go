package store

import (
	"context"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Well-known cursor names.
const (
	// CursorInboxNext is the next inbox sequence number to write.
	CursorInboxNext = "inbox.next"
	// CursorOutboxDelivered is the highest outbox sequence number delivered;
	// MarkDelivered advances it.
	CursorOutboxDelivered = "outbox.delivered"
	// CursorInboxConsumed is the highest inbox sequence number the agent
	// reported handled (its Progress row) that the daemon has delivered and
	// so recorded. Inbox compaction never goes past it, and a restored
	// session's agent resumes after it.
	CursorInboxConsumed = "inbox.consumed"
)

// AdvanceCursors advances several cursors of one session in one
// transaction, each as AdvanceCursor would: all move or none does.
func (s *Store) AdvanceCursors(ctx context.Context, id wire.SessionID, values map[string]uint64) error {
	for name, v := range values {
		if err := checkCursorName(name); err != nil {
			return err
		}
		if _, err := i64("cursor value", v); err != nil {
			return err
		}
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		for name, v := range values {
			cur, err := cursor(c, id, name)
			if err != nil {
				return err
			}
			if v < cur {
				return fmt.Errorf("%w: %s %d is below the current %d", ErrBackwards, name, v, cur)
			}
			if err := setCursor(c, id, name, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: advancing cursors of session %s: %w", id, err)
	}
	return nil
}

// MaxCursorNameLen caps a cursor name.
const MaxCursorNameLen = 64

func checkCursorName(name string) error {
	if name == "" || len(name) > MaxCursorNameLen {
		return fmt.Errorf("store: cursor name must be 1 to %d bytes", MaxCursorNameLen)
	}
	for _, b := range []byte(name) {
		if b <= ' ' || b >= 0x7f {
			return fmt.Errorf("store: cursor name %q: use printable ASCII without spaces", name)
		}
	}
	return nil
}

// Cursor returns a session's cursor; a cursor never set reads as 0.
func (s *Store) Cursor(ctx context.Context, id wire.SessionID, name string) (uint64, error) {
	if err := checkCursorName(name); err != nil {
		return 0, err
	}
	var v uint64
	err := s.readTx(ctx, func(c *sqlite.Conn) (err error) {
		if err := activeSession(c, id); err != nil {
			return err
		}
		v, err = cursor(c, id, name)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: reading cursor %s of session %s: %w", name, id, err)
	}
	return v, nil
}

// SetCursor sets a session's cursor to v, forward or back. Most callers want
// AdvanceCursor; SetCursor is for repairs the operator asked for.
func (s *Store) SetCursor(ctx context.Context, id wire.SessionID, name string, v uint64) error {
	return s.putCursor(ctx, id, name, v, false)
}

// AdvanceCursor sets a session's cursor to v if v is not below its current
// value (setting the same value again succeeds, so a retry is harmless), and
// fails with ErrBackwards otherwise, writing nothing.
func (s *Store) AdvanceCursor(ctx context.Context, id wire.SessionID, name string, v uint64) error {
	return s.putCursor(ctx, id, name, v, true)
}

func (s *Store) putCursor(ctx context.Context, id wire.SessionID, name string, v uint64, forwardOnly bool) error {
	if err := checkCursorName(name); err != nil {
		return err
	}
	if _, err := i64("cursor value", v); err != nil {
		return err
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		if forwardOnly {
			cur, err := cursor(c, id, name)
			if err != nil {
				return err
			}
			if v < cur {
				return fmt.Errorf("%w: %d is below the current %d", ErrBackwards, v, cur)
			}
		}
		return setCursor(c, id, name, v)
	})
	if err != nil {
		return fmt.Errorf("store: setting cursor %s of session %s to %d: %w", name, id, v, err)
	}
	return nil
}

func cursor(c *sqlite.Conn, id wire.SessionID, name string) (uint64, error) {
	var v int64
	err := sqlitex.Execute(c, "SELECT value FROM cursors WHERE session_id = ? AND name = ?", &sqlitex.ExecOptions{
		Args:       []any{id.String(), name},
		ResultFunc: func(st *sqlite.Stmt) error { v = st.ColumnInt64(0); return nil },
	})
	return uint64(v), err
}

func setCursor(c *sqlite.Conn, id wire.SessionID, name string, v uint64) error {
	return sqlitex.Execute(c, `INSERT INTO cursors (session_id, name, value) VALUES (?, ?, ?)
		ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value`, &sqlitex.ExecOptions{
		Args: []any{id.String(), name, int64(v)},
	})
}
