// Package audit is IronClaw's audit log: an append-only, hash-chained, fsynced
// record of who did what, when, what was decided and what came of it.
//
// # What it must never hold
//
// The log holds metadata only. It must never contain message content,
// conversation text, change-request bodies, prompts, model output, keys,
// passphrases, tokens or anything derived from them that could be reversed.
// Callers pass identifiers (session ids, profile versions, diff hashes, rule
// names), never payloads. The log is deliberately not sealed: it exists so an
// operator can read and check it without unsealing anything, so anything
// written here is effectively public to whoever can read the state directory.
// As a backstop every field is capped at [MaxFieldLen] bytes and made
// terminal-safe (see [Record]); that limits damage, it does not make content
// acceptable.
//
// # Promises
//
//   - Durable before acknowledged: [Log.Append] returns only after the entry
//     has been written and fsynced. If the write or fsync fails, Append returns
//     an error (the caller must then fail the action) and the Log refuses every
//     later append until it is reopened (fail closed). Concurrent appenders
//     share fsyncs (group commit) through one committer goroutine that the Log
//     owns and [Log.Close] waits for.
//   - Tamper evident: every entry carries the SHA-256 of its own canonical
//     encoding, which includes the previous entry's hash. [Verify] and
//     [VerifyFile] name the first entry that is altered, missing, reordered or
//     not in canonical form. Truncating the tail is only detectable against an
//     [Anchor] the daemon keeps elsewhere ([Log.Head]). Anyone who can write
//     the file can append a correctly chained forgery; with a key
//     ([WithKey]) every entry also carries an HMAC and verification with the
//     key detects such out-of-band entries.
//   - Floods stay small: [Log.Refuse] writes the first of a run of identical
//     refusals at once (durably) and folds repeats within a short window into
//     one entry with a count.
//   - Never appends to a broken chain: [Open] verifies the whole file and
//     refuses to continue a chain that does not verify, telling the operator
//     to run `ironclaw audit verify`. The one thing it repairs is a torn final
//     line (a crash in the middle of a write, before the fsync that would have
//     acknowledged it): that line is cut off and the repair is itself logged as
//     an "audit.recovered" entry.
//
// # File format
//
// One JSON object per line (UTF-8, '\n' terminated, no other whitespace),
// fields in exactly this order:
//
//	{"seq":1,"time":"2026-01-02T15:04:05.000000000Z","actor":"operator:alice",
//	 "action":"profile.apply","subject":"session:abc","decision":"approved",
//	 "result":"ok","count":1,"prev":"<64 hex>","hash":"<64 hex>","mac":"<64 hex>"}
//
// (shown wrapped; on disk it is one line). seq starts at 1 and increases by
// one per line. time is UTC with exactly nine fractional digits. count is at
// least 1 (see [Log.Refuse]). prev, hash and mac are lowercase hex; prev of
// the first entry is 64 zeros (the genesis hash). "mac" is present on every
// entry when the log was written with a key and on none otherwise. A line is
// only valid if it is byte-for-byte the canonical encoding of the entry it
// decodes to (HTML characters are not escaped), so a changed byte anywhere,
// including in whitespace, key names or escapes, is detected.
//
// hash is SHA-256 over this length-prefixed binary encoding (all integers
// big-endian; str(x) is a uint32 byte length followed by the bytes):
//
//	"ironclaw-audit-v1" 0x00
//	uint64(seq)
//	str(time) str(actor) str(action) str(subject) str(decision) str(result)
//	uint64(count)
//	prev (32 raw bytes)
//
// where time is the exact string written in the line. mac is
// HMAC-SHA256(key, hash) over the 32 raw hash bytes. A binary encoding is used
// rather than "the JSON without the hash field" so the hash does not depend on
// the quirks of any JSON encoder.
package audit
