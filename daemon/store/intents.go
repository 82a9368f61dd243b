package store

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// MaxTxnIDLen caps a channel transaction id.
const MaxTxnIDLen = 255

// Caps on a session's replies taken from its agent and not yet delivered
// (docs/agent.md, "Caps"). Replies wait in the store while their channel
// cannot deliver them (a room that is not encrypted or holds an unapproved
// member, a console session nobody chats with); an agent that keeps writing
// replies nobody reads must not grow the daemon's disk without bound. An
// honest assistant answers each message with a few replies and its
// schedules fire at most once a minute each: it would take days of firings
// nobody reads to reach these.
const (
	MaxUndeliveredReplies = 4096
	MaxUndeliveredBytes   = 64 << 20 // sealed bytes
	// PendingBatch is the most intents PendingIntents returns at once
	// (the oldest): a channel that polls pays for a bounded batch, never
	// for the whole backlog.
	PendingBatch = 64
)

// ErrBacklog means a session's undelivered replies are at their cap
// (MaxUndeliveredReplies, MaxUndeliveredBytes): nothing was taken.
var ErrBacklog = errors.New("store: the session's undelivered replies are at their cap")

// Intent is a delivery that was started and is not yet known to have
// finished: outbox row OutboxSeq is to be sent with channel transaction id
// TxnID (channels deduplicate on it, so resending after a crash is safe).
type Intent struct {
	Session   wire.SessionID
	OutboxSeq uint64
	TxnID     string
	Created   time.Time
	// Body is the reply text kept with the intent (TakeReplies), nil for an
	// intent recorded with RecordIntent.
	Body []byte
}

// Exactly-once delivery, from the user's view:
//
//  1. RecordIntent(seq, txn) before sending; ErrDelivered means skip it.
//  2. Send with txn (idempotent at the channel).
//  3. MarkDelivered(seq).
//
// After a crash, PendingIntents lists what to resend, each with the same txn.

// RecordIntent records that outbox row seq is about to be sent with txnID.
// Repeating it with the same txnID succeeds (idempotent); with another txnID
// it fails with ErrConflict. If seq was already delivered it fails with
// ErrDelivered: the caller must not send it again.
func (s *Store) RecordIntent(ctx context.Context, id wire.SessionID, outboxSeq uint64, txnID string) error {
	if outboxSeq == 0 {
		return fmt.Errorf("store: outbox sequence numbers start at 1")
	}
	seq, err := i64("outbox sequence", outboxSeq)
	if err != nil {
		return err
	}
	if txnID == "" || len(txnID) > MaxTxnIDLen || !utf8.ValidString(txnID) {
		return fmt.Errorf("store: transaction id must be 1 to %d bytes of UTF-8", MaxTxnIDLen)
	}
	err = s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		var existing string
		found := false
		err := sqlitex.Execute(c, "SELECT txn_id FROM delivery_intents WHERE session_id = ? AND outbox_seq = ?", &sqlitex.ExecOptions{
			Args:       []any{id.String(), seq},
			ResultFunc: func(st *sqlite.Stmt) error { existing = st.ColumnText(0); found = true; return nil },
		})
		if err != nil {
			return err
		}
		if found {
			if existing != txnID {
				return fmt.Errorf("%w: outbox row %d is already being delivered under another transaction id", ErrConflict, outboxSeq)
			}
			return nil
		}
		// No row: either never recorded, or delivered (MarkDelivered deletes
		// the row) and at or below the delivered cursor.
		delivered, err := cursor(c, id, CursorOutboxDelivered)
		if err != nil {
			return err
		}
		if outboxSeq <= delivered {
			return ErrDelivered
		}
		return sqlitex.Execute(c, "INSERT INTO delivery_intents (session_id, outbox_seq, txn_id, created) VALUES (?, ?, ?, ?)", &sqlitex.ExecOptions{
			Args: []any{id.String(), seq, txnID, s.now().UnixNano()},
		})
	})
	if err != nil {
		return fmt.Errorf("store: recording delivery intent for outbox row %d of session %s: %w", outboxSeq, id, err)
	}
	return nil
}

// MarkDelivered records that outbox row seq was delivered: its intent is
// removed and the outbox.delivered cursor advanced to seq (never moved back),
// in one transaction. Repeating it succeeds. It fails with ErrNotFound if no
// intent was recorded for a row beyond the cursor: sending without an intent
// would break exactly-once.
func (s *Store) MarkDelivered(ctx context.Context, id wire.SessionID, outboxSeq uint64) error {
	seq, err := i64("outbox sequence", outboxSeq)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		if err := sqlitex.Execute(c, "DELETE FROM delivery_intents WHERE session_id = ? AND outbox_seq = ?", &sqlitex.ExecOptions{
			Args: []any{id.String(), seq},
		}); err != nil {
			return err
		}
		removed := c.Changes() > 0
		delivered, err := cursor(c, id, CursorOutboxDelivered)
		if err != nil {
			return err
		}
		switch {
		case outboxSeq > delivered && !removed:
			return fmt.Errorf("%w: no delivery intent was recorded for outbox row %d", ErrNotFound, outboxSeq)
		case outboxSeq > delivered:
			return setCursor(c, id, CursorOutboxDelivered, outboxSeq)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: marking outbox row %d of session %s delivered: %w", outboxSeq, id, err)
	}
	return nil
}

