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
	// 2: the change gateway: change requests and operator rule versions.
	`
-- One row per change request that the gateway accepted for decision
-- (pending) or refused by policy. Sealed columns are bound to the request id
-- and column (see changes.go). session_id is NULL exactly for a change of the
-- operator rules, which belong to no session.
CREATE TABLE change_requests (
	id              TEXT    PRIMARY KEY
	                CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
	session_id      TEXT    REFERENCES sessions (id),
	kind            TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
	requester       TEXT    NOT NULL CHECK (length(requester) BETWEEN 1 AND 300),
	base_version    INTEGER NOT NULL CHECK (base_version >= 0),
	base            BLOB    NOT NULL, -- sealed
	proposed        BLOB    NOT NULL, -- sealed
	reason          BLOB    NOT NULL, -- sealed, untrusted text
	reasons         BLOB    NOT NULL, -- sealed, the policy's reasons
	binding         BLOB    NOT NULL CHECK (length(binding) = 32),
	-- Keyed MAC of the proposed text (dedupe lookups without unsealing;
	-- keyed so that it confirms no guess without the content key).
	proposed_mac    BLOB    NOT NULL CHECK (length(proposed_mac) = 32),
	created         INTEGER NOT NULL,
	state           TEXT    NOT NULL CHECK (state IN
	                ('pending', 'approved', 'denied', 'applied', 'stale', 'refused')),
	outcome         TEXT    NOT NULL CHECK (outcome IN ('deny', 'needs-human', 'auto-approve')),
	rule            TEXT    NOT NULL CHECK (length(rule) BETWEEN 1 AND 128),
	decided_by      TEXT,
	decided         INTEGER,
	note            BLOB,             -- sealed
	result          TEXT    NOT NULL DEFAULT '' CHECK (length(result) <= 512),
	applied_version INTEGER,
	CHECK ((session_id IS NULL) = (kind = 'rules'))
) STRICT;

CREATE INDEX change_requests_session ON change_requests (session_id, state, kind);
CREATE INDEX change_requests_created ON change_requests (created);
CREATE INDEX change_requests_dedupe ON change_requests (session_id, kind, base_version, proposed_mac)
	WHERE state = 'pending';

-- Versions of the operator rules, in canonical text (policy.CanonicalRules).
-- No row means no rules: version 0.
CREATE TABLE rules_versions (
	version   INTEGER PRIMARY KEY CHECK (version >= 1),
	canonical BLOB    NOT NULL, -- sealed
	created   INTEGER NOT NULL,
	change_id TEXT    NOT NULL CHECK (length(change_id) = 32)
) STRICT;

-- Crypto-erase takes a session's change requests with it (they hold its
-- profile texts and the agent's words), in the erase's own transaction.
CREATE TRIGGER change_requests_erase AFTER UPDATE OF state ON sessions
	FOR EACH ROW WHEN NEW.state = 'erased'
BEGIN
	DELETE FROM change_requests WHERE session_id = NEW.id;
END;
`,
	// 3: channels. Reply text kept sealed with its delivery intent, so a
	// reply taken from an outbox survives a crash until its channel has
	// delivered it; the Matrix channel's account, sync progress and inbound
	// events (deduplicated by event id, committed with the sync token).
	`
ALTER TABLE delivery_intents ADD COLUMN body BLOB; -- sealed reply text

-- Crypto-erase takes a session's undelivered replies with it.
CREATE TRIGGER delivery_intents_erase AFTER UPDATE OF state ON sessions
	FOR EACH ROW WHEN NEW.state = 'erased'
BEGIN
	DELETE FROM delivery_intents WHERE session_id = NEW.id;
END;

CREATE TABLE matrix_account (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	user_id    TEXT    NOT NULL CHECK (length(user_id) BETWEEN 3 AND 255),
	device_id  TEXT    NOT NULL CHECK (length(device_id) BETWEEN 1 AND 255),
	secrets    BLOB    NOT NULL, -- sealed: access token, recovery key, backup key
	next_batch TEXT    NOT NULL DEFAULT '' CHECK (length(next_batch) <= 4096),
	clean      INTEGER NOT NULL DEFAULT 0 CHECK (clean IN (0, 1)),
	updated    INTEGER NOT NULL
) STRICT;

-- One row per Matrix event the channel accepted from a sync batch, in the
-- same transaction that moves next_batch on: an event is never lost between
-- the homeserver and the agent, and never taken twice (event_id is unique).
CREATE TABLE matrix_inbound (
	seq      INTEGER PRIMARY KEY CHECK (seq >= 1),
	event_id TEXT    NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND 255),
	room_id  TEXT    NOT NULL CHECK (length(room_id) BETWEEN 1 AND 255),
	sender   TEXT    NOT NULL CHECK (length(sender) BETWEEN 1 AND 255),
	state    TEXT    NOT NULL CHECK (state IN ('new', 'handing', 'done', 'refused')),
	body     BLOB,             -- sealed; NULL once handed on or refused
	after    INTEGER NOT NULL DEFAULT 0 CHECK (after >= 0),
	created  INTEGER NOT NULL
) STRICT;
CREATE INDEX matrix_inbound_open ON matrix_inbound (state) WHERE state IN ('new', 'handing');

-- Change requests already announced to the owners in Matrix.
CREATE TABLE matrix_notices (
	change_id TEXT    PRIMARY KEY CHECK (length(change_id) = 32),
	created   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
`,
	// 4: daemon keys wrapped by the master key, and the key epoch, so that
	// the master key can rotate in one transaction (daemon/rotate).
	`
-- The store's content key and the audit MAC key, each wrapped by the
-- master key (keys.WrapDaemonKey). A rotation rewraps them with the
-- session keys; the keys themselves never change, so sealed values and the
-- audit chain stay valid.
CREATE TABLE daemon_keys (
	purpose TEXT PRIMARY KEY CHECK (length(purpose) BETWEEN 1 AND 128),
	wrapped BLOB NOT NULL CHECK (length(wrapped) BETWEEN 1 AND 512)
) STRICT, WITHOUT ROWID;

-- Which rotation the wrapped keys belong to: set in the rotation's own
-- transaction, so after a crash the journal's epoch says whether the new
-- key (equal) or the old one (different) opens this store. Not secret.
CREATE TABLE key_epoch (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	epoch TEXT    NOT NULL CHECK (length(epoch) <= 64)
) STRICT;
`,
	// 5: what the agent keeps (memory, notes, schedules) and the history the
	// model sees: the sandbox is disposable, the daemon is the record.
	`
-- One row per remembered fact, note or schedule. Sealed under the session's
-- own key (not the content key), so erasing the session's key erases them
-- even before the trigger below runs. name_mac is a keyed MAC of the name
-- (lookups without unsealing; keyed so it confirms no guess). due is the next
-- firing of a schedule (NULL otherwise), kept clear so the scheduler can find
-- what is due without unsealing anything.
CREATE TABLE records (
	session_id TEXT    NOT NULL REFERENCES sessions (id),
	kind       TEXT    NOT NULL CHECK (kind IN ('memory', 'note', 'schedule')),
	name_mac   BLOB    NOT NULL CHECK (length(name_mac) = 32),
	sealed     BLOB    NOT NULL, -- sealed under the session key
	due        INTEGER,
	updated    INTEGER NOT NULL,
	CHECK ((kind = 'schedule') = (due IS NOT NULL)),
	PRIMARY KEY (session_id, kind, name_mac)
) STRICT, WITHOUT ROWID;

CREATE INDEX records_due ON records (due) WHERE due IS NOT NULL;

-- The conversation as the daemon recorded it: user messages and schedule
-- firings it wrote to the inbox, replies it accepted and delivered. seq is
-- the inbox row that carried the turn. Only the newest turns are kept.
CREATE TABLE history (
	session_id TEXT    NOT NULL REFERENCES sessions (id),
	seq        INTEGER NOT NULL CHECK (seq >= 1),
	sealed     BLOB    NOT NULL, -- sealed under the session key
	PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER records_erase AFTER UPDATE OF state ON sessions
	FOR EACH ROW WHEN NEW.state = 'erased'
BEGIN
	DELETE FROM records WHERE session_id = NEW.id;
	DELETE FROM history WHERE session_id = NEW.id;
END;
`,
	// 6: model tokens per session per UTC day (the proxy's daily budget),
	// so a daemon restart does not refill it. Only the current day is kept.
	`
CREATE TABLE model_tokens (
	session_id TEXT    NOT NULL REFERENCES sessions (id),
	day        TEXT    NOT NULL CHECK (length(day) = 10 AND day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
	tokens     INTEGER NOT NULL CHECK (tokens >= 0),
	PRIMARY KEY (session_id, day)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER model_tokens_erase AFTER UPDATE OF state ON sessions
	FOR EACH ROW WHEN NEW.state = 'erased'
BEGIN
	DELETE FROM model_tokens WHERE session_id = NEW.id;
END;
`,
	// 7: the console's operators are changed through the gateway too: a
	// change of kind "operators", like one of the rules, has no session.
	// SQLite cannot alter a CHECK, so the table is rebuilt (its erase
	// trigger, which names it, is dropped and made again around that).
	`
DROP TRIGGER change_requests_erase;

CREATE TABLE change_requests_v6 (
	id              TEXT    PRIMARY KEY
	                CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
	session_id      TEXT    REFERENCES sessions (id),
	kind            TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
	requester       TEXT    NOT NULL CHECK (length(requester) BETWEEN 1 AND 300),
	base_version    INTEGER NOT NULL CHECK (base_version >= 0),
	base            BLOB    NOT NULL, -- sealed
	proposed        BLOB    NOT NULL, -- sealed
	reason          BLOB    NOT NULL, -- sealed, untrusted text
	reasons         BLOB    NOT NULL, -- sealed, the policy's reasons
	binding         BLOB    NOT NULL CHECK (length(binding) = 32),
	-- Keyed MAC of the proposed text (dedupe lookups without unsealing;
	-- keyed so that it confirms no guess without the content key).
	proposed_mac    BLOB    NOT NULL CHECK (length(proposed_mac) = 32),
	created         INTEGER NOT NULL,
	state           TEXT    NOT NULL CHECK (state IN
	                ('pending', 'approved', 'denied', 'applied', 'stale', 'refused')),
	outcome         TEXT    NOT NULL CHECK (outcome IN ('deny', 'needs-human', 'auto-approve')),
	rule            TEXT    NOT NULL CHECK (length(rule) BETWEEN 1 AND 128),
	decided_by      TEXT,
	decided         INTEGER,
	note            BLOB,             -- sealed
	result          TEXT    NOT NULL DEFAULT '' CHECK (length(result) <= 512),
	applied_version INTEGER,
	CHECK ((session_id IS NULL) = (kind IN ('rules', 'operators')))
) STRICT;

INSERT INTO change_requests_v6 SELECT * FROM change_requests;
DROP TABLE change_requests;
ALTER TABLE change_requests_v6 RENAME TO change_requests;

CREATE INDEX change_requests_session ON change_requests (session_id, state, kind);
CREATE INDEX change_requests_created ON change_requests (created);
CREATE INDEX change_requests_dedupe ON change_requests (session_id, kind, base_version, proposed_mac)
	WHERE state = 'pending';

CREATE TRIGGER change_requests_erase AFTER UPDATE OF state ON sessions
	FOR EACH ROW WHEN NEW.state = 'erased'
BEGIN
	DELETE FROM change_requests WHERE session_id = NEW.id;
END;
`,
}
