package session

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// inboxSpan returns the lowest and highest seq and the row count on disk.
func inboxSpan(t testing.TB, r *rig) (lo, hi, n int64) {
	t.Helper()
	c, err := sqlite.OpenConn(filepath.Join(r.dir, wire.InboxDir, wire.InboxFile), sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = sqlitex.ExecuteTransient(c, "SELECT coalesce(min(seq),0), coalesce(max(seq),0), count(*) FROM rows", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			lo, hi, n = s.ColumnInt64(0), s.ColumnInt64(1), s.ColumnInt64(2)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return lo, hi, n
}

// TestCompactionUnderRunsc compacts the inbox over and over while the real
// agent in gVisor reads it under leases and the daemon keeps writing, with a
// sandbox restart in the middle: every message is answered exactly once, in
// order (rig.verify), and the inbox really shrinks. Compaction goes only as
// far as the agent has consumed (its replies delivered), minus a window.
func TestCompactionUnderRunsc(t *testing.T) {
	r := newRig(t, agentOwner)
	box := startAgent(t, r)
	const n, size, keep = 3000, 300, 50
	ctx, cancel := context.WithCancel(context.Background())
	compacted := make(chan int, 1)
	go func() {
		total := 0
		defer func() { compacted <- total }()
		for ctx.Err() == nil {
			got, _ := r.delivered()
			if through := got - keep; through > 0 {
				k, err := r.wall.CompactInbox(ctx, uint64(through))
				if err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
				total += k
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for i := 1; i <= n; i += 30 {
		r.send(t, i, min(n, i+29), 30, size)
		if i == 1501 {
			// A restarted agent resumes from its own progress, above every
			// compacted row.
			r.waitDelivered(t, 1000, time.Minute)
			box.Stop(context.Background())
			box = startAgent(t, r)
		}
	}
	r.waitDelivered(t, n, 2*time.Minute)
	cancel()
	total := <-compacted
	select {
	case <-box.Done():
		st, _ := box.Wait()
		t.Fatalf("agent died (%s): %s", st, box.Stderr())
	default:
	}
	r.verify(t, n, size)
	if err := r.wall.Failed(); err != nil {
		t.Fatal(err)
	}
	// Compact what is left once more: everything but the newest row may go.
	if _, err := r.wall.CompactInbox(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	lo, hi, rows := inboxSpan(t, r)
	t.Logf("compacted %d rows during the run; inbox now seq %d..%d (%d rows)", total, lo, hi, rows)
	if total < n/2 || hi != n || rows != 1 || lo != n {
		t.Fatalf("compaction: %d rows during the run, inbox %d..%d (%d rows)", total, lo, hi, rows)
	}
	// The sequence continues after a reopen: the newest row is always kept.
	box.Stop(context.Background())
	r.reopen(t, func(*Config) {})
	if seq, err := r.wall.Send(context.Background(), wire.Message{Text: "after"}); err != nil || seq != n+1 {
		t.Fatalf("append after compaction: seq %d, %v", seq, err)
	}
}
