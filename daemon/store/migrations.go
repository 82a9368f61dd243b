package store

// migrations is the ordered list of schema steps. Step i (0-based) takes a
// database from PRAGMA user_version i to i+1; each runs in its own
// transaction together with the user_version bump, so a crash leaves the
// database at one version or the next, never between.
//
// To change the schema, APPEND a step. Never edit or reorder a step that has
// shipped: databases in the field have already run it. A step must be plain
// SQL without its own BEGIN/COMMIT and without PRAGMAs that cannot run inside
// a transaction (journal_mode, foreign_keys).
//
// Sealed columns (see seal.go) hold secretbox output whose plaintext names
// the table, the session and a row key; a migration that moves sealed values
// between tables or rows must reseal them in Go, not in SQL.
var migrations = []string{
	// 1: sessions, profiles, cursors, delivery intents, audit anchor.
	`
CREATE TABLE sessions (
	id              TEXT    PRIMARY KEY
	                CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
	binding         TEXT    NOT NULL CHECK (binding <> ''),
	created         INTEGER NOT NULL,
	state           TEXT    NOT NULL CHECK (state IN ('active', 'erased')),
	wrapped_key     BLOB,
	profile_version INTEGER NOT NULL CHECK (profile_version >= 0),
	CHECK ((state = 'active') = (wrapped_key IS NOT NULL))
) STRICT;

-- A binding names one live conversation; an erased session keeps its row
-- (so its id is never reused) but frees its binding for a new session.
CREATE UNIQUE INDEX sessions_active_binding ON sessions (binding)
	WHERE state = 'active';

CREATE TABLE profiles (
	session_id TEXT    NOT NULL REFERENCES sessions (id),
	version    INTEGER NOT NULL CHECK (version >= 1),
	canonical  BLOB    NOT NULL, -- sealed
	created    INTEGER NOT NULL,
	PRIMARY KEY (session_id, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE cursors (
	session_id TEXT    NOT NULL REFERENCES sessions (id),
	name       TEXT    NOT NULL CHECK (name <> ''),
	value      INTEGER NOT NULL CHECK (value >= 0),
	PRIMARY KEY (session_id, name)
) STRICT, WITHOUT ROWID;

-- A row here is an intent not yet known to be delivered; MarkDelivered
-- deletes it and advances the session's outbox.delivered cursor.
CREATE TABLE delivery_intents (
	session_id TEXT    NOT NULL REFERENCES sessions (id),
	outbox_seq INTEGER NOT NULL CHECK (outbox_seq >= 1),
	txn_id     TEXT    NOT NULL CHECK (txn_id <> ''),
	created    INTEGER NOT NULL,
	PRIMARY KEY (session_id, outbox_seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_anchor (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	seq     INTEGER NOT NULL CHECK (seq >= 0),
	hash    BLOB    NOT NULL CHECK (length(hash) = 32),
	updated INTEGER NOT NULL
) STRICT;
`,
}
