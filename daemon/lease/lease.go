// Package lease coordinates the daemon's writes to a session's inbox with the
// agent's reads across the gVisor boundary.
//
// gVisor runs its own kernel: the agent's SQLite file locks are invisible to
// the host and the host's to the agent. Measured on these machines, readers
// inside the sandbox skip rows or see torn pages unless the host promises not
// to write while they read. A Manager is that promise: the agent asks for a
// read lease over its session socket; the daemon grants one only between
// write transactions and does not begin another write until every lease is
// released or has expired. Expiry bounds how long a dishonest agent can hold
// the daemon up; a release that comes after expiry is answered "expired" and
// the agent discards what it read.
//
// An honest agent holds one lease at a time. A Manager holds at most
// MaxLeases at once: further requests wait until one is released or
// expires, so an agent that asks and never releases holds the daemon's
// memory to a constant and delays it by at most the TTL per write.
//
// A Manager holds no content; it only orders events.
package lease

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultTTL is how long a read lease lasts unless released. Measured: reading
// a batch of rows inside gVisor takes well under a millisecond, so 200 ms is
// generous for an honest agent and short enough not to stall the daemon.
const DefaultTTL = 200 * time.Millisecond

// MaxLeases is how many leases a Manager grants at once. An honest agent
// holds one; the second leaves room for a release racing the next request.
const MaxLeases = 2

// ErrClosed is returned once the manager is closed.
var ErrClosed = errors.New("lease: closed")

// Manager grants read leases and write locks for one database.
type Manager struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	// The fields below are guarded by mu.
	writing       bool
	writerWaiting int
	leases        map[uint64]time.Time // lease id → expiry
	nextID        uint64
	closed        bool
	changed       chan struct{} // closed and replaced on every state change
	pausedSince   time.Time     // when the current write-wait began
	paused        time.Duration // total time writers spent waiting on leases
}

// NewManager returns a manager whose leases last ttl (DefaultTTL if zero).
func NewManager(ttl time.Duration) *Manager {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Manager{ttl: ttl, now: time.Now, leases: map[uint64]time.Time{}, changed: make(chan struct{})}
}

// TTL is the lease duration.
func (m *Manager) TTL() time.Duration { return m.ttl }

// broadcast wakes every waiter. Callers hold mu.
func (m *Manager) broadcast() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// expire drops leases past their expiry and returns how long until the next
// one expires (0 if none are held). Callers hold mu.
func (m *Manager) expire() time.Duration {
	now := m.now()
	var next time.Duration
	for id, exp := range m.leases {
		if !now.Before(exp) {
			delete(m.leases, id)
			continue
		}
		if d := exp.Sub(now); next == 0 || d < next {
			next = d
		}
	}
	return next
}

// wait blocks until the state changes, d passes (if d > 0) or ctx ends.
// Callers hold mu; it is released while waiting and held again on return.
func (m *Manager) wait(ctx context.Context, d time.Duration) error {
	ch := m.changed
	m.mu.Unlock()
	defer m.mu.Lock()
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ch:
	case <-timer:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// LockWrite waits until no lease is held (each lasts at most the TTL) and
// takes the write lock. New leases wait while a writer waits, so a stream of
// lease requests cannot starve the daemon.
func (m *Manager) LockWrite(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writerWaiting++
	defer func() { m.writerWaiting-- }()
	start := time.Time{}
	for {
		if m.closed {
			return ErrClosed
		}
		next := m.expire()
		if !m.writing && len(m.leases) == 0 {
			m.writing = true
			if !start.IsZero() {
				m.paused += m.now().Sub(start)
			}
			return nil
		}
		if start.IsZero() && len(m.leases) > 0 {
			start = m.now()
		}
		if err := m.wait(ctx, next); err != nil {
			return err
		}
	}
}

// UnlockWrite releases the write lock.
func (m *Manager) UnlockWrite() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writing = false
	m.broadcast()
}

// Acquire waits until no write is in progress or pending and fewer than
// MaxLeases are held, and grants a lease.
func (m *Manager) Acquire(ctx context.Context) (id uint64, expires time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if m.closed {
			return 0, time.Time{}, ErrClosed
		}
		// Expired leases are dropped here too, not only when a writer
		// looks: an agent may ask for leases while the daemon writes nothing.
		next := m.expire()
		if len(m.leases) >= MaxLeases {
			// Held leases end at release (broadcast) or expiry (next).
			if err := m.wait(ctx, next); err != nil {
				return 0, time.Time{}, err
			}
			continue
		}
		if !m.writing && m.writerWaiting == 0 {
			m.nextID++
			exp := m.now().Add(m.ttl)
			m.leases[m.nextID] = exp
			return m.nextID, exp, nil
		}
		if err := m.wait(ctx, 0); err != nil {
			return 0, time.Time{}, err
		}
	}
}

// Release ends a lease. It reports whether the lease was still valid: false
// means it had expired (a write may have happened while the holder read) and
// whatever was read under it must be discarded.
func (m *Manager) Release(id uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.leases[id]
	if !ok {
		return false
	}
	delete(m.leases, id)
	m.broadcast()
	return m.now().Before(exp)
}

// Held reports how many leases are held (expired ones included until they
// are noticed).
func (m *Manager) Held() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.leases)
}

// Paused reports the total time writers spent waiting for leases to end.
func (m *Manager) Paused() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused
}

// Close refuses further leases and writes and wakes every waiter.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.broadcast()
}
