package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

// MasterKeySize is the size of the master key in bytes, and so the exact size
// of a key file or systemd credential.
const MasterKeySize = 32

// wrapVersion is the first byte of a wrapped key. A wrapped key from a future
// format is refused rather than guessed at.
const wrapVersion byte = 1

// WrappedSize is the exact length of a wrapped session key:
// version (1) | nonce (24) | sealed key (32) + tag (16).
const WrappedSize = 1 + chacha20poly1305.NonceSizeX + wire.KeySize + chacha20poly1305.Overhead

// HKDF labels. Every use of the master key goes through its own label so a
// key derived for one job is useless for another. SubKey labels share a
// prefix no internal label has, so no purpose string can name an internal key.
const (
	labelWrap   = "ironclaw/keys/v1/wrap-session-key"
	labelCheck  = "ironclaw/keys/v1/master-check"
	labelSubKey = "ironclaw/keys/v1/subkey/"
)

// Errors callers may want to tell apart. Messages returned by this package
// wrap them with context and say what to do next.
var (
	// ErrWrongMaster means the key given does not open master.check: it is not
	// the key this state directory was initialised with.
	ErrWrongMaster = errors.New("wrong master key for this state directory")
	// ErrUnwrap means a wrapped session key did not open: it was tampered
	// with, moved from another session, or wrapped under another master key.
	ErrUnwrap = errors.New("keys: wrapped session key does not open (tampered, moved from another session, or wrapped under another master key)")
	// ErrDestroyed means the Master was used after Destroy (or never loaded).
	ErrDestroyed = errors.New("keys: master key is not loaded (destroyed or zero Master)")
)

// Master is the loaded master key. It has no exported fields and prints as
// "keys.Master(redacted)" under every fmt verb and in slog, so it cannot leak
// through a log line or an error by accident. It is safe for concurrent use.
//
// Master is a handle: copies share the same key, and Destroy on one destroys
// it for all.
type Master struct {
	// The key lives behind a pointer so that even a Master copied by value
	// into a struct and printed with %+v shows only an address.
	s *masterState
}

type masterState struct {
	mu      sync.RWMutex
	live    bool
	custody Custody
	root    [MasterKeySize]byte // the master key itself; only ever an HKDF input
	wrap    [32]byte            // derived: wraps session keys
}

// newMaster derives the working keys from root. The caller zeroes its copy.
func newMaster(c Custody, root *[MasterKeySize]byte) *Master {
	s := &masterState{live: true, custody: c, root: *root}
	s.wrap = derive(&s.root, labelWrap)
	return &Master{s: s}
}

// derive is HKDF-SHA256(root, salt=nil, info=label) truncated to 32 bytes.
// The root is uniformly random (or Argon2id output), so no salt is needed.
func derive(root *[MasterKeySize]byte, label string) [32]byte {
	var out [32]byte
	r := hkdf.New(sha256.New, root[:], nil, []byte(label))
	if _, err := io.ReadFull(r, out[:]); err != nil {
		// HKDF-SHA256 can produce 8160 bytes; 32 cannot fail.
		panic("keys: hkdf: " + err.Error())
	}
	return out
}

// NewSessionKey returns a fresh random session key. It is random, not derived
// from the master key or the session id, so that once its wrapped form is
// deleted nothing (not even the master key) can recreate it: that is what
// makes crypto-erase work.
func NewSessionKey() (*wire.Key, error) {
	k := new(wire.Key)
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("keys: reading randomness for a session key: %w", err)
	}
	return k, nil
}

// wrapAD is the associated data of a wrapped key. It binds the purpose, the
// format version and the session id, so a wrapped key copied to another
// session's row does not open there.
func wrapAD(id wire.SessionID) []byte {
	ad := make([]byte, 0, len(labelWrap)+2+len(id))
	ad = append(ad, labelWrap...)
	ad = append(ad, 0, wrapVersion)
	return append(ad, id[:]...)
}

// Wrap seals session key k for session id under the master's wrapping key
// with a fresh random nonce. The result (WrappedSize bytes) is what the store
// keeps; it is safe to store but not to hand to anyone else.
func (m *Master) Wrap(id wire.SessionID, k *wire.Key) ([]byte, error) {
	if k == nil {
		return nil, errors.New("keys: wrap: nil session key")
	}
	return m.seal32(wrapAD(id), (*[32]byte)(k))
}

