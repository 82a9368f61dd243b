package matrix

import (
	"html"
	"regexp"
	"strings"
	"unicode/utf8"
)

// MaxPartBytes caps the markdown of one Matrix message; longer replies are
// split. With its HTML rendering and Megolm's base64 the event stays well
// under the 64 KiB homeservers accept.
const MaxPartBytes = 12 << 10

// render turns the agent's markdown into Matrix HTML that is safe to show:
// everything is escaped first, then a small subset of markdown becomes
// tags from a fixed list (p, br, strong, em, code, pre, ul, ol, li, h1–h6).
// No image, link element or remote content is ever produced: a link is
// written out as its text followed by the full URL, an image as its
// description and URL.
func render(md string) string {
	var out strings.Builder
	lines := strings.Split(md, "\n")
	var para []string
	list := "" // "ul" or "ol" while inside a list
	flush := func() {
		if len(para) > 0 {
			out.WriteString("<p>" + strings.Join(para, "<br>") + "</p>")
			para = nil
		}
	}
	closeList := func() {
		if list != "" {
			out.WriteString("</" + list + ">")
			list = ""
		}
	}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			flush()
			closeList()
			var code []string
			for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				code = append(code, lines[i])
			}
			out.WriteString("<pre><code>" + html.EscapeString(strings.Join(code, "\n")) + "</code></pre>")
			continue
		}
		if trimmed == "" {
			flush()
			closeList()
			continue
		}
		if level := headingLevel(trimmed); level > 0 {
			flush()
			closeList()
			h := string(rune('0' + level))
			out.WriteString("<h" + h + ">" + inline(strings.TrimSpace(trimmed[level:])) + "</h" + h + ">")
			continue
		}
		if item, kind := listItem(trimmed); kind != "" {
			flush()
			if list != kind {
				closeList()
				out.WriteString("<" + kind + ">")
				list = kind
			}
			out.WriteString("<li>" + inline(item) + "</li>")
			continue
		}
		closeList()
		para = append(para, inline(trimmed))
	}
	flush()
	closeList()
	return out.String()
}

func headingLevel(s string) int {
	n := 0
	for n < len(s) && n < 7 && s[n] == '#' {
		n++
	}
	if n == 0 || n > 6 || n >= len(s) || s[n] != ' ' {
		return 0
	}
	return n
}

var orderedItem = regexp.MustCompile(`^[0-9]{1,9}[.)] `)

func listItem(s string) (string, string) {
	if strings.HasPrefix(s, "- ") || strings.HasPrefix(s, "* ") || strings.HasPrefix(s, "+ ") {
		return s[2:], "ul"
	}
	if m := orderedItem.FindString(s); m != "" {
		return s[len(m):], "ol"
	}
	return "", ""
}

var (
	imageRe  = regexp.MustCompile(`!\[([^\]\n]*)\]\(([^)\s]*)\)`)
	linkRe   = regexp.MustCompile(`\[([^\]\n]*)\]\(([^)\s]*)\)`)
	strongRe = regexp.MustCompile(`\*\*([^*\n]+)\*\*|__([^_\n]+)__`)
	emRe     = regexp.MustCompile(`\*([^*\n]+)\*|\b_([^_\n]+)_\b`)
)

// inline renders code spans, emphasis and links of one line. Code spans
// are cut out first so nothing inside them is interpreted.
func inline(s string) string {
	var out strings.Builder
	parts := strings.Split(s, "`")
	for i, p := range parts {
		if i%2 == 1 && i < len(parts)-1 {
			out.WriteString("<code>" + html.EscapeString(p) + "</code>")
			continue
		}
		if i%2 == 1 { // an unmatched backtick
			p = "`" + p
		}
		p = imageRe.ReplaceAllString(p, "[image not shown: $1] ($2)")
		p = linkRe.ReplaceAllString(p, "$1 ($2)")
		p = html.EscapeString(p)
		p = strongRe.ReplaceAllString(p, "<strong>$1$2</strong>")
		p = emRe.ReplaceAllString(p, "<em>$1$2</em>")
		out.WriteString(p)
	}
	return out.String()
}

// split cuts a reply into parts of at most max bytes, at a paragraph break
// if it can, else a line break, a space, or a character boundary. A code
// block cut in two is closed and reopened so each part renders on its own.
func split(text string, max int) []string {
	var parts []string
	open := false // the previous part ended inside a code block
	for len(text) > 0 {
		prefix := ""
		if open {
			prefix = "```\n"
		}
		room := max - len(prefix) - len("\n```")
		if len(prefix)+len(text) <= max {
			parts = append(parts, prefix+text)
			break
		}
		cut := cutPoint(text, room)
		part := prefix + text[:cut]
		text = strings.TrimLeft(text[cut:], "\n")
		open = strings.Count(part, "```")%2 == 1
		if open {
			part += "\n```"
		}
		parts = append(parts, part)
	}
	return parts
}

func cutPoint(s string, max int) int {
	if max < 1 {
		max = 1
	}
	window := s[:max]
	for _, sep := range []string{"\n\n", "\n", " "} {
		if i := strings.LastIndex(window, sep); i > max/2 {
			return i + len(sep)
		}
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	if max == 0 {
		_, n := utf8.DecodeRuneInString(s)
		return n
	}
	return max
}
