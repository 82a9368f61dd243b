package keys

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Files this package writes in the state directory. Nothing else, and
// neither holds key material: master.check is a seal of a constant, and
// master.kdf holds only the Argon2id salt and parameters.
const (
	CheckFileName = "master.check"
	KDFFileName   = "master.kdf"
)

// checkPlaintext is what master.check seals. A constant is enough: the AEAD
// tag is what proves the key, and the compare below is belt and braces.
const checkPlaintext = "ironclaw master key check v1"

// checkFormat is master.check's format version.
const checkFormat = 1

// checkFile is master.check. Custody records how the directory was
// initialised; it is only a hint for error messages, not authenticated, and
// not enforced (a key file and a systemd credential holding the same bytes
// are interchangeable).
type checkFile struct {
	Format  int     `json:"format"`
	Custody Custody `json:"custody"`
	Nonce   string  `json:"nonce"`  // base64, 24 bytes
	Sealed  string  `json:"sealed"` // base64, XChaCha20-Poly1305 of checkPlaintext
}

func checkAD() []byte { return []byte(labelCheck + "\x00v1") }

func writeCheckFile(path string, c Custody, root *[MasterKeySize]byte) error {
	key := derive(root, labelCheck)
	defer clear(key[:])
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return fmt.Errorf("keys: check: %w", err)
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("keys: reading randomness for a nonce: %w", err)
	}
	cf := checkFile{
		Format:  checkFormat,
		Custody: c,
		Nonce:   base64.StdEncoding.EncodeToString(nonce),
		Sealed:  base64.StdEncoding.EncodeToString(aead.Seal(nil, nonce, []byte(checkPlaintext), checkAD())),
	}
	b, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return fmt.Errorf("keys: encoding %s: %w", CheckFileName, err)
	}
	if _, err := writeExclusive(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("keys: writing %s: %w", CheckFileName, err)
	}
	return nil
}

func readCheckFile(path string) (*checkFile, error) {
	b, err := readStateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keys: %s does not exist: this state directory was never initialised (run `ironclaw init`), or the file was lost (restore it from a backup; do not run init over existing data)", path)
	}
	if err != nil {
		return nil, err
	}
	var cf checkFile
	if err := decodeStrict(b, &cf); err != nil {
		return nil, fmt.Errorf("keys: %s is damaged (%v); restore it from a backup", path, err)
	}
	if cf.Format != checkFormat {
		return nil, fmt.Errorf("keys: %s has format %d, this ironclaw understands %d; use a matching ironclaw version", path, cf.Format, checkFormat)
	}
	if n, err := base64.StdEncoding.DecodeString(cf.Nonce); err != nil || len(n) != chacha20poly1305.NonceSizeX {
		return nil, fmt.Errorf("keys: %s is damaged (bad nonce); restore it from a backup", path)
	}
	if s, err := base64.StdEncoding.DecodeString(cf.Sealed); err != nil || len(s) != len(checkPlaintext)+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("keys: %s is damaged (bad seal); restore it from a backup", path)
	}
	return &cf, nil
}

// verify reports whether root opens the check seal.
func (cf *checkFile) verify(root *[MasterKeySize]byte) bool {
	key := derive(root, labelCheck)
	defer clear(key[:])
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return false
	}
	nonce, _ := base64.StdEncoding.DecodeString(cf.Nonce)
	sealed, _ := base64.StdEncoding.DecodeString(cf.Sealed)
	plain, err := aead.Open(nil, nonce, sealed, checkAD())
	return err == nil && subtle.ConstantTimeCompare(plain, []byte(checkPlaintext)) == 1
}

// kdfParams are the Argon2id parameters recorded in master.kdf. They are
// stored, not assumed, so the defaults can be raised later without locking
// out existing state directories.
type kdfParams struct {
	Alg       string `json:"alg"`        // "argon2id"
	Version   int    `json:"version"`    // Argon2 version, 19 (0x13)
	Salt      string `json:"salt"`       // base64, 16 random bytes
	Time      uint32 `json:"time"`       // passes
	MemoryKiB uint32 `json:"memory_kib"` // memory in KiB
	Threads   uint8  `json:"threads"`    // lanes; part of the result, not only speed
}

// defaultKDF is what Init uses: RFC 9106's second recommended option scaled
// to a small home server (64 MiB, 3 passes, 2 lanes). Measured at 0.1-0.2 s
// on a 2-core server: paid once per start, and paid again by an attacker for
// every guess at a stolen disk's passphrase. Tests lower it for speed.
var defaultKDF = kdfParams{Alg: "argon2id", Version: argon2.Version, Time: 3, MemoryKiB: 64 * 1024, Threads: 2}

const kdfSaltSize = 16

// Limits on a master.kdf read from disk, so a damaged or hostile file cannot
// make the daemon allocate without bound or spin for hours.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 4 * 1024 * 1024 // 4 GiB
	maxKDFThreads   = 64
)

