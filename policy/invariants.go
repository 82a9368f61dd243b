package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

// Names of the built-in invariants. They are stable: deny messages, audit
// entries and tests refer to them, and operator rules may not reuse them.
const (
	InvUnknownKind      = "unknown-kind"
	InvRequester        = "requester"
	InvNoOp             = "no-op"
	InvKindMismatch     = "kind-mismatch"
	InvProfileSize      = "profile-size"
	InvInstructionsSize = "instructions-size"
	InvInstructionsUTF8 = "instructions-utf8"
	InvTools            = "compiled-in-tools"
	InvLimits           = "limits-bounds"
	InvContacts         = "contact-ids"
	InvModel            = "model-offered"
	InvAgentDigest      = "agent-digest"
	InvRules            = "rules-load"
)

// Invariants returns the invariant names in the order they are checked; the
// first that fails names a Deny.
func Invariants() []string {
	return []string{InvUnknownKind, InvRequester, InvNoOp, InvKindMismatch,
		InvProfileSize, InvInstructionsSize, InvInstructionsUTF8, InvTools,
		InvLimits, InvContacts, InvModel, InvAgentDigest, InvRules}
}

type failure struct{ rule, reason string }

// checkInvariants returns every failed invariant, in Invariants() order.
// They check the whole proposed profile, not only the changed field: what
// is approved is applied whole, so it must be valid whole — even if the host
// tightened a maximum since the base was approved.
func checkInvariants(h Host, c Change, fields []string) []failure {
	var fs []failure
	fail := func(rule, format string, args ...any) {
		fs = append(fs, failure{rule, fmt.Sprintf(format, args...)})
	}
	p := c.Proposed

	field, known := kindField[c.Kind]
	if !known {
		fail(InvUnknownKind, "kind %s is not one of %s", q(c.Kind), strings.Join(Kinds(), ", "))
	}
	if err := checkRequester(c.Requester); err != nil {
		fail(InvRequester, "%v", err)
	}
	switch {
	case len(fields) == 0:
		fail(InvNoOp, "the proposed version changes nothing")
	case known && (len(fields) != 1 || fields[0] != field):
		fail(InvKindMismatch, "a %q change may change only %s, but this one changes %s",
			c.Kind, field, strings.Join(fields, ", "))
	}

	if n := len(p.Canonical()); n > profile.MaxCanonicalSize {
		fail(InvProfileSize, "the canonical profile is %d bytes, over the %d-byte limit", n, profile.MaxCanonicalSize)
	}
	if n := len(p.Instructions); n > h.MaxInstructionsBytes {
		fail(InvInstructionsSize, "instructions are %d bytes, over the host's %d", n, h.MaxInstructionsBytes)
	}
	if !utf8.ValidString(p.Instructions) {
		// The model sees JSON, which would silently replace the bad
		// bytes: the agent would run text other than the approved one.
		fail(InvInstructionsUTF8, "instructions are not valid UTF-8")
	}
	for _, t := range p.Tools {
		if !slices.Contains(h.Tools, t) {
			fail(InvTools, "tool %s is not compiled in", q(t))
		}
	}
	for _, l := range limits(p.Limits, h) {
		switch {
		case l.v <= 0:
			fail(InvLimits, "limit %s = %d: must be above 0", l.name, l.v)
		case l.v > l.max:
			fail(InvLimits, "limit %s = %d: over the host maximum %d", l.name, l.v, l.max)
		}
	}
	for _, id := range p.Contacts {
		if err := CheckMatrixUserID(id); err != nil {
			fail(InvContacts, "contact: %v", err)
		}
	}
	if !slices.Contains(h.Models, p.Model) {
		fail(InvModel, "model %s is not offered by this host", q(p.Model))
	}
	switch {
	case !isDigest(p.AgentDigest):
		fail(InvAgentDigest, "agent digest %s is not sha256: and 64 lower-case hex digits", q(p.AgentDigest))
	case !slices.Contains(h.BuiltDigests, p.AgentDigest):
		fail(InvAgentDigest, "agent digest %s was not built on this host", p.AgentDigest)
	}
	if c.Kind == KindRules {
		if _, err := LoadRules(c.ProposedRules); err != nil {
			fail(InvRules, "the proposed rules do not load: %v", err)
		}
	}
	return fs
}

// q quotes an untrusted value for a reason: Go-quoted so that no control
// character reaches a log or terminal, and cut short so that a 200 KiB tool
// name cannot flood the audit log.
func q(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return strconv.Quote(s)
}

type limit struct {
	name   string
	v, max int64
}

// limits pairs each limit with the host's maximum, named as in the
// canonical rendering.
func limits(l profile.Limits, h Host) []limit {
	return []limit{
		{"memory_mib", l.MemoryMiB, h.MaxMemoryMiB},
		{"cpu_millis", l.CPUMillis, h.MaxCPUMillis},
		{"tmp_mib", l.TmpMiB, h.MaxTmpMiB},
		{"outbox_mib", l.OutboxMiB, h.MaxOutboxMiB},
		{"outbox_inodes", l.OutboxInodes, h.MaxOutboxInodes},
		{"tokens_per_day", l.TokensPerDay, h.MaxTokensPerDay},
		{"calls_per_minute", l.CallsPerMinute, h.MaxCallsPerMinute},
	}
}

