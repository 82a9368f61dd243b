package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelAttacks try to widen what the agent can reach inside the Sentry: the seccomp
// profile must answer each one (EPERM; clone3 may get ENOSYS).
func kernelAttacks(cfg Config) {
	raw := func(name string, trap uintptr, a ...uintptr) {
		var args [6]uintptr
		copy(args[:], a)
		_, _, e := unix.RawSyscall6(trap, args[0], args[1], args[2], args[3], args[4], args[5])
		attempt(name, errnoErr(e))
	}
	ptr := func(s string) uintptr {
		b, _ := unix.BytePtrFromString(s)
		return uintptr(unsafe.Pointer(b))
	}
	raw("ns.unshare_user", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	raw("ns.unshare_mount", unix.SYS_UNSHARE, unix.CLONE_NEWNS)
	raw("ns.unshare_net", unix.SYS_UNSHARE, unix.CLONE_NEWNET)
	attempt("ns.clone_newuser", rawFork(unix.CLONE_NEWUSER))
	attempt("ns.clone_newns", rawFork(unix.CLONE_NEWNS))
	attempt("ns.clone_newpid", rawFork(unix.CLONE_NEWPID))
	attempt("ns.clone3_newuser", rawClone3(unix.CLONE_NEWUSER))
	attempt("ns.clone3_plain", rawClone3(0))
	if fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		raw("ns.setns", unix.SYS_SETNS, uintptr(fd), 0)
		unix.Close(fd)
	} else {
		raw("ns.setns", unix.SYS_SETNS, ^uintptr(0), 0)
	}
	raw("mount.tmpfs", unix.SYS_MOUNT, ptr("none"), ptr("/tmp"), ptr("tmpfs"), 0, 0)
	raw("mount.bind_outbox", unix.SYS_MOUNT, ptr("/outbox"), ptr("/tmp"), 0, unix.MS_BIND, 0)
	raw("mount.remount_inbox_rw", unix.SYS_MOUNT, 0, ptr("/inbox"), 0, unix.MS_REMOUNT|unix.MS_BIND, 0)
	raw("mount.umount_inbox", unix.SYS_UMOUNT2, ptr("/inbox"), unix.MNT_DETACH)
	raw("mount.pivot_root", unix.SYS_PIVOT_ROOT, ptr("/tmp"), ptr("/tmp"))
	raw("mount.chroot", unix.SYS_CHROOT, ptr("/tmp"))
	raw("mount.open_tree", unix.SYS_OPEN_TREE, ^uintptr(99), ptr("/inbox"), 1 /* OPEN_TREE_CLONE */)
	raw("mount.fsopen", unix.SYS_FSOPEN, ptr("tmpfs"), 0)
	raw("trace.ptrace_traceme", unix.SYS_PTRACE, unix.PTRACE_TRACEME)
	raw("trace.ptrace_attach_host", unix.SYS_PTRACE, unix.PTRACE_ATTACH, uintptr(cfg.CanaryPID))
	raw("trace.ptrace_attach_1", unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1)
	var dst [8]byte
	local := unix.Iovec{Base: &dst[0], Len: 8}
	remote := unix.Iovec{Base: &dst[0], Len: 8}
	raw("trace.process_vm_readv", unix.SYS_PROCESS_VM_READV, 1, uintptr(unsafe.Pointer(&local)), 1, uintptr(unsafe.Pointer(&remote)), 1, 0)
	raw("trace.process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, 1, uintptr(unsafe.Pointer(&local)), 1, uintptr(unsafe.Pointer(&remote)), 1, 0)
	raw("trace.kcmp", unix.SYS_KCMP, 1, 1, 0, 0, 0)
	raw("keys.add_key", unix.SYS_ADD_KEY, ptr("user"), ptr("evil"), ptr("x"), 1, ^uintptr(1) /* KEY_SPEC_PROCESS_KEYRING */)
	raw("keys.request_key", unix.SYS_REQUEST_KEY, ptr("user"), ptr("evil"), 0, 0)
	raw("keys.keyctl", unix.SYS_KEYCTL, 0 /* GET_KEYRING_ID */, ^uintptr(3) /* SESSION */, 1)
	var attr [128]byte
	raw("kernel.bpf", unix.SYS_BPF, 5 /* BPF_PROG_LOAD */, uintptr(unsafe.Pointer(&attr[0])), 128)
	binary.LittleEndian.PutUint32(attr[4:], 128) // perf_event_attr.size
	raw("kernel.perf_event_open", unix.SYS_PERF_EVENT_OPEN, uintptr(unsafe.Pointer(&attr[0])), 0, ^uintptr(0), ^uintptr(0), 0)
	raw("kernel.userfaultfd", unix.SYS_USERFAULTFD, 0)
	raw("kernel.personality_no_aslr", unix.SYS_PERSONALITY, 0x0040000)
	raw("kernel.io_uring_setup", unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&attr[0])))
	raw("kernel.kexec_load", unix.SYS_KEXEC_LOAD, 0, 0, 0, 0)
	raw("kernel.init_module", unix.SYS_INIT_MODULE, uintptr(unsafe.Pointer(&attr[0])), 16, ptr(""))
	raw("kernel.finit_module", unix.SYS_FINIT_MODULE, 0, ptr(""), 0)
	raw("kernel.delete_module", unix.SYS_DELETE_MODULE, ptr("loop"), 0)
	raw("kernel.open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(99), uintptr(unsafe.Pointer(&attr[0])), 0)
	raw("kernel.reboot", unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2, unix.LINUX_REBOOT_CMD_CAD_OFF)
	raw("kernel.sethostname", unix.SYS_SETHOSTNAME, ptr("evil"), 4)
	var tv unix.Timeval
	raw("kernel.settimeofday", unix.SYS_SETTIMEOFDAY, uintptr(unsafe.Pointer(&tv)), 0)
	raw("kernel.syslog", unix.SYS_SYSLOG, 3 /* READ_ALL */, uintptr(unsafe.Pointer(&attr[0])), 128)
	raw("kernel.acct", unix.SYS_ACCT, ptr("/tmp/acct"))
	raw("kernel.swapon", unix.SYS_SWAPON, ptr("/tmp/swap"), 0)
	raw("kernel.iopl", unix.SYS_IOPL, 3)
	raw("kernel.ioperm", unix.SYS_IOPERM, 0, 1024, 1)
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "Threads:") {
				n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, "Threads:")))
				emit(Result{Attack: "info.threads", N: int64(n)})
			}
		}
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &rl); err == nil {
		emit(Result{Attack: "info.rlimit_nproc", N: int64(rl.Cur)})
	}
}

