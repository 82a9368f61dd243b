package wire

// RowsTable is the only table in a queue database, in the exact form SQLite
// stores it in sqlite_schema. A reader of a hostile database compares the
// schema against it byte for byte: no other table, index, view or trigger.
const RowsTable = "CREATE TABLE rows (seq INTEGER PRIMARY KEY, sealed BLOB NOT NULL)"

// Queue database file and directory names inside a session directory. Each
// database sits alone in its own directory because SQLite's journal lives
// beside it and the sandbox mounts directories, not files.
const (
	InboxDir   = "inbox"
	InboxFile  = "inbox.db"
	OutboxDir  = "outbox"
	OutboxFile = "outbox.db"
)

// Paths inside the sandbox.
const (
	SandboxInbox  = "/inbox/" + InboxFile
	SandboxOutbox = "/outbox/" + OutboxFile
	SandboxSocket = "/run/ironclaw.sock"
)
