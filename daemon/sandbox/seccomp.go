package sandbox

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The agent's seccomp profile, enforced by gVisor's Sentry on the agent's system calls
// (runsc --oci-seccomp; without that flag runsc ignores linux.seccomp).
//
// Why a deny list with a default of allow, not an allow list: the real kernel boundary is
// gVisor — the agent's system calls never reach the host kernel, and the Sentry itself runs
// under runsc's own, much stricter host seccomp filter. What this profile closes is the
// Sentry's emulation of things no agent needs and an attacker would want to poke at:
// namespaces (inside gVisor a process with no capabilities can still create a user
// namespace and hold every capability inside it, and then mount tmpfs — measured, see
// docs/sandbox.md), mounts, tracing, keyrings, BPF, perf, module and kexec calls, and every
// socket family but AF_UNIX. An allow list would also have to track every system call the Go
// runtime and SQLite make now and in later releases; a missed one kills or breaks the agent
// in production for no gain in isolation. docs/sandbox.md records the choice.
//
// gVisor answers every ERRNO rule with EPERM, whatever errnoRet says (runsc
// specutils/seccomp: errnoAction is EPERM). clone3 therefore fails with EPERM there, not
// ENOSYS; the Go runtime only calls clone3 for SysProcAttr.UseCgroupFD, so nothing the agent
// does depends on the fallback. errnoRet is still set to ENOSYS for runtimes that honour it.

// cloneNamespaceFlags are the clone(2) flags that create a namespace. CLONE_NEWTIME is not
// among them: for clone(2) its bit (0x80) is part of the exit signal; unshare is refused
// outright.
var cloneNamespaceFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWCGROUP, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC,
	unix.CLONE_NEWUSER, unix.CLONE_NEWPID, unix.CLONE_NEWNET,
}

// deniedSyscalls fail with EPERM for the agent. Names unknown to the running gVisor (such
// as arm64-only or removed calls) are skipped by runsc, as runc does.
var deniedSyscalls = []string{
	// Namespaces and the mount table: nothing here is needed by a Go program that never
	// execs, and each is a way to widen what the agent can reach inside the Sentry.
	"unshare", "setns",
	"mount", "umount2", "pivot_root", "chroot",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
	"open_by_handle_at", "name_to_handle_at",
	// Looking into or steering other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	// Kernel keyrings, BPF, perf, io_uring, userfaultfd: large attack surface, no use.
	"keyctl", "add_key", "request_key",
	"bpf", "perf_event_open",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"userfaultfd",
	// Execution domain: personality(ADDR_NO_RANDOMIZE) would switch off ASLR for children.
	"personality",
	// The machine itself: modules, kexec, reboot, clocks, swap, accounting, quotas, I/O
	// ports, host and domain names, the kernel log.
	"init_module", "finit_module", "delete_module", "create_module",
	"kexec_load", "kexec_file_load", "reboot",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
	"iopl", "ioperm", "sethostname", "setdomainname", "syslog",
	"vhangup", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
	"get_kernel_syms", "query_module",
}

// SeccompProfile returns the agent's OCI seccomp profile (see the comment above for why it
// is shaped this way). Start always installs it; it is part of Spec.OCI.
func SeccompProfile() *specs.LinuxSeccomp {
	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	// Several conditions on the same argument are ORed (runc's and runsc's rule): clone is
	// refused if any one namespace flag is set.
	var cloneArgs []specs.LinuxSeccompArg
	for _, f := range cloneNamespaceFlags {
		cloneArgs = append(cloneArgs, specs.LinuxSeccompArg{Index: 0, Value: f, ValueTwo: f, Op: specs.OpMaskedEqual})
	}
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchAARCH64},
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm},
			{Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: &eperm, Args: cloneArgs},
			// clone3 passes its flags in memory, which seccomp cannot read: refuse it whole.
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
			// Only AF_UNIX sockets: the daemon's socket is the one way out. With
			// --network=none there is only loopback anyway; this also keeps the agent away
			// from the Sentry's network stack (raw, packet, netlink, vsock...).
			{Names: []string{"socket", "socketpair"}, Action: specs.ActErrno, ErrnoRet: &eperm, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.AF_UNIX, Op: specs.OpNotEqual},
			}},
		},
	}
}
