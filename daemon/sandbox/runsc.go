package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// DefaultPath is where .ci/install-runsc.sh installs the pinned runsc.
	DefaultPath = "/opt/ironclaw/bin/runsc"
	// DefaultRoot is runsc's state directory (--root) when Runsc.Root is empty.
	DefaultRoot = "/run/ironclaw/runsc"
	// DefaultPlatform is gVisor's systrap platform. KVM is refused: on these VMs /dev/kvm is
	// nested and runsc hangs on it.
	DefaultPlatform = "systrap"

	// maxRootLen keeps runsc's control socket, <root>/runsc-<id>.sock, under the 108-byte
	// sun_path limit (107 bytes + NUL): 107 - len("/runsc-") - IDLength - len(".sock").
	maxRootLen = 107 - len("/runsc-") - IDLength - len(".sock")

	// probeTimeout bounds `runsc --version`; a healthy binary answers in milliseconds.
	probeTimeout = 10 * time.Second
)

// fixHint is appended to every "runsc is unusable" error: the one thing to do next.
const fixHint = "install the pinned build with `.ci/install-runsc.sh` (or `just setup`); " +
	"IronClaw never runs an agent without a sandbox"

// ErrRunscUnusable wraps every error from Runsc.Check: the sandbox cannot start, and there
// is deliberately no unsandboxed fallback.
var ErrRunscUnusable = errors.New("runsc is not usable")

// Runsc is the gVisor runtime IronClaw starts sandboxes with. The zero value of each field
// selects its default. A Runsc must not be copied after first use.
type Runsc struct {
	// Path of the runsc binary; DefaultPath if empty. It must be a root-owned regular file
	// that nobody else can write, in a directory nobody else can write.
	Path string
	// Root is runsc's state directory (--root); DefaultRoot if empty. At most 54 bytes, so
	// runsc's control sockets (<Root>/runsc-<id>.sock) fit in 108 bytes. Keep one fixed Root
	// per daemon: runsc bind-mounts an empty network namespace at <Root>/null-netns, shared
	// by every sandbox under that root and never unmounted (unmount it before removing Root).
	Root string
	// Platform is "systrap" (default) or "ptrace". "kvm" is refused (it hangs here).
	Platform string
	// WantDigest is the lowercase hex sha256 the binary must have (see images/runsc.sha256
	// and ParseDigestFile). Empty disables the digest check; production sets it.
	WantDigest string

	mu       sync.Mutex
	verified *fileID // identity of the binary at its last full Check, nil if none passed
}

// fileID identifies one version of a file. Only root can change a root-owned, not
// group/other-writable file, and any change moves its ctime: if the identity is unchanged
// since a full verification, the bytes are the ones that were hashed.
type fileID struct {
	dev, ino, size, mtimeNs, ctimeNs int64
	mode, uid                        uint32
}

func (r *Runsc) path() string {
	if r.Path == "" {
		return DefaultPath
	}
	return r.Path
}

func (r *Runsc) root() string {
	if r.Root == "" {
		return DefaultRoot
	}
	return r.Root
}

func (r *Runsc) platform() string {
	if r.Platform == "" {
		return DefaultPlatform
	}
	return r.Platform
}

// globalArgs are repeated on every runsc invocation: a subcommand run without them looks
// for the container elsewhere or tries to join a network namespace that does not exist.
// --network=none: no network stack but loopback. --host-uds=open: the agent may connect to
// the one bind-mounted daemon socket (and cannot create host sockets). --oci-seccomp: honour
// the spec's seccomp profile (runsc ignores it without this flag). --overlay2=none: no
// overlay over any mount, so writes to /outbox really reach the capped host filesystem and
// the read-only root stays read-only whatever runsc's default becomes.
func (r *Runsc) globalArgs() []string {
	return []string{
		"--root", r.root(),
		"--network=none",
		"--host-uds=open",
		"--oci-seccomp",
		"--overlay2=none",
		"--platform", r.platform(),
	}
}

