package sandbox

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// IDPrefix starts every container id. Ids are fixed-length because runsc matches ids by
	// prefix ("ab-1" is ambiguous beside "ab-10").
	IDPrefix = "ironclaw-"
	// IDLength is the length of every container id: IDPrefix + 32 hex digits.
	IDLength = len(IDPrefix) + 32

	// CgroupParent groups every sandbox's cgroup under <hierarchy>/ironclaw/<id>, so leaked
	// cgroups are easy to find and reap (see RemoveCgroups).
	CgroupParent = "ironclaw"

	// AgentName is the agent binary's path inside the sandbox; it is the rootfs's only file.
	AgentName = "/agentd"
	// SocketInside is where the session's daemon socket appears inside the sandbox.
	SocketInside = "/run/ironclaw.sock"

	// MaxSocketPathLen is the longest host socket path a unix socket address can hold
	// (sun_path is 108 bytes including the terminating NUL). The bundle may live at any
	// depth, but Spec.SocketPath must be short: keep sockets in a short directory such as
	// /run/ironclaw/s/<n>.sock, not under a session's state directory.
	MaxSocketPathLen = 107
	// MaxStdin bounds Spec.Stdin. The whole secret is written into the pipe before runsc
	// starts; a pipe holds at least 4096 bytes, so this write can never block.
	MaxStdin = 4096
	// MinMemoryBytes is the smallest memory limit accepted: the gVisor Sentry itself needs
	// ~15 MiB, and below ~24 MiB runsc fails to start (measured) and leaks its cgroup.
	MinMemoryBytes = 32 << 20
	// MinCPUMillis is the smallest CPU quota accepted (1% of one core).
	MinCPUMillis = 10

	// Process limits inside the sandbox. NOFILE bounds descriptors. NPROC bounds the
	// agent user's tasks inside the sandbox, threads included (gVisor enforces it in the
	// Sentry): agentd idles with 6–7 threads. Measured under systrap, each forked process
	// costs the sandbox ~3–4 MiB, so with 32 a fork bomb gets EAGAIN after ~25 forks,
	// well inside the default 256 MiB; below ~160 MiB the memory cgroup may OOM-kill the
	// sandbox first, which contains it just as well.
	rlimitNOFILE = 256
	rlimitNPROC  = 32
	// DefaultTmpBytes caps the agent's scratch /tmp (tmpfs, counted against its memory
	// limit) when Spec.TmpBytes is zero.
	DefaultTmpBytes = 16 << 20
	// MinTmpBytes is the smallest /tmp accepted.
	MinTmpBytes = 1 << 20
	// cpuPeriodUs is the CFS period; the quota is CPUMillis/1000 of it.
	cpuPeriodUs = 100000
	// nobody is the uid/gid the agent runs as.
	nobody = 65534
)

var idPattern = regexp.MustCompile(`^` + regexp.QuoteMeta(IDPrefix) + `[0-9a-f]{32}$`)

// NewID returns a fresh random container id of length IDLength.
func NewID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new sandbox id: %w", err)
	}
	return IDPrefix + hex.EncodeToString(b[:]), nil
}

// Spec describes one sandbox. All paths are host paths and must be absolute.
type Spec struct {
	// ID is the container id: IDPrefix + 32 lowercase hex digits (see NewID).
	ID string
	// BundleDir is created by Start (it must not exist; its parent must) and removed by
	// Stop. It may be long: only the socket path has a length limit.
	BundleDir string
	// AgentPath is the static agent binary, copied to rootfs/agentd (mode 0555) as the
	// rootfs's only file.
	AgentPath string
	// AgentSHA256, if set, must equal the sha256 of AgentPath (from images/agentd.manifest.json).
	// It is checked on the bytes actually copied into the rootfs.
	AgentSHA256 string
	// InboxDir is bind-mounted read-only at /inbox.
	InboxDir string
	// OutboxDir is bind-mounted read-write at /outbox; it must be writable by uid 65534 and
	// have its own size- and inode-capped filesystem mounted (PrepareOutbox; the supervisor
	// does this before every start): the agent is hostile and would fill any disk it shares.
	OutboxDir string
	// SocketPath is the session's daemon socket, bind-mounted at /run/ironclaw.sock. At most
	// MaxSocketPathLen bytes. The agent (uid 65534) must be able to connect: connect(2) needs
	// write permission on the socket file, so make it 0666 in a private directory or chown it.
	SocketPath string
	// Stdin is handed to the agent on its stdin, then EOF (e.g. the session key). It never
	// appears in argv, the environment, a file or a log. At most MaxStdin bytes.
	Stdin []byte
	// Args are extra arguments for the agent. They are visible to anyone who can list
	// processes and are stored in runsc's state: never put secrets here.
	Args []string
	// MemoryBytes is the cgroup memory limit (at least MinMemoryBytes). The agent is
	// OOM-killed above it; /proc/meminfo inside shows it.
	MemoryBytes int64
	// CPUMillis is the CPU quota in thousandths of a core (1000 = one core).
	CPUMillis int64
	// TmpBytes caps the agent's tmpfs /tmp; DefaultTmpBytes if zero. Its pages count
	// against MemoryBytes, so it must not exceed it.
	TmpBytes int64
}

