package console

import (
	"sync"
	"time"
)

// failLimiter counts failed authentications per source address. A source
// that fails MaxFailures times within Window is refused outright — even
// with a good key — until the window has passed since its last failure, so
// nobody can try keys faster than that.
type failLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex // guards srcs
	srcs map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

func newFailLimiter(max int, window time.Duration, now func() time.Time) *failLimiter {
	return &failLimiter{max: max, window: window, now: now, srcs: map[string]*failures{}}
}

// blocked reports whether src may not authenticate now.
func (l *failLimiter) blocked(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.srcs[src]
	if f == nil {
		return false
	}
	if l.now().Sub(f.last) > l.window {
		delete(l.srcs, src)
		return false
	}
	return f.n >= l.max
}

// fail records a failure from src.
func (l *failLimiter) fail(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.srcs[src]
	if f == nil || now.Sub(f.last) > l.window {
		f = &failures{}
		l.srcs[src] = f
	}
	f.n++
	f.last = now
	// Bound the map: a flood from many addresses forgets the oldest.
	if len(l.srcs) > 10000 {
		for k, v := range l.srcs {
			if now.Sub(v.last) > l.window {
				delete(l.srcs, k)
			}
		}
	}
}
