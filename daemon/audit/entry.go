package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// MaxFieldLen is the most bytes any text field of an entry may hold. Fields
// are identifiers and short verdicts, never content; the cap keeps a hostile
// subject from bloating the log or hiding a payload in it.
const MaxFieldLen = 512

// Decisions used by this package. Callers may use their own words for other
// decisions; these exist so refusals read the same everywhere.
const (
	DecisionDeny = "deny"
)

// ActionRecovered is the action of the entry Open writes after cutting off a
// torn final line. Actions starting with "audit." are reserved for the log
// itself so a caller cannot forge one.
const ActionRecovered = "audit.recovered"

const (
	hashDomain   = "ironclaw-audit-v1\x00"
	timeLayout   = "2006-01-02T15:04:05.000000000Z" // bare Z is a literal here
	reservedPref = "audit."
	truncMark    = "…"
)

// Record is what a caller asks to be logged. Every field is metadata: who
// (Actor, e.g. "operator:alice", "session:7f3a"), what (Action, e.g.
// "change.approve"), on what (Subject, e.g. a profile version or diff hash),
// the gateway's Decision and the Result of carrying it out. Never put message
// content or key material in any field.
//
// Fields are made safe rather than rejected so that logging can never be made
// to fail by odd input: the one terminal sanitiser (daemon/api/sanitize.go)
// shows invalid UTF-8 bytes and control characters as \xNN, and format
// (including bidi overrides) and line/paragraph separator characters as
// \uNNNN or \UNNNNNNNN; and a field longer than MaxFieldLen is cut at a
// character boundary and ends in "…". Actor and Action must be non-empty and
// Action must not start with "audit.".
type Record struct {
	Actor    string
	Action   string
	Subject  string
	Decision string
	Result   string
}

// Entry is one line of the log as written.
type Entry struct {
	Seq      uint64
	Time     time.Time // UTC
	Actor    string
	Action   string
	Subject  string
	Decision string
	Result   string
	Count    uint64 // identical refusals this entry stands for; 1 unless aggregated
	Prev     [32]byte
	Hash     [32]byte
	MAC      []byte // HMAC-SHA256(key, Hash); nil when the log has no key
}

