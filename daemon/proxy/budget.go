package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Budget is one session's model budget: calls in the last minute, calls in
// flight, and tokens used today (UTC). It outlives any one sandbox — the
// supervisor keeps one per session — so restarting a sandbox does not
// refill it, and with a Ledger the day's tokens outlive the daemon too.
// The zero value is ready to use (in memory only).
//
// Tokens are charged at admission, not when the answer ends: a call
// reserves an estimate of its most expensive outcome (see estimate) out of
// what the day has left, and settles to the counts the upstream reports on
// its final line. A call that ends without that line — the agent hung up,
// the answer was cut, the call timed out — keeps its reservation charged,
// so hanging up early never makes a call cheap.
type Budget struct {
	// Ledger, if set, keeps the day's tokens across daemon restarts: read
	// when the budget first meets a day, written at every admission and
	// settlement. Set it before the first call.
	Ledger Ledger

	mu       sync.Mutex
	calls    []time.Time // guarded by mu: starts within the last minute, oldest first
	inflight int         // guarded by mu
	day      string      // guarded by mu: the UTC date used counts for
	loaded   bool        // guarded by mu: used holds the Ledger's value for day
	used     int64       // guarded by mu: tokens settled on day plus reservations in flight
}

// Ledger stores one session's tokens per UTC day (the daemon's store).
type Ledger interface {
	// ModelTokens returns the tokens recorded for day ("2006-01-02"); a
	// day never recorded reads as 0.
	ModelTokens(ctx context.Context, day string) (int64, error)
	// SetModelTokens records day's total.
	SetModelTokens(ctx context.Context, day string, tokens int64) error
}

// ledgerTimeout bounds one Ledger read or write.
const ledgerTimeout = 10 * time.Second

// budgetLimits are what a call is admitted against (from the profile and
// the proxy's limits).
type budgetLimits struct {
	callsPerMinute int64
	tokensPerDay   int64
	concurrent     int
}

// estimate is what a call may cost at most, so what admission reserves:
// its prompt can be no longer than its body in bytes (a token covers at
// least one byte of text, and the JSON around each message outweighs the
// chat template's tokens) nor than its context window, and it generates at
// most numPredict tokens.
func estimate(bodyBytes, numCtx, numPredict int64) (prompt, predict int64) {
	return max(min(bodyBytes, numCtx), 1), max(numPredict, 0)
}

// ticket is one admitted call: its reservation, and what settling or
// releasing it must undo. Exactly one settle ends it.
type ticket struct {
	b          *Budget
	day        string
	reserved   int64 // tokens charged at admission
	numPredict int64 // the prediction the call may ask for
	once       sync.Once
	unrecorded bool // released with a charge the Ledger does not hold yet (under b.mu)
}

// errLedger marks a budget that cannot be read or recorded.
var errLedger = errors.New("the session's token record is unavailable")

// admit reserves a call at now for a prompt of at most prompt tokens
// generating at most predict, or says which budget refuses it. The
// reservation comes out of what the day has left after every other call's
// (concurrent calls never see the same remainder): predict is cut to what
// is left, and the call is charged prompt plus that at once. So the day
// is overrun by at most one call's prompt, after which calls are refused.
// A failing Ledger refuses the call (class RefusedLedger, with err).
func (b *Budget) admit(ctx context.Context, now time.Time, lim budgetLimits, prompt, predict int64) (t *ticket, class string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.rollLocked(ctx, now); err != nil {
		return nil, RefusedLedger, err
	}
	cut := 0
	for cut < len(b.calls) && now.Sub(b.calls[cut]) >= time.Minute {
		cut++
	}
	b.calls = b.calls[cut:]
	switch {
	case b.used >= lim.tokensPerDay:
		return nil, RefusedTokens, nil
	case int64(len(b.calls)) >= lim.callsPerMinute:
		return nil, RefusedRate, nil
	case b.inflight >= lim.concurrent:
		return nil, RefusedConcurrency, nil
	}
	predict = min(predict, lim.tokensPerDay-b.used)
	t = &ticket{b: b, day: b.day, reserved: prompt + predict, numPredict: predict}
	if err := b.recordLocked(ctx, b.used+t.reserved); err != nil {
		return nil, RefusedLedger, err
	}
	b.used += t.reserved
	b.calls = append(b.calls, now)
	b.inflight++
	return t, "", nil
}

// settle ends the call at now, charging charged tokens in place of its
// reservation (pass t.reserved to keep it), and records the day's total. It
// returns the Ledger's error, if any; the tokens are charged in memory
// either way.
func (t *ticket) settle(ctx context.Context, now time.Time, charged int64) error {
	t.release(ctx, now, charged)
	return t.record(ctx)
}

// release is settle in memory only: the call's slot is freed and its charge
// replaces its reservation at once, while the Ledger keeps the reservation
// (at least the charge) until record. The proxy answers in between, so the
// write is off the turn's critical path. A second release changes nothing.
func (t *ticket) release(ctx context.Context, now time.Time, charged int64) {
	t.once.Do(func() {
		b := t.b
		b.mu.Lock()
		defer b.mu.Unlock()
		b.inflight--
		if b.rollLocked(ctx, now) != nil || b.day != t.day || charged == t.reserved {
			// A new day (or one not readable yet) keeps the old day's
			// reservation as charged; nothing to move.
			return
		}
		b.used = max(b.used+charged-t.reserved, 0)
		t.unrecorded = true
	})
}

// record writes the day's total after release moved it. It runs under mu,
// so totals land in the order they were reached, and writes the latest.
func (t *ticket) record(ctx context.Context) error {
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if !t.unrecorded || b.day != t.day {
		return nil
	}
	t.unrecorded = false
	return b.recordLocked(ctx, b.used)
}

// Used returns the tokens charged on now's UTC day, reservations of calls
// in flight included, as far as this budget has seen (a day it has not
// read from its Ledger yet reads as 0).
func (b *Budget) Used(now time.Time) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.UTC().Format(time.DateOnly) != b.day {
		return 0
	}
	return b.used
}

// rollLocked moves the budget to now's day, reading the day's tokens from
// the Ledger the first time it meets the day.
func (b *Budget) rollLocked(ctx context.Context, now time.Time) error {
	if d := now.UTC().Format(time.DateOnly); d != b.day {
		b.day, b.used, b.loaded = d, 0, false
	}
	if b.loaded || b.Ledger == nil {
		b.loaded = true
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
	defer cancel()
	n, err := b.Ledger.ModelTokens(ctx, b.day)
	if err != nil {
		return fmt.Errorf("%w: reading: %w", errLedger, err)
	}
	// Nothing is admitted on a day until it is read, so used is 0 here.
	b.used, b.loaded = max(n, 0), true
	return nil
}

// recordLocked writes the day's total to the Ledger. It runs under mu so
// that writes land in the order the totals were reached. The write is not
// cancelled with the call: an agent that hangs up is exactly the call whose
// charge must be kept.
func (b *Budget) recordLocked(ctx context.Context, total int64) error {
	if b.Ledger == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
	defer cancel()
	if err := b.Ledger.SetModelTokens(ctx, b.day, total); err != nil {
		return fmt.Errorf("%w: recording: %w", errLedger, err)
	}
	return nil
}
