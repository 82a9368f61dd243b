package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to the verifier as a log file. It must
// never panic, every failure must be a *VerifyError (a bytes.Reader cannot
// fail), and whatever verifies must be complete lines that re-verify.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	plain := writeLog(f, dir+"/plain.log", 3)
	keyed := writeLog(f, dir+"/keyed.log", 3, WithKey(testKey))
	f.Add(plain)
	f.Add(keyed)
	f.Add(plain[:len(plain)-7])
	f.Add([]byte{})
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, anchor := range []*Anchor{nil, {Seq: 1}, {Seq: 2}} {
			for _, opts := range [][]Option{nil, {WithKey(testKey)}} {
				rep, err := Verify(bytes.NewReader(data), anchor, opts...)
				if err != nil {
					var ve *VerifyError
					if !errors.As(err, &ve) {
						t.Fatalf("non-VerifyError: %v", err)
					}
					if ve.Line < 1 || ve.Error() == "" {
						t.Fatalf("bad VerifyError %+v", ve)
					}
					continue
				}
				if n := uint64(bytes.Count(data, []byte("\n"))); n != rep.Entries || (len(data) > 0 && data[len(data)-1] != '\n') {
					t.Fatalf("verified %d entries of %d lines", rep.Entries, n)
				}
				if rep.Entries > 0 && rep.Head.Seq != rep.Entries {
					t.Fatalf("head %d after %d entries", rep.Head.Seq, rep.Entries)
				}
			}
		}
	})
}

// FuzzTail: whatever the file holds, Tail ends, never panics, and yields
// only entries that parse.
func FuzzTail(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("{}\n"))
	f.Add([]byte("no newline at all"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "audit.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n := 0
		Tail(path, func(Entry) bool { n++; return true })
		if n > bytes.Count(data, []byte("\n")) {
			t.Fatalf("%d entries from %d lines", n, bytes.Count(data, []byte("\n")))
		}
	})
}
