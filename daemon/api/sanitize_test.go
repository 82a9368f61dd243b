package api

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	for _, c := range []struct {
		in, want string
		flags    TextFlags
	}{
		{"plain\ttext\n", "plain\ttext\n", 0},
		{"héllo wörld ✓ 日本", "héllo wörld ✓ 日本", 0},
		{"\x1b[31mred", `\x1b[31mred`, FlagControl},
		{"\x1b]0;PWNED\a", `\x1b]0;PWNED\x07`, FlagControl},
		{"cr\rover", `cr\x0dover`, FlagControl},
		{"bidi \u202eevil", `bidi \u202eevil`, FlagBidi},
		{"c1 \u009bcontrol", `c1 \x9bcontrol`, FlagControl},
		{"isolate \u2066x\u2069", `isolate \u2066x\u2069`, FlagBidi},
		{"bell\a and del\x7f", `bell\x07 and del\x7f`, FlagControl},
		{"zw\u200bsp\u200d\ufeff", `zw\u200bsp\u200d\ufeff`, FlagInvisible},
		{"tag\U000e0041\U000e007f", `tag\U000e0041\U000e007f`, FlagTag},
		{"ls\u2028ps\u2029", `ls\u2028ps\u2029`, FlagSeparator},
		{"bad\xff\xfe", `bad\xff\xfe`, FlagInvalidUTF8},
		{"filler\u3164", `filler\u3164`, FlagInvisible},
		{"soft\u00adhyphen", `soft\u00adhyphen`, FlagInvisible},
	} {
		got, flags := InspectText(c.in)
		if got != c.want || flags != c.flags {
			t.Errorf("InspectText(%q) = %q, %v; want %q, %v", c.in, got, flags, c.want, c.flags)
		}
	}
}

func TestLine(t *testing.T) {
	if got := SanitizeLine("a\nb\tc"); got != `a\x0ab\x09c` {
		t.Fatalf("Line kept whitespace: %q", got)
	}
}

func TestFlagsString(t *testing.T) {
	if s := (FlagBidi | FlagTag).String(); s != "bidi controls, tag characters" {
		t.Fatal(s)
	}
}

// safe checks the promise: nothing in out can drive a terminal or hide.
func safe(t *testing.T, in, out string, keepWS bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("output is not UTF-8: %q -> %q", in, out)
	}
	for _, r := range out {
		if keepWS && (r == '\n' || r == '\t') {
			continue
		}
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) || (r >= 0xe0000 && r <= 0xe007f) || r == 0x3164 || r == 0x115f || r == 0x1160 || r == 0xffa0 {
			t.Fatalf("%U survived: %q -> %q", r, in, out)
		}
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[2J\x1b]8;;http://x\a", "\u202e\u2066\u200b\U000e0041\u2028", "\xff\xc0\x80", "\r\n\t", "日本\u0085"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, flags := InspectText(in)
		safe(t, in, out, true)
		line, lflags := InspectLine(in)
		safe(t, in, line, false)
		if strings.ContainsAny(line, "\n\t") {
			t.Fatalf("Line kept whitespace: %q", line)
		}
		if flags&^FlagControl != lflags&^FlagControl {
			t.Fatalf("Text and Line disagree: %v vs %v", flags, lflags)
		}
		// Clean text is returned unchanged, and anything changed is flagged.
		if (out == in) != (flags == 0) {
			t.Fatalf("changed=%v but flags=%v for %q", out != in, flags, in)
		}
		// Idempotent on its own output: everything it writes is printable ASCII or kept text.
		if again := SanitizeText(out); again != out {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}

func BenchmarkTextClean(b *testing.B) {
	s := strings.Repeat("a plain line of a profile diff\n", 100)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		SanitizeText(s)
	}
}
