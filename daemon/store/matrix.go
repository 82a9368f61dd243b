package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// The Matrix channel's record (daemon/matrix). Secrets and event content are
// sealed like every other content column; ids, states and the sync token are
// plain metadata.

const (
	matrixAccountTable = "matrix_account"
	matrixInboundTable = "matrix_inbound"
)

// MatrixAccount is the bot's device: who it is, how it authenticates, how
// far it has synced.
type MatrixAccount struct {
	UserID   string
	DeviceID string
	// AccessToken authenticates the device; RecoveryKey unlocks the
	// account's secret storage (cross-signing keys, key backup key);
	// BackupVersion and BackupKey (base64 of the X25519 private key) are the
	// room-key backup. Stored sealed.
	AccessToken   string `json:"access_token"`
	RecoveryKey   string `json:"recovery_key"`
	BackupVersion string `json:"backup_version"`
	BackupKey     string `json:"backup_key"`
	// NextBatch is the sync token after the last committed batch.
	NextBatch string `json:"-"`
	// Clean is true while the daemon stopped cleanly since its last sync.
	Clean bool `json:"-"`
}

// MatrixAccount returns the bot's account, or ErrNotFound before the first
// login.
func (s *Store) MatrixAccount(ctx context.Context) (MatrixAccount, error) {
	var a MatrixAccount
	found := false
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "SELECT user_id, device_id, secrets, next_batch, clean FROM matrix_account WHERE id = 1", &sqlitex.ExecOptions{
			ResultFunc: func(st *sqlite.Stmt) error {
				found = true
				sealed := make([]byte, st.ColumnLen(2))
				st.ColumnBytes(2, sealed)
				plain, err := openColumn(&s.key, matrixAccountTable, wire.SessionID{}, 1, sealed)
				if err != nil {
					return err
				}
				defer clear(plain)
				if err := json.Unmarshal(plain, &a); err != nil {
					return fmt.Errorf("%w: secrets do not decode", ErrSealed)
				}
				a.UserID, a.DeviceID = st.ColumnText(0), st.ColumnText(1)
				a.NextBatch, a.Clean = st.ColumnText(3), st.ColumnInt64(4) == 1
				return nil
			},
		})
	})
	if err != nil {
		return MatrixAccount{}, fmt.Errorf("store: reading the Matrix account: %w", err)
	}
	if !found {
		return MatrixAccount{}, fmt.Errorf("store: no Matrix account: %w", ErrNotFound)
	}
	return a, nil
}

// SetMatrixAccount stores the bot's account and secrets. A new device (another
// user or device id) starts syncing from scratch; the same device keeps its
// sync token.
func (s *Store) SetMatrixAccount(ctx context.Context, a MatrixAccount) error {
	plain, err := json.Marshal(a)
	if err != nil {
		return err
	}
	sealed, err := sealColumn(&s.key, matrixAccountTable, wire.SessionID{}, 1, plain)
	clear(plain)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, `INSERT INTO matrix_account (id, user_id, device_id, secrets, updated) VALUES (1, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET secrets = excluded.secrets, updated = excluded.updated,
			next_batch = CASE WHEN user_id = excluded.user_id AND device_id = excluded.device_id THEN next_batch ELSE '' END,
			user_id = excluded.user_id, device_id = excluded.device_id`, &sqlitex.ExecOptions{
			Args: []any{a.UserID, a.DeviceID, sealed, s.now().UnixNano()},
		})
	})
	if err != nil {
		return fmt.Errorf("store: saving the Matrix account: %w", err)
	}
	return nil
}

// SetMatrixClean records whether the channel stopped cleanly: a start after
// an unclean stop refetches device lists the lost batch may have changed.
func (s *Store) SetMatrixClean(ctx context.Context, clean bool) error {
	v := 0
	if clean {
		v = 1
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "UPDATE matrix_account SET clean = ? WHERE id = 1", &sqlitex.ExecOptions{Args: []any{v}})
	})
	if err != nil {
		return fmt.Errorf("store: marking the Matrix channel clean=%v: %w", clean, err)
	}
	return nil
}

