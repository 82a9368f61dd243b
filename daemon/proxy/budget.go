package proxy

import (
	"sync"
	"time"
)

// Budget is one session's model budget: calls in the last minute, calls in
// flight, and tokens used today (UTC). It outlives any one sandbox — the
// supervisor keeps one per session — so restarting a sandbox does not
// refill it. It is kept in memory: a daemon restart starts the day afresh.
// The zero value is ready to use.
type Budget struct {
	mu       sync.Mutex
	calls    []time.Time // guarded by mu: starts within the last minute, oldest first
	inflight int         // guarded by mu
	day      string      // guarded by mu: the UTC date used counts for
	used     int64       // guarded by mu: tokens charged on day
}

// budgetLimits are what a call is admitted against (from the profile and
// the proxy's limits).
type budgetLimits struct {
	callsPerMinute int64
	tokensPerDay   int64
	concurrent     int
}

// admit reserves a call at now, or says which budget refuses it. remaining
// is the day's tokens left when admitted. release must be called once the
// call ends.
func (b *Budget) admit(now time.Time, lim budgetLimits) (release func(), remaining int64, class string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rollLocked(now)
	cut := 0
	for cut < len(b.calls) && now.Sub(b.calls[cut]) >= time.Minute {
		cut++
	}
	b.calls = b.calls[cut:]
	switch {
	case b.used >= lim.tokensPerDay:
		return nil, 0, RefusedTokens
	case int64(len(b.calls)) >= lim.callsPerMinute:
		return nil, 0, RefusedRate
	case b.inflight >= lim.concurrent:
		return nil, 0, RefusedConcurrency
	}
	b.calls = append(b.calls, now)
	b.inflight++
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.inflight--
			b.mu.Unlock()
		})
	}, lim.tokensPerDay - b.used, ""
}

// charge counts tokens a call used at now.
func (b *Budget) charge(now time.Time, tokens int64) {
	if tokens <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rollLocked(now)
	b.used += tokens
}

// Used returns the tokens charged on now's UTC day.
func (b *Budget) Used(now time.Time) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rollLocked(now)
	return b.used
}

func (b *Budget) rollLocked(now time.Time) {
	if d := now.UTC().Format(time.DateOnly); d != b.day {
		b.day, b.used = d, 0
	}
}
