package proxy

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// DefaultMaxUpstreamCalls is how many model calls all sessions together may
// have at the upstream at once when the daemon names no other number
// (config limits.max_model_calls).
const DefaultMaxUpstreamCalls = 4

// Gate caps the calls in flight at the one upstream across every session,
// so that many sessions (each within its own budget) cannot pile unbounded
// work onto the one Ollama. A call waits its turn first come, first served,
// for at most Limits.QueueTimeout (and never past its own CallTimeout);
// then it is refused as RefusedBusy. Each session's own concurrency cap
// bounds how many of its calls can wait. Share one Gate among all
// sessions' proxies.
type Gate struct {
	sem *semaphore.Weighted
	n   int64
}

// NewGate returns a gate for n calls at once; n <= 0 means
// DefaultMaxUpstreamCalls (never unlimited).
func NewGate(n int64) *Gate {
	if n <= 0 {
		n = DefaultMaxUpstreamCalls
	}
	return &Gate{sem: semaphore.NewWeighted(n), n: n}
}

// Size returns how many calls may be at the upstream at once.
func (g *Gate) Size() int64 { return g.n }

// enter waits for a slot until ctx ends; the returned func frees it.
func (g *Gate) enter(ctx context.Context) (leave func(), err error) {
	if err := g.sem.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	return func() { g.sem.Release(1) }, nil
}
