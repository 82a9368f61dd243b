package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	if n, err := s.CommitMatrixSync(ctx, []MatrixEvent{ev, ev}, "s1", MatrixHoldLimits{}); err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	if n, err := s.CommitMatrixSync(ctx, []MatrixEvent{ev}, "s2", MatrixHoldLimits{}); err != nil || n != 0 {
		t.Fatalf("replayed event recorded again: %d %v", n, err)
	}
	got, err := s.MatrixAccount(ctx)
	if err != nil || got.NextBatch != "s2" || got.AccessToken != acct.AccessToken || got.RecoveryKey != acct.RecoveryKey || got.Clean {
		t.Fatalf("%+v %v", got, err)
	}
	open, err := s.MatrixOpen(ctx, 10)
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
	if open, _ := s.MatrixOpen(ctx, 10); len(open) != 0 {
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

// Events beyond a sender's or a room's cap are told to Refused first and
// recorded refused, without their body; exempt senders pass the sender cap;
// a refusal that cannot be audited aborts the batch (the token stays).
func TestMatrixHoldCaps(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	if err := s.SetMatrixAccount(ctx, MatrixAccount{UserID: "@bot:x", DeviceID: "DEV"}); err != nil {
		t.Fatal(err)
	}
	var refused []string
	lim := MatrixHoldLimits{PerSender: 3, PerRoom: 5,
		Exempt:  func(u string) bool { return u == "@owner:x" },
		Refused: func(e MatrixEvent, why string) error { refused = append(refused, e.EventID+" "+why); return nil }}
	ev := func(n int, room, sender string) MatrixEvent {
		return MatrixEvent{EventID: fmt.Sprintf("$e%d", n), RoomID: room, Sender: sender, Body: []byte("HELD-TEXT")}
	}
	var batch []MatrixEvent
	for i := range 5 { // two beyond the stranger's cap
		batch = append(batch, ev(i, "!a:x", "@stranger:evil"))
	}
	for i := 5; i < 9; i++ { // the owner is not capped per sender
		batch = append(batch, ev(i, "!b:x", "@owner:x"))
	}
	if n, err := s.CommitMatrixSync(ctx, batch, "s1", lim); err != nil || n != 9 {
		t.Fatalf("%d %v", n, err)
	}
	want := []string{"$e3 " + MatrixOverSenderCap, "$e4 " + MatrixOverSenderCap}
	if fmt.Sprint(refused) != fmt.Sprint(want) {
		t.Fatalf("refused %v, want %v", refused, want)
	}
	// Room !b holds 4 of the owner's: another stranger gets one more in
	// there, then the room is full for everyone but exempt senders.
	refused = nil
	if _, err := s.CommitMatrixSync(ctx, []MatrixEvent{ev(9, "!b:x", "@other:evil"), ev(10, "!b:x", "@third:evil"), ev(11, "!b:x", "@owner:x")}, "s2", lim); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(refused) != fmt.Sprint([]string{"$e10 " + MatrixOverRoomCap}) {
		t.Fatalf("refused %v", refused)
	}
	open, err := s.MatrixOpen(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 3+6 {
		t.Fatalf("%d open events", len(open))
	}
	var nulls int
	s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, "SELECT count(*) FROM matrix_inbound WHERE state = 'refused' AND body IS NULL", &sqlitex.ExecOptions{ResultFunc: func(st *sqlite.Stmt) error { nulls = st.ColumnInt(0); return nil }})
	})
	if nulls != 3 {
		t.Fatalf("%d bodiless refused events, want 3", nulls)
	}
	// An audit that fails: nothing of the batch is recorded, the token stays.
	lim.Refused = func(MatrixEvent, string) error { return errors.New("audit log full") }
	if _, err := s.CommitMatrixSync(ctx, []MatrixEvent{ev(12, "!c:x", "@owner:x"), ev(13, "!a:x", "@stranger:evil")}, "s3", lim); err == nil {
		t.Fatal("a batch whose refusal could not be audited was committed")
	}
	if a, _ := s.MatrixAccount(ctx); a.NextBatch != "s2" {
		t.Fatalf("token moved to %q", a.NextBatch)
	}
	if open, _ := s.MatrixOpen(ctx, 100); len(open) != 9 {
		t.Fatalf("%d open events after the aborted batch", len(open))
	}
}

// A reload returns at most perRoom waiting events of each room, the oldest,
// so one crowded room neither grows the reload nor starves another room.
func TestMatrixOpenBounded(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	if err := s.SetMatrixAccount(ctx, MatrixAccount{UserID: "@bot:x", DeviceID: "DEV"}); err != nil {
		t.Fatal(err)
	}
	var batch []MatrixEvent
	for i := range 30 {
		batch = append(batch, MatrixEvent{EventID: fmt.Sprintf("$a%d", i), RoomID: "!a:x", Sender: "@s:x", Body: []byte("x")})
	}
	batch = append(batch, MatrixEvent{EventID: "$b", RoomID: "!b:x", Sender: "@o:x", Body: []byte("y")})
	if _, err := s.CommitMatrixSync(ctx, batch, "s1", MatrixHoldLimits{}); err != nil {
		t.Fatal(err)
	}
	open, err := s.MatrixOpen(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range open {
		got = append(got, e.EventID)
	}
	if want := "[$a0 $a1 $a2 $a3 $b]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if _, err := s.MatrixOpen(ctx, 0); err == nil {
		t.Fatal("an unbounded reload was allowed")
	}
}

// Rooms whose session exists only because a stranger invited the bot are
// counted whether the request is pending or refused; a room from which an
// event was handed on (the owner's, or after approval) is not.
func TestMatrixStrangerRooms(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	if err := s.SetMatrixAccount(ctx, MatrixAccount{UserID: "@bot:x", DeviceID: "DEV"}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "matrix:!pending:x")
	mustCreate(t, s, "matrix:!refused:x")
	mustCreate(t, s, "matrix:!owner:x")
	gone, _ := mustCreate(t, s, "matrix:!erased:x")
	mustCreate(t, s, "console:main")
	if err := s.EraseSession(ctx, gone); err != nil {
		t.Fatal(err)
	}
	batch := []MatrixEvent{
		{EventID: "$1", RoomID: "!pending:x", Sender: "@s:evil", Body: []byte("i")},
		{EventID: "$2", RoomID: "!refused:x", Sender: "@s:evil", State: MatrixRefused},
		{EventID: "$3", RoomID: "!owner:x", Sender: "@o:x", State: MatrixDone},
	}
	if _, err := s.CommitMatrixSync(ctx, batch, "s1", MatrixHoldLimits{}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.MatrixStrangerRooms(ctx, "matrix:"); err != nil || n != 2 {
		t.Fatalf("%d stranger rooms, %v; want 2", n, err)
	}
}
