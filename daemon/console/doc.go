// Package console is the operator's SSH console: a wish (v2) SSH server that
// serves the Bubble Tea console (tui/) and a few read-only commands for
// scripts (`ssh -p 2222 127.0.0.1 approvals --json`).
//
// Who gets in: only a connection whose authenticating SSH public key is an
// operator key (the state directory's operators file, console.operator_keys
// and console.operator_keys_file). The key's SHA256 fingerprint is the
// operator's identity, "operator:SHA256:<fp>": the approver recorded in the
// audit log, taken from the key that authenticated, never from anything the
// client says. Any other key gets nothing, not even a banner.
//
// What it must never do: listen on a public or wildcard address (loopback by
// default, or only the tailnet node); accept anything but a session channel
// with a pty or a command — no agent, port or X11 forwarding, no
// subsystems, no environment but TERM; let a client try keys without limit
// (failures are rate limited per source address); keep an idle connection
// open forever (an open console is idle when its operator types nothing,
// however busy its screen: idle.go).
package console
