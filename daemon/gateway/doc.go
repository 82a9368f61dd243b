// Package gateway is the one way anything about an agent changes: its
// instructions, tools, agent binary, contacts, permissions, model or limits,
// and the operator rules that decide such changes. Every change request —
// from the agent's outbox, from an operator at the console or CLI, from a
// stranger on a chat channel asking to talk — passes through Submit, and is
// applied only by Approve (a human) or, where an operator rule says so, by
// that rule.
//
// The promise this package keeps: what is applied is byte-for-byte what was
// approved. Each request stores the exact canonical base and proposed texts
// (sealed) and a binding hash over them and the request id (store.ChangeBinding).
// The diff a human sees is computed here from those two texts; the approver
// passes back the binding hash of what they were shown, and the store applies
// the proposed bytes only if that hash, the stored binding and the hash of the
// stored bytes all agree and the base is still current — in the same
// transaction that writes the new version. A base that moved makes the
// request stale; it is never rebased.
//
// Every decision and its result reach the audit log (fsynced) before the
// caller hears of them; if the decision cannot be audited, nothing is applied.
// The audit log holds identifiers only (request ids, sessions, kinds, rule
// names, binding hashes), never request text.
//
// See docs/gateway.md for the whole flow, the limits (dedupe, pending cap,
// cool-down) and the crash-consistency story.
package gateway
