package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"golang.org/x/crypto/nacl/secretbox"
)

// A sealed column value is nonce || secretbox(plaintext), where plaintext is
//
//	version (1) || len(table) (1) || table || session id (16) || row key (8, big endian) || body
//
// Secretbox has no associated data, so the place a value belongs to travels
// inside the plaintext and is checked on every read (as package wire does for
// queue rows): a value copied to another session, version or table is
// refused, never returned.
const (
	sealVersion   = 1
	sealNonceSize = 24
	// maxSealed caps what openColumn will try to decrypt; profiles are capped
	// at 256 KiB and nothing sealed here is meant to be larger.
	maxSealed = 1 << 20
)

// ErrSealed means a sealed value did not open with the store's content key or
// belongs to another row. The value must not be used.
var ErrSealed = errors.New("store: sealed value does not open here (wrong content key, tampered, or moved from another row)")

func sealColumn(key *[32]byte, table string, id wire.SessionID, rowKey uint64, body []byte) ([]byte, error) {
	if len(table) == 0 || len(table) > 255 {
		return nil, fmt.Errorf("store: seal: bad table name length %d", len(table))
	}
	plain := sealPrefix(table, id, rowKey, len(body))
	plain = append(plain, body...)
	var nonce [sealNonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("store: reading randomness for a nonce: %w", err)
	}
	out := make([]byte, sealNonceSize, sealNonceSize+secretbox.Overhead+len(plain))
	copy(out, nonce[:])
	out = secretbox.Seal(out, plain, &nonce, key)
	clear(plain)
	if len(out) > maxSealed {
		return nil, fmt.Errorf("store: sealed value of %d bytes is over the %d-byte limit", len(out), maxSealed)
	}
	return out, nil
}

func openColumn(key *[32]byte, table string, id wire.SessionID, rowKey uint64, sealed []byte) ([]byte, error) {
	want := sealPrefix(table, id, rowKey, 0)
	if len(sealed) > maxSealed || len(sealed) < sealNonceSize+secretbox.Overhead+len(want) {
		return nil, ErrSealed
	}
	var nonce [sealNonceSize]byte
	copy(nonce[:], sealed)
	plain, ok := secretbox.Open(nil, sealed[sealNonceSize:], &nonce, key)
	if !ok {
		return nil, ErrSealed
	}
	// The prefix is a fixed function of (table, id, rowKey), so comparing
	// bytes checks version, table, session and row key at once.
	if string(plain[:len(want)]) != string(want) {
		clear(plain)
		return nil, ErrSealed
	}
	return plain[len(want):], nil
}

func sealPrefix(table string, id wire.SessionID, rowKey uint64, extra int) []byte {
	p := make([]byte, 0, 2+len(table)+len(id)+8+extra)
	p = append(p, sealVersion, byte(len(table)))
	p = append(p, table...)
	p = append(p, id[:]...)
	return binary.BigEndian.AppendUint64(p, rowKey)
}
