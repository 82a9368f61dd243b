package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The outbox is the one host directory the agent can write, so it gets its own filesystem:
// a sparse ext4 image per session, <outbox dir>.img, loop-mounted at the outbox directory
// while the session's sandbox runs. The agent can fill that filesystem — bytes and inodes —
// and nothing else: ENOSPC arrives at the profile's cap, and the host disk holds at most the
// image's size. The image persists across sandbox restarts and daemon restarts.
//
// The order, for a session made by queue.Create (which leaves a plain outbox/outbox.db):
//
//  1. create the image if missing: sparse file (0600, root) under a temporary name,
//     mkfs.ext4 with the inode count, no journal and no reserved blocks, root directory
//     owned by the agent; then rename it into place (a crash leaves only a temporary name,
//     removed on the next try);
//  2. open the outbox directory, then mount the image over it (loop, nosuid, nodev,
//     noexec): the descriptor still reaches the directory underneath;
//  3. if the filesystem has no outbox.db yet, copy outbox.db (and a journal, if any) from
//     underneath into it — regular files only, never following links — owned by the agent;
//  4. remove what is left underneath (nothing is ever read from there again), make the
//     filesystem's root 0700 and the agent's, and sync.
//
// Steps 3–4 make a session that predates the outbox filesystem, or a crash in the middle,
// converge: the copy inside the image always wins. ReleaseOutbox unmounts once the sandbox
// has stopped; the loop device is released automatically (LO_FLAGS_AUTOCLEAR).

const (
	// OutboxImageSuffix names the image beside the outbox directory: <dir>.img.
	OutboxImageSuffix = ".img"
	// MinOutboxMiB and MaxOutboxMiB bound the outbox filesystem's size.
	MinOutboxMiB = 1
	MaxOutboxMiB = 1 << 20
	// MinOutboxInodes is the fewest inodes accepted (ext4 reserves 11 for itself).
	MinOutboxInodes = 32
	// MaxOutboxInodes bounds the inode count.
	MaxOutboxInodes = 1 << 24

	// outboxDB and outboxJournal are the files carried into a fresh image (see
	// agentd/wire: OutboxFile). Named here to keep this package free of queue code.
	outboxDB      = "outbox.db"
	outboxJournal = "outbox.db-journal"

	// unmountWait bounds how long ReleaseOutbox retries a busy unmount before detaching.
	unmountWait = 3 * time.Second
	// toolTimeout bounds mkfs.ext4, e2fsck and resize2fs.
	toolTimeout = 60 * time.Second
)

// e2fsprogsDirs are searched, in order, for mkfs.ext4, e2fsck and resize2fs. Never $PATH:
// the daemon runs them as root.
var e2fsprogsDirs = []string{"/usr/sbin", "/sbin"}

// PrepareOutbox makes dir (a session's outbox directory) the root of its own ext4
// filesystem of sizeMiB MiB and at least inodes inodes, owned by the agent (uid/gid 65534),
// creating the image on first use and moving the outbox.db queue.Create left in dir into
// it. Call it before the sandbox starts; it is idempotent while the image stays mounted.
//
// An image that is smaller than sizeMiB is grown (e2fsck + resize2fs); a larger one is kept
// as it is (shrinking could lose the agent's data) and the inode count is fixed at creation.
// See the comment at the top of this file for the order of operations.
func PrepareOutbox(dir string, sizeMiB, inodes int64) (err error) {
	if err := checkOutboxArgs(dir, sizeMiB, inodes); err != nil {
		return err
	}
	img := dir + OutboxImageSuffix
	if m, ok, err := mountAt(dir); err != nil {
		return fmt.Errorf("prepare outbox: %w", err)
	} else if ok {
		if m.fsType != "ext4" || !loopBacks(m.source, img) {
			return fmt.Errorf("prepare outbox: %s already has a %s filesystem from %s mounted on it, not its image %s: unmount it (umount %s)", dir, m.fsType, m.source, img, dir)
		}
		return nil
	}
	if err := checkOutboxParent(dir); err != nil {
		return err
	}
	if err := ensureImage(img, sizeMiB, inodes); err != nil {
		return fmt.Errorf("prepare outbox %s: %w", dir, err)
	}

	// Opened before the mount: afterwards this descriptor is the only way to the files the
	// image covers (step 3).
	under, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("prepare outbox: open %s: %w", dir, err)
	}
	defer unix.Close(under)

	if err := mountImage(img, dir); err != nil {
		return fmt.Errorf("prepare outbox %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	}()
	top, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("prepare outbox: open mounted %s: %w", dir, err)
	}
	defer unix.Close(top)
	if err := migrateOutbox(under, top); err != nil {
		return fmt.Errorf("prepare outbox %s: %w", dir, err)
	}
	// The agent owns its filesystem's root; nobody else on the host may look in.
	if err := unix.Fchown(top, nobody, nobody); err != nil {
		return fmt.Errorf("prepare outbox: chown %s: %w", dir, err)
	}
	if err := unix.Fchmod(top, 0o700); err != nil {
		return fmt.Errorf("prepare outbox: chmod %s: %w", dir, err)
	}
	if err := unix.Fsync(top); err != nil {
		return fmt.Errorf("prepare outbox: sync %s: %w", dir, err)
	}
	return nil
}

