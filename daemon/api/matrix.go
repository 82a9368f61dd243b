package api

import "context"

// MatrixDevices is the Matrix channel's device view: the bot's own device
// and whether it is cross-signed, and the devices of everyone the bot talks
// to with the trust the bot gives each. It holds no key material beyond
// public fingerprints. Every name and id in it came from a homeserver or a
// user: untrusted text.
type MatrixDevices struct {
	// Enabled is false when the daemon has no Matrix channel running (no
	// [matrix] section, or not connected yet); nothing else is set then.
	Enabled bool   `json:"enabled"`
	Bot     Device `json:"bot"`
	// CrossSigned is true when the bot's device is signed by its account's
	// self-signing key.
	CrossSigned bool `json:"cross_signed"`
	// BackupVersion is the server-side key backup the bot writes to ("" for none).
	BackupVersion string   `json:"backup_version"`
	Senders       []Device `json:"senders"`
}

// Device is one Matrix device.
type Device struct {
	User   string `json:"user"`
	Device string `json:"device"`
	Name   string `json:"name"`
	// Fingerprint is the device's public ed25519 key, grouped for reading aloud.
	Fingerprint string `json:"fingerprint"`
	// Trust is "verified", "cross-signed-verified", "cross-signed-tofu",
	// "cross-signed-untrusted", "unverified", "blacklisted" or "" (unknown).
	Trust string `json:"trust"`
}

// Matrix reads the Matrix channel's state.
type Matrix interface {
	// MatrixDevices is the bot's device, its trust state and the senders'
	// devices. Read-only; with no Matrix channel it returns Enabled false.
	MatrixDevices(ctx context.Context) (MatrixDevices, error)
}
