package keys

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Custody names where the master key comes from.
type Custody string

const (
	// CustodyKeyFile reads the master key from a 0600 file of 32 raw bytes.
	CustodyKeyFile Custody = "keyfile"
	// CustodyPassphrase derives the master key from a passphrase with Argon2id.
	CustodyPassphrase Custody = "passphrase"
	// CustodySystemdCredential reads the master key from
	// $CREDENTIALS_DIRECTORY/<name>, as set up by systemd's LoadCredential=
	// or LoadCredentialEncrypted=.
	CustodySystemdCredential Custody = "systemd-credential"
)

// DefaultCredentialName is the systemd credential name used when
// Source.CredentialName is empty.
const DefaultCredentialName = "ironclaw-master-key"

// MinPassphraseLen is the shortest passphrase Init accepts, in bytes. Argon2id
// slows guessing down; it cannot make a short passphrase strong.
const MinPassphraseLen = 12

// maxPassphraseLen caps what is read from a passphrase file or reader.
const maxPassphraseLen = 1024

// Source says where the master key comes from and which state directory it
// belongs to. Only the fields of the chosen custody are used.
type Source struct {
	Custody Custody
	// StateDir holds master.check (and master.kdf for a passphrase).
	StateDir string
	// KeyFile is the key file path (CustodyKeyFile). It must be outside
	// StateDir, or a copy of the state directory would carry its own key.
	KeyFile string
	// PassphraseFile is a file holding the passphrase on its first line
	// (CustodyPassphrase). Set it or Passphrase, not both.
	PassphraseFile string
	// Passphrase supplies the passphrase (CustodyPassphrase), for example a
	// terminal with echo off. One line is read; the newline is dropped.
	Passphrase io.Reader
	// CredentialName is the systemd credential name
	// (CustodySystemdCredential); DefaultCredentialName if empty.
	CredentialName string
}

// Init creates the key material for src and the state directory's
// master.check, and returns the loaded master key. It refuses, changing
// nothing, if the state directory is already initialised or (for a key file)
// the key file already exists: an existing key may be the only way to open
// existing data, so it is never overwritten.
//
// For CustodySystemdCredential the credential must already exist (systemd
// creates it); Init only records its check value.
func Init(src Source) (*Master, error) {
	src, err := src.normalise()
	if err != nil {
		return nil, err
	}
	checkPath := filepath.Join(src.StateDir, CheckFileName)
	kdfPath := filepath.Join(src.StateDir, KDFFileName)

	// Every refusal happens before the first write.
	if err := refuseExisting(checkPath, "this state directory is already initialised; start the daemon normally (it loads the key) instead of running init again"); err != nil {
		return nil, err
	}
	switch src.Custody {
	case CustodyKeyFile:
		if err := refuseExisting(src.KeyFile, "refusing to overwrite a key that may be the only way to open existing data; if it belongs to an existing state directory, point the config there and start the daemon; to start afresh, move it away yourself"); err != nil {
			return nil, fmt.Errorf("keys: key file: %w", err)
		}
	case CustodyPassphrase:
		if err := refuseExisting(kdfPath, "an earlier init may have been interrupted; if this state directory holds no data, remove "+kdfPath+" and run init again"); err != nil {
			return nil, err
		}
	}

	var root [MasterKeySize]byte
	defer clear(root[:])
	var created string // a file this call created, removed if a later step fails
	var createdInfo os.FileInfo

	switch src.Custody {
	case CustodyKeyFile:
		if _, err := rand.Read(root[:]); err != nil {
			return nil, fmt.Errorf("keys: reading randomness for the master key: %w", err)
		}
		info, err := writeExclusive(src.KeyFile, root[:], 0o600)
		if err != nil {
			return nil, fmt.Errorf("keys: creating key file: %w", err)
		}
		created, createdInfo = src.KeyFile, info

	case CustodyPassphrase:
		pass, err := readPassphrase(src)
		if err != nil {
			return nil, err
		}
		defer clear(pass)
		if len(pass) < MinPassphraseLen {
			return nil, fmt.Errorf("keys: passphrase is %d bytes; use at least %d (a few random words is better than a short clever one)", len(pass), MinPassphraseLen)
		}
		p, err := newKDFParams()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(src.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("keys: creating state directory: %w", err)
		}
		info, err := writeKDFFile(kdfPath, p)
		if err != nil {
			return nil, err
		}
		created, createdInfo = kdfPath, info
		root = p.derive(pass)

	case CustodySystemdCredential:
		root, err = readCredential(src.CredentialName)
		if err != nil {
			return nil, err
		}
	}

	if err := os.MkdirAll(src.StateDir, 0o700); err != nil {
		undoCreate(created, createdInfo)
		return nil, fmt.Errorf("keys: creating state directory: %w", err)
	}
	if err := writeCheckFile(checkPath, src.Custody, &root); err != nil {
		// Nothing is sealed under this key yet, so the file just created is
		// not needed; leaving it would make the next init refuse.
		undoCreate(created, createdInfo)
		return nil, err
	}
	return newMaster(src.Custody, &root), nil
}

