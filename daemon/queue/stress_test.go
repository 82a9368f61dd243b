package queue

import (
	"os"
	"sync"
	"testing"
	"time"

	"zombiezen.com/go/sqlite/sqlitex"
)

// TestConcurrentHostileOpens opens crafted and honest outboxes from several
// goroutines at once, with query deadlines firing, as a daemon under attack
// does. Measured before the page-1 check and the schema lock: modernc's
// SQLite corrupted its heap (a fatal fault, the whole daemon) within a
// second. IRONCLAW_BENCH=1 runs it for 40 s.
func TestConcurrentHostileOpens(t *testing.T) {
	slow := newSession(t)
	execSQL(t, slow.outboxPath(), "SELECT 1; PRAGMA writable_schema=ON; INSERT INTO sqlite_schema SELECT 'table', 't'||x, 't'||x, 2, 'CREATE TABLE t'||x||' (a, b, c, d, e, f, g, h)' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 5000) SELECT x FROM c);")
	honest := newSession(t)
	writeOutbox(t, honest, 3)
	to := 30 * time.Millisecond
	run := 3 * time.Second
	if os.Getenv("IRONCLAW_BENCH") == "1" {
		run = 40 * time.Second
	}
	var wg sync.WaitGroup
	deadline := time.Now().Add(run)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				s := honest
				if g%2 == 0 {
					s = slow
				}
				r := s.reader()
				r.QueryTimeout = to
				r.Snapshot(0, 0)
				if g%3 == 0 {
					data, _ := os.ReadFile(honest.outboxPath())
					conn, err := openPrivate(data, time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					snap := &Snapshot{conn: conn, timeout: 5 * time.Millisecond}
					snap.deadline("x", func() error {
						return sqlitex.ExecuteTransient(conn, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c", nil)
					})
					conn.Close()
				}
			}
		}()
	}
	wg.Wait()
}
