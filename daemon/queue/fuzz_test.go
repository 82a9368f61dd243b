package queue

import (
	"os"
	"testing"
)

// FuzzSnapshot opens arbitrary bytes as an outbox file: whatever a hostile
// agent leaves there must give rows or an error, never a panic or a hang.
// Seeds (testdata/fuzz/FuzzSnapshot) include real outbox files.
func FuzzSnapshot(f *testing.F) {
	s := newSession(f)
	f.Add([]byte("SQLite format 3\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(s.outboxPath(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		rows, err := s.reader().Snapshot(0, 0)
		if err == nil && len(rows) > 0 && rows[0].Header.Seq != 1 {
			t.Fatalf("accepted rows starting at %d", rows[0].Header.Seq)
		}
	})
}