// Unwrap opens a key wrapped by Wrap for the same session id. Any change to
// the bytes, another session's id, or another master key gives ErrUnwrap.
func (m *Master) Unwrap(id wire.SessionID, wrapped []byte) (*wire.Key, error) {
	if len(wrapped) != WrappedSize {
		return nil, fmt.Errorf("%w: session %s: wrapped key is %d bytes, want %d", ErrUnwrap, id, len(wrapped), WrappedSize)
	}
	if wrapped[0] != wrapVersion {
		return nil, fmt.Errorf("%w: session %s: unknown wrap format version %d", ErrUnwrap, id, wrapped[0])
	}
	k, err := m.open32(wrapAD(id), wrapped)
	if errors.Is(err, ErrUnwrap) {
		return nil, fmt.Errorf("%w: session %s", ErrUnwrap, id)
	}
	return (*wire.Key)(k), err
}

// seal32 seals a 32-byte key under the master's wrapping key with a fresh
// random nonce and associated data ad: version ‖ nonce ‖ ciphertext.
func (m *Master) seal32(ad []byte, k *[32]byte) ([]byte, error) {
	s, err := m.state()
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, WrappedSize)
	out[0] = wrapVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("keys: reading randomness for a nonce: %w", err)
	}
	aead, err := chacha20poly1305.NewX(s.wrap[:])
	if err != nil {
		return nil, fmt.Errorf("keys: wrap: %w", err)
	}
	return aead.Seal(out, out[1:], k[:], ad), nil
}

// open32 opens what seal32 made with the same ad (the caller checked the
// length and version). It opens straight into the returned key, so no
// other copy of the plaintext is made; a failure is ErrUnwrap.
func (m *Master) open32(ad, wrapped []byte) (*[32]byte, error) {
	s, err := m.state()
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	aead, err := chacha20poly1305.NewX(s.wrap[:])
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap: %w", err)
	}
	k := new([32]byte)
	nonce := wrapped[1 : 1+chacha20poly1305.NonceSizeX]
	if _, err := aead.Open(k[:0], nonce, wrapped[1+chacha20poly1305.NonceSizeX:], ad); err != nil {
		clear(k[:])
		return nil, ErrUnwrap
	}
	return k, nil
}

// SubKey returns a 32-byte key derived from the master for another daemon
// use (for example "audit-mac" or "store-seal"). Different purposes give
// independent keys; the same purpose gives the same key on every start with
// the same master. It never equals the wrapping or check key.
//
// It panics on an empty purpose or a destroyed Master: both are programming
// errors, and returning a key derived from zeros would be worse.
func (m *Master) SubKey(purpose string) [32]byte {
	if purpose == "" {
		panic("keys: SubKey needs a purpose")
	}
	s, err := m.state()
	if err != nil {
		panic(err)
	}
	defer s.mu.RUnlock()
	return derive(&s.root, labelSubKey+purpose)
}

// Custody reports where this master key came from, for status screens.
func (m *Master) Custody() Custody {
	s, err := m.state()
	if err != nil {
		return ""
	}
	defer s.mu.RUnlock()
	return s.custody
}

// Destroy zeroes the master key and everything derived from it that this
// package holds. Later calls fail with ErrDestroyed. Go gives no guarantee
// that no other copy ever existed in memory (the garbage collector may have
// moved things, and the AEAD implementation copies its key for each call);
// Destroy removes the long-lived ones.
func (m *Master) Destroy() {
	if m == nil || m.s == nil {
		return
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	clear(m.s.root[:])
	clear(m.s.wrap[:])
	m.s.live = false
}

// state returns the live state read-locked; the caller must RUnlock.
func (m *Master) state() (*masterState, error) {
	if m == nil || m.s == nil {
		return nil, ErrDestroyed
	}
	m.s.mu.RLock()
	if !m.s.live {
		m.s.mu.RUnlock()
		return nil, ErrDestroyed
	}
	return m.s, nil
}

const redacted = "keys.Master(redacted)"

// String, GoString, Format and LogValue make sure no formatting path shows
// the key. They have value receivers so that a Master stored by value in
// another struct is covered too.

// String returns "keys.Master(redacted)".
func (Master) String() string { return redacted }

// GoString returns "keys.Master(redacted)".
func (Master) GoString() string { return redacted }

// Format writes "keys.Master(redacted)" for every verb, including %x and %#v.
func (Master) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue keeps slog handlers (which may use reflection) away from the key.
func (Master) LogValue() slog.Value { return slog.StringValue(redacted) }