// tmpBytes returns the effective /tmp cap.
func (s *Spec) tmpBytes() int64 {
	if s.TmpBytes == 0 {
		return DefaultTmpBytes
	}
	return s.TmpBytes
}

// validate checks everything about a Spec that can be checked before touching anything.
func (s *Spec) validate() error {
	if !idPattern.MatchString(s.ID) {
		return fmt.Errorf("sandbox spec: id %q is not %s followed by 32 lowercase hex digits: use NewID", s.ID, IDPrefix)
	}
	for _, p := range []struct{ name, path string }{
		{"BundleDir", s.BundleDir}, {"AgentPath", s.AgentPath}, {"InboxDir", s.InboxDir},
		{"OutboxDir", s.OutboxDir}, {"SocketPath", s.SocketPath},
	} {
		if !filepath.IsAbs(p.path) || filepath.Clean(p.path) != p.path {
			return fmt.Errorf("sandbox spec: %s %q must be an absolute, clean path (runsc needs absolute paths)", p.name, p.path)
		}
		// A comma would split a mount's options, a colon confuses some runtimes' parsers.
		if strings.ContainsAny(p.path, ",:\n\x00") {
			return fmt.Errorf("sandbox spec: %s %q contains a comma, colon, newline or NUL", p.name, p.path)
		}
	}
	if len(s.SocketPath) > MaxSocketPathLen {
		return fmt.Errorf("sandbox spec: socket path %q is %d bytes; unix socket paths are limited to 108 bytes, so keep the socket in a short directory (max %d bytes)",
			s.SocketPath, len(s.SocketPath), MaxSocketPathLen)
	}
	if s.AgentSHA256 != "" && !isHexDigest(s.AgentSHA256) {
		return fmt.Errorf("sandbox spec: agent digest %q is not a lowercase hex sha256", s.AgentSHA256)
	}
	if len(s.Stdin) > MaxStdin {
		return fmt.Errorf("sandbox spec: stdin is %d bytes, more than %d: hand the agent a key, not data", len(s.Stdin), MaxStdin)
	}
	for _, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("sandbox spec: agent argument %q contains NUL", a)
		}
		// Cheap guard against the one mistake that matters most: the secret in argv.
		if len(s.Stdin) >= 8 && strings.Contains(a, string(s.Stdin)) {
			return errors.New("sandbox spec: an agent argument contains the stdin secret; secrets go only in Spec.Stdin")
		}
	}
	if s.MemoryBytes < MinMemoryBytes {
		return fmt.Errorf("sandbox spec: memory limit %d bytes is below the minimum %d (the sandbox itself needs ~15 MiB): raise MemoryBytes", s.MemoryBytes, MinMemoryBytes)
	}
	if tb := s.tmpBytes(); tb < MinTmpBytes || tb > s.MemoryBytes {
		return fmt.Errorf("sandbox spec: /tmp size %d bytes must be between %d and the memory limit %d (tmpfs pages count against it): fix TmpBytes", tb, MinTmpBytes, s.MemoryBytes)
	}
	if s.CPUMillis < MinCPUMillis {
		return fmt.Errorf("sandbox spec: CPU quota %d millicores is below the minimum %d: raise CPUMillis", s.CPUMillis, MinCPUMillis)
	}
	for _, d := range []struct{ name, path string }{{"InboxDir", s.InboxDir}, {"OutboxDir", s.OutboxDir}} {
		// Lstat: a symlink here would let whoever controls it choose what gets mounted.
		fi, err := os.Lstat(d.path)
		if err != nil {
			return fmt.Errorf("sandbox spec: %s: %w", d.name, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("sandbox spec: %s %s is not a directory (symlinks are refused)", d.name, d.path)
		}
	}
	fi, err := os.Lstat(s.SocketPath)
	if err != nil {
		return fmt.Errorf("sandbox spec: socket: %w (the daemon must listen before the sandbox starts)", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("sandbox spec: %s is not a unix socket", s.SocketPath)
	}
	return nil
}

// OCI returns the OCI runtime spec for s. It does not validate s or touch the filesystem;
// Start does both. The spec is the security boundary's configuration: every field here is
// deliberate.
func (s *Spec) OCI() *specs.Spec {
	mem := s.MemoryBytes
	period := uint64(cpuPeriodUs)
	quota := s.CPUMillis * cpuPeriodUs / 1000
	none := []string{} // empty, not nil: no capabilities in any set
	hardening := []string{"nosuid", "nodev", "noexec"}
	opts := func(o ...string) []string { return append(o, hardening...) }
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: false,
			User:     specs.User{UID: nobody, GID: nobody},
			Args:     append([]string{AgentName}, s.Args...),
			// No PATH: the rootfs has nothing to look up. HOME keeps libraries from guessing.
			Env: []string{"HOME=/"},
			Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: none, Effective: none, Inheritable: none, Permitted: none, Ambient: none,
			},
			NoNewPrivileges: true,
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: rlimitNOFILE, Soft: rlimitNOFILE},
				{Type: "RLIMIT_NPROC", Hard: rlimitNPROC, Soft: rlimitNPROC},
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0}, // a core dump could hold the session key
			},
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "ironclaw",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: opts()},
			{Destination: "/inbox", Type: "bind", Source: s.InboxDir, Options: opts("bind", "ro")},
			{Destination: "/outbox", Type: "bind", Source: s.OutboxDir, Options: opts("bind", "rw")},
			{Destination: SocketInside, Type: "bind", Source: s.SocketPath, Options: opts("bind", "ro")},
			// gVisor's tmpfs enforces size= (ENOSPC at the cap); it takes KiB with a k suffix.
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: opts(fmt.Sprintf("size=%dk", (s.tmpBytes()+1023)>>10), "mode=1777")},
		},
		Linux: &specs.Linux{
			// A fresh namespace of every kind; with --network=none the network namespace
			// holds only loopback.
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &mem},
				CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
			},
			// Explicit, so Stop and the daemon's reaper know exactly where to look.
			CgroupsPath: "/" + CgroupParent + "/" + s.ID,
			// Enforced by the Sentry because runsc runs with --oci-seccomp (globalArgs).
			Seccomp: SeccompProfile(),
		},
	}
}

