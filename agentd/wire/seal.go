package wire

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/nacl/secretbox"
)

// KeySize is the size of a session key in bytes.
const KeySize = 32

// NonceSize is the size of the random nonce that prefixes every sealed row.
const NonceSize = 24

// SessionIDSize is the size of a session id in bytes. It is fixed so that
// everything derived from it (container ids, paths) has a fixed length too.
const SessionIDSize = 16

// headerVersion is the first byte of every sealed plaintext; a row written by a
// future format is refused rather than guessed at.
const headerVersion = 1

// HeaderSize is the size of the binary header inside every sealed plaintext.
const HeaderSize = 1 + 1 + SessionIDSize + 8 + 1 + 8

// MaxRowSize caps a sealed row (nonce, box and all). Rows beyond it are refused
// before any decryption so a hostile outbox cannot make the reader allocate.
const MaxRowSize = 1 << 20

// Overhead is what sealing adds to a plaintext body.
const Overhead = NonceSize + secretbox.Overhead + HeaderSize

// Key is a session key. It is handed only to its own sandbox.
type Key [KeySize]byte

// SessionID names a session. Its hex form is 32 characters.
type SessionID [SessionIDSize]byte

// NewSessionID returns a fresh random session id.
func NewSessionID() (SessionID, error) {
	var id SessionID
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("wire: reading randomness for a session id: %w", err)
	}
	return id, nil
}

// String returns the id as 32 lower-case hex digits.
func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// ParseSessionID parses the 32-hex-digit form of a session id.
func ParseSessionID(s string) (SessionID, error) {
	var id SessionID
	if len(s) != 2*SessionIDSize {
		return id, fmt.Errorf("wire: session id %q: want %d hex digits", s, 2*SessionIDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("wire: session id %q: %w", s, err)
	}
	for _, c := range []byte(s) {
		if c >= 'A' && c <= 'F' {
			return id, fmt.Errorf("wire: session id %q: use lower-case hex", s)
		}
	}
	return id, nil
}

// Queue says which of a session's two queues a row belongs to.
type Queue uint8

const (
	// Inbox is written by the daemon and read by the agent.
	Inbox Queue = 1
	// Outbox is written by the agent and read by the daemon.
	Outbox Queue = 2
)

func (q Queue) String() string {
	switch q {
	case Inbox:
		return "inbox"
	case Outbox:
		return "outbox"
	}
	return fmt.Sprintf("queue(%d)", uint8(q))
}

// Header is what a reader checks against the place a row was found. Secretbox
// has no associated data, so the header travels inside the sealed plaintext.
type Header struct {
	Session SessionID
	Queue   Queue
	Seq     uint64
	Kind    Kind
	Time    time.Time
}

// Errors a reader can get for a row. All of them mean: do not act on the row.
var (
	ErrTooLarge  = errors.New("wire: sealed row is larger than the limit")
	ErrTooShort  = errors.New("wire: sealed row is too short")
	ErrOpen      = errors.New("wire: sealed row does not open with this session's key (tampered, truncated or another session's)")
	ErrVersion   = errors.New("wire: sealed row has an unknown header version")
	ErrMisplaced = errors.New("wire: sealed row's header does not match where it was found (moved, replayed or reordered)")
	ErrKind      = errors.New("wire: row kind is not allowed in this queue")
)

// Seal seals body under key with a fresh random nonce. The result is what is
// stored in a queue row.
func Seal(key *Key, h Header, body []byte) ([]byte, error) {
	var nonce [NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("wire: reading randomness for a nonce: %w", err)
	}
	return sealWithNonce(key, &nonce, h, body)
}

func sealWithNonce(key *Key, nonce *[NonceSize]byte, h Header, body []byte) ([]byte, error) {
	if !h.Kind.allowedIn(h.Queue) {
		return nil, fmt.Errorf("%w: %s in %s", ErrKind, h.Kind, h.Queue)
	}
	if len(body)+Overhead > MaxRowSize {
		return nil, fmt.Errorf("%w: body of %d bytes", ErrTooLarge, len(body))
	}
	plain := make([]byte, HeaderSize, HeaderSize+len(body))
	plain[0] = headerVersion
	plain[1] = byte(h.Queue)
	copy(plain[2:], h.Session[:])
	binary.BigEndian.PutUint64(plain[18:], h.Seq)
	plain[26] = byte(h.Kind)
	binary.BigEndian.PutUint64(plain[27:], uint64(h.Time.UnixNano()))
	plain = append(plain, body...)
	out := make([]byte, NonceSize, NonceSize+secretbox.Overhead+len(plain))
	copy(out, nonce[:])
	out = secretbox.Seal(out, plain, nonce, (*[KeySize]byte)(key))
	clear(plain)
	return out, nil
}

// Open opens a sealed row found at (session, queue, seq) and returns its header
// and body. It refuses a row whose header names another place: a row copied
// from another session, the other queue or another position never decodes.
func Open(key *Key, session SessionID, q Queue, seq uint64, sealed []byte) (Header, []byte, error) {
	var h Header
	if len(sealed) > MaxRowSize {
		return h, nil, ErrTooLarge
	}
	if len(sealed) < NonceSize+secretbox.Overhead+HeaderSize {
		return h, nil, ErrTooShort
	}
	var nonce [NonceSize]byte
	copy(nonce[:], sealed)
	plain, ok := secretbox.Open(nil, sealed[NonceSize:], &nonce, (*[KeySize]byte)(key))
	if !ok {
		return h, nil, ErrOpen
	}
	if plain[0] != headerVersion {
		return h, nil, ErrVersion
	}
	h.Queue = Queue(plain[1])
	copy(h.Session[:], plain[2:18])
	h.Seq = binary.BigEndian.Uint64(plain[18:])
	h.Kind = Kind(plain[26])
	h.Time = time.Unix(0, int64(binary.BigEndian.Uint64(plain[27:]))).UTC()
	if h.Session != session || h.Queue != q || h.Seq != seq {
		return h, nil, fmt.Errorf("%w: found at %s/%s/%d, sealed for %s/%s/%d",
			ErrMisplaced, session, q, seq, h.Session, h.Queue, h.Seq)
	}
	if !h.Kind.allowedIn(q) {
		return h, nil, fmt.Errorf("%w: %s in %s", ErrKind, h.Kind, q)
	}
	return h, plain[HeaderSize:], nil
}
