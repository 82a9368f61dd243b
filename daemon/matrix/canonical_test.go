package matrix

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func TestCanonicalContent(t *testing.T) {
	for _, c := range []struct {
		name, typ, content string
		kind, text, reason string
	}{
		{"text", "m.room.message", `{"msgtype":"m.text","body":"  hello  "}`, kindMessage, "hello", ""},
		{"html ignored", "m.room.message", `{"msgtype":"m.text","body":"plain","format":"org.matrix.custom.html","formatted_body":"<img src=x onerror=alert(1)>"}`, kindMessage, "plain", ""},
		{"notice", "m.room.message", `{"msgtype":"m.notice","body":"n"}`, kindMessage, "(notice) n", ""},
		{"emote", "m.room.message", `{"msgtype":"m.emote","body":"waves"}`, kindMessage, "(emote) waves", ""},
		{"edit", "m.room.message", `{"msgtype":"m.text","body":"* new","m.new_content":{"msgtype":"m.text","body":"new"},"m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`, kindMessage, "(edited an earlier message) new", ""},
		{"edit without new content", "m.room.message", `{"msgtype":"m.text","body":"* new","m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`, kindRefuse, "", "edit"},
		{"reply fallback stripped", "m.room.message", `{"msgtype":"m.text","body":"> <@a:b> quoted\n> more\n\nmy answer","m.relates_to":{"m.in_reply_to":{"event_id":"$x"}}}`, kindMessage, "(in reply to an earlier message) my answer", ""},
		{"controls and bidi removed", "m.room.message", `{"msgtype":"m.text","body":"a\u0007b\u202ec\r\nd"}`, kindMessage, "abc\nd", ""},
		{"image", "m.room.message", `{"msgtype":"m.image","body":"x.png","url":"mxc://a/b"}`, kindRefuse, "", "images"},
		{"unknown msgtype", "m.room.message", `{"msgtype":"org.evil","body":"x"}`, kindRefuse, "", "text"},
		{"no msgtype", "m.room.message", `{"body":"x"}`, kindRefuse, "", "text"},
		{"empty", "m.room.message", `{"msgtype":"m.text","body":" \u200e "}`, kindRefuse, "", "empty"},
		{"malformed", "m.room.message", `{"msgtype":`, kindRefuse, "", "malformed"},
		{"wrong types", "m.room.message", `{"msgtype":1,"body":[]}`, kindRefuse, "", "malformed"},
		{"sticker", "m.sticker", `{"body":"x"}`, kindRefuse, "", "text"},
		{"too long", "m.room.message", `{"msgtype":"m.text","body":"` + strings.Repeat("y", MaxInboundText+1) + `"}`, kindRefuse, "", "too long"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := canonicalContent(c.typ, []byte(c.content))
			if got.K != c.kind || got.Text != c.text || (c.reason != "" && !strings.Contains(got.Reason, c.reason)) {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

var allowedTag = regexp.MustCompile(`^</?(p|br|strong|em|code|pre|ul|ol|li|h[1-6])>$`)

func checkHTML(t *testing.T, in, out string) {
	t.Helper()
	for _, tag := range regexp.MustCompile(`<[^>]*>`).FindAllString(out, -1) {
		if !allowedTag.MatchString(tag) {
			t.Fatalf("render(%q) produced tag %q in %q", in, tag, out)
		}
	}
	if strings.Count(out, "<") != strings.Count(out, ">") {
		t.Fatalf("render(%q): a stray angle bracket in %q", in, out)
	}
}

func TestRender(t *testing.T) {
	for in, want := range map[string]string{
		"hello **world**":                  "<p>hello <strong>world</strong></p>",
		"a *b* `c*d*` <script>":            "<p>a <em>b</em> <code>c*d*</code> &lt;script&gt;</p>",
		"see [the docs](https://x.y/z)":    "<p>see the docs (https://x.y/z)</p>",
		"![cat](https://evil/t.png)":       "<p>[image not shown: cat] (https://evil/t.png)</p>",
		"# Title\n- one\n- two\n\n1. x":    "<h1>Title</h1><ul><li>one</li><li>two</li></ul><ol><li>x</li></ol>",
		"```\n<b>code</b>\n```":            "<pre><code>&lt;b&gt;code&lt;/b&gt;</code></pre>",
		"line1\nline2":                     "<p>line1<br>line2</p>",
		`<a href="javascript:x">click</a>`: "<p>&lt;a href=&#34;javascript:x&#34;&gt;click&lt;/a&gt;</p>",
	} {
		got := render(in)
		if got != want {
			t.Errorf("render(%q) = %q, want %q", in, got, want)
		}
		checkHTML(t, in, got)
	}
}

func TestSplit(t *testing.T) {
	text := strings.Repeat("word ", 5000) + "\n\n```\n" + strings.Repeat("code line\n", 3000) + "```\nend"
	parts := split(text, MaxPartBytes)
	if len(parts) < 3 {
		t.Fatalf("%d parts", len(parts))
	}
	total := 0
	for i, p := range parts {
		if len(p) > MaxPartBytes {
			t.Fatalf("part %d is %d bytes", i, len(p))
		}
		if strings.Count(p, "```")%2 != 0 {
			t.Fatalf("part %d leaves a code block open", i)
		}
		total += len(strings.ReplaceAll(p, "```", ""))
	}
	if !strings.HasSuffix(parts[len(parts)-1], "end") {
		t.Fatal("the end was lost")
	}
	if one := split("short", MaxPartBytes); len(one) != 1 || one[0] != "short" {
		t.Fatalf("%q", one)
	}
	// No character is cut in half.
	for _, p := range split(strings.Repeat("é", MaxPartBytes), MaxPartBytes) {
		if !utf8.ValidString(p) {
			t.Fatal("a part is not valid UTF-8")
		}
	}
}

// FuzzCanonicalContent: whatever a sender puts in an event, the channel
// either refuses it or produces one capped, valid, control-free text.
func FuzzCanonicalContent(f *testing.F) {
	for _, s := range []string{
		`{"msgtype":"m.text","body":"hi"}`,
		`{"msgtype":"m.text","body":"> q\n\nr","m.relates_to":{"m.in_reply_to":{"event_id":"$x"}}}`,
		`{"msgtype":"m.text","body":"* e","m.new_content":{"msgtype":"m.text","body":"e"},"m.relates_to":{"rel_type":"m.replace"}}`,
		`{"msgtype":"m.image","url":"mxc://x/y"}`, `{"msgtype":"m.text","body":"\u202e\u0000"}`, `[]`, `null`, `{"body":{}}`,
	} {
		f.Add("m.room.message", []byte(s))
	}
	f.Fuzz(func(t *testing.T, typ string, raw []byte) {
		got := canonicalContent(typ, raw)
		switch got.K {
		case kindRefuse:
			if got.Reason == "" || got.Text != "" {
				t.Fatalf("refusal %+v", got)
			}
		case kindMessage:
			if got.Text == "" || len(got.Text) > MaxInboundText || !utf8.ValidString(got.Text) {
				t.Fatalf("text %q", got.Text)
			}
			for _, r := range got.Text {
				if r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)) {
					t.Fatalf("control %U kept in %q", r, got.Text)
				}
			}
			if _, err := json.Marshal(got); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("kind %q", got.K)
		}
	})
}

// FuzzRender: the agent's text, whatever it is, renders to HTML built only
// from the fixed tag list, with no attribute, image or link element.
func FuzzRender(f *testing.F) {
	for _, s := range []string{"**b** *i* `c`", "[x](javascript:alert(1))", "![i](http://e/x.png)", "<img src=x>", "```\n<b>\n", "# h\n- a\n1. b", "_a_ __b__ ***c***"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		out := render(s)
		checkHTML(t, s, out)
		if strings.Contains(out, "<a") || strings.Contains(out, "<img") {
			t.Fatalf("render(%q) = %q", s, out)
		}
		for _, p := range split(s, 64) {
			if len(p) > 64 {
				t.Fatalf("split part of %d bytes", len(p))
			}
		}
	})
}

// A decrypted message whose Megolm session mautrix could not tie to a
// device of the event's sender (a sender a hostile homeserver put on it), or
// to one whose keys differ or that is blacklisted, is refused; an ordinary
// unverified, cross-signed or forwarded one is read.
func TestCanonicalRefusesUntiedSessions(t *testing.T) {
	mk := func(ts id.TrustState) *event.Event {
		evt := &event.Event{Type: event.EventMessage, Sender: "@owner:x"}
		evt.Content.VeryRaw = json.RawMessage(`{"msgtype":"m.text","body":"rm -rf the notes"}`)
		evt.Mautrix.TrustState = ts
		return evt
	}
	for _, ts := range []id.TrustState{id.TrustStateUnknownDevice, id.TrustStateDeviceKeyMismatch, id.TrustStateBlacklisted} {
		if in := canonical(mk(ts), true); in.K != kindRefuse || in.Text != "" {
			t.Errorf("trust %s: %+v, want a refusal", ts, in)
		}
	}
	for _, ts := range []id.TrustState{id.TrustStateUnset, id.TrustStateForwarded, id.TrustStateBackup, id.TrustStateCrossSignedTOFU, id.TrustStateVerified} {
		if in := canonical(mk(ts), true); in.K != kindMessage || in.Text != "rm -rf the notes" {
			t.Errorf("trust %s: %+v, want the message", ts, in)
		}
	}
}