func isDigest(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range []byte(hex) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckRequester reports whether r is one of the requester forms a change
// may name: "agent:<session id>", "operator:SHA256:<ssh key fingerprint>",
// "operator:local:<unix user>" or "channel:<matrix user id>". The gateway
// also uses it to check the actor of an approval.
func CheckRequester(r string) error { return checkRequester(r) }

// IsOperator reports whether r is a well-formed operator identity (either
// operator form of CheckRequester).
func IsOperator(r string) bool {
	return strings.HasPrefix(r, "operator:") && checkRequester(r) == nil
}

// MaxLocalUserLength caps the unix user name in "operator:local:<user>".
const MaxLocalUserLength = 32

// checkRequester accepts exactly the requester forms. The session id form is
// that of wire.SessionID (32 lower-case hex digits); the operator forms are
// OpenSSH's SHA256 fingerprint (the console) and a local unix user name or
// numeric uid taken from the admin socket's peer credentials (the CLI).
func checkRequester(r string) error {
	kind, id, _ := strings.Cut(r, ":")
	switch kind {
	case "agent":
		if len(id) == 32 && isLowerHex(id) {
			return nil
		}
		return fmt.Errorf("requester %s: want agent:<32 lower-case hex digits>", q(r))
	case "operator":
		if fp, ok := strings.CutPrefix(id, "SHA256:"); ok && len(fp) == 43 && isBase64Raw(fp) {
			return nil
		}
		if user, ok := strings.CutPrefix(id, "local:"); ok && isUnixUser(user) {
			return nil
		}
		return fmt.Errorf("requester %s: want operator:SHA256:<43 base64 characters> or operator:local:<unix user>", q(r))
	case "channel":
		if err := CheckMatrixUserID(id); err != nil {
			return fmt.Errorf("requester: %w", err)
		}
		return nil
	}
	return fmt.Errorf("requester %s: want agent:, operator: or channel:", q(r))
}

// isUnixUser accepts a POSIX portable user name (or a numeric uid): 1 to
// MaxLocalUserLength of A-Z a-z 0-9 . _ -, not starting with "-".
func isUnixUser(s string) bool {
	if s == "" || len(s) > MaxLocalUserLength || s[0] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isBase64Raw(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// MaxMatrixUserIDLength is the Matrix spec's cap on a user id, sigil and
// server name included.
const MaxMatrixUserIDLength = 255

// CheckMatrixUserID accepts a Matrix user id as the spec defines one
// (https://spec.matrix.org/latest/appendices/#user-identifiers):
// "@" localpart ":" server_name, at most 255 bytes, the localpart one or
// more of a-z 0-9 . _ = - / +, the server name a DNS name, IPv4 address or
// bracketed IPv6 address with an optional port. The historical wider
// localpart grammar is refused: an allowlist should name today's ids only.
func CheckMatrixUserID(id string) error {
	if len(id) > MaxMatrixUserIDLength {
		return fmt.Errorf("matrix id %s is %d bytes, over %d", q(id), len(id), MaxMatrixUserIDLength)
	}
	rest, ok := strings.CutPrefix(id, "@")
	if !ok {
		return fmt.Errorf("matrix id %s does not start with @", q(id))
	}
	local, server, ok := strings.Cut(rest, ":")
	if !ok {
		return fmt.Errorf("matrix id %s has no :server", q(id))
	}
	if local == "" {
		return fmt.Errorf("matrix id %s has an empty localpart", q(id))
	}
	for _, c := range []byte(local) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("._=-/+", c) >= 0) {
			return fmt.Errorf("matrix id %s: localpart may hold only a-z 0-9 . _ = - / +", q(id))
		}
	}
	if err := checkServerName(server); err != nil {
		return fmt.Errorf("matrix id %s: %w", q(id), err)
	}
	return nil
}

func checkServerName(s string) error {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("server name: unclosed [")
		}
		host, port = s[1:end], s[end+1:]
		if len(host) < 2 || len(host) > 45 {
			return fmt.Errorf("server name: IPv6 address of bad length")
		}
		for _, c := range []byte(host) {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.') {
				return fmt.Errorf("server name: bad character in IPv6 address")
			}
		}
	} else {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i:]
		}
		if host == "" || len(host) > 255 {
			return fmt.Errorf("server name: empty or too long host")
		}
		for _, c := range []byte(host) {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '.') {
				return fmt.Errorf("server name: host may hold only letters, digits, - and .")
			}
		}
	}
	if port == "" {
		return nil
	}
	digits, ok := strings.CutPrefix(port, ":")
	if !ok || digits == "" || len(digits) > 5 {
		return fmt.Errorf("server name: bad port")
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return fmt.Errorf("server name: bad port")
		}
	}
	return nil
}
