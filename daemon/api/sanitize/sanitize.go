// Package sanitize is the one sanitiser for every string that came from an
// agent, a chat, a profile or a config on its way to a terminal: the
// console, the command line, logs and the audit log.
//
// Nothing it returns can drive a terminal: C0 and C1 control characters,
// DEL (and so every escape sequence, which starts with one) and invalid
// UTF-8 are shown as \xNN; every other character that is invisible or
// reorders text — bidi controls, zero-width and other format characters,
// tag characters, line and paragraph separators — is shown as \uNNNN or
// \UNNNNNNNN and flagged, so a surface can warn that the text tried to hide
// something. It must never drop a character silently: what the operator sees
// stands for every byte that was there.
//
// It imports only the standard library, so tui/ can use it.
package sanitize

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Flags say which kinds of hidden or misleading characters a string held.
type Flags uint8

const (
	// Control: C0/C1 control characters or DEL (escape sequences start so).
	Control Flags = 1 << iota
	// Bidi: bidirectional controls (overrides, embeddings, isolates, marks)
	// that can make text read differently from what it is.
	Bidi
	// Invisible: zero-width and other format characters, and fillers that
	// render as nothing.
	Invisible
	// Tag: Unicode tag characters (U+E0000–U+E007F), invisible text.
	Tag
	// Separator: U+2028 LINE SEPARATOR or U+2029 PARAGRAPH SEPARATOR.
	Separator
	// InvalidUTF8: bytes that are not UTF-8.
	InvalidUTF8
)

// Suspicious are the flags that mean the text tried to hide or reorder
// something (as opposed to carrying a stray control character).
const Suspicious = Bidi | Invisible | Tag | Separator

var flagNames = []struct {
	f    Flags
	name string
}{
	{Control, "control characters"},
	{Bidi, "bidi controls"},
	{Invisible, "invisible characters"},
	{Tag, "tag characters"},
	{Separator, "line/paragraph separators"},
	{InvalidUTF8, "invalid UTF-8"},
}

// String names the flags, e.g. "bidi controls, tag characters".
func (f Flags) String() string {
	var parts []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ", ")
}

// mode says which whitespace survives.
type mode uint8

const (
	multiLine  mode = iota // \n and \t kept
	singleLine             // everything escaped
)

// Text makes s safe for a terminal, keeping newlines and tabs (for reasons,
// diffs, replies). Carriage returns are shown, never obeyed.
func Text(s string) string {
	out, _ := run(s, multiLine)
	return out
}

// Line makes s safe for a terminal on one line: newlines and tabs are shown
// as \x0a and \x09 too (for ids, names, table cells, log fields).
func Line(s string) string {
	out, _ := run(s, singleLine)
	return out
}

// Inspect is Text that also says what it found.
func Inspect(s string) (string, Flags) { return run(s, multiLine) }

// InspectLine is Line that also says what it found.
func InspectLine(s string) (string, Flags) { return run(s, singleLine) }

// classify returns the flag for r, or 0 if r may be shown as itself.
func classify(r rune, m mode) Flags {
	switch {
	case r == '\n' || r == '\t':
		if m == multiLine {
			return 0
		}
		return Control
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		return Control
	case r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
		return Bidi
	case r >= 0xe0000 && r <= 0xe007f:
		return Tag
	case r == 0x2028 || r == 0x2029:
		return Separator
	case r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0:
		// Hangul fillers are letters that render as nothing.
		return Invisible
	case r < 0xa0:
		return 0 // fast path for ASCII
	case unicode.In(r, unicode.Cf, unicode.Cc, unicode.Zl, unicode.Zp):
		// Every other format character (zero-width space and joiners, word
		// joiner, BOM, soft hyphen, invisible operators, …).
		return Invisible
	}
	return 0
}

func run(s string, m mode) (string, Flags) {
	// Fast path: most text is clean.
	clean := true
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || classify(r, m) != 0 {
			clean = false
			break
		}
		i += size
	}
	if clean {
		return s, 0
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	var flags Flags
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			flags |= InvalidUTF8
			writeHex(&b, `\x`, uint32(s[i]), 2)
			i++
			continue
		}
		f := classify(r, m)
		flags |= f
		switch {
		case f == 0:
			b.WriteString(s[i : i+size])
		case f == Control:
			writeHex(&b, `\x`, uint32(r), 2)
		case r <= 0xffff:
			writeHex(&b, `\u`, uint32(r), 4)
		default:
			writeHex(&b, `\U`, uint32(r), 8)
		}
		i += size
	}
	return b.String(), flags
}

func writeHex(b *strings.Builder, prefix string, v uint32, width int) {
	b.WriteString(prefix)
	h := strconv.FormatUint(uint64(v), 16)
	for range width - len(h) {
		b.WriteByte('0')
	}
	b.WriteString(h)
}

// Unsafe reports whether r would be escaped on one line (Line): the test
// for encoders that escape in their own syntax, such as JSON's \uXXXX.
func Unsafe(r rune) bool { return classify(r, singleLine) != 0 }
