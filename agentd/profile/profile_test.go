package profile

import (
	"bytes"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/quick"
)

// genProfile is a Profile that testing/quick knows how to generate: strings
// full of what could forge a line (newlines, quotes, " = ", control and
// non-UTF-8 bytes), duplicated and unsorted tools and contacts, and limits of
// any sign.
type genProfile struct{ P Profile }

var nasty = []string{
	"", " ", "\n", "\r\n", "\"", "\\", " = ", "tool = \"x\"", "\x00", "\x1b[31m",
	"\u202e", "é", "日本", "\xff", "\xc3", "instructions.2 = \"\"", "ironclaw-profile 1",
	"a", "b", "reply", "@alice:example.org", "\t", "`", "'",
}

func genString(r *rand.Rand) string {
	var sb strings.Builder
	for n := r.Intn(6); n > 0; n-- {
		if r.Intn(3) == 0 {
			sb.WriteByte(byte(r.Intn(256)))
		} else {
			sb.WriteString(nasty[r.Intn(len(nasty))])
		}
	}
	return sb.String()
}

func genStrings(r *rand.Rand) []string {
	if r.Intn(4) == 0 {
		return nil
	}
	out := make([]string, r.Intn(5))
	for i := range out {
		out[i] = genString(r)
	}
	if len(out) > 0 && r.Intn(2) == 0 {
		out = append(out, out[0]) // a duplicate
	}
	return out
}

func genInt(r *rand.Rand) int64 {
	switch r.Intn(4) {
	case 0:
		return 0
	case 1:
		return -r.Int63()
	default:
		return r.Int63()
	}
}

func (genProfile) Generate(r *rand.Rand, _ int) reflect.Value {
	p := Profile{
		Instructions: genString(r),
		Model:        genString(r),
		Tools:        genStrings(r),
		Contacts:     genStrings(r),
		Permissions:  Permissions{r.Intn(2) == 0, r.Intn(2) == 0, r.Intn(2) == 0},
		Limits: Limits{
			genInt(r), genInt(r), genInt(r), genInt(r), genInt(r), genInt(r), genInt(r),
		},
		AgentDigest: genString(r),
	}
	return reflect.ValueOf(genProfile{p})
}

// normal is what a profile means: tools and contacts as sorted sets.
func normal(p Profile) Profile {
	p.Tools = sortedUnique(p.Tools)
	p.Contacts = sortedUnique(p.Contacts)
	if len(p.Tools) == 0 {
		p.Tools = nil
	}
	if len(p.Contacts) == 0 {
		p.Contacts = nil
	}
	return p
}

