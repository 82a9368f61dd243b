// Package queue is the daemon's side of a session's two sealed queues.
//
// The daemon creates both databases, appends sealed rows to the inbox (the
// only code anywhere that writes an inbox) and reads the outbox, which it
// treats as hostile: it never opens the agent's file as a database. It copies
// a snapshot of the bytes — refusing links, special files and oversized files —
// while the agent holds off writing, and opens that copy in memory with
// SQLite's defensive settings, checks the schema byte for byte and decodes
// every row strictly. Where a reply goes is never read from a row.
//
// The inbox uses SQLite's DELETE journal, not WAL: measured, WAL readers
// inside gVisor silently skip rows, while DELETE plus a read lease (package
// lease) had no failures.
package queue