// wireEntry fixes the field order and names of the JSON line. encoding/json
// writes struct fields in declaration order, which is what makes the
// encoding canonical.
type wireEntry struct {
	Seq      uint64 `json:"seq"`
	Time     string `json:"time"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Subject  string `json:"subject"`
	Decision string `json:"decision"`
	Result   string `json:"result"`
	Count    uint64 `json:"count"`
	Prev     string `json:"prev"`
	Hash     string `json:"hash"`
	MAC      string `json:"mac,omitempty"`
}

// sanitize makes s safe for the log with the one terminal sanitiser
// (control, format and separator characters and invalid bytes shown as
// escapes), then caps it at MaxFieldLen bytes.
func sanitize(s string) string {
	out := api.SanitizeLine(s)
	if len(out) <= MaxFieldLen {
		return out
	}
	cut := MaxFieldLen - len(truncMark)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + truncMark
}

// allowedRune is what verification accepts in a field (entries written by
// any version of sanitize pass it).
func allowedRune(r rune) bool {
	return !unicode.IsControl(r) && !unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// isClean reports whether s is valid UTF-8 without disallowed characters.
func isClean(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !allowedRune(r) {
			return false
		}
		i += size
	}
	return true
}

// prepare validates and sanitizes a caller's record.
func prepare(r Record, internal bool) (Record, error) {
	r = Record{
		Actor:    sanitize(r.Actor),
		Action:   sanitize(r.Action),
		Subject:  sanitize(r.Subject),
		Decision: sanitize(r.Decision),
		Result:   sanitize(r.Result),
	}
	if r.Actor == "" {
		return r, errors.New("audit: record has no actor")
	}
	if r.Action == "" {
		return r, errors.New("audit: record has no action")
	}
	if !internal && strings.HasPrefix(r.Action, reservedPref) {
		return r, fmt.Errorf("audit: action %q is reserved for the audit log itself", r.Action)
	}
	return r, nil
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// computeHash returns SHA-256 over the entry's canonical binary encoding (see
// the package documentation); the Hash and MAC fields are not part of it.
func (e *Entry) computeHash() [32]byte {
	ts := formatTime(e.Time)
	fields := [...]string{ts, e.Actor, e.Action, e.Subject, e.Decision, e.Result}
	n := len(hashDomain) + 8 + 8 + 32
	for _, f := range fields {
		n += 4 + len(f)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, hashDomain...)
	buf = binary.BigEndian.AppendUint64(buf, e.Seq)
	for _, f := range fields {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(f)))
		buf = append(buf, f...)
	}
	buf = binary.BigEndian.AppendUint64(buf, e.Count)
	buf = append(buf, e.Prev[:]...)
	return sha256.Sum256(buf)
}

func computeMAC(key []byte, hash [32]byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(hash[:])
	return m.Sum(nil)
}

// marshal returns the entry's canonical JSON line, including the '\n'.
func (e *Entry) marshal() ([]byte, error) {
	w := wireEntry{
		Seq:      e.Seq,
		Time:     formatTime(e.Time),
		Actor:    e.Actor,
		Action:   e.Action,
		Subject:  e.Subject,
		Decision: e.Decision,
		Result:   e.Result,
		Count:    e.Count,
		Prev:     hex.EncodeToString(e.Prev[:]),
		Hash:     hex.EncodeToString(e.Hash[:]),
	}
	if e.MAC != nil {
		w.MAC = hex.EncodeToString(e.MAC)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Keep <, > and & readable; escaping is fixed either way, this just
	// picks the human-friendly one.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("audit: encode entry %d: %w", e.Seq, err)
	}
	return buf.Bytes(), nil // Encode ends the line with '\n'
}

// parseLine decodes one line (with its '\n') and checks that it is the
// canonical encoding of what it decodes to. It returns a reason on failure.
func parseLine(line []byte) (Entry, string) {
	var w wireEntry
	if err := json.Unmarshal(line, &w); err != nil {
		return Entry{}, "not a valid JSON entry: " + err.Error()
	}
	var e Entry
	t, err := time.Parse(timeLayout, w.Time)
	if err != nil {
		return Entry{}, "time is not a UTC timestamp with nine fractional digits"
	}
	e.Seq, e.Time, e.Count = w.Seq, t, w.Count
	e.Actor, e.Action, e.Subject, e.Decision, e.Result = w.Actor, w.Action, w.Subject, w.Decision, w.Result
	if !decodeHash(w.Prev, &e.Prev) {
		return Entry{}, "prev is not 64 hex digits"
	}
	if !decodeHash(w.Hash, &e.Hash) {
		return Entry{}, "hash is not 64 hex digits"
	}
	if w.MAC != "" {
		var m [32]byte
		if !decodeHash(w.MAC, &m) {
			return Entry{}, "mac is not 64 hex digits"
		}
		e.MAC = m[:]
	}
	canon, err := e.marshal()
	if err != nil || !bytes.Equal(canon, line) {
		return Entry{}, "line is not in canonical form (a field, its order, spacing or escaping was altered)"
	}
	return e, ""
}

func decodeHash(s string, dst *[32]byte) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err == nil
}

// checkFields enforces on read what Append enforces on write, so a verified
// log is always safe to print.
func (e *Entry) checkFields() string {
	for _, f := range [...]struct{ name, v string }{
		{"actor", e.Actor}, {"action", e.Action}, {"subject", e.Subject},
		{"decision", e.Decision}, {"result", e.Result},
	} {
		if len(f.v) > MaxFieldLen {
			return fmt.Sprintf("%s is longer than %d bytes", f.name, MaxFieldLen)
		}
		if !isClean(f.v) {
			return f.name + " contains control, format or invalid characters"
		}
	}
	if e.Actor == "" || e.Action == "" {
		return "actor or action is empty"
	}
	if e.Count == 0 {
		return "count is 0"
	}
	return ""
}