// makeBundleDir creates a bundle directory that must not exist yet (0700: config.json and the
// rootfs are root's business only).
func makeBundleDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("bundle %s already exists: stop the sandbox that owns it or remove it", dir)
		}
		return fmt.Errorf("create bundle: %w", err)
	}
	return nil
}

// WriteBundle validates s and writes the bundle Start would run — config.json and a rootfs
// holding only the agent (digest-checked) — for tools that drive runsc themselves, such as
// benchmarks or a pool of sandboxes created ahead with `runsc create`. Start does this
// itself; the caller removes BundleDir.
func (s Spec) WriteBundle() error {
	if err := s.validate(); err != nil {
		return err
	}
	return s.writeBundle()
}

// writeBundle creates BundleDir and fills it. The caller removes BundleDir on failure.
func (s *Spec) writeBundle() error {
	if err := makeBundleDir(s.BundleDir); err != nil {
		return err
	}
	return s.fillBundle()
}

// fillBundle writes config.json (0600) and a rootfs holding only the agent binary and empty
// mount points into the existing, empty BundleDir.
func (s *Spec) fillBundle() error {
	rootfs := filepath.Join(s.BundleDir, "rootfs")
	// Mount points are created here rather than by runsc, so the host rootfs never changes
	// while a sandbox runs on it.
	for _, d := range []string{"", "proc", "inbox", "outbox", "run", "tmp"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			return fmt.Errorf("create rootfs: %w", err)
		}
	}
	if err := writeNewFile(filepath.Join(rootfs, SocketInside), nil, 0o444); err != nil {
		return fmt.Errorf("create socket mount point: %w", err)
	}
	if err := copyAgent(s.AgentPath, filepath.Join(rootfs, AgentName), s.AgentSHA256); err != nil {
		return err
	}
	// Read-only directories: belt and braces beside root.readonly.
	for _, d := range []string{"run", ""} {
		if err := os.Chmod(filepath.Join(rootfs, d), 0o555); err != nil {
			return fmt.Errorf("seal rootfs: %w", err)
		}
	}
	cfg, err := json.MarshalIndent(s.OCI(), "", "\t")
	if err != nil {
		return fmt.Errorf("encode OCI spec: %w", err)
	}
	if err := writeNewFile(filepath.Join(s.BundleDir, "config.json"), cfg, 0o600); err != nil {
		return fmt.Errorf("write OCI spec: %w", err)
	}
	return nil
}

// copyAgent copies the agent binary into the rootfs, checking the digest of the bytes
// written (not of the source, which could change between hash and copy).
func copyAgent(src, dst, wantSHA256 string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open agent binary: %w (build it with images/build.sh)", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("stat agent binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("agent binary %s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o555)
	if err != nil {
		return fmt.Errorf("create rootfs agent: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return fmt.Errorf("copy agent binary: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy agent binary: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); wantSHA256 != "" && got != wantSHA256 {
		return fmt.Errorf("agent binary %s has sha256 %s, want %s (images/agentd.manifest.json): rebuild it with images/build.sh or update the pin through the gateway", src, got, wantSHA256)
	}
	// O_CREATE's mode is masked by umask; set it exactly.
	if err := os.Chmod(dst, 0o555); err != nil {
		return fmt.Errorf("chmod rootfs agent: %w", err)
	}
	return nil
}

// writeNewFile creates path (which must not exist) with exactly mode and writes data.
func writeNewFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
