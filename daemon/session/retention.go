package session

import "context"

// CompactInbox deletes the inbox rows through seq (see queue.Inbox.Compact
// for what is safe) and rings nothing: no row was added.
func (w *Wall) CompactInbox(ctx context.Context, through uint64) (int, error) {
	return w.inbox.Compact(ctx, through)
}
