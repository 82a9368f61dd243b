package sandbox

import "sync"

// OutputLimit caps how much of each of the agent's output streams is kept. The agent is
// untrusted: it may print without end to exhaust the daemon's memory.
const OutputLimit = 64 << 10

// boundedBuffer keeps the last limit bytes written to it (runsc reports its own failures at
// the end of stderr, so the tail is the useful part) and counts what it dropped. Write never
// fails, so a chatty agent cannot make runsc see EPIPE and change its behaviour.
type boundedBuffer struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	dropped int64
}

func newBoundedBuffer(limit int) *boundedBuffer { return &boundedBuffer{limit: limit} }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if n >= b.limit {
		b.dropped += int64(len(b.buf) + n - b.limit)
		b.buf = append(b.buf[:0], p[n-b.limit:]...)
		return n, nil
	}
	if over := len(b.buf) + n - b.limit; over > 0 {
		// Shift in place: memory stays bounded by limit.
		copy(b.buf, b.buf[over:])
		b.buf = b.buf[:len(b.buf)-over]
		b.dropped += int64(over)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// snapshot returns a copy of the kept bytes and how many were dropped before them.
func (b *boundedBuffer) snapshot() ([]byte, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...), b.dropped
}
