package policy

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// The operators kind: who may use the console. Its text is a set of SSH
// public keys, one authorized_keys line each ("type base64 comment", no
// options), sorted and without duplicates (CanonicalOperators). A change of
// it always needs a human operator: no rule can approve it, and it may not
// leave the console without operators.

// Invariants of an operators change.
const (
	InvOperatorsByOperator = "operators-by-operator"
	InvOperatorsNotEmpty   = "operators-not-empty"
	InvOperatorsCanonical  = "operators-canonical"
)

// CanonicalOperators parses an operators text and returns it in canonical
// form: each key as "type base64[ comment]\n", sorted, one line per key.
// Blank lines and '#' comments are dropped; a line with options or more than
// one key is refused.
func CanonicalOperators(text []byte) ([]byte, error) {
	seen := map[string]string{}
	for n, raw := range strings.Split(string(text), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pk, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
		switch {
		case err != nil:
			return nil, fmt.Errorf("operators line %d: not an SSH public key", n+1)
		case len(opts) > 0:
			return nil, fmt.Errorf("operators line %d: authorized_keys options are not honoured", n+1)
		case len(bytes.TrimSpace(rest)) > 0:
			return nil, fmt.Errorf("operators line %d: one key per line", n+1)
		}
		key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
		// A comment is a label: control characters go, and runs of
		// whitespace become one space, so the form parses back to itself.
		comment = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return ' '
			}
			return r
		}, comment)), " ")
		if _, dup := seen[key]; !dup || seen[key] == "" {
			seen[key] = comment
		}
	}
	lines := make([]string, 0, len(seen))
	for k, c := range seen {
		if c != "" {
			k += " " + c
		}
		lines = append(lines, k+"\n")
	}
	slices.Sort(lines)
	return []byte(strings.Join(lines, "")), nil
}

// EvaluateOperators decides an operators change: only an operator may ask,
// the proposed text must be canonical, not empty, and not the base; then a
// human decides. Operator rules are never consulted.
func EvaluateOperators(requester string, base, proposed []byte) Decision {
	deny := func(rule, why string) Decision {
		return Decision{Outcome: Deny, Rule: rule, Reasons: []string{why}}
	}
	if !IsOperator(requester) {
		return deny(InvOperatorsByOperator, "only an operator may change who the operators are")
	}
	canon, err := CanonicalOperators(proposed)
	if err != nil || !bytes.Equal(canon, proposed) {
		return deny(InvOperatorsCanonical, "the proposed operators are not in canonical form")
	}
	if len(canon) == 0 {
		return deny(InvOperatorsNotEmpty, "the console would have no operator left")
	}
	if bytes.Equal(canon, base) {
		return deny(InvNoOp, "the proposed operators are the current ones")
	}
	return undecided(KindOperators, nil)
}
