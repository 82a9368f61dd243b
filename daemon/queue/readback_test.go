package queue

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/lease"
)

// The daemon reads back what it wrote (a channel checking whether a
// message got in before a crash), from where compaction left off.
func TestInboxReadBack(t *testing.T) {
	s := newSession(t)
	ctx := context.Background()
	in, err := OpenInbox(s.inboxPath(), s.id, s.key, lease.NewManager(0))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for i := range 5 {
		in.Append(ctx, wire.Message{From: "@o:x", Text: fmt.Sprint("m", i+1)})
	}
	rows, err := in.Read(3)
	if err != nil || len(rows) != 2 || rows[0].Body.(wire.Message).Text != "m4" {
		t.Fatalf("%+v %v", rows, err)
	}
	if _, err := in.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	rows, err = in.Read(1)
	if err != nil || len(rows) != 2 || rows[0].Header.Seq != 4 {
		t.Fatalf("after compaction: %+v %v", rows, err)
	}
}

// A journal SQLite itself would not call hot (first byte zero) does not
// hold the outbox back; one with a header does.
func TestJournalIsHot(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/outbox.db-journal"
	if journalIsHot(p) {
		t.Fatal("a missing journal is hot")
	}
	os.WriteFile(p, make([]byte, 512), 0o600)
	if journalIsHot(p) {
		t.Fatal("a zeroed journal is hot")
	}
	os.WriteFile(p, append([]byte{0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7}, make([]byte, 504)...), 0o600)
	if !journalIsHot(p) {
		t.Fatal("a journal with a header is not hot")
	}
}
