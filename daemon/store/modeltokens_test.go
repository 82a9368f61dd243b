package store

import (
	"context"
	"errors"
	"testing"
)

// A session's model tokens per day outlive a reopened store, only the
// latest day is kept, bad input is refused, and an erase removes them.
func TestModelTokens(t *testing.T) {
	s, path, key := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	other, _ := mustCreate(t, s, "console:b")
	if n, err := s.ModelTokens(ctx, id, "2026-12-06"); err != nil || n != 0 {
		t.Fatalf("a day never recorded: %d %v", n, err)
	}
	for _, day := range []string{"2026-12-05", "2026-12-06"} {
		if err := s.SetModelTokens(ctx, id, day, 700); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetModelTokens(ctx, id, "2026-12-06", 1234); err != nil {
		t.Fatal(err)
	}
	if err := s.SetModelTokens(ctx, other, "2026-12-06", 5); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "2026-13-01", "2026-12-06' OR 1=1 --", "20261206"} {
		if err := s.SetModelTokens(ctx, id, bad, 1); err == nil {
			t.Errorf("day %q accepted", bad)
		}
	}
	if err := s.SetModelTokens(ctx, id, "2026-12-06", -1); err == nil {
		t.Error("negative tokens accepted")
	}
	s.Close()
	s, err := Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.ModelTokens(ctx, id, "2026-12-06"); err != nil || n != 1234 {
		t.Fatalf("after reopening: %d %v, want 1234", n, err)
	}
	c := rawConn(t, path)
	if n := rawInt(t, c, "SELECT count(*) FROM model_tokens WHERE day < '2026-12-06'"); n != 0 {
		t.Fatalf("%d earlier days kept", n)
	}
	if err := s.EraseSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ModelTokens(ctx, id, "2026-12-06"); !errors.Is(err, ErrErased) {
		t.Fatalf("an erased session's tokens: %v, want ErrErased", err)
	}
	if n := rawInt(t, c, "SELECT count(*) FROM model_tokens WHERE session_id = '"+id.String()+"'"); n != 0 {
		t.Fatalf("%d token rows survive the erase", n)
	}
	if n, err := s.ModelTokens(ctx, other, "2026-12-06"); err != nil || n != 5 {
		t.Fatalf("another session's tokens: %d %v", n, err)
	}
}

// BenchmarkSetModelTokens is what the proxy's budget adds per model call,
// twice (admission and settlement); compare BenchmarkSetCursor, the same
// kind of fsynced single-row write.
func BenchmarkSetModelTokens(b *testing.B) {
	s, _, _ := openTest(b)
	ctx := context.Background()
	id, _ := mustCreate(b, s, "console:bench")
	n := int64(0)
	for b.Loop() {
		n++
		if err := s.SetModelTokens(ctx, id, "2026-12-06", n); err != nil {
			b.Fatal(err)
		}
	}
}