func newKDFParams() (kdfParams, error) {
	p := defaultKDF
	salt := make([]byte, kdfSaltSize)
	if _, err := rand.Read(salt); err != nil {
		return p, fmt.Errorf("keys: reading randomness for a salt: %w", err)
	}
	p.Salt = base64.StdEncoding.EncodeToString(salt)
	return p, nil
}

func (p kdfParams) derive(pass []byte) [MasterKeySize]byte {
	salt, _ := base64.StdEncoding.DecodeString(p.Salt) // validated on read
	out := argon2.IDKey(pass, salt, p.Time, p.MemoryKiB, p.Threads, MasterKeySize)
	var key [MasterKeySize]byte
	copy(key[:], out)
	clear(out)
	return key
}

func (p kdfParams) validate() error {
	salt, err := base64.StdEncoding.DecodeString(p.Salt)
	switch {
	case p.Alg != "argon2id":
		return fmt.Errorf("alg %q, want argon2id", p.Alg)
	case p.Version != argon2.Version:
		return fmt.Errorf("argon2 version %d, want %d", p.Version, argon2.Version)
	case err != nil || len(salt) < 16 || len(salt) > 64:
		return errors.New("bad salt")
	case p.Time < 1 || p.Time > maxKDFTime:
		return fmt.Errorf("time %d out of range 1..%d", p.Time, maxKDFTime)
	case p.Threads < 1 || p.Threads > maxKDFThreads:
		return fmt.Errorf("threads %d out of range 1..%d", p.Threads, maxKDFThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB:
		return fmt.Errorf("memory_kib %d out of range %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxKDFMemoryKiB)
	}
	return nil
}

func writeKDFFile(path string, p kdfParams) (os.FileInfo, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keys: encoding %s: %w", KDFFileName, err)
	}
	info, err := writeExclusive(path, append(b, '\n'), 0o600)
	if err != nil {
		return nil, fmt.Errorf("keys: writing %s: %w", KDFFileName, err)
	}
	return info, nil
}

func readKDFFile(path string, initCustody Custody) (kdfParams, error) {
	var p kdfParams
	b, err := readStateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("keys: %s does not exist, so there is no passphrase set up for this state directory (it was initialised with custody %q): set the custody in the config to match, or restore %s from a backup", path, initCustody, KDFFileName)
	}
	if err != nil {
		return p, err
	}
	if err := decodeStrict(b, &p); err != nil {
		return p, fmt.Errorf("keys: %s is damaged (%v); restore it from a backup", path, err)
	}
	if err := p.validate(); err != nil {
		return p, fmt.Errorf("keys: %s is damaged or from an unknown version (%v); restore it from a backup", path, err)
	}
	return p, nil
}

// readStateFile reads a small non-secret file from the state directory
// without following a symlink. A not-exist error is returned unwrapped
// enough for errors.Is(err, fs.ErrNotExist).
func readStateFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("keys: %s is a symbolic link; refusing to follow it", path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("keys: opening %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: %s is not a regular file", path)
	}
	const max = 4096
	if info.Size() > max {
		return nil, fmt.Errorf("keys: %s is larger than %d bytes; it is damaged, restore it from a backup", path, max)
	}
	b := make([]byte, max+1)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("keys: reading %s: %w", path, err)
	}
	if n > max {
		return nil, fmt.Errorf("keys: %s is larger than %d bytes; it is damaged, restore it from a backup", path, max)
	}
	return b[:n], nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// writeExclusive creates path holding data, never replacing anything at
// path. The data goes to a temporary file in the same directory (O_EXCL,
// O_NOFOLLOW), is fsynced, then hard-linked to path: link fails if path
// exists, even as a dangling symlink, and the name appears only with the
// complete content. Finally the directory is fsynced so the name survives a
// crash. It returns the new file's info for undoCreate.
func writeExclusive(path string, data []byte, perm os.FileMode) (info os.FileInfo, err error) {
	dir := filepath.Dir(path)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", tmp, err)
	}
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		_ = os.Remove(tmp) // after the link, only the temporary name goes
	}()
	// The umask may have narrowed perm; make it exact.
	if err := f.Chmod(perm); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return nil, fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if info, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("stat %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return nil, fmt.Errorf("closing %s: %w", tmp, err)
	}
	f = nil
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%s already exists; refusing to overwrite it (nothing was changed)", path)
		}
		return nil, fmt.Errorf("linking %s into place: %w", path, err)
	}
	if err := os.Remove(tmp); err != nil {
		return nil, fmt.Errorf("removing %s: %w", tmp, err)
	}
	if err := syncDir(dir); err != nil {
		// The name may not survive a crash; take it back so the caller sees
		// all or nothing.
		undoCreate(path, info)
		return nil, err
	}
	return info, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory %s to fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
