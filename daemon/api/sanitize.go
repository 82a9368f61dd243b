// The one sanitiser for every string that came from an
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
// It lives in package api (standard library only) so that tui/, which may
// import nothing under daemon/ but the api, uses the same one.

package api

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TextFlags say which kinds of hidden or misleading characters a string held.
type TextFlags uint8

const (
	// FlagControl: C0/C1 control characters or DEL (escape sequences start so).
	FlagControl TextFlags = 1 << iota
	// FlagBidi: bidirectional controls (overrides, embeddings, isolates, marks)
	// that can make text read differently from what it is.
	FlagBidi
	// FlagInvisible: zero-width and other format characters, and fillers that
	// render as nothing.
	FlagInvisible
	// FlagTag: Unicode tag characters (U+E0000–U+E007F), invisible text.
	FlagTag
	// FlagSeparator: U+2028 LINE SEPARATOR or U+2029 PARAGRAPH SEPARATOR.
	FlagSeparator
	// FlagInvalidUTF8: bytes that are not UTF-8.
	FlagInvalidUTF8
)

// FlagsSuspicious are the flags that mean the text tried to hide or reorder
// something (as opposed to carrying a stray control character).
const FlagsSuspicious = FlagBidi | FlagInvisible | FlagTag | FlagSeparator

var flagNames = []struct {
	f    TextFlags
	name string
}{
	{FlagControl, "control characters"},
	{FlagBidi, "bidi controls"},
	{FlagInvisible, "invisible characters"},
	{FlagTag, "tag characters"},
	{FlagSeparator, "line/paragraph separators"},
	{FlagInvalidUTF8, "invalid UTF-8"},
}

// String names the flags, e.g. "bidi controls, tag characters".
func (f TextFlags) String() string {
	var parts []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ", ")
}

// sanitizeMode says which whitespace survives.
type sanitizeMode uint8

const (
	multiLine  sanitizeMode = iota // \n and \t kept
	singleLine                     // everything escaped
)

// Text makes s safe for a terminal, keeping newlines and tabs (for reasons,
// diffs, replies). Carriage returns are shown, never obeyed.
func SanitizeText(s string) string {
	out, _ := sanitizeRun(s, multiLine)
	return out
}

// Line makes s safe for a terminal on one line: newlines and tabs are shown
// as \x0a and \x09 too (for ids, names, table cells, log fields).
func SanitizeLine(s string) string {
	out, _ := sanitizeRun(s, singleLine)
	return out
}

// Inspect is Text that also says what it found.
func InspectText(s string) (string, TextFlags) { return sanitizeRun(s, multiLine) }

// InspectLine is Line that also says what it found.
func InspectLine(s string) (string, TextFlags) { return sanitizeRun(s, singleLine) }

// classifyRune returns the flag for r, or 0 if r may be shown as itself.
func classifyRune(r rune, m sanitizeMode) TextFlags {
	switch {
	case r == '\n' || r == '\t':
		if m == multiLine {
			return 0
		}
		return FlagControl
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		return FlagControl
	case r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
		return FlagBidi
	case r >= 0xe0000 && r <= 0xe007f:
		return FlagTag
	case r == 0x2028 || r == 0x2029:
		return FlagSeparator
	case r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0:
		// Hangul fillers are letters that render as nothing.
		return FlagInvisible
	case r < 0xa0:
		return 0 // fast path for ASCII
	case unicode.In(r, unicode.Cf, unicode.Cc, unicode.Zl, unicode.Zp):
		// Every other format character (zero-width space and joiners, word
		// joiner, BOM, soft hyphen, invisible operators, …).
		return FlagInvisible
	}
	return 0
}

func sanitizeRun(s string, m sanitizeMode) (string, TextFlags) {
	// Fast path: most text is clean.
	clean := true
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || classifyRune(r, m) != 0 {
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
	var flags TextFlags
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			flags |= FlagInvalidUTF8
			writeHexEscape(&b, `\x`, uint32(s[i]), 2)
			i++
			continue
		}
		f := classifyRune(r, m)
		flags |= f
		switch {
		case f == 0:
			b.WriteString(s[i : i+size])
		case f == FlagControl:
			writeHexEscape(&b, `\x`, uint32(r), 2)
		case r <= 0xffff:
			writeHexEscape(&b, `\u`, uint32(r), 4)
		default:
			writeHexEscape(&b, `\U`, uint32(r), 8)
		}
		i += size
	}
	return b.String(), flags
}

func writeHexEscape(b *strings.Builder, prefix string, v uint32, width int) {
	b.WriteString(prefix)
	h := strconv.FormatUint(uint64(v), 16)
	for range width - len(h) {
		b.WriteByte('0')
	}
	b.WriteString(h)
}

// Unsafe reports whether r would be escaped on one line (Line): the test
// for encoders that escape in their own syntax, such as JSON's \uXXXX.
func UnsafeRune(r rune) bool { return classifyRune(r, singleLine) != 0 }
