package queue

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// copyCost is what copying an outbox of n bytes costs in memory: the Go
// copy of the file and SQLite's own copy of it, alive together while the
// copy is deserialised.
func copyCost(n int64) int64 { return 2 * max(n, 1) }

// Budget is the memory every session's outbox reads share: a read takes its
// share before it copies a byte, and gives it back when its Snapshot closes.
// While the budget is spent, readers wait (each slows only its own agent,
// which is waiting for its doorbell); the daemon does not grow.
type Budget struct {
	sem  *semaphore.Weighted
	size int64
	used atomic.Int64
}

// NewBudget returns a budget of bytes (at least 1 MiB).
func NewBudget(bytes int64) *Budget {
	bytes = max(bytes, 1<<20)
	return &Budget{sem: semaphore.NewWeighted(bytes), size: bytes}
}

// Size is the budget's total in bytes.
func (b *Budget) Size() int64 { return b.size }

// MaxFile is the largest file a read under this budget may copy.
func (b *Budget) MaxFile() int64 { return b.size / 2 }

// acquire takes the share for copying a file of n bytes, waiting at most
// budgetWait (ErrBusy) or until ctx ends. A file that could never fit is
// refused as hostile: no session may honestly hold more than the daemon
// lets all of them copy at once.
func (b *Budget) acquire(ctx context.Context, n int64) (release func(), err error) {
	cost := copyCost(n)
	if cost > b.size {
		return nil, hostile(RefusedOverBudget, "copying %d bytes needs %d of memory, the budget (limits.outbox_copy_budget_mib) is %d", n, cost, b.size)
	}
	ctx, cancel := context.WithTimeout(ctx, budgetWait)
	defer cancel()
	if err := b.sem.Acquire(ctx, cost); err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrBusy, err)
	}
	b.used.Add(cost)
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			b.used.Add(-cost)
			b.sem.Release(cost)
		}
	}, nil
}

// Used is how many bytes are taken now (for tests and status).
func (b *Budget) Used() int64 { return b.used.Load() }