// Inbound event states.
const (
	// MatrixNew: accepted from a sync batch, not yet handed to an agent (or
	// held until its sender is approved, or waiting for its room key).
	MatrixNew = "new"
	// MatrixHanding: being written to a session inbox; After is what the
	// inbox held before, so a crash mid-hand-off can be checked.
	MatrixHanding = "handing"
	// MatrixDone: handed on exactly once. MatrixRefused: never will be.
	MatrixDone    = "done"
	MatrixRefused = "refused"
)

// MatrixEvent is an inbound event in the channel's record.
type MatrixEvent struct {
	Seq     uint64 // order of arrival
	EventID string
	RoomID  string
	Sender  string
	State   string
	// Body is the channel's own encoding of the event (decrypted text or
	// the still-encrypted event); stored sealed, dropped once handed on.
	Body    []byte
	After   uint64
	Created time.Time
}

// MatrixHoldLimits bound what one sender, or one room, can keep waiting in
// the channel's record (a stranger's messages are held, sealed, until the
// owner decides their contact request).
type MatrixHoldLimits struct {
	// PerSender and PerRoom cap the open (new or handing) events of one
	// sender and of one room; zero means no cap.
	PerSender, PerRoom int
	// Exempt reports senders the caps do not apply to (the owners, the
	// bot); their events still count towards their room's total.
	Exempt func(sender string) bool
	// Refused is told of each event beyond a cap before it is recorded as
	// refused (without its body); an error aborts the whole batch, so a
	// refusal that cannot be audited does not happen.
	Refused func(e MatrixEvent, why string) error
}

// Reasons handed to MatrixHoldLimits.Refused: fixed classes, never content.
const (
	MatrixOverSenderCap = "too many held events from this sender"
	MatrixOverRoomCap   = "too many held events in this room"
)

