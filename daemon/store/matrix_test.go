package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// A reply taken from an outbox is kept, sealed, with its intent until its
// channel marks it delivered; the cursor moves past it at once, so the
// agent may prune it; taking the same rows again changes nothing.
func TestTakeRepliesKeepsTextUntilDelivered(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "matrix:!room:x")
	secret := []byte("REPLY-TEXT-MARKER-77")
	if err := s.TakeReplies(ctx, id, 3, []TakenReply{{OutboxSeq: 2, TxnID: "ic.a.2", Body: secret}}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Cursor(ctx, id, CursorOutboxDelivered); v != 3 {
		t.Fatalf("cursor %d", v)
	}
	if err := s.TakeReplies(ctx, id, 3, []TakenReply{{OutboxSeq: 2, TxnID: "ic.other", Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	in, err := s.PendingIntents(ctx, id, 0)
	if err != nil || len(in) != 1 || in[0].OutboxSeq != 2 || in[0].TxnID != "ic.a.2" || !bytes.Equal(in[0].Body, secret) {
		t.Fatalf("%+v %v", in, err)
	}
	if hits := filesContaining(dirBytes(t, filepath.Dir(path)), secret); len(hits) != 0 {
		t.Fatalf("reply text in plaintext in %v", hits)
	}
	if err := s.MarkDelivered(ctx, id, 2); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.PendingIntents(ctx, id, 0); len(in) != 0 {
		t.Fatalf("still pending: %+v", in)
	}
	// Erasing the session takes undelivered replies with it.
	if err := s.TakeReplies(ctx, id, 5, []TakenReply{{OutboxSeq: 5, TxnID: "ic.a.5", Body: []byte("later")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.EraseSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PendingIntents(ctx, id, 0); !errors.Is(err, ErrErased) {
		t.Fatalf("intents of an erased session: %v", err)
	}
	var n int
	s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "SELECT count(*) FROM delivery_intents", &sqlitex.ExecOptions{ResultFunc: func(st *sqlite.Stmt) error { n = st.ColumnInt(0); return nil }})
	})
	if n != 0 {
		t.Fatalf("%d intents survive the erase", n)
	}
}

// Events of a sync batch are recorded with the token in one transaction,
// deduplicated by event id, sealed.
func TestMatrixSyncCommit(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	if _, err := s.MatrixAccount(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	acct := MatrixAccount{UserID: "@bot:x", DeviceID: "DEV", AccessToken: "TOKEN-MARKER-1", RecoveryKey: "RECOVERY-MARKER-2"}
	if err := s.SetMatrixAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	body := []byte("EVENT-TEXT-MARKER-3")
	ev := MatrixEvent{EventID: "$e1", RoomID: "!r:x", Sender: "@o:x", Body: body}
	if n, err := s.CommitMatrixSync(ctx, []MatrixEvent{ev, ev}, "s1"); err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	if n, err := s.CommitMatrixSync(ctx, []MatrixEvent{ev}, "s2"); err != nil || n != 0 {
		t.Fatalf("replayed event recorded again: %d %v", n, err)
	}
	got, err := s.MatrixAccount(ctx)
	if err != nil || got.NextBatch != "s2" || got.AccessToken != acct.AccessToken || got.RecoveryKey != acct.RecoveryKey || got.Clean {
		t.Fatalf("%+v %v", got, err)
	}
	open, err := s.MatrixOpen(ctx)
	if err != nil || len(open) != 1 || !bytes.Equal(open[0].Body, body) || open[0].State != MatrixNew {
		t.Fatalf("%+v %v", open, err)
	}
	if err := s.UpdateMatrixEvent(ctx, open[0].Seq, MatrixHanding, nil, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateMatrixEvent(ctx, open[0].Seq, MatrixDone, nil, 9); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.MatrixLastHanded(ctx, "!r:x"); v != 9 {
		t.Fatalf("last handed %d", v)
	}
	if open, _ := s.MatrixOpen(ctx); len(open) != 0 {
		t.Fatalf("%+v", open)
	}
	for _, m := range [][]byte{body, []byte(acct.AccessToken), []byte(acct.RecoveryKey)} {
		if hits := filesContaining(dirBytes(t, filepath.Dir(path)), m); len(hits) != 0 {
			t.Fatalf("%s in plaintext in %v", m, hits)
		}
	}
	// The same device keeps its token; another device starts afresh.
	if err := s.SetMatrixAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MatrixAccount(ctx); got.NextBatch != "s2" {
		t.Fatalf("token lost: %+v", got)
	}
	acct.DeviceID = "OTHER"
	s.SetMatrixAccount(ctx, acct)
	if got, _ := s.MatrixAccount(ctx); got.NextBatch != "" {
		t.Fatalf("token kept for another device: %+v", got)
	}
	if first, _ := s.MatrixNoticeSent(ctx, ChangeID{1}); !first {
		t.Fatal("first notice")
	}
	if first, _ := s.MatrixNoticeSent(ctx, ChangeID{1}); first {
		t.Fatal("second notice")
	}
}