// rawFork forks with flags and has the child exit at once; it returns nil if the child was
// created (the attack worked).
//
//go:nosplit
func rawFork(flags uintptr) error {
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, flags|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

// cloneArgs is struct clone_args (CLONE_ARGS_SIZE_VER0 = 64 bytes).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls uint64
}

//go:nosplit
func rawClone3(flags uint64) error {
	args := cloneArgs{flags: flags, exitSignal: uint64(unix.SIGCHLD)}
	pid, _, e := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args), 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

func signalAttacks(cfg Config) {
	// Inside its pid namespace the agent is alone; outside, nothing is addressable.
	attempt("signal.kill_all", unix.Kill(-1, unix.SIGKILL))
	attempt("signal.kill_host_canary", unix.Kill(cfg.CanaryPID, unix.SIGKILL))
	// kill(0) and kill(1) would only reach this process itself (its own process group; it is
	// pid 1 of its namespace): recorded, not sent.
	emit(Result{Attack: "info.pids", Detail: fmt.Sprintf("pid %d ppid %d", os.Getpid(), os.Getppid())})
}

// forkBomb forks children that sleep until RLIMIT_NPROC (or memory) stops it, then kills
// and reaps them.
func forkBomb() {
	n := int64(0)
	var last error
	for n < 4096 {
		pid, e := forkSleeper()
		if e != 0 {
			last = e
			break
		}
		_ = pid
		n++
	}
	r := Result{Attack: "proc.fork_bomb", OK: last == nil, N: n}
	if last != nil {
		r.Err = last.Error()
		var en syscall.Errno
		if errors.As(last, &en) {
			r.Errno = unix.ErrnoName(en)
		}
	}
	emit(r)
	unix.Kill(-1, unix.SIGKILL)
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); err != nil {
			break
		}
	}
}

