package supervisor

import (
	"context"
	"fmt"
)

// The inbox retention policy (docs/operations.md, "Retention"). An inbox row
// may go once the agent has consumed it AND the daemon has recorded that
// (store cursor inbox.consumed, advanced with the delivery of the agent's
// Progress row, in the same transaction), and it is not among the newest
// InboxKeepRows rows, which stay for a fresh agent to rebuild recent history
// from. Compaction runs when at least InboxCompactEvery more rows became
// eligible, so its cost (one gated write, an incremental vacuum) is spread.
// Rows the agent has not consumed are never touched: the agent reads on
// from its own progress, which is at or above the recorded one.
const (
	DefaultInboxKeepRows     = 1000
	DefaultInboxCompactEvery = 256
)

// compactInbox applies the policy after consumed was recorded. A failure is
// logged and retried at the next delivery; it never fails the delivery.
func (s *Supervisor) compactInbox(ctx context.Context, c *conv, consumed uint64) {
	head := c.inboxHead.Load()
	if head <= s.cfg.InboxKeepRows {
		return
	}
	through := min(consumed, head-s.cfg.InboxKeepRows)
	if through < c.compacted.Load()+s.cfg.InboxCompactEvery {
		return
	}
	// Audit before acting: the conversation's rows are deleted for good.
	if err := s.audit("daemon", "inbox.compact", c.id.String(), "", fmt.Sprintf("through=%d consumed=%d head=%d", through, consumed, head)); err != nil {
		s.cfg.Log.Error("audit write failed; inbox not compacted", "session", c.id.String(), "err", err)
		return
	}
	if _, err := c.wall.CompactInbox(ctx, through); err != nil {
		s.cfg.Log.Warn("compacting the inbox", "session", c.id.String(), "err", err)
		return
	}
	c.compacted.Store(through)
}
