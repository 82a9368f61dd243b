package keys

import (
	"errors"
	"fmt"
)

// labelWrapDaemon is the associated data prefix of a wrapped daemon key (the
// store's content key, the audit MAC key). It differs from labelWrap, so a
// wrapped session key never opens as a daemon key or the other way round.
const labelWrapDaemon = "ironclaw/keys/v1/wrap-daemon-key"

// WrappedDaemonKeySize is the exact length of a wrapped daemon key.
const WrappedDaemonKeySize = WrappedSize

// WrapDaemonKey seals a 32-byte daemon key for purpose under the master's
// wrapping key. Daemon keys are random (or, for state directories made
// before key rotation existed, the old master-derived subkey): wrapping
// instead of deriving is what lets the master key rotate in one store
// transaction without re-sealing every value or re-MACing the audit log.
func (m *Master) WrapDaemonKey(purpose string, k *[32]byte) ([]byte, error) {
	if purpose == "" || k == nil {
		return nil, errors.New("keys: wrap daemon key: empty purpose or nil key")
	}
	return m.seal32(daemonAD(purpose), k)
}

// UnwrapDaemonKey opens a key wrapped by WrapDaemonKey for the same purpose.
func (m *Master) UnwrapDaemonKey(purpose string, wrapped []byte) (*[32]byte, error) {
	if len(wrapped) != WrappedDaemonKeySize || wrapped[0] != wrapVersion {
		return nil, fmt.Errorf("%w: daemon key %q has a bad length or format", ErrUnwrap, purpose)
	}
	k, err := m.open32(daemonAD(purpose), wrapped)
	if errors.Is(err, ErrUnwrap) {
		return nil, fmt.Errorf("%w: daemon key %q", ErrUnwrap, purpose)
	}
	return k, err
}

func daemonAD(purpose string) []byte {
	ad := make([]byte, 0, len(labelWrapDaemon)+2+len(purpose))
	ad = append(ad, labelWrapDaemon...)
	ad = append(ad, 0, wrapVersion)
	return append(ad, purpose...)
}
