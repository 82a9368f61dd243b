// Package backup is IronClaw's backup archive: a tar stream of the state
// directory's files, behind a fixed magic and followed by an HMAC-SHA256 of
// everything before it under a key derived from the master key.
//
//	magic (16 bytes "IRONCLAW-BACKUP1") | tar | "ICMACv1\n" | HMAC (32 bytes)
//
// What goes in is decided by the daemon (package daemon, Backup): only files
// that are sealed or plain metadata — the store, the audit log, the key
// check files, the pins, every session's inbox. Never the master key (it is
// not in the state directory) and never a plaintext byte of conversation.
//
// Reading is untrusted input until the MAC is checked: Verify checks the MAC
// over the whole file before anything is extracted, and Extract checks it
// again over the bytes it actually extracted (so a file changed between the
// two reads is caught) and accepts only the file names and types a backup
// can hold. A truncated or tampered archive, or one taken under another
// master key, fails with ErrNotAuthentic and the caller discards what
// Extract wrote (it extracts into a private directory of its own).
package backup

import (
	"archive/tar"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

const (
	magic   = "IRONCLAW-BACKUP1"
	trailer = "ICMACv1\n"
	// TrailerSize is the bytes after the tar stream.
	TrailerSize = len(trailer) + sha256.Size
	// maxEntry caps one file in an archive (the store or an inbox).
	maxEntry = 64 << 30
	// maxSmall caps the key check files read before authentication.
	maxSmall = 4096
)

// ErrNotAuthentic means the archive's MAC does not match: it was truncated
// or changed, or it was taken under another master key.
var ErrNotAuthentic = errors.New("backup: the archive does not authenticate: it was truncated or changed, or it was taken under another master key (restore with the key that was in force when it was taken); nothing was restored")

// names a backup may hold: the state directory's own files and each
// session's inbox.
var validName = regexp.MustCompile(`^(ironclaw\.db|audit\.log|master\.check|master\.kdf|agentd\.digest|operators|backup\.json|matrix|matrix/crypto\.db|sessions|sessions/[0-9a-f]{32}|sessions/[0-9a-f]{32}/inbox|sessions/[0-9a-f]{32}/inbox/inbox\.db)$`)

// ValidName reports whether name may appear in an archive.
func ValidName(name string) bool { return validName.MatchString(name) && path.Clean(name) == name }

// Writer writes an archive.
type Writer struct {
	mac hash.Hash
	out io.Writer // the destination and the MAC together
	dst io.Writer
	tw  *tar.Writer
	now time.Time
}

// NewWriter starts an archive on w, authenticated under key.
func NewWriter(w io.Writer, key *[32]byte) (*Writer, error) {
	m := hmac.New(sha256.New, key[:])
	bw := &Writer{mac: m, dst: w, out: io.MultiWriter(w, m), now: time.Now().UTC().Truncate(time.Second)}
	if _, err := io.WriteString(bw.out, magic); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	bw.tw = tar.NewWriter(bw.out)
	return bw, nil
}

// Dir adds a directory entry.
func (w *Writer) Dir(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("backup: %q is not a name a backup holds", name)
	}
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700, ModTime: w.now, Format: tar.FormatPAX})
}

// File adds the regular file at src (not following a symlink) as name.
func (w *Writer) File(name, src string) error {
	if !ValidName(name) {
		return fmt.Errorf("backup: %q is not a name a backup holds", name)
	}
	f, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("backup: %s is not a regular file", src)
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: fi.Size(), ModTime: w.now, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// Exactly the size in the header: a file that grew meanwhile is cut, one
	// that shrank fails (snapshots given to File never change).
	if _, err := io.CopyN(w.tw, f, fi.Size()); err != nil {
		return fmt.Errorf("backup: copying %s: %w", src, err)
	}
	return nil
}

