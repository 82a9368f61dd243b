package profile

import (
	"math/rand"
	"strings"
	"testing"
)

// undiff rebuilds the old and new texts from a diff, proving it lost nothing.
func undiff(t testing.TB, diff string) (old, new string) {
	t.Helper()
	var o, n strings.Builder
	lines := splitLines([]byte(diff))
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l == "" || l[len(l)-1] != '\n' {
			t.Fatalf("diff line %d %q does not end in a newline", i, l)
		}
		body := l[1:]
		if i+1 < len(lines) && lines[i+1] == NoNewline+"\n" {
			body = strings.TrimSuffix(body, "\n")
			i++
		}
		switch l[0] {
		case ' ':
			o.WriteString(body)
			n.WriteString(body)
		case '-':
			o.WriteString(body)
		case '+':
			n.WriteString(body)
		default:
			t.Fatalf("diff line %d %q has no prefix", i, l)
		}
	}
	return o.String(), n.String()
}

// changes counts the "-" and "+" lines of a diff.
func changes(diff string) int {
	c := 0
	for _, l := range strings.SplitAfter(diff, "\n") {
		if strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+") {
			c++
		}
	}
	return c
}

// lcsLen is the textbook O(nm) longest common subsequence, the reference
// the fast diff is checked against.
func lcsLen(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			switch {
			case a[i] == b[j]:
				cur[j+1] = prev[j] + 1
			case prev[j+1] >= cur[j]:
				cur[j+1] = prev[j+1]
			default:
				cur[j+1] = cur[j]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func TestDiffExample(t *testing.T) {
	old := Default("m1", "sha256:00")
	new := old
	new.Model = "m2"
	new.Tools = []string{"reply", "remember", "request_change"}
	got := Diff(old.Canonical(), new.Canonical())
	want := ` ironclaw-profile 1
 instructions.1 = "You are a helpful personal assistant. Answer briefly and truthfully."
-model = "m1"
+model = "m2"
+tool = "remember"
 tool = "reply"
 tool = "request_change"
 permission.schedule = false
 permission.memory = false
 permission.notes = false
 limit.memory_mib = 256
 limit.cpu_millis = 500
 limit.tmp_mib = 16
 limit.outbox_mib = 64
 limit.outbox_inodes = 1024
 limit.tokens_per_day = 200000
 limit.calls_per_minute = 30
 agent.digest = "sha256:00"
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDiffEdges(t *testing.T) {
	cases := []struct{ old, new, want string }{
		{"", "", ""},
		{"a\n", "a\n", " a\n"},
		{"", "a\nb\n", "+a\n+b\n"},
		{"a\nb\n", "", "-a\n-b\n"},
		{"a\nb\nc\n", "x\ny\n", "-a\n-b\n-c\n+x\n+y\n"},
		{"a", "a\n", "-a\n" + NoNewline + "\n+a\n"},
		{"a\nb", "a\nc", " a\n-b\n" + NoNewline + "\n+c\n" + NoNewline + "\n"},
		{"a\nb\nc\n", "a\nx\nc\n", " a\n-b\n+x\n c\n"},
		{"\n\n", "\n", " \n-\n"},
	}
	for _, c := range cases {
		if got := Diff([]byte(c.old), []byte(c.new)); got != c.want {
			t.Errorf("Diff(%q, %q) = %q, want %q", c.old, c.new, got, c.want)
		}
	}
}

// TestDiffProperties checks, on many random pairs over a small alphabet
// (so that lines repeat and the alignment is ambiguous): both texts rebuild
// exactly from the diff, the diff is minimal, and it is deterministic.
func TestDiffProperties(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	text := func() string {
		var sb strings.Builder
		for n := r.Intn(30); n > 0; n-- {
			sb.WriteString(string(rune('a' + r.Intn(4))))
			if n > 1 || r.Intn(4) > 0 {
				sb.WriteByte('\n')
			}
		}
		return sb.String()
	}
	for i := 0; i < 5000; i++ {
		a, b := text(), text()
		if r.Intn(3) == 0 {
			b = a[:r.Intn(len(a)+1)] + text() + a[r.Intn(len(a)+1):]
		}
		d := Diff([]byte(a), []byte(b))
		if o, n := undiff(t, d); o != a || n != b {
			t.Fatalf("Diff(%q, %q) = %q rebuilds %q, %q", a, b, d, o, n)
		}
		la, lb := splitLines([]byte(a)), splitLines([]byte(b))
		if got, want := changes(d), len(la)+len(lb)-2*lcsLen(la, lb); got != want {
			t.Fatalf("Diff(%q, %q) = %q has %d changed lines, minimum is %d", a, b, d, got, want)
		}
		if d2 := Diff([]byte(a), []byte(b)); d2 != d {
			t.Fatalf("Diff(%q, %q) not deterministic: %q then %q", a, b, d, d2)
		}
	}
}

func TestDiffLargeDisjoint(t *testing.T) {
	// The worst case for Myers: nothing in common. It must stay fast and exact.
	var a, b strings.Builder
	for i := 0; i < 5000; i++ {
		a.WriteString("a" + strings.Repeat("x", i%7) + "\n")
		b.WriteString("b" + strings.Repeat("y", i%5) + "\n")
	}
	d := Diff([]byte(a.String()), []byte(b.String()))
	if o, n := undiff(t, d); o != a.String() || n != b.String() {
		t.Fatal("large diff does not rebuild its inputs")
	}
}

func FuzzDiff(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nc\nd"))
	f.Add(richProfile().Canonical(), Default("m", "d").Canonical())
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d := Diff(a, b)
		if o, n := undiff(t, d); o != string(a) || n != string(b) {
			t.Fatalf("Diff(%q, %q) = %q rebuilds %q, %q", a, b, d, o, n)
		}
		if d2 := Diff(a, b); d2 != d {
			t.Fatal("not deterministic")
		}
	})
}

func BenchmarkDiffProfiles(b *testing.B) {
	old := richProfile()
	new := old
	new.Instructions = strings.Repeat("a line of instructions\n", 500)
	oc, nc := old.Canonical(), new.Canonical()
	for b.Loop() {
		Diff(oc, nc)
	}
}
