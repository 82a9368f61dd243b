package operator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/audit"
)

// auditOf writes n entries to a real audit log (many appenders, so the
// log's group commit keeps the fsyncs few) and returns its path.
func auditOf(tb testing.TB, n int) string {
	dir, err := os.MkdirTemp("", "icaud")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "audit.log")
	lg, err := audit.Open(path, audit.WithKey(make([]byte, 32)))
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	const workers = 256
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := lg.Append(audit.Record{Actor: "operator:local:root", Action: "test.entry",
					Subject: fmt.Sprintf("session:%032x", i), Result: "ok"}); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := lg.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestAuditEntriesNewestFirstRing(t *testing.T) {
	b := &bound{s: &Service{cfg: Config{AuditPath: auditOf(t, 50)}}}
	es, err := b.AuditEntries(context.Background(), api.AuditQuery{Limit: 10})
	if err != nil || len(es) != 10 || es[0].Seq != 41 || es[9].Seq != 50 {
		t.Fatalf("%v %d %+v", err, len(es), es)
	}
	es, err = b.AuditEntries(context.Background(), api.AuditQuery{Contains: fmt.Sprintf("%032x", 7)})
	if err != nil || len(es) != 1 {
		t.Fatalf("filter: %v %+v", err, es)
	}
}

// BenchmarkAuditEntries100k is what opening (or filtering) the console's
// audit page costs with 100,000 entries in a real log: one scan of the
// file, keeping the newest 1,000. It runs off the keypress path.
func BenchmarkAuditEntries100k(b *testing.B) {
	bd := &bound{s: &Service{cfg: Config{AuditPath: auditOf(b, 100_000)}}}
	for _, q := range []api.AuditQuery{{}, {Contains: "00000000000000000000000000000fff"}} {
		b.Run(fmt.Sprintf("filter=%v", q.Contains != ""), func(b *testing.B) {
			for b.Loop() {
				if _, err := bd.AuditEntries(context.Background(), q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
