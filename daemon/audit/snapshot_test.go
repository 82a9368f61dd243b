package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A copy taken while the log is open verifies on its own, with the key and
// the anchor it returns.
func TestCopyDurable(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 32)
	path := tempLogPath(t)
	l := mustOpen(t, path, WithKey(key))
	for i := 0; i < 10; i++ {
		if _, err := l.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	head, err := l.CopyDurable(&buf)
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, l)
	cp := filepath.Join(t.TempDir(), "copy.log")
	os.WriteFile(cp, buf.Bytes(), 0o600)
	rep, err := VerifyFile(cp, &head, WithKey(key))
	if err != nil || rep.Entries != 10 {
		t.Fatalf("copy: %+v %v", rep, err)
	}
	if _, err := l.CopyDurable(&buf); err != ErrClosed {
		t.Fatalf("copy of a closed log: %v", err)
	}
}
