package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrClosed is returned by operations on a closed Log.
	ErrClosed = errors.New("audit: log is closed")
	// ErrFailed is wrapped by every append after a write or fsync failed. The
	// on-disk state after such a failure is unknown, so the Log stops rather
	// than guess; reopening re-verifies the file.
	ErrFailed = errors.New("audit: log failed earlier and refuses appends until reopened")
)

// file is what the Log needs from its file; an interface so tests can inject
// write and fsync failures.
type file interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Close() error
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	path   string
	f      file
	key    []byte
	clock  clock
	window time.Duration
	maxAgg int

	failures atomic.Uint64 // writes that failed (Failures)

	kick chan struct{} // wakes the committer; buffered so no wakeup is lost
	done chan struct{} // closed when the committer exits

	mu         sync.Mutex
	head       Anchor // last staged entry: what the next entry chains to
	durable    Anchor // last entry known written and fsynced
	durableOff int64  // file length through the durable head
	cur        *batch // entries staged but not yet taken by the committer
	failed     error  // first write/fsync error; sticky
	closing    bool
	agg        map[aggKey]*aggState
}

// batch is a group of staged lines committed with one write and one fsync.
type batch struct {
	buf  []byte
	last Anchor
	done chan struct{} // closed after commit; err is set before
	err  error
}

// Open opens the log at path, creating it (mode 0600) if it does not exist;
// the parent directory must exist. An existing log is verified in full and
// Open refuses to continue a chain that does not verify. A torn final line is
// cut off and an "audit.recovered" entry records that. Only one Log (in any
// process) may have a file open at a time.
func Open(path string, opts ...Option) (*Log, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l, err := open(path, f, o)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func openFile(path string) (*os.File, error) {
	flags := os.O_RDWR | os.O_APPEND | openFlags
	f, err := os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		// Make the new directory entry durable too, or a crash could lose
		// the whole file along with acknowledged entries.
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("audit: create %s: %w", path, err)
	}
	f, err = os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: fsync directory %s: %w", dir, err)
	}
	return nil
}

func open(path string, f *os.File, o options) (*Log, error) {
	if err := lockFile(f); err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("audit: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("audit: %s is writable by group or others (mode %v); fix with chmod 600", path, fi.Mode().Perm())
	}

	// A new file is an empty log; verifying it still applies the anchor, so
	// a deleted log is refused rather than silently started afresh.
	rep, size, verr := verifyStream(f, verifyOpts{key: o.key, anchor: o.anchor})
	truncateAt := int64(-1)
	var tornNote string
	if ve, torn := isTorn(verr); torn {
		// The line was never acknowledged: Append returns only after the
		// fsync that would have completed it, so it may be cut off. Entries
		// before it (including an anchored one) have verified; only the
		// anchor's existence is left to check.
		verr = nil
		if o.anchor != nil && o.anchor.Seq > rep.Head.Seq {
			verr = &VerifyError{Line: ve.Line, Seq: o.anchor.Seq, offset: size,
				Reason: fmt.Sprintf("missing: the log ends at entry %d but the anchor says entry %d exists (the tail was truncated)", rep.Entries, o.anchor.Seq)}
		}
		truncateAt = ve.offset
		tornNote = fmt.Sprintf("cut off an incomplete final line (line %d, %d bytes at offset %d)",
			ve.Line, fi.Size()-ve.offset, ve.offset)
	}
	if verr != nil {
		return nil, fmt.Errorf("audit: %s: refusing to append to a log that does not verify (run `ironclaw audit verify` to inspect it): %w", path, verr)
	}
	if rep.MAC && o.key == nil {
		return nil, fmt.Errorf("audit: %s: log entries carry MACs; open it with its key", path)
	}
	// Every check is done before anything is cut off, so a refused Open
	// leaves the file as it found it.
	if truncateAt >= 0 {
		if err := f.Truncate(truncateAt); err != nil {
			return nil, fmt.Errorf("audit: %s: truncate torn final line: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("audit: %s: fsync after truncating torn final line: %w", path, err)
		}
	}
	var lf file = f
	if o.wrapFile != nil {
		lf = o.wrapFile(f)
	}
	l := &Log{
		path:       path,
		f:          lf,
		key:        o.key,
		clock:      o.clock,
		window:     o.window,
		maxAgg:     o.maxAggKeys,
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		head:       rep.Head,
		durable:    rep.Head,
		durableOff: size,
		agg:        make(map[aggKey]*aggState),
	}
	go l.run()
	if tornNote != "" {
		if _, err := l.append(Record{Actor: "ironclaw", Action: ActionRecovered, Subject: tornNote, Result: "ok"}, true); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Append writes one entry and returns it once it is written and fsynced. If
// it returns an error the entry must be treated as not logged, and the caller
// must fail the action it was about to take. (The converse does not hold: an
// entry whose Append failed may still be on disk.) After a write or fsync
// failure every later Append fails with ErrFailed until the log is reopened.
func (l *Log) Append(r Record) (Entry, error) {
	e, err := l.append(r, false)
	l.count(err)
	return e, err
}

// Failures counts the writes (Append and Refuse) that failed since Open.
// The caller of a failed write must fail its action; where the action was
// already a refusal there is nothing left to fail, so the count is what
// shows it (`ironclaw status`).
func (l *Log) Failures() uint64 { return l.failures.Load() }

func (l *Log) count(err error) {
	if err != nil {
		l.failures.Add(1)
	}
}

func (l *Log) append(r Record, internal bool) (Entry, error) {
	r, err := prepare(r, internal)
	if err != nil {
		return Entry{}, err
	}
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return Entry{}, err
	}
	e, b, err := l.stageLocked(r, 1)
	l.mu.Unlock()
	if err != nil {
		return Entry{}, err
	}
	<-b.done
	if b.err != nil {
		return Entry{}, b.err
	}
	return e, nil
}

func (l *Log) usableLocked() error {
	if l.closing {
		return ErrClosed
	}
	if l.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, l.failed)
	}
	return nil
}

