package audit

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	path := tempLogPath(t)
	l := mustOpen(t, path)
	if seq, h := l.Head(); seq != 0 || h != ([32]byte{}) {
		t.Fatalf("empty log head = %d %x", seq, h)
	}
	want := []Record{
		{Actor: "operator:alice", Action: "change.approve", Subject: "profile:3 diff:ab12", Decision: "approved", Result: "ok"},
		{Actor: "session:7f3a", Action: "tool.call", Subject: "shell <&>", Decision: "deny", Result: "rule no-shell"},
		{Actor: "ironclaw", Action: "sandbox.start", Subject: "", Decision: "", Result: "ok ünïcødé ✓"},
	}
	var got []Entry
	for _, r := range want {
		e, err := l.Append(r)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
		if seq, h := l.Head(); seq != e.Seq || h != e.Hash {
			t.Fatalf("Head after append = %d, want %d", seq, e.Seq)
		}
	}
	mustClose(t, l)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	rep, err := VerifyFile(path, &Anchor{Seq: 3, Hash: got[2].Hash})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 3 || rep.Head.Hash != got[2].Hash || !rep.Anchored || rep.MAC {
		t.Fatalf("report = %+v", rep)
	}
	read := readEntries(t, path)
	var prev [32]byte
	for i, e := range read {
		r := want[i]
		if e.Seq != uint64(i+1) || e.Actor != r.Actor || e.Action != r.Action || e.Subject != r.Subject ||
			e.Decision != r.Decision || e.Result != r.Result || e.Count != 1 || e.Prev != prev ||
			e.Hash != got[i].Hash || !e.Time.Equal(got[i].Time) || e.Time.Location().String() != "UTC" {
			t.Fatalf("entry %d read back as %+v, appended %+v", i+1, e, got[i])
		}
		prev = e.Hash
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte(`"subject":"shell <&>"`)) {
		t.Fatalf("HTML characters should stay readable: %s", data)
	}

	// Reopening continues the chain.
	l = mustOpen(t, path)
	if seq, h := l.Head(); seq != 3 || h != got[2].Hash {
		t.Fatalf("reopened head = %d", seq)
	}
	e, err := l.Append(rec(0))
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 4 || e.Prev != got[2].Hash {
		t.Fatalf("continued entry = %+v", e)
	}
	if rep, err := l.Verify(nil); err != nil || rep.Entries != 4 {
		t.Fatalf("live Verify = %+v, %v", rep, err)
	}
	mustClose(t, l)
	if rep, err := VerifyFile(path, nil); err != nil || rep.Entries != 4 {
		t.Fatalf("VerifyFile = %+v, %v", rep, err)
	}
}

func TestOpenRefusesBrokenChain(t *testing.T) {
	path := tempLogPath(t)
	data := writeLog(t, path, 5)
	ls := lines(data)
	off := len(ls[0]) + len(ls[1]) + bytes.Index(ls[2], []byte("approved"))
	data[off] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if err == nil {
		t.Fatal("Open accepted a broken chain")
	}
	wantVerifyError(t, err, 3, 3)
	if !strings.Contains(err.Error(), "ironclaw audit verify") || !strings.Contains(err.Error(), "entry 3 (line 3): hash does not match its contents") {
		t.Fatalf("error does not tell the operator what to do: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Fatal("refused Open modified the file")
	}
}

func TestTornLastLineRecovery(t *testing.T) {
	path := tempLogPath(t)
	data := writeLog(t, path, 3)
	// A fourth line that was being written when the machine crashed.
	full := writeLog(t, tempLogPath(t), 4)
	torn := lines(full)[3]
	torn = torn[:len(torn)/2]
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn)
	f.Close()

	_, err = VerifyFile(path, nil)
	ve := wantVerifyError(t, err, 4, 4)
	if !strings.Contains(ve.Reason, "incomplete final line") {
		t.Fatalf("reason = %q", ve.Reason)
	}

	l := mustOpen(t, path)
	seq, _ := l.Head()
	if seq != 4 {
		t.Fatalf("head after recovery = %d, want 4 (3 + recovery note)", seq)
	}
	e, err := l.Append(rec(0))
	if err != nil || e.Seq != 5 {
		t.Fatalf("append after recovery = %+v, %v", e, err)
	}
	mustClose(t, l)
	if _, err := VerifyFile(path, nil); err != nil {
		t.Fatalf("recovered log does not verify: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.HasPrefix(after, data) || bytes.Contains(after, torn) {
		t.Fatal("torn bytes were not cut off cleanly")
	}
	es := readEntries(t, path)
	if es[3].Action != ActionRecovered || !strings.Contains(es[3].Subject, "incomplete final line") {
		t.Fatalf("recovery not logged: %+v", es[3])
	}
}

func TestAppendFailuresFailClosed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*faultyFile)
	}{
		{"write error", func(f *faultyFile) { f.writeErr = syscall.ENOSPC }},
		{"short write", func(f *faultyFile) { f.writeErr, f.partial = syscall.EIO, 40 }},
		{"fsync error", func(f *faultyFile) { f.syncErr = syscall.EIO }},
		{"fd closed underneath", func(f *faultyFile) { f.File.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tempLogPath(t)
			l, ff := openFaulty(t, path)
			if _, err := l.Append(rec(0)); err != nil {
				t.Fatal(err)
			}
			ff.mu.Lock()
			tc.inject(ff)
			ff.mu.Unlock()

			if _, err := l.Append(rec(1)); err == nil {
				t.Fatal("Append succeeded although the write failed")
			}
			if seq, _ := l.Head(); seq != 1 {
				t.Fatalf("durable head moved to %d after a failed commit", seq)
			}
			// Fail closed: even once the disk is fine again.
			ff.mu.Lock()
			ff.writeErr, ff.syncErr = nil, nil
			ff.mu.Unlock()
			if _, err := l.Append(rec(2)); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after failure: %v, want ErrFailed", err)
			}
			if err := l.Refuse("session:1", "tool.call", "x", "no"); !errors.Is(err, ErrFailed) {
				t.Fatalf("refuse after failure: %v, want ErrFailed", err)
			}
			if err := l.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Close = %v, want the failure", err)
			}
			// Reopening re-verifies (cutting off a torn line if the write
			// was short) and appends again.
			l = mustOpen(t, path)
			if _, err := l.Append(rec(3)); err != nil {
				t.Fatal(err)
			}
			mustClose(t, l)
			if _, err := VerifyFile(path, nil); err != nil {
				t.Fatal(err)
			}
			recovered := false
			for _, e := range readEntries(t, path) {
				recovered = recovered || e.Action == ActionRecovered
			}
			if recovered != (tc.name == "short write") {
				t.Fatalf("recovery entry present = %v; want it exactly when a torn line was left", recovered)
			}
		})
	}
}