// Load reads the master key from src and checks it against the state
// directory's master.check. It writes nothing. A key that does not match
// gives an error wrapping ErrWrongMaster.
func Load(src Source) (*Master, error) {
	src, err := src.normalise()
	if err != nil {
		return nil, err
	}
	check, err := readCheckFile(filepath.Join(src.StateDir, CheckFileName))
	if err != nil {
		return nil, err
	}

	var root [MasterKeySize]byte
	defer clear(root[:])
	switch src.Custody {
	case CustodyKeyFile:
		root, err = readKeyFile(src.KeyFile)
	case CustodyPassphrase:
		root, err = loadPassphrase(src, check)
	case CustodySystemdCredential:
		root, err = readCredential(src.CredentialName)
	}
	if err != nil {
		return nil, err
	}
	if !check.verify(&root) {
		return nil, fmt.Errorf("keys: %w (%s; %s was initialised with custody %q; nothing was changed): check the %s, or point the config at the state directory this key belongs to",
			ErrWrongMaster, src.describe(), filepath.Join(src.StateDir, CheckFileName), check.Custody, src.what())
	}
	return newMaster(src.Custody, &root), nil
}

// normalise validates src and fills defaults. Paths become absolute so error
// messages and the inside-the-state-directory check are unambiguous.
func (src Source) normalise() (Source, error) {
	if src.StateDir == "" {
		return src, errors.New("keys: no state directory given")
	}
	abs, err := filepath.Abs(src.StateDir)
	if err != nil {
		return src, fmt.Errorf("keys: state directory: %w", err)
	}
	src.StateDir = abs
	switch src.Custody {
	case CustodyKeyFile:
		if src.KeyFile == "" {
			return src, errors.New("keys: custody keyfile needs a key file path in the config")
		}
		if src.KeyFile, err = filepath.Abs(src.KeyFile); err != nil {
			return src, fmt.Errorf("keys: key file: %w", err)
		}
		if err := refuseInside(src.KeyFile, src.StateDir, "key file"); err != nil {
			return src, err
		}
	case CustodyPassphrase:
		if (src.PassphraseFile == "") == (src.Passphrase == nil) {
			return src, errors.New("keys: custody passphrase needs exactly one of a passphrase file (config) or a passphrase prompt")
		}
		if src.PassphraseFile != "" {
			if src.PassphraseFile, err = filepath.Abs(src.PassphraseFile); err != nil {
				return src, fmt.Errorf("keys: passphrase file: %w", err)
			}
			if err := refuseInside(src.PassphraseFile, src.StateDir, "passphrase file"); err != nil {
				return src, err
			}
		}
	case CustodySystemdCredential:
		if src.CredentialName == "" {
			src.CredentialName = DefaultCredentialName
		}
		n := src.CredentialName
		if n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
			return src, fmt.Errorf("keys: credential name %q is not a plain file name", n)
		}
	case "":
		return src, errors.New(`keys: no key custody given; set it to "keyfile", "passphrase" or "systemd-credential"`)
	default:
		return src, fmt.Errorf(`keys: unknown key custody %q; use "keyfile", "passphrase" or "systemd-credential"`, src.Custody)
	}
	return src, nil
}

// describe names where the key came from, for error messages (never the key).
func (src Source) describe() string {
	switch src.Custody {
	case CustodyKeyFile:
		return "key file " + src.KeyFile
	case CustodyPassphrase:
		if src.PassphraseFile != "" {
			return "passphrase from " + src.PassphraseFile
		}
		return "passphrase as entered"
	default:
		return "systemd credential " + src.CredentialName
	}
}

func (src Source) what() string {
	switch src.Custody {
	case CustodyKeyFile:
		return "key file"
	case CustodyPassphrase:
		return "passphrase"
	default:
		return "credential"
	}
}