func TestCanonicalParseRoundTrip(t *testing.T) {
	prop := func(g genProfile) bool {
		text := g.P.Canonical()
		got, err := Parse(text)
		if err != nil {
			t.Logf("Parse(%q): %v", text, err)
			return false
		}
		if !bytes.Equal(got.Canonical(), text) {
			t.Logf("re-rendered %q, want %q", got.Canonical(), text)
			return false
		}
		if !reflect.DeepEqual(normal(got), normal(g.P)) {
			t.Logf("parsed %#v, want %#v", normal(got), normal(g.P))
			return false
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 3000, Rand: rand.New(rand.NewSource(1))}
	if err := quick.Check(prop, cfg); err != nil {
		t.Fatal(err)
	}
}

// richProfile exercises every line kind.
func richProfile() Profile {
	p := Default("llama3.2:3b", "sha256:"+strings.Repeat("ab", 32))
	p.Instructions = "line one\nline \"two\"\n\nline four"
	p.Tools = []string{"reply", "remember", "request_change"}
	p.Contacts = []string{"@alice:example.org", "@bob:example.org"}
	p.Permissions = Permissions{Schedule: true, Memory: true}
	return p
}

func TestParseRefusesNonCanonical(t *testing.T) {
	good := string(richProfile().Canonical())
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("canonical text refused: %v", err)
	}
	lines := strings.SplitAfter(good, "\n")
	lines = lines[:len(lines)-1]
	swap := func(i, j int) string {
		l := slices.Clone(lines)
		l[i], l[j] = l[j], l[i]
		return strings.Join(l, "")
	}
	find := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return i
			}
		}
		t.Fatalf("no line %q in %q", prefix, good)
		return -1
	}
	tool := find("tool = ")
	model := find("model = ")
	i1, i2 := find("instructions.1 "), find("instructions.2 ")
	cases := map[string]string{
		"empty":                   "",
		"missing header":          strings.TrimPrefix(good, Header+"\n"),
		"wrong header":            strings.Replace(good, Header, "ironclaw-profile 2", 1),
		"header only":             Header + "\n",
		"reordered lines":         swap(model, tool),
		"reordered tools":         swap(tool, tool+1),
		"duplicate tool":          strings.Replace(good, lines[tool], lines[tool]+lines[tool], 1),
		"duplicate contact":       strings.Replace(good, "contact = \"@bob:example.org\"\n", "contact = \"@bob:example.org\"\ncontact = \"@bob:example.org\"\n", 1),
		"trailing space":          strings.Replace(good, "model = \"llama3.2:3b\"\n", "model = \"llama3.2:3b\" \n", 1),
		"space before equals":     strings.Replace(good, "model = ", "model  = ", 1),
		"trailing blank line":     good + "\n",
		"no final newline":        strings.TrimSuffix(good, "\n"),
		"crlf":                    strings.ReplaceAll(good, "\n", "\r\n"),
		"unknown key":             strings.Replace(good, lines[model], lines[model]+"shell = \"/bin/sh\"\n", 1),
		"unknown limit":           strings.Replace(good, "limit.tmp_mib = 16\n", "limit.tmp_mib = 16\nlimit.swap_mib = 1\n", 1),
		"instructions reordered":  swap(i1, i2),
		"instructions renumbered": strings.Replace(good, "instructions.2 ", "instructions.3 ", 1),
		"instructions zero":       strings.Replace(good, "instructions.1 ", "instructions.0 ", 1),
		"instructions leading 0":  strings.Replace(good, "instructions.2 ", "instructions.02 ", 1),
		"newline injected":        strings.Replace(good, "model = \"llama3.2:3b\"\n", "model = \"llama3.2\ntool = \"shell\"\n", 1),
		"raw newline in value":    strings.Replace(good, "model = \"llama3.2:3b\"\n", "model = \"llama3.2\n:3b\"\n", 1),
		"backquoted value":        strings.Replace(good, "model = \"llama3.2:3b\"", "model = `llama3.2:3b`", 1),
		"needless escape":         strings.Replace(good, "model = \"llama3.2:3b\"", "model = \"llama3\\x2e2:3b\"", 1),
		"unquoted value":          strings.Replace(good, "model = \"llama3.2:3b\"", "model = llama3.2:3b", 1),
		"bool spelled 1":          strings.Replace(good, "permission.notes = false", "permission.notes = 0", 1),
		"bool capitalised":        strings.Replace(good, "permission.notes = false", "permission.notes = False", 1),
		"plus sign":               strings.Replace(good, "limit.tmp_mib = 16", "limit.tmp_mib = +16", 1),
		"leading zero":            strings.Replace(good, "limit.tmp_mib = 16", "limit.tmp_mib = 016", 1),
		"limit overflow":          strings.Replace(good, "limit.tmp_mib = 16", "limit.tmp_mib = 99999999999999999999", 1),
		"missing line":            strings.Replace(good, "permission.memory = true\n", "", 1),
		"no instructions":         strings.Replace(strings.Replace(good, lines[i1], "", 1), lines[i2], "", 1),
		"no separator":            strings.Replace(good, "model = ", "model=", 1),
		"too big":                 good + strings.Repeat("x", MaxCanonicalSize),
	}
	for name, text := range cases {
		if text == good {
			t.Fatalf("%s: case is not a mutation", name)
		}
		if p, err := Parse([]byte(text)); err == nil {
			t.Errorf("%s: Parse accepted %q as %#v", name, text, p)
		}
	}
}

func TestDefaultIsCanonical(t *testing.T) {
	p := Default("m", "sha256:00")
	got, err := Parse(p.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("got %#v, want %#v", got, p)
	}
}

func TestByNameMatchesCanonical(t *testing.T) {
	p := richProfile()
	text := string(p.Canonical())
	lim := p.Limits.ByName()
	if len(lim) != len(LimitNames()) {
		t.Fatalf("ByName has %d limits, LimitNames %d", len(lim), len(LimitNames()))
	}
	for _, name := range LimitNames() {
		v, ok := lim[name]
		want := fmt.Sprintf("\nlimit.%s = %d\n", name, v)
		if !ok || !strings.Contains(text, want) {
			t.Errorf("limit %q: in map %v, %q in text %v", name, ok, want, strings.Contains(text, want))
		}
	}
	for name, v := range p.Permissions.ByName() {
		want := "\npermission." + name + " = false\n"
		if v {
			want = "\npermission." + name + " = true\n"
		}
		if !strings.Contains(text, want) {
			t.Errorf("permission %q: %q not in canonical text", name, want)
		}
	}
}