// GlobalArgs returns the flags every runsc invocation for our sandboxes carries, for tools
// that drive runsc directly (benchmarks, a pool of pre-created sandboxes). A copy.
func (r *Runsc) GlobalArgs() []string { return r.globalArgs() }

// checkConfig validates the settings that do not need the filesystem.
func (r *Runsc) checkConfig() error {
	p := r.path()
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%w: path %q is not absolute: set an absolute path such as %s", ErrRunscUnusable, p, DefaultPath)
	}
	switch r.platform() {
	case "systrap", "ptrace":
	case "kvm":
		return fmt.Errorf("%w: platform kvm hangs on these VMs (nested /dev/kvm): use systrap", ErrRunscUnusable)
	default:
		return fmt.Errorf("%w: unknown platform %q: use systrap or ptrace", ErrRunscUnusable, r.platform())
	}
	root := r.root()
	if !filepath.IsAbs(root) || filepath.Clean(root) != root {
		return fmt.Errorf("%w: state root %q must be an absolute, clean path", ErrRunscUnusable, root)
	}
	if len(root) > maxRootLen {
		return fmt.Errorf("%w: state root %q is %d bytes; runsc puts its control socket there and unix socket paths are limited to 108 bytes, so use a root of at most %d bytes (default %s)",
			ErrRunscUnusable, root, len(root), maxRootLen, DefaultRoot)
	}
	if r.WantDigest != "" && !isHexDigest(r.WantDigest) {
		return fmt.Errorf("%w: pinned digest %q is not a lowercase hex sha256", ErrRunscUnusable, r.WantDigest)
	}
	return nil
}

// Check verifies in full that runsc can be trusted and works: the binary exists, is a
// regular, root-owned file nobody else can write (nor replace: same for its directory), its
// sha256 equals WantDigest (if set), and `runsc --version` answers. Every failure wraps
// ErrRunscUnusable and says what to do.
func (r *Runsc) Check(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkLocked(ctx, true)
}

// ensure is Start's check: the metadata checks always run; the hash and the probe are
// skipped only when the binary is provably the same file that last passed them.
func (r *Runsc) ensure(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkLocked(ctx, false)
}

func (r *Runsc) checkLocked(ctx context.Context, full bool) error {
	if err := r.checkConfig(); err != nil {
		return err
	}
	p := r.path()
	// Every ancestor, not just the parent: whoever can rename any of them can swap the binary.
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if err := checkRootOnlyDir(dir); err != nil {
			return err
		}
		if dir == "/" {
			break
		}
	}
	// O_NOFOLLOW: a symlink could point anywhere, including a writable file.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		r.verified = nil
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s does not exist: %s", ErrRunscUnusable, p, fixHint)
		}
		if errors.Is(err, syscall.ELOOP) {
			return fmt.Errorf("%w: %s is a symlink; point Runsc.Path at the real binary: %s", ErrRunscUnusable, p, fixHint)
		}
		return fmt.Errorf("%w: open %s: %v: %s", ErrRunscUnusable, p, err, fixHint)
	}
	defer f.Close()
	id, err := checkRootOnlyFile(f, p)
	if err != nil {
		r.verified = nil
		return err
	}
	if !full && r.verified != nil && *r.verified == id {
		return nil
	}
	r.verified = nil
	if r.WantDigest != "" {
		got, err := sha256File(ctx, f)
		if err != nil {
			return fmt.Errorf("%w: hashing %s: %v", ErrRunscUnusable, p, err)
		}
		if got != r.WantDigest {
			return fmt.Errorf("%w: %s has sha256 %s but the pin (images/runsc.sha256) is %s: reinstall with `.ci/install-runsc.sh %s`; if you changed the pin or the Go toolchain on purpose, review and update images/runsc.sha256",
				ErrRunscUnusable, p, got, r.WantDigest, filepath.Dir(p))
		}
	}
	if err := probe(ctx, p); err != nil {
		return err
	}
	r.verified = &id
	return nil
}

