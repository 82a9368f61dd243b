package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// What a chat channel needs beyond Send and Subscribe to deliver exactly
// once in both directions (see docs/matrix.md, "Exactly once").

// Undelivered returns the oldest replies of binding's session that were
// taken from its agent and not yet marked Delivered, in outbox order, at
// most store.PendingBatch of them (none if binding has no session): a
// channel polling a room it cannot deliver to pays for one bounded batch.
// A channel sends them at start and whenever a Subscribe notice was missed;
// the next ones come once these are marked Delivered.
func (s *Supervisor) Undelivered(ctx context.Context, binding string) ([]Reply, error) {
	sess, err := s.cfg.Store.SessionByBinding(ctx, binding)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	intents, err := s.cfg.Store.PendingIntents(ctx, sess.ID, store.PendingBatch)
	if err != nil {
		return nil, err
	}
	out := make([]Reply, 0, len(intents))
	for _, in := range intents {
		if in.Body == nil {
			continue // recorded by someone else's RecordIntent: not a reply kept here
		}
		out = append(out, Reply{Session: sess.ID, Text: string(in.Body), Seq: in.OutboxSeq, TxnID: in.TxnID})
	}
	return out, nil
}

// Delivered records that the user has reply seq of session: it leaves the
// store and is never offered again.
func (s *Supervisor) Delivered(ctx context.Context, session wire.SessionID, seq uint64) error {
	return s.cfg.Store.MarkDelivered(ctx, session, seq)
}

// Ensure returns binding's session, creating it (audited, from the default
// profile) if there is none yet, without sending it anything.
func (s *Supervisor) Ensure(ctx context.Context, binding string) (wire.SessionID, error) {
	c, err := s.conversation(ctx, binding)
	if err != nil {
		return wire.SessionID{}, err
	}
	return c.id, nil
}

// InboxMessage is a chat message as written to a session's inbox.
type InboxMessage struct {
	Seq  uint64
	From string
	Text string
}

// InboxMessages returns the chat messages written to binding's session inbox
// after row after. A channel that crashed while handing a message over
// reads them to learn whether the message got in, rather than sending it
// twice or never.
func (s *Supervisor) InboxMessages(ctx context.Context, binding string, after uint64) ([]InboxMessage, error) {
	c, err := s.conversation(ctx, binding)
	if err != nil {
		return nil, err
	}
	// A page at a time: the agent's echoes in between may be many and big.
	var out []InboxMessage
	err = c.wall.EachInboxRow(after, func(r queue.Row) bool {
		if m, ok := r.Body.(wire.Message); ok {
			out = append(out, InboxMessage{Seq: r.Header.Seq, From: m.From, Text: m.Text})
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("supervisor: reading back the inbox of session %s: %w", c.id, err)
	}
	return out, nil
}

// Wake makes sure binding's session has a sandbox to read what its inbox
// already holds: a channel that finds, after a crash, that its message got
// into the inbox before the daemon died calls it, since nothing else would
// start the sandbox until the next message.
func (s *Supervisor) Wake(ctx context.Context, binding string) error {
	c, err := s.conversation(ctx, binding)
	if err != nil {
		return err
	}
	c.noteWork(c.wall.InboxHead())
	return s.ensureSandbox(ctx, c, false)
}