func checkOutboxArgs(dir string, sizeMiB, inodes int64) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("prepare outbox: %q must be an absolute, clean path", dir)
	}
	if sizeMiB < MinOutboxMiB || sizeMiB > MaxOutboxMiB {
		return fmt.Errorf("prepare outbox: size %d MiB is outside %d..%d: fix the profile's outbox_mib", sizeMiB, MinOutboxMiB, MaxOutboxMiB)
	}
	if inodes < MinOutboxInodes || inodes > MaxOutboxInodes {
		return fmt.Errorf("prepare outbox: %d inodes is outside %d..%d: fix the profile's outbox_inodes", inodes, MinOutboxInodes, MaxOutboxInodes)
	}
	return nil
}

// checkOutboxParent refuses an outbox directory that is a symlink, or whose parent someone
// other than root could change (they could swap the directory or the image under us).
func checkOutboxParent(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("prepare outbox: %w (create the session's queues first: queue.Create)", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("prepare outbox: %s is not a directory (symlinks are refused)", dir)
	}
	var st unix.Stat_t
	parent := filepath.Dir(dir)
	if err := unix.Lstat(parent, &st); err != nil {
		return fmt.Errorf("prepare outbox: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Errorf("prepare outbox: %s must be a directory owned by root and not writable by group or others (uid %d, mode %o)", parent, st.Uid, st.Mode&0o7777)
	}
	return nil
}

// ensureImage creates the image if it does not exist, checks it if it does, and grows it to
// sizeMiB if it is smaller.
func ensureImage(img string, sizeMiB, inodes int64) error {
	var st unix.Stat_t
	err := unix.Lstat(img, &st)
	if errors.Is(err, unix.ENOENT) {
		return createImage(img, sizeMiB, inodes)
	}
	if err != nil {
		return fmt.Errorf("stat image: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o077 != 0 {
		return fmt.Errorf("image %s must be a regular file owned by root, mode 0600 (uid %d, mode %o): it was not made by IronClaw; move it away", img, st.Uid, st.Mode&0o7777)
	}
	if want := sizeMiB << 20; st.Size < want {
		return growImage(img, want)
	}
	return nil
}

// createImage makes a sparse ext4 image: no journal (the agent's data is SQLite, which has
// its own), no blocks reserved for root (the cap is exactly the profile's), the root
// directory owned by the agent.
func createImage(img string, sizeMiB, inodes int64) error {
	tmp := img + ".new"
	_ = os.Remove(tmp) // a previous attempt's leftover; never a file anyone else made
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	err = f.Truncate(sizeMiB << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	if err := runE2fs("mkfs.ext4", "-F", "-q", "-t", "ext4",
		"-N", strconv.FormatInt(inodes, 10),
		"-O", "^has_journal",
		"-m", "0",
		"-E", fmt.Sprintf("root_owner=%d:%d,nodiscard", nobody, nobody),
		tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, img); err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	ok = true
	return syncDir(filepath.Dir(img))
}

// growImage enlarges an unmounted image to size bytes.
func growImage(img string, size int64) error {
	// e2fsck exits 1 when it corrected something: the image is then consistent.
	if err := runE2fs("e2fsck", "-f", "-p", img); err != nil && exitCode(err) != 1 {
		return fmt.Errorf("grow image: %w", err)
	}
	if err := os.Truncate(img, size); err != nil {
		return fmt.Errorf("grow image: %w", err)
	}
	if err := runE2fs("resize2fs", "-f", img); err != nil {
		return fmt.Errorf("grow image: %w", err)
	}
	return nil
}

// runE2fs runs an e2fsprogs tool from a fixed directory with an empty environment.
func runE2fs(tool string, args ...string) error {
	var path string
	for _, d := range e2fsprogsDirs {
		p := filepath.Join(d, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			path = p
			break
		}
	}
	if path == "" {
		return fmt.Errorf("%s not found in %s: install e2fsprogs (apt-get install e2fsprogs); the outbox needs its own capped filesystem", tool, strings.Join(e2fsprogsDirs, " or "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, truncate(out, 500))
	}
	return nil
}

// exitCode returns the exit code inside err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// mountImage attaches img to a free loop device and mounts it at dir.
func mountImage(img, dir string) error {
	dev, err := attachLoop(img)
	if err != nil {
		return err
	}
	// Closing our descriptor after the mount arms autoclear: the loop device goes away with
	// the last unmount. Closing it after a failed mount releases it at once.
	defer dev.Close()
	if err := unix.Mount(dev.Name(), dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount %s (%s) at %s: %w", img, dev.Name(), dir, err)
	}
	return nil
}

// attachLoop binds img to a free loop device with autoclear and returns the open device.
func attachLoop(img string) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/loop-control: %w (the loop driver is needed for the outbox filesystem: modprobe loop)", err)
	}
	defer ctl.Close()
	backing, err := os.OpenFile(img, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer backing.Close()
	// Another process may take the free device between GET_FREE and CONFIGURE: retry.
	for range 32 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile("/dev/loop"+strconv.Itoa(n), os.O_RDWR|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open loop device: %w", err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("configure loop device %d for %s: %w", n, img, err)
		}
	}
	return nil, fmt.Errorf("no free loop device for %s after 32 tries", img)
}

// loopBacks reports whether the loop device dev is backed by the file img.
func loopBacks(dev, img string) bool {
	name := filepath.Base(dev)
	if !strings.HasPrefix(name, "loop") {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return false
	}
	got := strings.TrimSpace(string(b))
	if got == img {
		return true
	}
	// The kernel reports the path with symlinks resolved.
	real, err := filepath.EvalSymlinks(img)
	return err == nil && got == real
}

// migrateOutbox carries outbox.db (and its journal) from the directory under the mount into
// a filesystem that has none yet, then empties the directory underneath.
func migrateOutbox(under, top int) error {
	var st unix.Stat_t
	err := unix.Fstatat(top, outboxDB, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		for _, name := range []string{outboxDB, outboxJournal} {
			if err := copyUnder(under, top, name); err != nil {
				return err
			}
		}
	} else if err != nil {
		return fmt.Errorf("stat outbox.db in the image: %w", err)
	}
	return clearUnder(under)
}

// copyUnder copies the regular file name from under into top (owned by the agent, 0600).
// A missing file is not an error; a link or special file is refused.
func copyUnder(under, top int, name string) error {
	fd, err := unix.Openat(under, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s to move it into the image: %w (a link here is refused)", name, err)
	}
	in := os.NewFile(uintptr(fd), name)
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s under the outbox is a %s, not a regular file: refusing to move it", name, fi.Mode().Type())
	}
	ofd, err := unix.Openat(top, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s in the image: %w", name, err)
	}
	out := os.NewFile(uintptr(ofd), name)
	_, err = io.Copy(out, in)
	if err == nil {
		err = unix.Fchown(ofd, nobody, nobody)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(top, name, 0)
		return fmt.Errorf("copy %s into the image: %w", name, err)
	}
	return nil
}

// clearUnder removes every non-directory entry of the directory under the mount: nothing
// there is read again, and it must not linger as a second copy of the agent's data.
func clearUnder(under int) error {
	dup, err := unix.Dup(under)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), "outbox (underneath)")
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("list the outbox directory underneath: %w", err)
	}
	for _, n := range names {
		if err := unix.Unlinkat(under, n, 0); err != nil && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s under the outbox: %w", n, err)
		}
	}
	return unix.Fsync(under)
}

