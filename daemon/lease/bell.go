package lease

import (
	"context"
	"sync"
)

// Bell announces the highest committed sequence number of a queue to anyone
// waiting for it: the doorbell. It carries a number, never content.
type Bell struct {
	mu      sync.Mutex
	seq     uint64        // guarded by mu
	changed chan struct{} // guarded by mu; closed and replaced on Ring
}

// NewBell returns a bell that starts at seq.
func NewBell(seq uint64) *Bell { return &Bell{seq: seq, changed: make(chan struct{})} }

// Ring records that rows up to seq are committed. Lower numbers are ignored.
func (b *Bell) Ring(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq <= b.seq {
		return
	}
	b.seq = seq
	close(b.changed)
	b.changed = make(chan struct{})
}

// Seq returns the highest committed sequence number.
func (b *Bell) Seq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// Wait returns as soon as the committed sequence exceeds after, or when ctx
// ends, with the sequence it saw.
func (b *Bell) Wait(ctx context.Context, after uint64) (uint64, error) {
	for {
		b.mu.Lock()
		seq, ch := b.seq, b.changed
		b.mu.Unlock()
		if seq > after {
			return seq, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return seq, ctx.Err()
		}
	}
}