// TestFailedBatchFailsAllWaiters: every appender sharing a failed fsync
// gets the error, not only the one that triggered it.
func TestFailedBatchFailsAllWaiters(t *testing.T) {
	l, ff := openFaulty(t, tempLogPath(t))
	gate := make(chan struct{})
	ff.mu.Lock()
	ff.syncGate, ff.inSync = gate, make(chan struct{})
	ff.mu.Unlock()
	first := make(chan error, 1)
	go func() { _, err := l.Append(rec(0)); first <- err }()
	waitClosed(t, ff.inSync, "the first fsync")
	ff.mu.Lock()
	ff.syncErr = syscall.EIO
	ff.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Go(func() { _, err := l.Append(rec(i)); errs <- err })
	}
	waitFor(t, "10 staged entries", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.head.Seq == 11 })
	close(gate) // the first batch's fsync fails
	if err := <-first; err == nil {
		t.Fatal("first append succeeded despite fsync failure")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("an append in a batch after a failed fsync succeeded")
		}
	}
	if err := l.Close(); err == nil {
		t.Fatal("Close hid the failure")
	}
}

// TestGroupCommit: Append does not return before its fsync, and appends
// staged while an fsync runs share the next one.
func TestGroupCommit(t *testing.T) {
	l, ff := openFaulty(t, tempLogPath(t))
	gate := make(chan struct{})
	ff.mu.Lock()
	ff.syncGate, ff.inSync = gate, make(chan struct{})
	ff.mu.Unlock()

	first := make(chan error, 1)
	go func() { _, err := l.Append(rec(0)); first <- err }()
	waitClosed(t, ff.inSync, "the first fsync") // entry 1 is written, its fsync is in progress

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if _, err := l.Append(rec(i)); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "10 staged entries", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.head.Seq == 11 })
	select {
	case err := <-first:
		t.Fatalf("Append returned (%v) before its fsync finished", err)
	default:
	}
	if seq, _ := l.Head(); seq != 0 {
		t.Fatalf("Head = %d before any fsync finished", seq)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n := ff.syncCount.Load(); n != 2 {
		t.Fatalf("%d fsyncs for 11 appends in two groups, want 2", n)
	}
	mustClose(t, l)
}

