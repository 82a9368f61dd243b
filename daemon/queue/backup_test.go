package queue

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
)

func TestInboxBackupAndCompact(t *testing.T) {
	s := newSession(t)
	in, err := OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := in.Append(ctx, wire.Message{Text: "row"}); err != nil {
			t.Fatal(err)
		}
	}
	// A backup is a database the agent's reader opens and verifies.
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := in.BackupTo(cp); err != nil {
		t.Fatal(err)
	}
	if err := in.BackupTo(cp); err == nil {
		t.Fatal("backup over an existing file")
	}
	r, err := inbox.Open(cp, s.id, s.key)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := r.Read(0, 0)
	r.Close()
	if err != nil || len(rows) != 20 {
		t.Fatalf("copy: %d rows, %v", len(rows), err)
	}
	cp2 := filepath.Join(t.TempDir(), "copy2.db")
	if err := BackupInboxFile(cp, cp2); err != nil {
		t.Fatal(err)
	}

	// Compaction keeps the newest row whatever it is asked, and the
	// sequence goes on after a reopen.
	if n, err := in.Compact(ctx, 15); err != nil || n != 15 {
		t.Fatalf("compact: %d %v", n, err)
	}
	if n, err := in.Compact(ctx, 1000); err != nil || n != 4 {
		t.Fatalf("compact all: %d %v", n, err)
	}
	in.Close()
	if _, err := in.Compact(ctx, 1); !errors.Is(err, ErrInboxClosed) {
		t.Fatalf("compact on a closed inbox: %v", err)
	}
	in, err = OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if seq, err := in.Append(ctx, wire.Message{Text: "next"}); err != nil || seq != 21 {
		t.Fatalf("after compaction: seq %d %v", seq, err)
	}
	// The agent reads on from its progress (20) without a gap.
	r, _ = inbox.Open(s.inboxPath(), s.id, s.key)
	defer r.Close()
	if rows, err := r.Read(20, 0); err != nil || len(rows) != 1 || rows[0].Header.Seq != 21 {
		t.Fatalf("read after compaction: %v %v", rows, err)
	}
}
