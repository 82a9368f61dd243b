package supervisor

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// InstalledAgent is the agent binary as it is on disk now, not as it was
// when the daemon started: an owner who replaces the binary and pins it
// (`ironclaw agent pin`) gets the new one for new sessions without a
// restart, and `ironclaw status` tells the truth.
type InstalledAgent struct {
	Path string

	mu     sync.Mutex
	key    fileKey // guarded by mu: the file the digest was taken of
	digest string  // guarded by mu
}

// fileKey identifies a file's content without reading it: replacing or
// rewriting a file always changes its inode or its ctime (which no user can
// set back).
type fileKey struct {
	dev, ino, size   uint64
	mtimeNs, ctimeNs int64
}

func statKey(path string) (fileKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileKey{}, err
	}
	return fileKey{uint64(st.Dev), st.Ino, uint64(st.Size), st.Mtim.Nano(), st.Ctim.Nano()}, nil
}

// Hash reads and hashes the binary now ("sha256:<hex>"). For the operator's
// questions (status, pin), which must never see a stale answer.
func (a *InstalledAgent) Hash() (string, error) {
	before, err := statKey(a.Path)
	if err != nil {
		return "", fmt.Errorf("the agent binary: %w", err)
	}
	d, err := FileDigest(a.Path)
	if err != nil {
		return "", fmt.Errorf("the agent binary: %w", err)
	}
	a.mu.Lock()
	a.key, a.digest = before, d
	a.mu.Unlock()
	return d, nil
}

// Digest is Hash, reusing the last digest while the file is unchanged (same
// inode, size, mtime and ctime): every sandbox start asks, and the start
// verifies the bytes it copies into the sandbox against this digest anyway.
func (a *InstalledAgent) Digest() (string, error) {
	k, err := statKey(a.Path)
	if err != nil {
		return "", fmt.Errorf("the agent binary: %w", err)
	}
	a.mu.Lock()
	if a.digest != "" && a.key == k {
		d := a.digest
		a.mu.Unlock()
		return d, nil
	}
	a.mu.Unlock()
	return a.Hash()
}