// PendingIntents returns the session's oldest undelivered intents in outbox
// order, at most limit of them (PendingBatch if limit is not positive or
// larger): the rest come once these are delivered.
func (s *Store) PendingIntents(ctx context.Context, id wire.SessionID, limit int) ([]Intent, error) {
	if limit <= 0 || limit > PendingBatch {
		limit = PendingBatch
	}
	var out []Intent
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		return sqlitex.Execute(c, "SELECT outbox_seq, txn_id, created, body FROM delivery_intents WHERE session_id = ? ORDER BY outbox_seq LIMIT ?", &sqlitex.ExecOptions{
			Args: []any{id.String(), limit},
			ResultFunc: func(st *sqlite.Stmt) error {
				in := Intent{
					Session:   id,
					OutboxSeq: uint64(st.ColumnInt64(0)),
					TxnID:     st.ColumnText(1),
					Created:   time.Unix(0, st.ColumnInt64(2)).UTC(),
				}
				if st.ColumnType(3) != sqlite.TypeNull {
					sealed := make([]byte, st.ColumnLen(3))
					st.ColumnBytes(3, sealed)
					body, err := openColumn(&s.key, intentsTable, id, in.OutboxSeq, sealed)
					if err != nil {
						return fmt.Errorf("outbox row %d: %w", in.OutboxSeq, err)
					}
					in.Body = body
				}
				out = append(out, in)
				return nil
			},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing delivery intents of session %s: %w", id, err)
	}
	return out, nil
}

// intentsTable names delivery_intents in sealed values.
const intentsTable = "delivery_intents"

// TakenReply is a reply row handed to TakeReplies.
type TakenReply struct {
	OutboxSeq uint64
	TxnID     string
	Body      []byte
}

// TakeReplies records that the outbox rows up to lastSeq were taken from the
// agent: each reply becomes a delivery intent holding its text sealed (an
// intent already recorded is kept as it is), and the outbox.delivered cursor
// moves to lastSeq, all in one transaction. From then on the store, not the
// agent's outbox, is the record of the reply: after a crash PendingIntents
// returns it with its text, and the channel resends it under the same
// transaction id until MarkDelivered. Replies that would take the session's
// undelivered ones past MaxUndeliveredReplies or MaxUndeliveredBytes fail
// it with ErrBacklog, and nothing is taken.
func (s *Store) TakeReplies(ctx context.Context, id wire.SessionID, lastSeq uint64, replies []TakenReply) error {
	_, err := s.TakeRepliesAndProgress(ctx, id, lastSeq, replies, 0)
	return err
}

// TakeRepliesAndProgress is TakeReplies that also moves the session's
// inbox.consumed cursor to consumed, in the same transaction, when that is
// forward (an agent re-reading after a restart reports less: the cursor
// never moves back, and that is not an error). It returns the cursor's
// value afterwards. One commit, not two, on every turn's way out.
func (s *Store) TakeRepliesAndProgress(ctx context.Context, id wire.SessionID, lastSeq uint64, replies []TakenReply, consumed uint64) (uint64, error) {
	last, err := i64("outbox sequence", lastSeq)
	if err != nil {
		return 0, err
	}
	if _, err := i64("cursor value", consumed); err != nil {
		return 0, err
	}
	sealed := make([][]byte, len(replies))
	for i, r := range replies {
		if r.OutboxSeq == 0 || r.OutboxSeq > lastSeq {
			return 0, fmt.Errorf("store: reply row %d is outside the rows taken (1..%d)", r.OutboxSeq, lastSeq)
		}
		if r.TxnID == "" || len(r.TxnID) > MaxTxnIDLen || !utf8.ValidString(r.TxnID) {
			return 0, fmt.Errorf("store: transaction id must be 1 to %d bytes of UTF-8", MaxTxnIDLen)
		}
		if sealed[i], err = sealColumn(&s.key, intentsTable, id, r.OutboxSeq, r.Body); err != nil {
			return 0, err
		}
	}
	var after uint64
	err = s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		delivered, err := cursor(c, id, CursorOutboxDelivered)
		if err != nil {
			return err
		}
		var count, size int64
		if err := sqlitex.Execute(c, "SELECT count(*), coalesce(sum(length(body)), 0) FROM delivery_intents WHERE session_id = ?", &sqlitex.ExecOptions{
			Args:       []any{id.String()},
			ResultFunc: func(st *sqlite.Stmt) error { count, size = st.ColumnInt64(0), st.ColumnInt64(1); return nil },
		}); err != nil {
			return err
		}
		for i, r := range replies {
			if r.OutboxSeq > delivered {
				count, size = count+1, size+int64(len(sealed[i]))
			}
		}
		if count > MaxUndeliveredReplies || size > MaxUndeliveredBytes {
			return fmt.Errorf("%w: %d replies, %d bytes (at most %d, %d)", ErrBacklog, count, size, MaxUndeliveredReplies, MaxUndeliveredBytes)
		}
		for i, r := range replies {
			if r.OutboxSeq <= delivered {
				continue // taken before: delivered, or its intent already holds it
			}
			if err := sqlitex.Execute(c, `INSERT INTO delivery_intents (session_id, outbox_seq, txn_id, created, body)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, outbox_seq) DO NOTHING`, &sqlitex.ExecOptions{
				Args: []any{id.String(), int64(r.OutboxSeq), r.TxnID, s.now().UnixNano(), sealed[i]},
			}); err != nil {
				return err
			}
		}
		if uint64(last) > delivered {
			if err := setCursor(c, id, CursorOutboxDelivered, uint64(last)); err != nil {
				return err
			}
		}
		if after, err = cursor(c, id, CursorInboxConsumed); err != nil {
			return err
		}
		if consumed > after {
			after = consumed
			return setCursor(c, id, CursorInboxConsumed, consumed)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: taking outbox rows up to %d of session %s: %w", lastSeq, id, err)
	}
	return after, nil
}
