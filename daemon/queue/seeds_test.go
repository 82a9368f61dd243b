package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzSnapshot from real
// outbox files, honest and hostile. Run with IRONCLAW_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("IRONCLAW_WRITE_SEEDS") == "" {
		t.Skip("set IRONCLAW_WRITE_SEEDS=1 to regenerate the fuzz seeds")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzSnapshot")
	os.MkdirAll(dir, 0o755)
	seeds := map[string]func(t *testing.T, s session){
		"empty-queue": func(t *testing.T, s session) {},
		"three-rows":  func(t *testing.T, s session) { writeOutbox(t, s, 3) },
		"view":        func(t *testing.T, s session) { execSQL(t, s.outboxPath(), "CREATE VIEW v AS SELECT * FROM rows;") },
		"trigger": func(t *testing.T, s session) {
			execSQL(t, s.outboxPath(), "CREATE TABLE log (x); CREATE TRIGGER tr AFTER INSERT ON rows BEGIN INSERT INTO log VALUES (1); END;")
		},
		"text-row": func(t *testing.T, s session) { execSQL(t, s.outboxPath(), "INSERT INTO rows VALUES (1, 'hello');") },
		"gap": func(t *testing.T, s session) {
			writeOutbox(t, s, 3)
			execSQL(t, s.outboxPath(), "DELETE FROM rows WHERE seq = 2;")
		},
	}
	for name, setup := range seeds {
		s := newSession(t)
		setup(t, s)
		data, err := os.ReadFile(s.outboxPath())
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