// checkRootOnlyDir refuses a directory that someone other than root could change entries
// of: whoever can rename files there can swap the binary between Check and exec. A sticky
// directory such as /tmp is accepted: others cannot rename or remove root's entries there.
func checkRootOnlyDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: directory %s does not exist: %s", ErrRunscUnusable, dir, fixHint)
		}
		return fmt.Errorf("%w: stat %s: %v", ErrRunscUnusable, dir, err)
	}
	if st.Uid != 0 {
		return fmt.Errorf("%w: directory %s is owned by uid %d, not root: run `chown root:root %s`", ErrRunscUnusable, dir, st.Uid, dir)
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return fmt.Errorf("%w: directory %s is writable by group or others (mode %o): run `chmod go-w %s`", ErrRunscUnusable, dir, st.Mode&0o7777, dir)
	}
	return nil
}

// checkRootOnlyFile checks the opened binary (fstat, so it is the file we will hash).
func checkRootOnlyFile(f *os.File, p string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileID{}, fmt.Errorf("%w: stat %s: %v", ErrRunscUnusable, p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileID{}, fmt.Errorf("%w: %s is not a regular file: %s", ErrRunscUnusable, p, fixHint)
	}
	if st.Uid != 0 {
		return fileID{}, fmt.Errorf("%w: %s is owned by uid %d, not root: a user who owns runsc owns every sandbox; run `chown root:root %s` or reinstall with `.ci/install-runsc.sh`", ErrRunscUnusable, p, st.Uid, p)
	}
	if st.Mode&0o022 != 0 {
		return fileID{}, fmt.Errorf("%w: %s is writable by group or others (mode %o): run `chmod 0755 %s` and reinstall with `.ci/install-runsc.sh` if you cannot vouch for its contents", ErrRunscUnusable, p, st.Mode&0o7777, p)
	}
	if st.Mode&0o100 == 0 {
		return fileID{}, fmt.Errorf("%w: %s is not executable by root: run `chmod 0755 %s`", ErrRunscUnusable, p, p)
	}
	return fileID{
		dev: int64(st.Dev), ino: int64(st.Ino), size: st.Size,
		mtimeNs: st.Mtim.Nano(), ctimeNs: st.Ctim.Nano(),
		mode: st.Mode, uid: st.Uid,
	}, nil
}

// sha256File hashes f from its start, honouring ctx between chunks (runsc is ~83 MB).
func sha256File(ctx context.Context, f *os.File) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.ReadAt(buf, off)
		h.Write(buf[:n])
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// probe runs `runsc --version` to prove the binary executes on this machine. The pinned
// build from the module proxy prints "runsc version VERSION_MISSING"; that is expected.
func probe(ctx context.Context, p string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, "--version")
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: `%s --version` failed: %v (output: %q): %s", ErrRunscUnusable, p, err, truncate(out, 200), fixHint)
	}
	if !bytes.HasPrefix(out, []byte("runsc version ")) {
		return fmt.Errorf("%w: `%s --version` printed %q, which is not runsc: %s", ErrRunscUnusable, p, truncate(out, 200), fixHint)
	}
	return nil
}

// ParseDigestFile reads a pinned digest from a file in sha256sum format (the first field of
// the first line that is neither blank nor a # comment), such as images/runsc.sha256.
func ParseDigestFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read pinned digest: %w", err)
	}
	defer f.Close()
	return ParseDigest(f, path)
}

// ParseDigest reads a digest pin in the format of images/runsc.sha256 from
// r; name is used in errors.
func ParseDigest(r io.Reader, path string) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		d := strings.Fields(line)[0]
		if !isHexDigest(d) {
			return "", fmt.Errorf("read pinned digest: %s: %q is not a lowercase hex sha256", path, d)
		}
		return d, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read pinned digest %s: %w", path, err)
	}
	return "", fmt.Errorf("read pinned digest: %s holds no digest line", path)
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
