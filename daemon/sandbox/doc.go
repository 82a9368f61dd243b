// Package sandbox runs one IronClaw agent (agentd) inside one gVisor sandbox per
// conversation, and is the only code in IronClaw that starts an agent.
//
// What it is for: building a per-session OCI bundle whose root holds nothing but the static
// agentd binary (read-only, uid/gid 65534, no capabilities, no_new_privs, no network, a
// seccomp profile that refuses namespaces, mounts, tracing and every socket family but
// AF_UNIX, cgroup memory/CPU limits, RLIMIT_NPROC, a size-capped /tmp), starting it with a
// pinned, verified runsc, handing the agent its session key over a pipe, giving its outbox
// a filesystem of its own (PrepareOutbox: a loop-mounted ext4 image capped in bytes and
// inodes), and tearing everything down completely (kill, delete, leaked cgroups, bundle,
// ReleaseOutbox). What an earlier daemon left behind is found by ReapContainers,
// ReapCgroups and ReapOutboxMounts. docs/sandbox.md describes the wall layer by layer.
//
// What it must never do:
//   - run an agent unsandboxed. There is no fallback and no "dev mode": if runsc is missing,
//     unverified or misconfigured, Start fails with an error that says how to fix it.
//   - put a secret in argv, the environment, a file or a log. Spec.Stdin goes into a pipe
//     that becomes the agent's stdin; nothing else ever sees it.
//   - trust what the agent prints or writes. Its stdout/stderr are captured in bounded
//     buffers and must be treated as hostile text by whoever displays them; its outbox
//     filesystem is only ever mounted nosuid, nodev, noexec.
//
// Facts this package is built on (measured, see docs/facts.md and docs/sandbox.md):
// runsc needs an absolute bundle path and the same global flags on every subcommand; `runsc
// wait` loses exit statuses, so `runsc run` stays our child and we wait4 it; container ids
// match by prefix, so ids have a fixed length; as root, runsc leaks cgroups when create
// fails or a process is killed, so Stop removes them; KVM hangs on these VMs, so it is
// refused; without --oci-seccomp runsc ignores linux.seccomp, and gVisor answers every
// seccomp ERRNO rule with EPERM.
package sandbox