func TestConcurrentAppends(t *testing.T) {
	path := tempLogPath(t)
	l, ff := openFaulty(t, path)
	const goroutines, each = 50, 100
	var (
		mu  sync.Mutex
		all []Entry
		wg  sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				e, err := l.Append(rec(g*each + i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all = append(all, e)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	mustClose(t, l)
	seqs := sortedSeqs(all)
	if len(seqs) != goroutines*each {
		t.Fatalf("%d entries, want %d", len(seqs), goroutines*each)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seqs not contiguous: position %d has %d", i, s)
		}
	}
	rep, err := VerifyFile(path, &Anchor{Seq: 5000, Hash: func() [32]byte {
		for _, e := range all {
			if e.Seq == 5000 {
				return e.Hash
			}
		}
		return [32]byte{}
	}()})
	if err != nil || rep.Entries != goroutines*each {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
	t.Logf("%d appends, %d fsyncs", goroutines*each, ff.syncCount.Load())
}

func TestLiveVerifyWhileAppending(t *testing.T) {
	l := mustOpen(t, tempLogPath(t))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := l.Append(rec(i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for range 20 {
		if _, err := l.Verify(nil); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	seq, h := l.Head()
	if rep, err := l.Verify(&Anchor{Seq: seq, Hash: h}); err != nil || rep.Entries != 200 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	mustClose(t, l)
}

func TestOpenExclusive(t *testing.T) {
	path := tempLogPath(t)
	l := mustOpen(t, path)
	if l2, err := Open(path); err == nil {
		l2.Close()
		t.Fatal("a second Open of a log in use succeeded (two writers would fork the chain)")
	}
	mustClose(t, l)
	mustClose(t, mustOpen(t, path))
}

func TestOpenChecks(t *testing.T) {
	path := tempLogPath(t)
	writeLog(t, path, 1)
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("Open accepted a world-writable log")
	}
	if _, err := Open(t.TempDir() + "/missing/audit.log"); err == nil {
		t.Fatal("Open created a missing parent directory")
	}
	link := tempLogPath(t)
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link); err == nil {
		t.Fatal("Open followed a symlink")
	}
	if _, err := Open(tempLogPath(t), WithKey(make([]byte, 16))); err == nil {
		t.Fatal("Open accepted a 16-byte key")
	}
}

func TestClosed(t *testing.T) {
	l := mustOpen(t, tempLogPath(t))
	mustClose(t, l)
	if _, err := l.Append(rec(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := l.Refuse("a", "b", "c", "d"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Refuse after Close = %v", err)
	}
	// Both failed writes are counted, for `ironclaw status`.
	if n := l.Failures(); n != 2 {
		t.Fatalf("Failures = %d, want 2", n)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
}

func TestRecordSanitizing(t *testing.T) {
	path := tempLogPath(t)
	l := mustOpen(t, path)
	long := strings.Repeat("é", 600) // 1200 bytes
	e, err := l.Append(Record{
		Actor:   "session:\x1b[31mred",
		Action:  "tool.call",
		Subject: "evil\u202egnp.exe bad\xffutf8 line\u2028sep",
		Result:  long,
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Actor != `session:\x1b[31mred` {
		t.Fatalf("actor = %q", e.Actor)
	}
	if e.Subject != `evil\u202egnp.exe bad\xffutf8 line\u2028sep` {
		t.Fatalf("subject = %q", e.Subject)
	}
	if len(e.Result) > MaxFieldLen || !strings.HasSuffix(e.Result, "…") || !isClean(e.Result) {
		t.Fatalf("long result not capped cleanly: %d bytes", len(e.Result))
	}
	for _, bad := range []Record{
		{Action: "x"},
		{Actor: "x"},
		{Actor: "x", Action: ActionRecovered},
	} {
		if _, err := l.Append(bad); err == nil {
			t.Fatalf("Append(%+v) succeeded", bad)
		}
	}
	mustClose(t, l)
	if _, err := VerifyFile(path, nil); err != nil {
		t.Fatal(err)
	}
}

func TestSanitizeEdges(t *testing.T) {
	for _, s := range []string{"", "plain", strings.Repeat("a", MaxFieldLen), "\x00", "\t\n", "\u200b\u2066\ufeff", strings.Repeat("\x01", 400), strings.Repeat("\xff", 300)} {
		out := sanitize(s)
		if len(out) > MaxFieldLen || !isClean(out) {
			t.Fatalf("sanitize(%q) = %q not clean or too long", s, out)
		}
		if sanitize(out) != out {
			t.Fatalf("sanitize not idempotent on %q", s)
		}
	}
}

func TestTail(t *testing.T) {
	path := tempLogPath(t)
	l := mustOpen(t, path)
	for i := range 3000 {
		if _, err := l.Append(Record{Actor: "operator:local:root", Action: "test", Subject: strings.Repeat("x", i%200)}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, l)
	var seqs []uint64
	if err := Tail(path, func(e Entry) bool { seqs = append(seqs, e.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 3000 {
		t.Fatalf("tailed %d entries", len(seqs))
	}
	for i, s := range seqs {
		if s != uint64(3000-i) {
			t.Fatalf("entry %d is seq %d", i, s)
		}
	}
	seqs = nil
	Tail(path, func(e Entry) bool { seqs = append(seqs, e.Seq); return len(seqs) < 5 })
	if len(seqs) != 5 || seqs[4] != 2996 {
		t.Fatalf("stop early: %v", seqs)
	}
	// An append in progress (no newline yet) is skipped.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":3001,"ti` + strings.Repeat("x", 200<<10)) // spans several read chunks
	f.Close()
	seqs = nil
	if err := Tail(path, func(e Entry) bool { seqs = append(seqs, e.Seq); return false }); err != nil || seqs[0] != 3000 {
		t.Fatalf("torn tail: %v %v", err, seqs)
	}
}
