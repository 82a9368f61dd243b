package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/inbox"
	"github.com/ironclaw/ironclaw/agentd/outbox"
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

// A seeded outbox is what an agent's own outbox looks like after the daemon
// took everything: the agent's writer reads its progress and continues the
// sequence.
func TestSeedOutbox(t *testing.T) {
	id, _ := wire.NewSessionID()
	key := &wire.Key{1, 2, 3}
	dir := filepath.Join(t.TempDir(), id.String())
	os.Mkdir(dir, 0o700)
	if err := SeedOutbox(dir, id, key, 42, 17, NoChown, time.Now()); err != nil {
		t.Fatal(err)
	}
	w, err := outbox.Open(filepath.Join(dir, wire.OutboxDir, wire.OutboxFile), id, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if p, err := w.Progress(); err != nil || p != 17 {
		t.Fatalf("progress %d %v", p, err)
	}
	if w.Head() != 42 {
		t.Fatalf("head %d", w.Head())
	}
	if seq, err := w.Append(wire.Reply{Text: "x", InReplyTo: 18}); err != nil || seq != 43 {
		t.Fatalf("append: %d %v", seq, err)
	}
	// The daemon's reader accepts it, from what it took.
	rows, err := (&OutboxReader{Path: filepath.Join(dir, wire.OutboxDir, wire.OutboxFile), Session: id, Key: key}).Snapshot(42, 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("daemon read: %v %v", rows, err)
	}
	if err := SeedOutbox(dir, id, key, 1, 1, NoChown, time.Now()); err == nil {
		t.Fatal("seeded over an existing outbox")
	}
	// A session that never delivered gets an empty outbox.
	dir2 := filepath.Join(t.TempDir(), "s")
	os.Mkdir(dir2, 0o700)
	if err := SeedOutbox(dir2, id, key, 0, 0, NoChown, time.Now()); err != nil {
		t.Fatal(err)
	}
}
