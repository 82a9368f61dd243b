package console

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/ironclaw/ironclaw/policy"
	gossh "golang.org/x/crypto/ssh"
)

// HostKeyFile is the console's SSH host key in the state directory.
const HostKeyFile = "console_host_key"

// MakeHostKey writes a new ed25519 host key to path (0600, which must not
// exist yet) and returns its public half. `ironclaw init` calls it.
func MakeHostKey(path string) (gossh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("console: host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "ironclaw console")
	if err != nil {
		return nil, fmt.Errorf("console: host key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console: host key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(block))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("console: writing host key %s: %w", path, err)
	}
	return gossh.NewPublicKey(pub)
}

// loadHostKey reads the host key, refusing one that others can read.
func loadHostKey(path string) (gossh.Signer, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("console: no host key at %s (state directories made before the console have none: run `ironclaw console hostkey` once)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("console: host key %s must be a regular file of mode 0600", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	s, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("console: host key %s: %w", path, err)
	}
	return s, nil
}

// Operators is the set of operator keys, read from its sources on every
// authentication so that an approved operators change (which rewrites the
// state directory's file) takes effect at once.
type Operators struct {
	// Files are authorized_keys files: the state directory's operators file
	// and console.operator_keys_file. A missing file holds no keys.
	Files []string
	// Keys are console.operator_keys lines.
	Keys []string
}

// Fingerprints returns the SHA256 fingerprints of every operator key. A
// malformed line is an error: a file someone damaged must not silently
// drop (or add) operators.
func (o Operators) Fingerprints() (map[string]bool, error) {
	out := map[string]bool{}
	// One parser for the format everywhere: the gateway's canonical form
	// (policy.CanonicalOperators) refuses options and extra keys on a line.
	add := func(where string, text []byte) error {
		canon, err := policy.CanonicalOperators(text)
		if err != nil {
			return fmt.Errorf("console: %s: %w", where, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(canon)), "\n") {
			if line == "" {
				continue
			}
			pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
			if err != nil {
				return fmt.Errorf("console: %s: %w", where, err)
			}
			out[gossh.FingerprintSHA256(pk)] = true
		}
		return nil
	}
	for i, k := range o.Keys {
		if err := add(fmt.Sprintf("console.operator_keys entry %d", i+1), []byte(k)); err != nil {
			return nil, err
		}
	}
	for _, path := range o.Files {
		if path == "" {
			continue
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		if err := add(path, data); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Actor is the audit identity of an operator key.
func Actor(pk gossh.PublicKey) string { return "operator:" + gossh.FingerprintSHA256(pk) }
