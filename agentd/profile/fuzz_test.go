package profile

import (
	"bytes"
	"testing"
)

// FuzzParse holds Parse to its contract on any input: it never panics, and
// whatever it accepts re-renders to exactly the bytes it was given — so no
// two texts can mean the same profile, and the text the owner approved is
// the text that is applied. Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(Default("llama3.2:3b", "sha256:00").Canonical())
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		if got := p.Canonical(); !bytes.Equal(got, data) {
			t.Fatalf("Parse accepted %q but it renders as %q", data, got)
		}
		if _, err := Parse(p.Canonical()); err != nil {
			t.Fatalf("Parse refused its own rendering: %v", err)
		}
	})
}
