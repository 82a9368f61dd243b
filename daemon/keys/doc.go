// Package keys holds the daemon's master key and the per-session keys it
// wraps. It is what keeps promise 3 ("data stays sealed"): every sealed byte
// on disk is under a random per-session key, and each session key is stored
// only wrapped (XChaCha20-Poly1305) under a key derived from the master key.
//
// The master key comes from one of three custodies (see docs/keys.md for what
// each one protects against):
//
//   - a key file of exactly 32 raw bytes, mode 0600, kept outside the state
//     directory;
//   - a passphrase stretched with Argon2id (parameters and salt in
//     master.kdf in the state directory);
//   - a systemd credential, read from $CREDENTIALS_DIRECTORY.
//
// The state directory gets master.check, an AEAD seal of a constant under a
// key derived from the master, so that a wrong key is refused at start with
// a clear error instead of being used to seal new data next to old data it
// cannot open.
//
// The master key is never used directly: the wrapping key, the check key and
// every [Master.SubKey] are separate HKDF-SHA256 derivations with distinct
// labels.
//
// This package must never log, print, or return in an error any key bytes,
// and never read or put a key or passphrase in argv or the environment.
// ([Master] prints as "keys.Master(redacted)".) The only environment
// variable it reads is CREDENTIALS_DIRECTORY, which is a path, not a secret.
package keys
