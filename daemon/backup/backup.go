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
// Reading is untrusted input until the MAC is checked. Verify reads the
// whole file under the MAC before anything is extracted, and records each
// entry it read (name, type, size, SHA-256) and accepts only the names and
// types a backup can hold. Extract reads the same open file again and
// writes only those entries, each capped at its authenticated size and
// checked against its hash, so an archive whose bytes change between the
// two reads fails (ErrChanged) having written no more than the
// authenticated archive holds; it also checks first that those bytes fit
// on the target's filesystem. A whole archive is capped at maxArchive. A
// truncated or tampered archive, or one taken under another master key,
// fails with ErrNotAuthentic and the caller discards what Extract wrote (it
// extracts into a private directory of its own).
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
	// maxArchive caps a whole archive: the store, the audit log and every
	// inbox together. The Writer refuses to grow past it, so a larger file
	// is not one of ours and is refused before it is read.
	maxArchive = 256 << 30
	// maxEntries caps the entries Verify remembers (three per session,
	// far above limits.max_sessions), so its memory is bounded too.
	maxEntries = 1 << 18
	// headroom is free space a restore leaves beyond the archive's files,
	// for the outboxes it seeds and the audit record it appends.
	headroom = 64 << 20
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
	// total is the file bytes added so far, kept under maxArchive so every
	// archive written can be restored.
	total int64
}

// add counts n more file bytes against maxArchive.
func (w *Writer) add(name string, n int64) error {
	if n > maxEntry || w.total+n > maxArchive-1<<20 {
		return fmt.Errorf("backup: %s (%d bytes) makes the archive larger than a backup may be (%d GiB in all, %d GiB a file)", name, n, maxArchive>>30, maxEntry>>30)
	}
	w.total += n
	return nil
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
	if err := w.add(name, fi.Size()); err != nil {
		return err
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
	if err := w.add(name, int64(len(data))); err != nil {
		return err
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
func body(f *os.File) (*io.SectionReader, []byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, errors.New("backup: the archive is not a regular file")
	}
	if fi.Size() > maxArchive {
		return nil, nil, fmt.Errorf("%w (it is %d GiB; no backup is larger than %d GiB)", ErrNotAuthentic, fi.Size()>>30, maxArchive>>30)
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

// Verified is an archive whose MAC checked, bound to the open file it was
// read from. It holds what Verify read under the MAC: every entry's name,
// type, size and SHA-256, in order. Extract writes only those entries and
// only as many bytes of each as were authenticated, so a file changed
// after Verify (the archive is read twice: a writer may swap its bytes in
// between) can make a restore fail but never makes it write more, or
// other bytes, than the authenticated archive holds.
type Verified struct {
	f       *os.File
	size    int64 // the file's size when it verified
	entries []entry
	total   int64 // the bytes of every regular entry together
}

// entry is one tar entry as Verify read it under the MAC.
type entry struct {
	name string
	dir  bool
	size int64
	sum  [sha256.Size]byte
}

// Verify checks the MAC of the archive in f over its whole length, reading
// the tar stream on the way, and returns the authenticated description of
// what it holds. Nothing is written. An archive larger than a backup can
// be, or with a name, type, size or count of entries an IronClaw backup
// never holds, fails as not authentic (no honest writer makes one).
func Verify(f *os.File, key *[32]byte) (*Verified, error) {
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
	v := &Verified{f: f, size: r.Size() + int64(TrailerSize)}
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
		if !ValidName(name) || seen[name] || len(v.entries) >= maxEntries {
			return nil, fmt.Errorf("%w (unexpected, repeated or one too many entry %q)", ErrNotAuthentic, h.Name)
		}
		seen[name] = true
		e := entry{name: name}
		switch h.Typeflag {
		case tar.TypeDir:
			e.dir = true
		case tar.TypeReg:
			if h.Size < 0 || h.Size > maxEntry {
				return nil, fmt.Errorf("%w (entry %s of %d bytes)", ErrNotAuthentic, name, h.Size)
			}
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				return nil, fmt.Errorf("%w (%v)", ErrNotAuthentic, err)
			}
			e.size = h.Size
			sum.Sum(e.sum[:0])
			v.total += h.Size
		default:
			return nil, fmt.Errorf("%w (entry %s is neither a file nor a directory)", ErrNotAuthentic, name)
		}
		v.entries = append(v.entries, e)
	}
	// The MAC covers the whole body, padding included.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("backup: reading the archive: %w", err)
	}
	if !hmac.Equal(m.Sum(nil), want) {
		return nil, ErrNotAuthentic
	}
	return v, nil
}

// Total is the bytes that Extract writes: every file in the archive.
func (v *Verified) Total() int64 { return v.total }

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
		if _, err := writeNew(filepath.Join(dir, h.Name), bytes.NewReader(data), 0o600); err != nil {
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

// ErrChanged means the archive's bytes changed after Verify read them.
var ErrChanged = fmt.Errorf("%w (it changed while it was being restored: restore from a copy that nothing else writes to)", ErrNotAuthentic)

// freeBytes reports the bytes an unprivileged writer may still use on the
// filesystem holding dir (a variable so a test can make a disk full).
var freeBytes = func(dir string) (uint64, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return 0, err
	}
	return s.Bavail * uint64(s.Bsize), nil
}

// Extract writes the archive's files into dir (an empty private directory
// of the caller's), reading them again from the file Verify read. Each
// entry must be the next one Verify authenticated, of its size and
// SHA-256: at most that many bytes are written for it, and a difference
// fails with ErrChanged right after that entry. It first checks that the
// files fit on dir's filesystem. On any error the caller must discard dir:
// some files may have been written (never more than Total bytes).
func (v *Verified) Extract(dir string) ([]string, error) {
	free, err := freeBytes(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: free space beside the target: %w", err)
	}
	if need := uint64(v.total) + headroom; need > free {
		return nil, fmt.Errorf("backup: restoring needs %d MiB and the filesystem holding %s has %d MiB free: free space there, or restore onto another filesystem; nothing was restored", need>>20, dir, free>>20)
	}
	r, _, err := body(v.f)
	if err != nil {
		return nil, err
	}
	if r.Size()+int64(TrailerSize) != v.size {
		return nil, ErrChanged
	}
	tr, err := tarAfterMagic(r)
	if err != nil {
		return nil, ErrChanged
	}
	names := make([]string, 0, len(v.entries))
	for _, e := range v.entries {
		h, err := tr.Next()
		if err != nil || path.Clean(h.Name) != e.name || (h.Typeflag == tar.TypeDir) != e.dir ||
			(!e.dir && (h.Typeflag != tar.TypeReg || h.Size != e.size)) {
			return nil, ErrChanged
		}
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		if e.dir {
			if err := os.Mkdir(p, 0o700); err != nil {
				return nil, fmt.Errorf("backup: %w", err)
			}
		} else {
			sum := sha256.New()
			// Never more than the authenticated size, whatever the tar
			// reader would hand out.
			src := io.TeeReader(io.LimitReader(tr, e.size), sum)
			n, err := writeNew(p, src, 0o600)
			if errors.Is(err, io.ErrUnexpectedEOF) || (err == nil && (n != e.size || !bytes.Equal(sum.Sum(nil), e.sum[:]))) {
				return nil, ErrChanged
			}
			if err != nil {
				return nil, err
			}
		}
		names = append(names, e.name)
	}
	return names, nil
}

// writeNew creates path (which must not exist) from r, fsynced, and
// returns the bytes written.
func writeNew(p string, r io.Reader, mode fs.FileMode) (int64, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("backup: writing %s: %w", p, err)
	}
	return n, nil
}
