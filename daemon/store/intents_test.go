package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// Undelivered replies are capped per session, by count and by bytes: the
// batch that would pass a cap is refused whole (ErrBacklog), nothing of it
// is taken and the cursor stays; delivering makes room again. Other
// sessions are not affected.
func TestTakeRepliesCapped(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "matrix:!full:server")
	other, _ := mustCreate(t, s, "matrix:!other:server")
	take := func(from, n uint64, size int) error {
		return s.TakeReplies(ctx, id, from+n-1, bigReplies(from, n, size))
	}
	if err := take(1, MaxUndeliveredReplies, 1); err != nil {
		t.Fatal(err)
	}
	if err := take(MaxUndeliveredReplies+1, 1, 1); !errors.Is(err, ErrBacklog) {
		t.Fatalf("one reply past the count cap: %v, want ErrBacklog", err)
	}
	if v, _ := s.Cursor(ctx, id, CursorOutboxDelivered); v != MaxUndeliveredReplies {
		t.Fatalf("the refused batch moved the cursor to %d", v)
	}
	if err := s.TakeReplies(ctx, other, 1, []TakenReply{{OutboxSeq: 1, TxnID: "t", Body: []byte("x")}}); err != nil {
		t.Fatalf("another session was refused: %v", err)
	}
	if err := s.MarkDelivered(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	if err := take(MaxUndeliveredReplies+1, 1, 1); err != nil {
		t.Fatalf("a reply once one was delivered: %v", err)
	}
	// Bytes: a few large replies reach the byte cap long before the count.
	big := 60 << 10
	n := uint64(MaxUndeliveredBytes / big)
	if err := s.TakeReplies(ctx, other, 1+n-2, bigReplies(2, n-2, big)); err != nil {
		t.Fatal(err)
	}
	if err := s.TakeReplies(ctx, other, 1+n+1, bigReplies(n, 2, big)); !errors.Is(err, ErrBacklog) {
		t.Fatalf("replies past the byte cap: %v, want ErrBacklog", err)
	}
}

func bigReplies(from, n uint64, size int) []TakenReply {
	var rs []TakenReply
	for i := range n {
		rs = append(rs, TakenReply{OutboxSeq: from + i, TxnID: fmt.Sprintf("t%d", from+i), Body: bytes.Repeat([]byte("x"), size)})
	}
	return rs
}

// PendingIntents returns a bounded batch, the oldest first.
func TestPendingIntentsBounded(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "matrix:!many:server")
	var rs []TakenReply
	for i := range uint64(3 * PendingBatch) {
		rs = append(rs, TakenReply{OutboxSeq: i + 1, TxnID: fmt.Sprintf("t%d", i+1), Body: []byte("x")})
	}
	if err := s.TakeReplies(ctx, id, uint64(len(rs)), rs); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{0, 10, 10 * PendingBatch} {
		want := min(limit, PendingBatch)
		if limit == 0 {
			want = PendingBatch
		}
		got, err := s.PendingIntents(ctx, id, limit)
		if err != nil || len(got) != want || got[0].OutboxSeq != 1 || got[len(got)-1].OutboxSeq != uint64(want) {
			t.Fatalf("PendingIntents(limit %d) = %d intents, %v; want the %d oldest", limit, len(got), err, want)
		}
	}
}

// TakeRepliesAndProgress moves inbox.consumed with the replies in one
// commit: forward only (a lower report is no error and changes nothing),
// and not at all when the replies are refused.
func TestTakeRepliesAndProgress(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "matrix:!progress:server")
	got, err := s.TakeRepliesAndProgress(ctx, id, 2, bigReplies(1, 2, 10), 5)
	if err != nil || got != 5 {
		t.Fatalf("forward: %d %v, want 5", got, err)
	}
	got, err = s.TakeRepliesAndProgress(ctx, id, 3, bigReplies(3, 1, 10), 4)
	if err != nil || got != 5 {
		t.Fatalf("backwards: %d %v, want the cursor kept at 5", got, err)
	}
	if v, _ := s.Cursor(ctx, id, CursorOutboxDelivered); v != 3 {
		t.Fatalf("the replies were not taken with a lower progress: delivered %d", v)
	}
	// Refused whole: the progress does not move either.
	if _, err := s.TakeRepliesAndProgress(ctx, id, 3+MaxUndeliveredReplies, bigReplies(4, MaxUndeliveredReplies, 1), 9); !errors.Is(err, ErrBacklog) {
		t.Fatalf("past the cap: %v, want ErrBacklog", err)
	}
	if v, _ := s.Cursor(ctx, id, CursorInboxConsumed); v != 5 {
		t.Fatalf("a refused batch moved inbox.consumed to %d", v)
	}
	if got, err := s.TakeRepliesAndProgress(ctx, id, 3, nil, 0); err != nil || got != 5 {
		t.Fatalf("no progress: %d %v", got, err)
	}
}
