// Package wire is the seam between the daemon and the agent: the one format both
// programs speak across the sandbox wall. It defines the sealed queue rows (their
// header, kinds and bodies), the strict decoder every untrusted byte goes through,
// and the coordination messages of the session socket.
//
// Everything here is pure: no files, no sockets, no SQLite. The daemon imports it
// to write the inbox and read the outbox; agentd imports it to do the reverse.
// It must never grow a way to write an inbox: the agent links this package.
package wire
