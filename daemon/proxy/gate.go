package proxy

import (
	"context"
	"sync"
)

// DefaultMaxUpstreamCalls is how many model calls all sessions together may
// have at the upstream at once when the daemon names no other number
// (config limits.max_model_calls).
const DefaultMaxUpstreamCalls = 4

// Gate caps the calls in flight at the one upstream across every session,
// so that many sessions (each within its own budget) cannot pile unbounded
// work onto the one Ollama. When every slot is taken a call waits, for at
// most Limits.QueueTimeout (and never past its own CallTimeout); then it is
// refused as RefusedBusy. A slot that frees goes to the waiting call whose
// session holds the fewest slots, the earliest among equals: a session that
// keeps its own concurrency cap's worth of long calls queued (a hostile
// agent, or a busy one) cannot hold the upstream against another session
// that waits, which gets the next free slot. Share one Gate among all
// sessions' proxies.
type Gate struct {
	n int64

	mu      sync.Mutex
	used    int64
	held    map[string]int64 // slots held, per session
	waiting []*gateWaiter    // in arrival order
}

type gateWaiter struct {
	session string
	ready   chan struct{} // closed once granted
	granted bool          // under Gate.mu
}

// NewGate returns a gate for n calls at once; n <= 0 means
// DefaultMaxUpstreamCalls (never unlimited).
func NewGate(n int64) *Gate {
	if n <= 0 {
		n = DefaultMaxUpstreamCalls
	}
	return &Gate{n: n, held: map[string]int64{}}
}

// Size returns how many calls may be at the upstream at once.
func (g *Gate) Size() int64 { return g.n }

// enter waits for a slot for session until ctx ends; the returned func
// frees it.
func (g *Gate) enter(ctx context.Context, session string) (leave func(), err error) {
	leave = sync.OnceFunc(func() { g.leave(session) })
	g.mu.Lock()
	if g.used < g.n && len(g.waiting) == 0 {
		g.grantLocked(session)
		g.mu.Unlock()
		return leave, nil
	}
	w := &gateWaiter{session: session, ready: make(chan struct{})}
	g.waiting = append(g.waiting, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return leave, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	granted := w.granted
	if !granted {
		for i, x := range g.waiting {
			if x == w {
				g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
				break
			}
		}
	}
	g.mu.Unlock()
	if granted {
		leave() // granted as it gave up: pass the slot on
	}
	return nil, ctx.Err()
}

func (g *Gate) grantLocked(session string) {
	g.used++
	g.held[session]++
}

func (g *Gate) leave(session string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.used--
	if g.held[session]--; g.held[session] <= 0 {
		delete(g.held, session)
	}
	for g.used < g.n && len(g.waiting) > 0 {
		best := 0
		for i, w := range g.waiting {
			if g.held[w.session] < g.held[g.waiting[best].session] {
				best = i
			}
		}
		w := g.waiting[best]
		g.waiting = append(g.waiting[:best], g.waiting[best+1:]...)
		w.granted = true
		g.grantLocked(w.session)
		close(w.ready)
	}
}
