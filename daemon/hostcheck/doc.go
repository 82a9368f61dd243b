// Package hostcheck hardens the daemon's own process and checks the host
// directories it trusts, before the master key is loaded.
//
// The daemon holds the master key in memory: LockDownProcess makes sure no
// crash leaves it in a core file and no other process of the same user can
// read its memory (PR_SET_DUMPABLE 0, RLIMIT_CORE 0). The state and runtime
// directories hold the sealed store, the audit log, sockets and session
// queues: CheckDir refuses to use one that someone other than root or the
// daemon's user could change, or that a symlink could redirect.
//
// It must never relax a check to make a setup work; a failed check is a
// start-up error that names the path and says how to fix it.
package hostcheck