// ReleaseOutbox unmounts the outbox filesystem from dir, if mounted. Call it only once the
// session's sandbox has stopped (its gofer holds the directory while it runs). A mount that
// stays busy is detached lazily and reported.
func ReleaseOutbox(dir string) error {
	m, ok, err := mountAt(dir)
	if err != nil {
		return fmt.Errorf("release outbox: %w", err)
	}
	if !ok {
		return nil
	}
	if m.fsType != "ext4" || !loopBacks(m.source, dir+OutboxImageSuffix) {
		return fmt.Errorf("release outbox: %s has a %s filesystem from %s mounted, not its image: leaving it alone; inspect it with findmnt %s", dir, m.fsType, m.source, dir)
	}
	return unmountDir(dir)
}

// unmountDir unmounts dir, retrying while busy, then detaching lazily.
func unmountDir(dir string) error {
	deadline := time.Now().Add(unmountWait)
	for {
		err := unix.Unmount(dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		if time.Now().After(deadline) {
			if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount %s: busy for %v, and detaching failed: %w", dir, unmountWait, derr)
			}
			return fmt.Errorf("unmount %s: busy for %v; detached lazily (find the holder with `fuser -vm %s`)", dir, unmountWait, dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OutboxMounted reports whether dir has its outbox image mounted.
func OutboxMounted(dir string) (bool, error) {
	m, ok, err := mountAt(dir)
	if err != nil || !ok {
		return false, err
	}
	return m.fsType == "ext4" && loopBacks(m.source, dir+OutboxImageSuffix), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