// Bytes adds a small file from memory.
func (w *Writer) Bytes(name string, data []byte) error {
	if !ValidName(name) {
		return fmt.Errorf("backup: %q is not a name a backup holds", name)
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: w.now, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	_, err := w.tw.Write(data)
	return err
}

// Close ends the tar stream and writes the MAC. The archive is complete
// only when Close returns nil.
func (w *Writer) Close() error {
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	sum := w.mac.Sum(nil)
	if _, err := w.dst.Write(append([]byte(trailer), sum...)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// body returns a reader of the magic and tar part of the archive in f (the
// part the MAC covers) and the MAC from its trailer.
func body(f *os.File) (io.Reader, []byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, errors.New("backup: the archive is not a regular file")
	}
	n := fi.Size() - int64(TrailerSize)
	if n < int64(len(magic)) {
		return nil, nil, fmt.Errorf("%w (it is only %d bytes)", ErrNotAuthentic, fi.Size())
	}
	tr := make([]byte, TrailerSize)
	if _, err := f.ReadAt(tr, n); err != nil {
		return nil, nil, fmt.Errorf("backup: reading the trailer: %w", err)
	}
	if string(tr[:len(trailer)]) != trailer {
		return nil, nil, fmt.Errorf("%w (no trailer: truncated?)", ErrNotAuthentic)
	}
	return io.NewSectionReader(f, 0, n), tr[len(trailer):], nil
}

// Verify checks the MAC of the archive in f over its whole length before
// anything is extracted.
func Verify(f *os.File, key *[32]byte) error {
	r, want, err := body(f)
	if err != nil {
		return err
	}
	m := hmac.New(sha256.New, key[:])
	if _, err := io.Copy(m, r); err != nil {
		return fmt.Errorf("backup: reading the archive: %w", err)
	}
	if !hmac.Equal(m.Sum(nil), want) {
		return ErrNotAuthentic
	}
	return nil
}

// ReadKeyFiles extracts only master.check and master.kdf (if present) into
// dir, before authentication: the master key that checks the MAC may be a
// passphrase, and its Argon2id parameters are in master.kdf. Both are small
// and parsed strictly by package keys; a tampered one yields a wrong key and
// the MAC check then fails.
func ReadKeyFiles(f *os.File, dir string) error {
	r, _, err := body(f)
	if err != nil {
		return err
	}
	tr, err := tarAfterMagic(r)
	if err != nil {
		return err
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w (%v)", ErrNotAuthentic, err)
		}
		if h.Name != "master.check" && h.Name != "master.kdf" {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Size > maxSmall {
			return fmt.Errorf("%w (%s is not a small regular file)", ErrNotAuthentic, h.Name)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxSmall))
		if err != nil {
			return fmt.Errorf("%w (%v)", ErrNotAuthentic, err)
		}
		if err := writeNew(filepath.Join(dir, h.Name), bytes.NewReader(data), 0o600); err != nil {
			return err
		}
	}
}

func tarAfterMagic(r io.Reader) (*tar.Reader, error) {
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(r, m); err != nil || string(m) != magic {
		return nil, fmt.Errorf("%w (not an IronClaw backup: bad magic)", ErrNotAuthentic)
	}
	return tar.NewReader(r), nil
}

// Extract writes the archive's files into dir (an empty private directory
// of the caller's) and checks the MAC over exactly the bytes it read. On any
// error the caller must discard dir: some files may have been written.
func Extract(f *os.File, key *[32]byte, dir string) ([]string, error) {
	r, want, err := body(f)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key[:])
	tee := io.TeeReader(r, m)
	tr, err := tarAfterMagic(tee)
	if err != nil {
		return nil, err
	}
	var names []string
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrNotAuthentic, err)
		}
		name := path.Clean(h.Name)
		if !ValidName(name) || seen[name] {
			return nil, fmt.Errorf("%w (unexpected or repeated entry %q)", ErrNotAuthentic, h.Name)
		}
		seen[name] = true
		p := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(p, 0o700); err != nil {
				return nil, fmt.Errorf("backup: %w", err)
			}
		case tar.TypeReg:
			if h.Size < 0 || h.Size > maxEntry {
				return nil, fmt.Errorf("%w (entry %s of %d bytes)", ErrNotAuthentic, name, h.Size)
			}
			if err := writeNew(p, io.LimitReader(tr, h.Size), 0o600); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w (entry %s is neither a file nor a directory)", ErrNotAuthentic, name)
		}
		names = append(names, name)
	}
	// The MAC covers the whole body, padding included.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("backup: reading the archive: %w", err)
	}
	if !hmac.Equal(m.Sum(nil), want) {
		return nil, ErrNotAuthentic
	}
	return names, nil
}

// writeNew creates path (which must not exist) from r, fsynced.
func writeNew(p string, r io.Reader, mode fs.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: writing %s: %w", p, err)
	}
	return nil
}
