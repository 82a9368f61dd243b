package supervisor

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/queue"
	"github.com/ironclaw/ironclaw/daemon/store"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// The policy: only rows the agent consumed and the daemon recorded, never
// the newest InboxKeepRows, in steps of at least InboxCompactEvery; a lying
// Progress beyond what was written moves nothing past the head.
func TestInboxRetentionPolicy(t *testing.T) {
	s, st := noSandboxSupervisor(t)
	s.cfg.InboxKeepRows, s.cfg.InboxCompactEvery = 100, 50
	ctx := context.Background()
	c, err := s.conversation(ctx, "console:ret")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		seq, err := c.wall.Send(ctx, wire.Message{Text: "m"})
		if err != nil {
			t.Fatal(err)
		}
		c.noteInbox(seq)
	}
	outSeq := uint64(0)
	progress := func(p uint64) {
		outSeq++
		if err := s.deliver(ctx, c, []queue.Row{{Header: wire.Header{Seq: outSeq}, Body: wire.Progress{Inbox: p}}}); err != nil {
			t.Fatal(err)
		}
	}
	span := func() (lo int64) {
		conn, err := sqlite.OpenConn(filepath.Join(s.sessionDir(c.id), wire.InboxDir, wire.InboxFile), sqlite.OpenReadOnly)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sqlitex.ExecuteTransient(conn, "SELECT min(seq) FROM rows", &sqlitex.ExecOptions{
			ResultFunc: func(st *sqlite.Stmt) error { lo = st.ColumnInt64(0); return nil }})
		return lo
	}
	progress(40) // under the step: nothing
	if lo := span(); lo != 1 {
		t.Fatalf("compacted early: min seq %d", lo)
	}
	progress(120)
	if lo := span(); lo != 121 {
		t.Fatalf("after consuming 120: min seq %d, want 121", lo)
	}
	head := c.inboxHead.Load() // 401: the profile row came first
	progress(390)              // consumed 390, but the newest 100 stay
	if lo := span(); lo != int64(head-100+1) {
		t.Fatalf("after consuming 390: min seq %d, want %d", lo, head-100+1)
	}
	progress(10_000) // a lying agent: capped at what was written
	if v, _ := st.Cursor(ctx, c.id, store.CursorInboxConsumed); v != head {
		t.Fatalf("recorded consumed %d, want %d", v, head)
	}
	if lo := span(); lo != int64(head-100+1) {
		t.Fatalf("min seq %d after a lying progress", lo)
	}
	progress(5) // backwards (a restarted agent re-reading): recorded stays
	if v, _ := st.Cursor(ctx, c.id, store.CursorInboxConsumed); v != head {
		t.Fatalf("consumed went back to %d", v)
	}
}