// CommitMatrixSync records the events of one sync batch and moves the sync
// token to nextBatch, in one transaction: the token never passes an event
// that is not recorded. Events already recorded (same event id) are skipped.
// New events beyond lim's caps are recorded as refused, bodiless. It returns
// how many were new.
func (s *Store) CommitMatrixSync(ctx context.Context, events []MatrixEvent, nextBatch string, lim MatrixHoldLimits) (int, error) {
	added := 0
	err := s.write(ctx, func(c *sqlite.Conn) error {
		var next int64
		if err := sqlitex.Execute(c, "SELECT coalesce(max(seq), 0) + 1 FROM matrix_inbound", &sqlitex.ExecOptions{
			ResultFunc: func(st *sqlite.Stmt) error { next = st.ColumnInt64(0); return nil },
		}); err != nil {
			return err
		}
		for _, e := range events {
			seen := false
			if err := sqlitex.Execute(c, "SELECT 1 FROM matrix_inbound WHERE event_id = ?", &sqlitex.ExecOptions{
				Args:       []any{e.EventID},
				ResultFunc: func(*sqlite.Stmt) error { seen = true; return nil },
			}); err != nil {
				return err
			}
			if seen {
				continue
			}
			state, body := e.State, any(nil)
			if state == "" {
				state = MatrixNew
			}
			if state == MatrixNew {
				why, err := overHoldCap(c, e, lim)
				if err != nil {
					return err
				}
				if why != "" {
					if lim.Refused != nil {
						if err := lim.Refused(e, why); err != nil {
							return fmt.Errorf("auditing a refused event: %w", err)
						}
					}
					state, e.Body = MatrixRefused, nil
				}
			}
			if e.Body != nil {
				sealed, err := sealColumn(&s.key, matrixInboundTable, wire.SessionID{}, uint64(next), e.Body)
				if err != nil {
					return err
				}
				body = sealed
			}
			if err := sqlitex.Execute(c, `INSERT INTO matrix_inbound (seq, event_id, room_id, sender, state, body, created)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, &sqlitex.ExecOptions{
				Args: []any{next, e.EventID, e.RoomID, e.Sender, state, body, s.now().UnixNano()},
			}); err != nil {
				return err
			}
			next++
			added++
		}
		return sqlitex.Execute(c, "UPDATE matrix_account SET next_batch = ?, clean = 0 WHERE id = 1", &sqlitex.ExecOptions{
			Args: []any{nextBatch},
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: committing a Matrix sync batch: %w", err)
	}
	return added, nil
}

// overHoldCap says which cap (if any) recording e as open would pass.
func overHoldCap(c *sqlite.Conn, e MatrixEvent, lim MatrixHoldLimits) (string, error) {
	if lim.Exempt != nil && lim.Exempt(e.Sender) {
		return "", nil
	}
	count := func(col, v string) (int, error) {
		n := 0
		err := sqlitex.Execute(c, "SELECT count(*) FROM matrix_inbound WHERE state IN ('new', 'handing') AND "+col+" = ?", &sqlitex.ExecOptions{
			Args:       []any{v},
			ResultFunc: func(st *sqlite.Stmt) error { n = st.ColumnInt(0); return nil },
		})
		return n, err
	}
	if lim.PerSender > 0 {
		n, err := count("sender", e.Sender)
		if err != nil || n >= lim.PerSender {
			return MatrixOverSenderCap, err
		}
	}
	if lim.PerRoom > 0 {
		n, err := count("room_id", e.RoomID)
		if err != nil || n >= lim.PerRoom {
			return MatrixOverRoomCap, err
		}
	}
	return "", nil
}

// MatrixSeen reports whether an inbound event with this id is recorded.
func (s *Store) MatrixSeen(ctx context.Context, eventID string) (bool, error) {
	found := false
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "SELECT 1 FROM matrix_inbound WHERE event_id = ?", &sqlitex.ExecOptions{
			Args:       []any{eventID},
			ResultFunc: func(*sqlite.Stmt) error { found = true; return nil },
		})
	})
	if err != nil {
		return false, fmt.Errorf("store: looking up Matrix event %q: %w", eventID, err)
	}
	return found, nil
}

// MatrixOpen returns the inbound events not yet done or refused, in order of
// arrival, with their bodies unsealed: at most perRoom of each room (the
// oldest), so a reload stays bounded however much waits; the rest come once
// those are closed.
func (s *Store) MatrixOpen(ctx context.Context, perRoom int) ([]MatrixEvent, error) {
	if perRoom <= 0 {
		return nil, fmt.Errorf("store: listing open Matrix events: a per-room limit of %d", perRoom)
	}
	var out []MatrixEvent
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, `SELECT seq, event_id, room_id, sender, state, body, after, created FROM (
				SELECT *, row_number() OVER (PARTITION BY room_id ORDER BY seq) AS nth FROM matrix_inbound
				WHERE state IN ('new', 'handing'))
			WHERE nth <= ? ORDER BY seq`, &sqlitex.ExecOptions{
			Args: []any{perRoom},
			ResultFunc: func(st *sqlite.Stmt) error {
				e := MatrixEvent{Seq: uint64(st.ColumnInt64(0)), EventID: st.ColumnText(1), RoomID: st.ColumnText(2),
					Sender: st.ColumnText(3), State: st.ColumnText(4), After: uint64(st.ColumnInt64(6)),
					Created: time.Unix(0, st.ColumnInt64(7)).UTC()}
				if st.ColumnType(5) != sqlite.TypeNull {
					sealed := make([]byte, st.ColumnLen(5))
					st.ColumnBytes(5, sealed)
					body, err := openColumn(&s.key, matrixInboundTable, wire.SessionID{}, e.Seq, sealed)
					if err != nil {
						return fmt.Errorf("event %d: %w", e.Seq, err)
					}
					e.Body = body
				}
				out = append(out, e)
				return nil
			},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing open Matrix events: %w", err)
	}
	return out, nil
}

// UpdateMatrixEvent moves inbound event seq to state. Body replaces the
// sealed body when not nil; done and refused events lose their body.
func (s *Store) UpdateMatrixEvent(ctx context.Context, seq uint64, state string, body []byte, after uint64) error {
	switch state {
	case MatrixNew, MatrixHanding, MatrixDone, MatrixRefused:
	default:
		return fmt.Errorf("store: %q is not a Matrix event state", state)
	}
	k, err := i64("event sequence", seq)
	if err != nil {
		return err
	}
	a, err := i64("inbox sequence", after)
	if err != nil {
		return err
	}
	var sealed []byte
	if body != nil && state != MatrixDone && state != MatrixRefused {
		if sealed, err = sealColumn(&s.key, matrixInboundTable, wire.SessionID{}, seq, body); err != nil {
			return err
		}
	}
	err = s.write(ctx, func(c *sqlite.Conn) error {
		q := "UPDATE matrix_inbound SET state = ?, after = ? WHERE seq = ?"
		args := []any{state, a, k}
		switch {
		case state == MatrixDone || state == MatrixRefused:
			q = "UPDATE matrix_inbound SET state = ?, after = ?, body = NULL WHERE seq = ?"
		case sealed != nil:
			q = "UPDATE matrix_inbound SET state = ?, after = ?, body = ? WHERE seq = ?"
			args = []any{state, a, sealed, k}
		}
		if err := sqlitex.Execute(c, q, &sqlitex.ExecOptions{Args: args}); err != nil {
			return err
		}
		if c.Changes() == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: updating Matrix event %d: %w", seq, err)
	}
	return nil
}

// MatrixNoticeSent records that change request id was announced; it reports
// false if it had been already (so each is announced once).
func (s *Store) MatrixNoticeSent(ctx context.Context, id ChangeID) (bool, error) {
	first := false
	err := s.write(ctx, func(c *sqlite.Conn) error {
		if err := sqlitex.Execute(c, "INSERT INTO matrix_notices (change_id, created) VALUES (?, ?) ON CONFLICT DO NOTHING", &sqlitex.ExecOptions{
			Args: []any{id.String(), s.now().UnixNano()},
		}); err != nil {
			return err
		}
		first = c.Changes() > 0
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: recording the Matrix notice of change %s: %w", id, err)
	}
	return first, nil
}

// MatrixNoticed reports whether change request id was announced.
func (s *Store) MatrixNoticed(ctx context.Context, id ChangeID) (bool, error) {
	found := false
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "SELECT 1 FROM matrix_notices WHERE change_id = ?", &sqlitex.ExecOptions{
			Args:       []any{id.String()},
			ResultFunc: func(*sqlite.Stmt) error { found = true; return nil },
		})
	})
	return found, err
}

// MatrixLastHanded returns the inbox sequence the last event handed on from
// room got (0 if none): where to look for an interrupted hand-off.
func (s *Store) MatrixLastHanded(ctx context.Context, room string) (uint64, error) {
	var v int64
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "SELECT coalesce(max(after), 0) FROM matrix_inbound WHERE room_id = ? AND state = 'done'", &sqlitex.ExecOptions{
			Args:       []any{room},
			ResultFunc: func(st *sqlite.Stmt) error { v = st.ColumnInt64(0); return nil },
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: reading the last Matrix hand-off of %s: %w", room, err)
	}
	return uint64(v), nil
}

// MatrixStrangerRooms counts the active sessions bound to a room (binding
// prefix + room id) from which no event was ever handed on or acted upon:
// rooms the bot holds a session for only because a stranger invited it,
// whether their request is pending or was refused. Such sessions stay until
// the owner erases them, so this is what a cap must count.
func (s *Store) MatrixStrangerRooms(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, `SELECT count(*) FROM sessions
			WHERE state = 'active' AND substr(binding, 1, length(?1)) = ?1
			AND substr(binding, length(?1) + 1) NOT IN (SELECT room_id FROM matrix_inbound WHERE state = 'done')`, &sqlitex.ExecOptions{
			Args:       []any{prefix},
			ResultFunc: func(st *sqlite.Stmt) error { n = st.ColumnInt(0); return nil },
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: counting Matrix rooms of strangers: %w", err)
	}
	return n, nil
}
