package scheduler

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// fakeClock moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type target struct {
	keys  map[wire.SessionID]*wire.Key
	fired []wire.Fired
	fail  error
}

func (t *target) Fire(_ context.Context, _ wire.SessionID, f wire.Fired) (bool, error) {
	if t.fail != nil {
		return false, t.fail
	}
	t.fired = append(t.fired, f)
	return true, nil
}

func (t *target) SessionKey(_ context.Context, id wire.SessionID) (*wire.Key, error) {
	k := *t.keys[id]
	return &k, nil
}

func setup(t *testing.T) (*store.Store, *target, wire.SessionID) {
	var ck [32]byte
	rand.Read(ck[:])
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"), &ck)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id, _ := wire.NewSessionID()
	if err := st.CreateSession(context.Background(), id, "console:a", make([]byte, 73), profile.Default("m", "sha256:00")); err != nil {
		t.Fatal(err)
	}
	var k wire.Key
	rand.Read(k[:])
	return st, &target{keys: map[wire.SessionID]*wire.Key{id: &k}}, id
}

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func TestFiresAtItsTimeAndRecurs(t *testing.T) {
	st, tg, id := setup(t)
	ctx := context.Background()
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "once", At: t0.Add(10 * time.Second).Unix(), Text: "tea"})
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "rep", At: t0.Add(30 * time.Second).Unix(), Every: 60, Text: "stretch"})
	clock := &fakeClock{now: t0}
	s := New(Config{Store: st, Target: tg, Clock: clock})
	wait, err := s.Tick(ctx)
	if err != nil || len(tg.fired) != 0 || wait != 10*time.Second {
		t.Fatalf("before: wait %v fired %v err %v", wait, tg.fired, err)
	}
	clock.advance(10 * time.Second)
	if wait, _ = s.Tick(ctx); len(tg.fired) != 1 || tg.fired[0].ID != "once" || tg.fired[0].Late || wait != 20*time.Second {
		t.Fatalf("at 10 s: %+v, wait %v", tg.fired, wait)
	}
	clock.advance(20 * time.Second)
	s.Tick(ctx)
	clock.advance(60 * time.Second)
	s.Tick(ctx)
	if len(tg.fired) != 3 || tg.fired[2].ID != "rep" || tg.fired[2].Due != t0.Add(90*time.Second).Unix() {
		t.Fatalf("recurring: %+v", tg.fired)
	}
	r, _ := st.Records(ctx, id, tg.keys[id])
	if len(r.Schedules) != 1 || r.Schedules[0].At != t0.Add(150*time.Second).Unix() {
		t.Fatalf("left %+v", r.Schedules)
	}
}

// A schedule missed while the daemon was down fires once on start, late,
// and a recurring one moves on to its next future time.
func TestMissedFiresOnceLate(t *testing.T) {
	st, tg, id := setup(t)
	ctx := context.Background()
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "rep", At: t0.Unix(), Every: 60, Text: "stretch"})
	clock := &fakeClock{now: t0.Add(10*time.Minute + 5*time.Second)} // ten firings missed
	s := New(Config{Store: st, Target: tg, Clock: clock})
	s.Tick(ctx)
	s.Tick(ctx)
	if len(tg.fired) != 1 || !tg.fired[0].Late || tg.fired[0].Due != t0.Unix() {
		t.Fatalf("fired %+v", tg.fired)
	}
	d, _, _ := st.NextDue(ctx)
	if d.At != t0.Add(11*time.Minute).Unix() {
		t.Fatalf("next %v", time.Unix(d.At, 0).Sub(t0))
	}
}

func TestFailedFiringIsRetriedNotLost(t *testing.T) {
	st, tg, id := setup(t)
	ctx := context.Background()
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "once", At: t0.Unix(), Text: "tea"})
	clock := &fakeClock{now: t0}
	s := New(Config{Store: st, Target: tg, Clock: clock})
	tg.fail = errors.New("inbox full")
	if wait, _ := s.Tick(ctx); wait != retryAfter {
		t.Fatalf("wait %v after a failure", wait)
	}
	tg.fail = nil
	s.Tick(ctx)
	if len(tg.fired) != 0 {
		t.Fatal("retried before its time (a hot loop)")
	}
	clock.advance(retryAfter)
	s.Tick(ctx)
	if len(tg.fired) != 1 {
		t.Fatalf("not retried: %+v", tg.fired)
	}
}

func TestChangedWakesRun(t *testing.T) {
	st, tg, id := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{now: t0}
	s := New(Config{Store: st, Target: tg, Clock: clock})
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "now", At: t0.Unix(), Text: "x"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.Changed()
		time.Sleep(5 * time.Millisecond)
		if n, _, _ := st.NextDue(ctx); n.At == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Changed did not wake the scheduler")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// A firing the session's profile does not permit is skipped for good, not
// retried: the one-off schedule is gone and the recurring one moves on
// without ever reaching the inbox.
func TestNotPermittedFiringIsSkipped(t *testing.T) {
	st, tg, id := setup(t)
	ctx := context.Background()
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "once", At: t0.Unix(), Text: "tea"})
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "rep", At: t0.Unix(), Every: 60, Text: "stretch"})
	clock := &fakeClock{now: t0}
	s := New(Config{Store: st, Target: tg, Clock: clock})
	tg.fail = fmt.Errorf("session x: %w", ErrNotPermitted)
	s.Tick(ctx)
	if len(s.retry) != 0 {
		t.Fatalf("skipped firings wait to be retried: %v", s.retry)
	}
	next, ok, err := st.NextDue(ctx)
	if err != nil || !ok || next.At != t0.Unix()+60 {
		t.Fatalf("after the skip the next due is %+v %v %v; want only the recurring one, a minute on", next, ok, err)
	}
	if due, _ := st.DueBy(ctx, t0.Unix()+60, 10); len(due) != 1 {
		t.Fatalf("%d schedules left, want 1 (the one-off one is gone)", len(due))
	}
}

// A hostile agent's recurring schedule whose next time overflows int64
// (a huge period) must not come back due again: it would fire at every
// wake-up (which the agent triggers by adding schedules), and with a full
// batch of them Tick would never return.
func TestOverflowingPeriodFiresOnce(t *testing.T) {
	st, tg, id := setup(t)
	ctx := context.Background()
	if err := st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "ovf", At: t0.Unix() - 10, Every: math.MaxInt64, Text: "x"}); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: t0}
	s := New(Config{Store: st, Target: tg, Clock: clock})
	for range 5 {
		if _, err := s.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(tg.fired) != 1 {
		t.Fatalf("fired %d times, want once", len(tg.fired))
	}
	if d, ok, _ := st.NextDue(ctx); ok && d.At <= t0.Unix() {
		t.Fatalf("still due at %d", d.At)
	}
}

// A firing the target skips because the agent is far behind its inbox is
// not retried: the schedule moves on (a one-off one is gone).
func TestBehindSkipsForGood(t *testing.T) {
	st, tg, id := setup(t)
	ctx := context.Background()
	st.UpdateSchedule(ctx, id, tg.keys[id], wire.ScheduleOp{Op: wire.OpAdd, ID: "once", At: t0.Unix(), Text: "tea"})
	tg.fail = fmt.Errorf("far behind: %w", ErrBehind)
	s := New(Config{Store: st, Target: tg, Clock: &fakeClock{now: t0}})
	if _, err := s.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.NextDue(ctx); ok {
		t.Fatal("a skipped one-off schedule is still due")
	}
}
