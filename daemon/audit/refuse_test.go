package audit

import (
	"testing"
	"time"
)

func TestRefuseAggregation(t *testing.T) {
	path := tempLogPath(t)
	clk := newFakeClock()
	t0 := clk.Now()
	l := mustOpen(t, path, withClock(clk), WithRefuseWindow(time.Second))
	head := func() uint64 { s, _ := l.Head(); return s }
	refuse := func(subject string) {
		t.Helper()
		if err := l.Refuse("session:7f3a", "tool.call", subject, "rule no-shell"); err != nil {
			t.Fatal(err)
		}
	}

	refuse("A") // first: durable before return
	if head() != 1 {
		t.Fatalf("first refusal not durable on return: head %d", head())
	}
	for range 4 {
		refuse("A") // counted, not written
	}
	refuse("B") // different subject: its own entry
	if head() != 2 {
		t.Fatalf("head = %d, want 2 (repeats must not be written yet)", head())
	}
	clk.Advance(999 * time.Millisecond)
	refuse("A") // still inside A's window: 5 pending
	time.Sleep(20 * time.Millisecond)
	if head() != 2 {
		t.Fatalf("head = %d before the window ended", head())
	}
	clk.Advance(time.Millisecond) // A's (and B's) window ends: one entry, count 5
	waitFor(t, "window flush", func() bool { return head() == 3 })

	refuse("A") // window gone: written at once again
	if head() != 4 {
		t.Fatalf("head = %d, want 4", head())
	}
	refuse("A")
	refuse("A")
	refuse("B") // B's window ended with nothing pending: written at once
	if head() != 5 {
		t.Fatalf("head = %d, want 5", head())
	}
	mustClose(t, l) // flushes A's pending 2

	type row struct {
		subject string
		count   uint64
		at      time.Duration
	}
	want := []row{{"A", 1, 0}, {"B", 1, 0}, {"A", 5, time.Second}, {"A", 1, time.Second}, {"B", 1, time.Second}, {"A", 2, time.Second}}
	es := readEntries(t, path)
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d", len(es), len(want))
	}
	for i, w := range want {
		e := es[i]
		if e.Subject != w.subject || e.Count != w.count || !e.Time.Equal(t0.Add(w.at)) ||
			e.Decision != DecisionDeny || e.Result != "rule no-shell" || e.Action != "tool.call" {
			t.Errorf("entry %d = %s count %d at %v, want %s count %d at +%v", i+1, e.Subject, e.Count, e.Time, w.subject, w.count, w.at)
		}
	}
	if _, err := VerifyFile(path, nil); err != nil {
		t.Fatal(err)
	}
}

// TestRefuseExpiredBeforeFlush: a refusal arriving after the window ended but
// before the committer flushed must put the count first, then itself.
func TestRefuseExpiredBeforeFlush(t *testing.T) {
	path := tempLogPath(t)
	clk := newFakeClock()
	l := mustOpen(t, path, withClock(clk))
	l.Refuse("a", "b", "c", "d")
	l.Refuse("a", "b", "c", "d")
	clk.Advance(5 * time.Second) // races the committer's flush on purpose
	if err := l.Refuse("a", "b", "c", "d"); err != nil {
		t.Fatal(err)
	}
	mustClose(t, l)
	es := readEntries(t, path)
	if len(es) != 3 || es[0].Count != 1 || es[1].Count != 1 || es[2].Count != 1 {
		t.Fatalf("entries: %+v", es)
	}
	// Which of entries 2 and 3 is the flushed count is decided by the race;
	// both have count 1 here, so the log is the same either way.
}

func TestRefuseWindowOff(t *testing.T) {
	path := tempLogPath(t)
	l := mustOpen(t, path, WithRefuseWindow(0))
	for range 3 {
		if err := l.Refuse("a", "b", "c", "d"); err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := l.Head(); s != 3 {
		t.Fatalf("head = %d, want every refusal written", s)
	}
	mustClose(t, l)
}

func TestRefuseKeyCap(t *testing.T) {
	path := tempLogPath(t)
	clk := newFakeClock()
	l := mustOpen(t, path, withClock(clk))
	l.maxAgg = 2
	for _, s := range []string{"a", "b", "c", "c"} {
		if err := l.Refuse("x", "y", s, "z"); err != nil {
			t.Fatal(err)
		}
	}
	// "c" found no free window, so its repeat is written, not dropped.
	if s, _ := l.Head(); s != 4 {
		t.Fatalf("head = %d, want 4", s)
	}
	mustClose(t, l)
}

// TestRefuseFlushWithoutOtherTraffic: a burst of identical refusals followed
// by silence still gets its count written when the window ends, not only at
// Close.
func TestRefuseFlushWithoutOtherTraffic(t *testing.T) {
	clk := newFakeClock()
	l := mustOpen(t, tempLogPath(t), withClock(clk))
	for range 3 {
		if err := l.Refuse("a", "b", "c", "d"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond) // let the committer settle on its timer
	clk.Advance(DefaultRefuseWindow)
	waitFor(t, "the window's count entry", func() bool { s, _ := l.Head(); return s == 2 })
	mustClose(t, l)
}
