// Package store is the daemon's own database: sessions and their wrapped
// keys, profile versions, queue cursors, delivery intents and the audit
// anchor. It lives on the host only, in the state directory, and is opened by
// the daemon alone; no sandbox ever sees it.
//
// Durability matters more than speed here: a cursor or a delivery intent that
// is lost in a crash means a message delivered twice or never. The database
// runs in WAL mode with synchronous=FULL, so every committed transaction
// survives power loss.
//
// Conversation content (profile texts, later change-request text) is sealed
// with secretbox under a daemon subkey before it reaches SQLite, and the
// sealed plaintext names the table, session and version it belongs to, so a
// value copied to another row never opens. Metadata (ids, states, sequence
// numbers, times) stays plain so the daemon can index and check it.
//
// Erasing a session is crypto-erase: its wrapped key is overwritten (with
// secure_delete on, the freed bytes are zeroed) and the WAL is checkpointed
// and truncated, so the key leaves every file this package writes.
//
// This package must never store conversation content unsealed, never log or
// return in an error a key, a wrapped key or sealed content, and never let
// a session id be reused: erased sessions keep their row.
package store