// refuseInside refuses a secret file that sits inside the state directory:
// then a copy or backup of the state directory would carry its own key and
// promise 3 would not hold. It checks the path lexically and, where the
// directories exist, by inode so symlinked or bind-mounted parents are caught.
func refuseInside(file, stateDir, what string) error {
	err := fmt.Errorf("keys: %s %s is inside the state directory %s, so any copy of the state directory would carry its key; keep it elsewhere (for example /etc/ironclaw/) and update the config", what, file, stateDir)
	if rel, e := filepath.Rel(stateDir, file); e == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return err
	}
	st, e := os.Stat(stateDir)
	if e != nil {
		return nil // no state directory yet: nothing can be inside it
	}
	dir, e := filepath.EvalSymlinks(filepath.Dir(file))
	if e != nil {
		return nil // the file's directory does not exist; opening it will fail clearly
	}
	for {
		if d, e := os.Stat(dir); e == nil && os.SameFile(d, st) {
			return err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// refuseExisting fails if anything (even a dangling symlink) is at path.
func refuseExisting(path, hint string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("keys: %s already exists; %s (nothing was changed)", path, hint)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("keys: checking %s: %w", path, err)
	}
}

// undoCreate removes a file this call created, but only if it is still the
// same file (never something that replaced it in between).
func undoCreate(path string, info os.FileInfo) {
	if path == "" || info == nil {
		return
	}
	if now, err := os.Lstat(path); err == nil && os.SameFile(now, info) {
		_ = os.Remove(path)
		_ = syncDir(filepath.Dir(path))
	}
}

// secretFileRules says how strictly a secret file's metadata is checked.
type secretFileRules struct {
	what string
	// strict: owned by the daemon's user and no group or other bits at all.
	// Otherwise (systemd credentials, which systemd may hand over root-owned
	// with an ACL that shows in the group bits) only "other" bits are refused.
	strict bool
	max    int64
}

// readSecretFile opens path without following a final symlink and without
// blocking on a FIFO, checks it is a regular file with safe permissions,
// and reads at most rules.max bytes (more is an error).
func readSecretFile(path string, rules secretFileRules) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("keys: %s %s is a symbolic link; refusing to follow it (someone who can change the link could swap the key): point the config at the real file", rules.what, path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("keys: %s %s does not exist: check the path in the config (or run init to create a new state directory and key)", rules.what, path)
		}
		return nil, fmt.Errorf("keys: opening %s: %w", rules.what, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: %s %s: %w", rules.what, path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: %s %s is not a regular file (%s)", rules.what, path, info.Mode().Type())
	}
	perm := info.Mode().Perm()
	if rules.strict {
		if perm&0o077 != 0 {
			return nil, fmt.Errorf("keys: %s %s has mode %04o, so other users may read or change it; run: chmod 600 %s", rules.what, path, perm, path)
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			return nil, fmt.Errorf("keys: %s %s is owned by uid %d but the daemon runs as uid %d; run (as root): chown %d %s", rules.what, path, st.Uid, os.Geteuid(), os.Geteuid(), path)
		}
	} else if perm&0o007 != 0 {
		return nil, fmt.Errorf("keys: %s %s has mode %04o, so any user may read or change it; run: chmod 600 %s (systemd sets credentials up this way itself)", rules.what, path, perm, path)
	}
	buf := make([]byte, rules.max+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(buf)
		return nil, fmt.Errorf("keys: reading %s %s: %w", rules.what, path, err)
	}
	if int64(n) > rules.max {
		clear(buf)
		return nil, fmt.Errorf("keys: %s %s is larger than %d bytes", rules.what, path, rules.max)
	}
	return buf[:n], nil
}

// readKeyFile loads a key file: exactly 32 raw bytes, mode 0600, owned by us.
func readKeyFile(path string) ([MasterKeySize]byte, error) {
	return readRawKey(path, secretFileRules{what: "key file", strict: true, max: 4096})
}

// readCredential loads the master key from $CREDENTIALS_DIRECTORY/name.
func readCredential(name string) ([MasterKeySize]byte, error) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return [MasterKeySize]byte{}, errors.New("keys: CREDENTIALS_DIRECTORY is not set: custody systemd-credential needs the daemon to run under systemd with LoadCredential= or LoadCredentialEncrypted= (see docs/keys.md)")
	}
	if !filepath.IsAbs(dir) {
		return [MasterKeySize]byte{}, fmt.Errorf("keys: CREDENTIALS_DIRECTORY %q is not an absolute path; it should be set by systemd", dir)
	}
	return readRawKey(filepath.Join(dir, name), secretFileRules{what: "systemd credential", strict: false, max: 4096})
}

