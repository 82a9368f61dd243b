// Package policy holds the deterministic rules of the change gateway: the
// checks every proposed change to an agent's profile must pass before a human
// — or, where the operator wrote a rule for it, that rule — may approve it.
//
// Evaluate decides in three steps:
//
//  1. Built-in invariants, written in Go, that no configuration can switch
//     off: only compiled-in tools, limits within the host's maxima, valid
//     Matrix contact ids, an offered model, a digest of an agent binary built
//     on this host, a kind that matches what actually changed, no no-ops.
//     Any failure denies, naming the invariant.
//  2. Operator deny rules, written in CEL, in config order: the first that
//     matches denies, naming the rule.
//  3. Operator auto-approve rules, in config order: the first that matches
//     approves, naming the rule. There are none unless the operator wrote
//     them, and they never apply to changes of the rules themselves or of the
//     agent binary ("rules", "software"): those always need a human.
//
// Anything else needs a human. A rule that fails to evaluate never approves
// and never silently passes: it sends the change to a human with the error.
//
// The package must never do I/O, read a clock, use randomness or keep state
// between calls: the same host facts, rules and change give the same Decision
// on every machine, every time, so that a decision can be recomputed and
// audited. CEL is configured to match: no time functions, no extensions, a
// cost limit on every rule and a per-rule check of the minimum cost at load.
package policy
