package store

import (
	"context"
	"fmt"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// The model proxy's daily token count per session lives here, so that a
// daemon restart does not refill a session's day (package proxy's Ledger).
// Only the latest day written is kept: writing a day drops the session's
// earlier days.

func checkDay(day string) error {
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return fmt.Errorf("store: day %q: want YYYY-MM-DD", day)
	}
	return nil
}

// ModelTokens returns the model tokens recorded for session id on day
// (YYYY-MM-DD, UTC); a day never recorded reads as 0.
func (s *Store) ModelTokens(ctx context.Context, id wire.SessionID, day string) (int64, error) {
	if err := checkDay(day); err != nil {
		return 0, err
	}
	var n int64
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		return sqlitex.Execute(c, "SELECT tokens FROM model_tokens WHERE session_id = ? AND day = ?", &sqlitex.ExecOptions{
			Args:       []any{id.String(), day},
			ResultFunc: func(st *sqlite.Stmt) error { n = st.ColumnInt64(0); return nil },
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: reading the model tokens of session %s: %w", id, err)
	}
	return n, nil
}

// SetModelTokens records session id's model tokens for day, and forgets
// its earlier days.
func (s *Store) SetModelTokens(ctx context.Context, id wire.SessionID, day string, tokens int64) error {
	if err := checkDay(day); err != nil {
		return err
	}
	if tokens < 0 {
		return fmt.Errorf("store: model tokens %d: must not be negative", tokens)
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		if err := sqlitex.Execute(c, "DELETE FROM model_tokens WHERE session_id = ? AND day < ?", &sqlitex.ExecOptions{
			Args: []any{id.String(), day},
		}); err != nil {
			return err
		}
		return sqlitex.Execute(c, `INSERT INTO model_tokens (session_id, day, tokens) VALUES (?, ?, ?)
			ON CONFLICT (session_id, day) DO UPDATE SET tokens = excluded.tokens`, &sqlitex.ExecOptions{
			Args: []any{id.String(), day, tokens},
		})
	})
	if err != nil {
		return fmt.Errorf("store: recording the model tokens of session %s: %w", id, err)
	}
	return nil
}
