package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The session socket speaks HTTP/1.1 over a unix socket. These are its
// coordination endpoints; they carry sequence numbers and lease ids, never
// content. (The model proxy shares the socket under /api/.)
const (
	// PathInboxLease: POST LeaseRequest → LeaseGrant. Waits until the inbox
	// holds rows after After (or WaitMillis pass), then grants a read lease.
	PathInboxLease = "/ironclaw/v1/inbox/lease"
	// PathInboxRelease: POST ReleaseRequest → ReleaseResult.
	PathInboxRelease = "/ironclaw/v1/inbox/release"
	// PathOutboxCommitted: POST OutboxCommitted → OutboxTaken. The agent
	// does not write its outbox until the answer arrives: the daemon copies
	// the file meanwhile.
	PathOutboxCommitted = "/ironclaw/v1/outbox/committed"
)

// MaxCoordBody caps a coordination request or response body.
const MaxCoordBody = 4 << 10

// MaxLeaseWait caps how long a lease request may wait for new rows.
const MaxLeaseWaitMillis = 30_000

// LeaseRequest asks for a read lease once the inbox has rows after After.
type LeaseRequest struct {
	After      uint64 `json:"after"`
	WaitMillis int64  `json:"wait_ms"`
}

// LeaseGrant answers a LeaseRequest. Lease 0 means no new rows arrived in
// time and no lease is held.
type LeaseGrant struct {
	Lease     uint64 `json:"lease"`
	Head      uint64 `json:"head"`
	TTLMillis int64  `json:"ttl_ms"`
}

// ReleaseRequest ends a lease.
type ReleaseRequest struct {
	Lease uint64 `json:"lease"`
}

// ReleaseResult says whether the lease was still valid when released. If not,
// the reader must discard what it read under it and ask again.
type ReleaseResult struct {
	Valid bool `json:"valid"`
}

// OutboxCommitted rings the daemon's doorbell: the outbox holds rows up to Seq.
type OutboxCommitted struct {
	Seq uint64 `json:"seq"`
}

// OutboxTaken answers OutboxCommitted once the daemon has its copy.
type OutboxTaken struct {
	Taken uint64 `json:"taken"`
}

// Validate checks a LeaseRequest's bounds.
func (r LeaseRequest) Validate() error {
	if r.WaitMillis < 0 || r.WaitMillis > MaxLeaseWaitMillis {
		return fmt.Errorf("wire: wait_ms %d is outside 0..%d", r.WaitMillis, MaxLeaseWaitMillis)
	}
	return nil
}

// HandshakeSize is the size of the handshake the daemon writes to the
// agent's stdin at start.
const HandshakeSize = 4 + SessionIDSize + KeySize + 3*8

var handshakeMagic = [4]byte{'I', 'C', 'H', '1'}

// Handshake is what the agent learns at start, over its stdin pipe: never in
// argv, the environment or a file.
//
// The rest is where to resume, from the daemon's record: the sandbox and its
// outbox are disposable, so an agent whose outbox was lost must neither
// answer old messages again nor reuse outbox sequence numbers the daemon has
// taken (channels derive idempotency keys from them).
type Handshake struct {
	Session SessionID
	Key     Key
	// Handled is the last inbox row the daemon saw this session's agent
	// record as handled.
	Handled uint64
	// OutboxTaken is the last outbox row the daemon took; a fresh outbox
	// continues after it.
	OutboxTaken uint64
	// State is the inbox row holding the session's State (0: none).
	State uint64
}

// Marshal renders the handshake. The caller clears the result after writing.
func (h *Handshake) Marshal() []byte {
	b := make([]byte, 0, HandshakeSize)
	b = append(b, handshakeMagic[:]...)
	b = append(b, h.Session[:]...)
	b = append(b, h.Key[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Handled)
	b = binary.BigEndian.AppendUint64(b, h.OutboxTaken)
	return binary.BigEndian.AppendUint64(b, h.State)
}

// ParseHandshake reads a handshake.
func ParseHandshake(b []byte) (*Handshake, error) {
	if len(b) != HandshakeSize || [4]byte(b[:4]) != handshakeMagic {
		return nil, errors.New("wire: malformed handshake")
	}
	h := &Handshake{}
	copy(h.Session[:], b[4:])
	copy(h.Key[:], b[4+SessionIDSize:])
	rest := b[4+SessionIDSize+KeySize:]
	h.Handled = binary.BigEndian.Uint64(rest)
	h.OutboxTaken = binary.BigEndian.Uint64(rest[8:])
	h.State = binary.BigEndian.Uint64(rest[16:])
	return h, nil
}
