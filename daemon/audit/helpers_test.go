package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func tempLogPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "audit.log")
}

func mustOpen(t testing.TB, path string, opts ...Option) *Log {
	t.Helper()
	l, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustClose(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func rec(i int) Record {
	return Record{
		Actor:    "operator:alice",
		Action:   "change.approve",
		Subject:  "profile:v" + string(rune('a'+i%26)),
		Decision: "approved",
		Result:   "ok",
	}
}

// writeLog creates a log with n entries and returns its bytes.
func writeLog(t testing.TB, path string, n int, opts ...Option) []byte {
	t.Helper()
	l := mustOpen(t, path, opts...)
	for i := range n {
		if _, err := l.Append(rec(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	mustClose(t, l)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readEntries(t testing.TB, path string) []Entry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		e, reason := parseLine(line)
		if reason != "" {
			t.Fatalf("parse %q: %s", line, reason)
		}
		out = append(out, e)
	}
	return out
}

// lines splits a log into its lines, each keeping its '\n'.
func lines(data []byte) [][]byte {
	var out [][]byte
	for _, l := range bytes.SplitAfter(data, []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// wantVerifyError asserts err is a *VerifyError at line (and seq, if > 0).
func wantVerifyError(t testing.TB, err error, line int, seq uint64) *VerifyError {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("want *VerifyError at line %d, got %v", line, err)
	}
	if ve.Line != line || (seq > 0 && ve.Seq != seq) {
		t.Fatalf("want error at line %d seq %d, got %v", line, seq, ve)
	}
	return ve
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitClosed(t testing.TB, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), timers: map[*fakeTimer]struct{}{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Until(at time.Time) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: at, c: make(chan time.Time, 1)}
	if !c.now.Before(at) {
		t.c <- c.now
		return t.c, func() bool { return false }
	}
	c.timers[t] = struct{}{}
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[t]
		delete(c.timers, t)
		return ok
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !c.now.Before(t.at) {
			t.c <- c.now
			delete(c.timers, t)
		}
	}
}

// faultyFile wraps the log's file to inject failures and observe fsyncs.
type faultyFile struct {
	*os.File
	mu        sync.Mutex
	writeErr  error // Write writes partial bytes, then fails with writeErr
	partial   int
	syncErr   error
	syncGate  chan struct{} // if set, the next Sync signals inSync and waits for it to close
	inSync    chan struct{}
	syncCount atomic.Int64
}

func (f *faultyFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	werr, partial := f.writeErr, f.partial
	f.mu.Unlock()
	if werr != nil {
		n, _ := f.File.Write(p[:min(partial, len(p))])
		return n, werr
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	f.mu.Lock()
	gate := f.syncGate
	f.syncGate = nil
	f.mu.Unlock()
	if gate != nil {
		close(f.inSync)
		<-gate
	}
	f.mu.Lock()
	serr := f.syncErr
	f.mu.Unlock()
	if serr != nil {
		return serr
	}
	f.syncCount.Add(1)
	return f.File.Sync()
}

func openFaulty(t testing.TB, path string, opts ...Option) (*Log, *faultyFile) {
	t.Helper()
	var ff *faultyFile
	opts = append(opts, withFile(func(f file) file {
		ff = &faultyFile{File: f.(*os.File)}
		return ff
	}))
	return mustOpen(t, path, opts...), ff
}

func sortedSeqs(es []Entry) []uint64 {
	s := make([]uint64, len(es))
	for i, e := range es {
		s[i] = e.Seq
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}
