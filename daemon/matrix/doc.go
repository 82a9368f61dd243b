// Package matrix is IronClaw's Matrix channel: people talk to the assistant
// from any Matrix client, end-to-end encrypted, and each message is handed to
// its conversation's agent exactly once, and each reply delivered exactly
// once, across crashes of the daemon.
//
// One room is one session (binding "matrix:<room id>"). Only the owners named
// in the config may open conversations; anyone else — an invite, a message,
// a member joining — becomes an "add contact" change request for the
// session (daemon/gateway), and until it is approved nothing of theirs
// reaches a sandbox and the bot says nothing in a room that holds them.
//
// Encryption is mautrix's crypto helper built with the pure-Go goolm tag.
// Its store (state_dir/matrix/crypto.db, a pure-Go SQLite) pickles every
// Olm and Megolm secret under a pickle key derived from the master key and
// never written down; the bot's access token, recovery key and key-backup
// key are sealed in the daemon's store. A copied state directory yields no
// key and no message text.
//
// Exactly once (docs/matrix.md): the channel runs its own sync loop; the
// events of a batch are recorded (sealed, deduplicated by event id) in the
// same store transaction that moves the sync token, so a crash mid-batch
// replays the batch instead of losing it. A hand-off into an inbox is
// recorded before and after; after a crash in between, the inbox is read
// back to learn whether the message got in. Replies come from the store's
// delivery intents, are sent under transaction ids derived from session and
// outbox sequence, and a reply that may have gone out before a crash is
// looked for in the room before it is sent again.
//
// This package must never log or audit message text or key material, never
// send plaintext into an encrypted room, never take the destination of a
// reply from anything but the session's binding, and never decide a change
// request (approvals happen only in the console).
package matrix
