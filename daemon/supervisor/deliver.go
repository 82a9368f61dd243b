package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// deliver routes verified outbox rows. Replies go to the session's own binding; change
// requests will go to the gateway. Progress rows tell the lifecycle what the agent handled.
func (s *Supervisor) deliver(ctx context.Context, c *conv, rows []queue.Row) error {
	// The agent must not be able to make delivery fail halfway (by hanging up
	// on its doorbell), and a row must never be handed on twice: in one store
	// transaction every reply becomes a delivery intent holding its text and
	// the cursor moves past the rows; only then are they handed on. A crash
	// after that loses nothing: the channel finds the intent (Undelivered)
	// and sends it under the same transaction id until it calls Delivered.
	ctx = context.WithoutCancel(ctx)
	// The caps come first: a refused outbox leaves nothing half-applied.
	if err := s.checkBacklog(ctx, c, rows); err != nil {
		return err
	}
	// Record operations are idempotent: applied before the
	// cursor moves, so a failure offers them again (records.go).
	if err := s.applyRecords(ctx, c, rows); err != nil {
		return err
	}
	var taken []store.TakenReply
	for _, r := range rows {
		if b, ok := r.Body.(wire.Reply); ok {
			taken = append(taken, store.TakenReply{OutboxSeq: r.Header.Seq, TxnID: ReplyTxnID(c.id, r.Header.Seq), Body: []byte(b.Text)})
		}
	}
	// The agent's progress is recorded with the replies, in one commit (never
	// ahead of them): inbox compaction and a restored session's agent go by
	// it. Never past what was written: a lying agent cannot make the
	// supervisor think it is done and skip a restart it owes another message.
	var progress uint64
	for _, r := range rows {
		if b, ok := r.Body.(wire.Progress); ok {
			progress = max(progress, min(b.Inbox, c.inboxHead.Load()))
		}
	}
	consumed, err := s.cfg.Store.TakeRepliesAndProgress(ctx, c.id, rows[len(rows)-1].Header.Seq, taken, progress)
	if errors.Is(err, store.ErrBacklog) {
		return &queue.HostileError{Class: RefusedBacklog, Err: err}
	} else if err != nil {
		s.cfg.Log.Error("recording replies taken from the outbox; they will be offered again", "session", c.id.String(), "err", err)
		return err
	}
	if progress > 0 && consumed == progress {
		s.compactInbox(ctx, c, progress)
	}
	for _, r := range rows {
		switch b := r.Body.(type) {
		case wire.Reply:
			// Metadata only, before it is handed on; a reply that cannot be
			// audited is not handed on (the failure is counted and logged).
			if err := s.audit("agent:"+c.id.String(), "reply.out", c.id.String(), "", fmt.Sprintf("seq %d, %d bytes", r.Header.Seq, len(b.Text))); err != nil {
				s.cfg.Log.Error("audit write failed; reply not delivered", "session", c.id.String(), "seq", r.Header.Seq, "err", err)
				continue
			}
			s.mu.Lock()
			for ch, binding := range s.waiters {
				if binding == c.binding {
					select {
					case ch <- Reply{Session: c.id, InReplyTo: b.InReplyTo, Text: b.Text, Seq: r.Header.Seq, TxnID: ReplyTxnID(c.id, r.Header.Seq)}:
					default: // a slow reader misses the notice; the reply waits in Undelivered
					}
				}
			}
			s.mu.Unlock()
		case wire.ChangeRequest:
			// The gateway decides; a refusal is an outcome, not a delivery
			// failure (it is audited there).
			if s.cfg.Changes == nil {
				if err := s.cfg.Audit.Refuse("agent:"+c.id.String(), "change.refused", c.id.String(), "no gateway"); err != nil {
					s.cfg.Log.Error("audit write failed", "session", c.id.String(), "err", err)
				}
			} else if err := s.cfg.Changes.SubmitAgentChange(ctx, c.id, b); err != nil {
				s.cfg.Log.Info("change request not accepted", "session", c.id.String(), "err", err)
			}
		case wire.Progress:
			if p := min(b.Inbox, c.inboxHead.Load()); p > c.progress.Load() {
				c.progress.Store(p)
				c.touch()
			}
		}
	}
	// Off the turn's critical path: the replies are on their way.
	s.refusedTools(c, rows)
	if err := s.echoReplies(ctx, c, rows); err != nil {
		s.cfg.Log.Error("recording delivered replies", "session", c.id.String(), "err", err)
	}
	return nil
}