// stageLocked chains a new entry onto the head and adds its line to the open
// batch; the committer writes it. Entries are chained (seq, prev, time) in
// the order they are staged, which is the order they reach the file.
func (l *Log) stageLocked(r Record, count uint64) (Entry, *batch, error) {
	if l.failed != nil {
		return Entry{}, nil, fmt.Errorf("%w: %w", ErrFailed, l.failed)
	}
	now := l.clock.Now().UTC()
	if y := now.Year(); y < 1 || y > 9999 {
		return Entry{}, nil, fmt.Errorf("audit: clock reads %v, outside what the log can record", now)
	}
	e := Entry{
		Seq:      l.head.Seq + 1,
		Time:     now,
		Actor:    r.Actor,
		Action:   r.Action,
		Subject:  r.Subject,
		Decision: r.Decision,
		Result:   r.Result,
		Count:    count,
		Prev:     l.head.Hash,
	}
	e.Hash = e.computeHash()
	if l.key != nil {
		e.MAC = computeMAC(l.key, e.Hash)
	}
	line, err := e.marshal()
	if err != nil {
		return Entry{}, nil, err
	}
	if l.cur == nil {
		l.cur = &batch{done: make(chan struct{})}
	}
	l.cur.buf = append(l.cur.buf, line...)
	l.cur.last = Anchor{Seq: e.Seq, Hash: e.Hash}
	l.head = l.cur.last
	l.kickLocked()
	return e, l.cur, nil
}

// kickLocked wakes the committer. The channel holds one token, so a wakeup
// sent while the committer is busy is seen when it next waits.
func (l *Log) kickLocked() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// run is the committer: the only goroutine that writes the file. While it
// writes and fsyncs one batch, new appends gather in the next, so however
// many goroutines append, each fsync covers everything staged before it
// started. It also flushes expired Refuse windows, and on Close drains
// everything staged and exits.
func (l *Log) run() {
	defer close(l.done)
	for {
		l.mu.Lock()
		now := l.clock.Now()
		l.flushAggLocked(now, l.closing)
		b := l.cur
		l.cur = nil
		closing := l.closing
		next, hasNext := l.nextAggDeadlineLocked()
		l.mu.Unlock()

		if b != nil {
			l.commit(b)
			continue
		}
		if closing {
			return
		}
		var timer <-chan time.Time
		var stop func() bool
		if hasNext {
			timer, stop = l.clock.Until(next)
		}
		select {
		case <-l.kick:
		case <-timer:
		}
		if stop != nil {
			stop()
		}
	}
}

func (l *Log) commit(b *batch) {
	l.mu.Lock()
	err := l.failed
	l.mu.Unlock()
	if err != nil {
		// An earlier batch failed; writing this one would leave a gap.
		err = fmt.Errorf("%w: %w", ErrFailed, err)
	} else if _, werr := l.f.Write(b.buf); werr != nil {
		err = fmt.Errorf("audit: write %s: %w", l.path, werr)
	} else if serr := l.f.Sync(); serr != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// and a retry could falsely succeed: never retry, fail closed.
		err = fmt.Errorf("audit: fsync %s: %w", l.path, serr)
	}
	l.mu.Lock()
	if err != nil {
		if l.failed == nil {
			l.failed = err
		}
	} else {
		l.durable = b.last
		l.durableOff += int64(len(b.buf))
	}
	l.mu.Unlock()
	b.err = err
	close(b.done)
}

// Head returns the sequence number and hash of the last entry known to be
// written and fsynced (0 and the genesis hash for an empty log). Store it
// where the log's writer cannot rewrite it and pass it back as an Anchor to
// detect truncation.
func (l *Log) Head() (seq uint64, hash [32]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable.Seq, l.durable.Hash
}

// Verify verifies the log's durable entries in the open file with the log's
// key (if any) and the optional anchor. It is safe to call while others
// append.
func (l *Log) Verify(anchor *Anchor) (Report, error) {
	l.mu.Lock()
	size, closing := l.durableOff, l.closing
	l.mu.Unlock()
	if closing {
		return Report{}, ErrClosed
	}
	rep, _, err := verifyStream(io.NewSectionReader(l.f, 0, size), verifyOpts{key: l.key, anchor: anchor})
	return rep, err
}

// Close flushes pending Refuse counts, waits for every staged entry to be
// committed, stops the committer and closes the file. It returns the error
// that put the log in the failed state, if any: then some entries (at least
// the pending refusal counts) may not have been logged.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closing = true
	l.kickLocked()
	l.mu.Unlock()
	<-l.done
	cerr := l.f.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, l.failed)
	}
	if cerr != nil {
		return fmt.Errorf("audit: close %s: %w", l.path, cerr)
	}
	return nil
}
