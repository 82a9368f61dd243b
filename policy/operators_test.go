package policy

import (
	"bytes"
	"testing"
)

// FuzzCanonicalOperators: an operators text (from an operator's file, or as
// stored in a request) never panics the parser, and the canonical form is
// canonical: parsing it again gives the same bytes, so a binding over it is
// stable.
func FuzzCanonicalOperators(f *testing.F) {
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice\n"))
	f.Add([]byte("# comment\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\x1b[2Jb\r\n"))
	f.Add([]byte(`command="x" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl`))
	f.Fuzz(func(t *testing.T, text []byte) {
		canon, err := CanonicalOperators(text)
		if err != nil {
			return
		}
		again, err := CanonicalOperators(canon)
		if err != nil || !bytes.Equal(again, canon) {
			t.Fatalf("not canonical: %q -> %q (%v)", canon, again, err)
		}
		if bytes.ContainsAny(canon, "\r\x1b\x00") {
			t.Fatalf("control characters kept: %q", canon)
		}
	})
}