func readRawKey(path string, rules secretFileRules) ([MasterKeySize]byte, error) {
	var key [MasterKeySize]byte
	b, err := readSecretFile(path, rules)
	if err != nil {
		return key, err
	}
	defer clear(b)
	if len(b) != MasterKeySize {
		return key, fmt.Errorf("keys: %s %s is %d bytes; it must hold exactly %d raw random bytes (not hex or base64, no newline); create one with `ironclaw init` or `head -c 32 /dev/urandom`", rules.what, path, len(b), MasterKeySize)
	}
	copy(key[:], b)
	var zero [MasterKeySize]byte
	if subtle.ConstantTimeCompare(key[:], zero[:]) == 1 {
		return key, fmt.Errorf("keys: %s %s is all zero bytes, which is no key; it must hold %d random bytes", rules.what, path, MasterKeySize)
	}
	return key, nil
}

// CreateKeyFile writes a new random master key to path, mode 0600. It never
// overwrites: if anything exists at path it fails and changes nothing. The
// key is written to a temporary file, fsynced, then hard-linked into place
// (which fails if the name exists), and the directory is fsynced, so a crash
// leaves either no key file or a complete one, never a short one.
func CreateKeyFile(path string) error {
	if path == "" {
		return errors.New("keys: no key file path given")
	}
	var key [MasterKeySize]byte
	defer clear(key[:])
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("keys: reading randomness for the master key: %w", err)
	}
	if _, err := writeExclusive(path, key[:], 0o600); err != nil {
		return fmt.Errorf("keys: creating key file: %w", err)
	}
	return nil
}

// readPassphrase returns the passphrase from the file or reader in src. It
// is one line: one trailing newline ("\n" or "\r\n") is dropped, and a file
// with more lines is refused rather than guessed at.
func readPassphrase(src Source) ([]byte, error) {
	var pass []byte
	if src.PassphraseFile != "" {
		b, err := readSecretFile(src.PassphraseFile, secretFileRules{what: "passphrase file", strict: true, max: maxPassphraseLen})
		if err != nil {
			return nil, err
		}
		pass = trimNewline(b)
		if bytes.IndexByte(pass, '\n') >= 0 {
			clear(b)
			return nil, fmt.Errorf("keys: passphrase file %s has more than one line; it must hold only the passphrase", src.PassphraseFile)
		}
	} else {
		// Read a byte at a time up to the newline so nothing after the line
		// is consumed from a shared reader such as a terminal.
		buf := make([]byte, 0, 64)
		var one [1]byte
		for empty := 0; ; {
			n, err := src.Passphrase.Read(one[:])
			if n == 0 && err == nil {
				if empty++; empty > 100 {
					return nil, fmt.Errorf("keys: reading passphrase: %w", io.ErrNoProgress)
				}
				continue
			}
			if n == 1 {
				if len(buf) == maxPassphraseLen {
					clear(buf)
					return nil, fmt.Errorf("keys: passphrase is longer than %d bytes", maxPassphraseLen)
				}
				buf = append(buf, one[0])
				if one[0] == '\n' {
					break
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				clear(buf)
				return nil, fmt.Errorf("keys: reading passphrase: %w", err)
			}
		}
		pass = trimNewline(buf)
		clear(one[:])
	}
	if len(pass) == 0 {
		return nil, errors.New("keys: passphrase is empty")
	}
	return pass, nil
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// loadPassphrase reads master.kdf and derives the master key from the
// passphrase with the parameters recorded at init.
func loadPassphrase(src Source, check *checkFile) ([MasterKeySize]byte, error) {
	p, err := readKDFFile(filepath.Join(src.StateDir, KDFFileName), check.Custody)
	if err != nil {
		return [MasterKeySize]byte{}, err
	}
	pass, err := readPassphrase(src)
	if err != nil {
		return [MasterKeySize]byte{}, err
	}
	defer clear(pass)
	return p.derive(pass), nil
}

// ReadSecretFile reads a small secret file the config names (a Matrix
// password or access token): a regular file, not a symlink, mode 0600 and
// owned by the daemon's user, at most 4 KiB. what names it in errors.
func ReadSecretFile(path, what string) ([]byte, error) {
	return readSecretFile(path, secretFileRules{what: what, strict: true, max: 4096})
}
