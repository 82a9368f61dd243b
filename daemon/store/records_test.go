package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/wire"
)

func sessionKey(t testing.TB) *wire.Key {
	return (*wire.Key)(testKey(t))
}

func TestRecordsRoundTripAndCaps(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	key := sessionKey(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.UpdateMemory(ctx, id, key, wire.MemoryOp{Op: wire.OpSet, Key: "tea", Text: "green"}))
	must(s.UpdateMemory(ctx, id, key, wire.MemoryOp{Op: wire.OpSet, Key: "tea", Text: "oolong"}))
	must(s.UpdateMemory(ctx, id, key, wire.MemoryOp{Op: wire.OpSet, Key: "name", Text: "Ada"}))
	must(s.UpdateMemory(ctx, id, key, wire.MemoryOp{Op: wire.OpRemove, Key: "name"}))
	must(s.UpdateNote(ctx, id, key, wire.NoteOp{Op: wire.OpWrite, Name: "todo.md", Text: "- milk"}))
	must(s.UpdateSchedule(ctx, id, key, wire.ScheduleOp{Op: wire.OpAdd, ID: "b", At: 2000, Text: "later"}))
	must(s.UpdateSchedule(ctx, id, key, wire.ScheduleOp{Op: wire.OpAdd, ID: "a", At: 1000, Every: 60, Text: "sooner"}))
	r, err := s.Records(ctx, id, key)
	must(err)
	if len(r.Memory) != 1 || r.Memory[0] != (wire.Memory{Key: "tea", Text: "oolong"}) {
		t.Fatalf("memory %+v", r.Memory)
	}
	if len(r.Notes) != 1 || len(r.Schedules) != 2 || r.Schedules[0].ID != "a" {
		t.Fatalf("records %+v", r)
	}
	// Another session's key opens nothing.
	if _, err := s.Records(ctx, id, sessionKey(t)); !errors.Is(err, ErrSealed) {
		t.Fatalf("another key: %v", err)
	}
	// Caps: a flood of remember calls cannot grow the store without bound.
	for i := range wire.MaxMemoryItems + 5 {
		err := s.UpdateMemory(ctx, id, key, wire.MemoryOp{Op: wire.OpSet, Key: fmt.Sprintf("k%d", i), Text: "x"})
		if i < wire.MaxMemoryItems-1 && err != nil {
			t.Fatal(err)
		}
		if i >= wire.MaxMemoryItems && !errors.Is(err, ErrFull) {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	must(s.UpdateMemory(ctx, id, key, wire.MemoryOp{Op: wire.OpSet, Key: "tea", Text: "replacing at the cap is fine"}))
	// History keeps only the newest turns.
	for i := range KeptHistory + 10 {
		must(s.AppendHistory(ctx, id, key, wire.Turn{Seq: uint64(i + 1), Role: wire.TurnUser, Text: fmt.Sprint(i)}))
	}
	h, err := s.History(ctx, id, key, 1000)
	must(err)
	if len(h) != KeptHistory || h[0].Seq != 11 || h[len(h)-1].Seq != KeptHistory+10 {
		t.Fatalf("history kept %d, from %d", len(h), h[0].Seq)
	}
	h, _ = s.History(ctx, id, key, 3)
	if len(h) != 3 || h[2].Seq != KeptHistory+10 {
		t.Fatalf("newest 3: %+v", h)
	}
}

func TestRecordsSealedAndErased(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	key := sessionKey(t)
	marker := fmt.Sprintf("MARKER%x", randBytes(t, 8))
	if err := s.UpdateMemory(ctx, id, key, wire.MemoryOp{Op: wire.OpSet, Key: marker, Text: marker}); err != nil {
		t.Fatal(err)
	}
	s.UpdateNote(ctx, id, key, wire.NoteOp{Op: wire.OpWrite, Name: "n", Text: marker})
	s.UpdateSchedule(ctx, id, key, wire.ScheduleOp{Op: wire.OpAdd, ID: "s", At: 5, Text: marker})
	s.AppendHistory(ctx, id, key, wire.Turn{Seq: 1, Role: wire.TurnUser, Text: marker})
	if hits := filesContaining(dirBytes(t, filepath.Dir(path)), []byte(marker)); len(hits) != 0 {
		t.Fatalf("plaintext (even a memory key) in %v", hits)
	}
	if err := s.EraseSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	c := rawConn(t, path)
	if n := rawInt(t, c, "SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM history)"); n != 0 {
		t.Fatalf("%d records survive the erase", n)
	}
}

func TestDueSchedules(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	a, _ := mustCreate(t, s, "console:a")
	b, _ := mustCreate(t, s, "console:b")
	ka, kb := sessionKey(t), sessionKey(t)
	s.UpdateSchedule(ctx, a, ka, wire.ScheduleOp{Op: wire.OpAdd, ID: "x", At: 300, Text: "a later"})
	s.UpdateSchedule(ctx, b, kb, wire.ScheduleOp{Op: wire.OpAdd, ID: "y", At: 100, Every: 60, Text: "b first"})
	d, ok, err := s.NextDue(ctx)
	if err != nil || !ok || d.Session != b || d.At != 100 {
		t.Fatalf("next %+v %v %v", d, ok, err)
	}
	ds, _ := s.DueBy(ctx, 200, 10)
	if len(ds) != 1 {
		t.Fatalf("due by 200: %+v", ds)
	}
	sc, err := s.DueSchedule(ctx, d, kb)
	if err != nil || sc.Text != "b first" {
		t.Fatalf("%+v %v", sc, err)
	}
	next := sc
	next.At = 160
	if err := s.ScheduleFired(ctx, d, kb, &next); err != nil {
		t.Fatal(err)
	}
	// A stale firing (the due moved on) changes nothing.
	if err := s.ScheduleFired(ctx, d, kb, nil); err != nil {
		t.Fatal(err)
	}
	d, _, _ = s.NextDue(ctx)
	if d.Session != b || d.At != 160 {
		t.Fatalf("after firing: %+v", d)
	}
	if err := s.ScheduleFired(ctx, d, kb, nil); err != nil {
		t.Fatal(err)
	}
	d, _, _ = s.NextDue(ctx)
	if d.Session != a {
		t.Fatalf("one-off not deleted: %+v", d)
	}
	// An erased session's schedules never fire.
	s.EraseSession(ctx, a)
	if _, ok, _ := s.NextDue(ctx); ok {
		t.Fatal("an erased session's schedule is due")
	}
}

// A flood of operations in one delivery is one transaction and stops at the
// cap: a hostile agent cannot grow the store or hold its one connection
// for a commit per row.
func TestRecordOpsFloodIsCapped(t *testing.T) {
	s, path, _ := openTest(t)
	ctx := context.Background()
	id, _ := mustCreate(t, s, "console:a")
	key := sessionKey(t)
	var ops []RecordOp
	for i := range 5000 {
		op, _ := OpFromBody(wire.MemoryOp{Op: wire.OpSet, Key: fmt.Sprintf("k%d", i), Text: "flood"})
		ops = append(ops, op)
	}
	refused, err := s.UpdateRecords(ctx, id, key, ops)
	if err != nil {
		t.Fatal(err)
	}
	if refused != 5000-wire.MaxMemoryItems {
		t.Fatalf("refused %d", refused)
	}
	s.Close()
	c := rawConn(t, path)
	if n := rawInt(t, c, "SELECT count(*) FROM records"); n != wire.MaxMemoryItems {
		t.Fatalf("%d records kept", n)
	}
}