// forkSleeper forks a child that pauses forever. The child runs no Go code after the
// fork: only raw system calls on the copied stack.
//
//go:nosplit
func forkSleeper() (uintptr, syscall.Errno) {
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e == 0 && pid == 0 {
		for {
			unix.RawSyscall(unix.SYS_PAUSE, 0, 0, 0)
		}
	}
	return pid, e
}

// fillTo writes 1 MiB chunks (synced) to path until an error, then removes it.
func fillTo(name, path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		attempt(name, err)
		return
	}
	buf := bytes.Repeat([]byte{0x5a}, 1<<20)
	var n int64
	for n < 8<<30 {
		m, werr := f.Write(buf)
		n += int64(m)
		if werr == nil {
			werr = f.Sync()
		}
		if werr != nil {
			err = werr
			break
		}
	}
	f.Close()
	os.Remove(path)
	r := Result{Attack: name, OK: err == nil, N: n}
	if err != nil {
		r.Err = err.Error()
		var en syscall.Errno
		if errors.As(err, &en) {
			r.Errno = unix.ErrnoName(en)
		}
	}
	emit(r)
}

func fillTmp() { fillTo("fill.tmp_bytes", "/tmp/fill") }

func fillOutbox() {
	fillTo("fill.outbox_bytes", "/outbox/fill")
	// Inodes: empty files until the filesystem has none left.
	dir := "/outbox/inodes"
	if err := os.Mkdir(dir, 0o700); err != nil {
		attempt("fill.outbox_inodes", err)
		return
	}
	var n int64
	var err error
	for n < 1<<20 {
		var f *os.File
		if f, err = os.OpenFile(filepath.Join(dir, strconv.FormatInt(n, 10)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			break
		}
		f.Close()
		n++
	}
	os.RemoveAll(dir)
	r := Result{Attack: "fill.outbox_inodes", OK: err == nil, N: n}
	if err != nil {
		r.Err = err.Error()
		var en syscall.Errno
		if errors.As(err, &en) {
			r.Errno = unix.ErrnoName(en)
		}
	}
	emit(r)
}

// openFDs lists the open descriptors above 2 as "n->target", leaving out the one it
// reads /proc/self/fd through and the Go runtime's own poller.
func openFDs() []string {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, name := range names {
		n, _ := strconv.Atoi(name)
		if n <= 2 || uintptr(n) == dir.Fd() {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + name)
		if strings.HasPrefix(target, "anon_inode:[eventpoll]") || strings.HasPrefix(target, "anon_inode:[eventfd]") {
			continue
		}
		out = append(out, name+"->"+target)
	}
	return out
}

// viewAttacks reports what the sandbox lets the agent see of the host: descriptors open
// at start beyond stdio (a leaked host file or socket), and mount sources naming host
// paths or another session.
func viewAttacks(cfg Config) {
	emit(Result{Attack: "secrets.fds_beyond_stdio", OK: len(startFDs) > 0, N: int64(len(startFDs)), Detail: strings.Join(startFDs, " ")})
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		attempt("secrets.mountinfo_host_path", err)
		return
	}
	var seen []string
	needles := append([]string{cfg.OtherSession, cfg.HostRoot}, cfg.HostPaths...)
	for _, n := range needles {
		if n != "" && bytes.Contains(mi, []byte(n)) {
			seen = append(seen, n)
		}
	}
	emit(Result{Attack: "secrets.mountinfo_host_path", OK: len(seen) > 0, N: int64(len(mi)), Detail: strings.Join(seen, " ") + "\n" + string(mi)})
}
