// Package scheduler fires agents' schedules: at a schedule's time it writes a
// firing into the session's inbox (through the supervisor, which wakes a
// stopped sandbox). Schedules live sealed in the daemon's store, so they
// survive daemon restarts; one whose time passed while the daemon was down
// fires once on start, marked late, and a recurring one then moves on to its
// next time in the future (missed repetitions are not replayed one by one).
//
// Firing is at least once: the firing is written to the inbox before the
// store records it, so a crash between the two fires it again rather than
// losing it. The clock is swappable so tests run in milliseconds.
//
// The scheduler never acts on what a schedule says; it only delivers it to
// the agent that set it, as a message from its own past.
package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// Clock is the scheduler's view of time.
type Clock interface {
	Now() time.Time
	// After is like time.After.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Target is where firings go (the supervisor).
type Target interface {
	// Fire writes f into the session's inbox and wakes its sandbox; written
	// says it reached the inbox.
	Fire(ctx context.Context, id wire.SessionID, f wire.Fired) (written bool, err error)
	// SessionKey unwraps a session's key, to unseal its schedules.
	SessionKey(ctx context.Context, id wire.SessionID) (*wire.Key, error)
}

// ErrNotPermitted is what a Target's Fire returns (wrapped) for a session
// whose current profile does not permit schedules (the schedule tool
// granted and permission.schedule on): the firing is skipped, not retried,
// and the schedule moves on as if it had fired (a one-off one is gone), so
// a schedule the owner never approved, or no longer does, never fires.
var ErrNotPermitted = errors.New("scheduler: the session's profile does not permit schedules")

// ErrBehind is what a Target's Fire returns (wrapped) when the session's
// agent has left too much of its inbox unread: the firing is skipped like
// one ErrNotPermitted skips, so an agent that never reads its inbox cannot
// pile up firings there without bound.
var ErrBehind = errors.New("scheduler: the session's agent is too far behind its inbox")

// Defaults for Config's zero fields.
const (
	// DefaultGrace: a firing more than this after its time is marked late.
	DefaultGrace = time.Minute
	// DefaultIdle is the longest the scheduler sleeps with nothing due (it
	// is woken early by Changed).
	DefaultIdle = time.Hour
	// retryAfter is how long a firing that could not be written waits.
	retryAfter = 30 * time.Second
	batch      = 64
)

// Config wires a Scheduler.
type Config struct {
	Store  *store.Store
	Target Target
	// Clock: SystemClock if nil.
	Clock Clock
	// Grace: DefaultGrace if zero.
	Grace time.Duration
	Log   *slog.Logger
}

// Scheduler fires due schedules. Run it once, under the daemon's context.
type Scheduler struct {
	cfg     Config
	changed chan struct{}
	// retry holds firings that could not be written, until when they wait
	// (only Run's goroutine touches it).
	retry map[string]time.Time
}

// New returns a scheduler.
func New(cfg Config) *Scheduler {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{cfg: cfg, changed: make(chan struct{}, 1), retry: map[string]time.Time{}}
}

// Changed tells the scheduler a schedule was added, so it looks again
// before its current sleep ends. It never blocks.
func (s *Scheduler) Changed() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run fires schedules until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		wait, err := s.Tick(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.cfg.Log.Error("scheduler", "err", err)
			wait = retryAfter
		}
		select {
		case <-s.cfg.Clock.After(wait):
		case <-s.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Tick fires everything due now and says how long to sleep until the next
// schedule is due.
func (s *Scheduler) Tick(ctx context.Context) (time.Duration, error) {
	now := s.cfg.Clock.Now()
	for k, until := range s.retry {
		if !now.Before(until) {
			delete(s.retry, k) // retried below if still due
		}
	}
	for {
		due, err := s.cfg.Store.DueBy(ctx, now.Unix(), batch)
		if err != nil {
			return 0, err
		}
		fired := 0
		for _, d := range due {
			if until, ok := s.retry[retryKey(d)]; ok && now.Before(until) {
				continue
			}
			delete(s.retry, retryKey(d))
			if err := s.fire(ctx, d, now); err != nil {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				s.cfg.Log.Warn("a schedule could not fire; retrying later", "session", d.Session.String(), "err", err)
				s.retry[retryKey(d)] = now.Add(retryAfter)
				continue
			}
			fired++
		}
		if len(due) < batch || fired == 0 {
			break
		}
	}
	// Everything due now has fired or waits to be retried: sleep until the
	// next schedule or retry.
	next, ok, err := s.cfg.Store.NextDueAfter(ctx, now.Unix())
	if err != nil {
		return 0, err
	}
	wait := DefaultIdle
	if ok {
		wait = min(wait, time.Unix(next.At, 0).Sub(now))
	}
	for _, until := range s.retry {
		wait = min(wait, until.Sub(now))
	}
	return max(wait, 10*time.Millisecond), nil
}

func retryKey(d store.Due) string { return d.Session.String() + string(d.MAC) }

// fire delivers one due schedule and records that it fired.
func (s *Scheduler) fire(ctx context.Context, d store.Due, now time.Time) error {
	key, err := s.cfg.Target.SessionKey(ctx, d.Session)
	if err != nil {
		return err
	}
	defer clear(key[:])
	sc, err := s.cfg.Store.DueSchedule(ctx, d, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil // cancelled meanwhile
	}
	if err != nil {
		return err
	}
	late := now.Sub(time.Unix(d.At, 0)) > s.cfg.Grace
	written, err := s.cfg.Target.Fire(ctx, d.Session, wire.Fired{ID: sc.ID, Text: sc.Text, Due: d.At, Late: late})
	switch {
	case errors.Is(err, ErrNotPermitted), errors.Is(err, ErrBehind):
		s.cfg.Log.Warn("a schedule was skipped", "session", d.Session.String(), "err", err)
	case !written:
		return err
	case err != nil:
		// In the inbox; the sandbox will handle it when it next runs.
		s.cfg.Log.Warn("a schedule fired but its sandbox did not start", "session", d.Session.String(), "err", err)
	}
	var next *wire.Schedule
	// Only a time after now: a hostile period makes Next overflow into
	// the past, which would fire again at every wake-up (and a full batch
	// of them would keep Tick from ever returning). Such a schedule ends.
	if at := sc.Next(now.Unix()); at > now.Unix() {
		n := sc
		n.At = at
		next = &n
	}
	return s.cfg.Store.ScheduleFired(ctx, d, key, next)
}
