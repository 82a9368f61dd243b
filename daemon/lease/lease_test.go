package lease

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// No write may overlap a valid lease, whatever the interleaving: readers
// and writers hammer one manager and record what they hold.
func TestWritesNeverOverlapValidLeases(t *testing.T) {
	m := NewManager(50 * time.Millisecond)
	var writing, reading atomic.Int32
	var bad atomic.Int32
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if err := m.LockWrite(ctx); err != nil {
					t.Error(err)
					return
				}
				writing.Add(1)
				if reading.Load() > 0 {
					bad.Add(1)
				}
				time.Sleep(50 * time.Microsecond)
				writing.Add(-1)
				m.UnlockWrite()
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				id, _, err := m.Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				reading.Add(1)
				if writing.Load() > 0 {
					bad.Add(1)
				}
				time.Sleep(20 * time.Microsecond)
				reading.Add(-1)
				if !m.Release(id) {
					t.Error("a lease released well within its TTL was reported expired")
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d overlaps of a write and a valid lease", bad.Load())
	}
}

// A lease that is never released stops blocking writes at its expiry, and
// its late release is reported invalid.
func TestExpiredLease(t *testing.T) {
	m := NewManager(30 * time.Millisecond)
	id, _, err := m.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.LockWrite(context.Background()); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	m.UnlockWrite()
	if waited < 25*time.Millisecond || waited > time.Second {
		t.Fatalf("writer waited %v for a 30 ms lease", waited)
	}
	if m.Release(id) {
		t.Fatal("a late release was reported valid")
	}
	if m.Paused() < 25*time.Millisecond {
		t.Fatalf("paused %v not accounted", m.Paused())
	}
	if m.Release(12345) {
		t.Fatal("an unknown lease was reported valid")
	}
}

// A waiting writer holds back new leases, so readers cannot starve it.
func TestWriterPreference(t *testing.T) {
	m := NewManager(time.Second)
	id, _, _ := m.Acquire(context.Background())
	locked := make(chan struct{})
	go func() {
		m.LockWrite(context.Background())
		close(locked)
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, _, err := m.Acquire(ctx); err == nil {
		t.Fatal("a new lease was granted while a writer waited")
	}
	m.Release(id)
	<-locked
	m.UnlockWrite()
	if _, _, err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	m := NewManager(0)
	m.Close()
	if _, _, err := m.Acquire(context.Background()); err != ErrClosed {
		t.Fatalf("acquire after close: %v", err)
	}
	if err := m.LockWrite(context.Background()); err != ErrClosed {
		t.Fatalf("lock after close: %v", err)
	}
}

func TestBell(t *testing.T) {
	b := NewBell(3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if seq, err := b.Wait(ctx, 3); err == nil || seq != 3 {
		t.Fatalf("wait with nothing new: %d %v", seq, err)
	}
	go func() { time.Sleep(5 * time.Millisecond); b.Ring(2); b.Ring(7) }()
	seq, err := b.Wait(context.Background(), 3)
	if err != nil || seq != 7 {
		t.Fatalf("wait: %d %v", seq, err)
	}
	if seq, _ := b.Wait(context.Background(), 5); seq != 7 {
		t.Fatalf("immediate wait: %d", seq)
	}
}

// An agent that asks for leases and never releases them cannot grow the
// daemon's memory: at most MaxLeases are held at once, expired ones are
// dropped without any write happening, and a writer still gets in within
// about a TTL.
func TestUnreleasedLeasesAreCapped(t *testing.T) {
	const ttl = 20 * time.Millisecond
	m := NewManager(ttl)
	var granted, worst atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, _, err := m.Acquire(ctx); err != nil {
					return
				}
				granted.Add(1)
				if n := int64(m.Held()); n > worst.Load() {
					worst.Store(n)
				}
			}
		}()
	}
	// A writer arriving mid-flood gets in within about a TTL.
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := m.LockWrite(context.Background()); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	m.UnlockWrite()
	wg.Wait()
	if worst.Load() > MaxLeases || m.Held() > MaxLeases {
		t.Fatalf("%d leases held at once (%d now) after %d grants; cap %d", worst.Load(), m.Held(), granted.Load(), MaxLeases)
	}
	if waited > 10*ttl {
		t.Fatalf("writer waited %v behind a lease flood (TTL %v)", waited, ttl)
	}
	if granted.Load() < 5 {
		t.Fatalf("only %d leases granted in 300 ms: expired leases are not being dropped", granted.Load())
	}
	// A blocked Acquire honours its context.
	m2 := NewManager(time.Hour)
	for range MaxLeases {
		if _, _, err := m2.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, _, err := m2.Acquire(short); err == nil {
		t.Fatal("a lease beyond the cap was granted")
	}
}
