package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"golang.org/x/sys/unix"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Bounds on what one read of an agent's outbox may cost the daemon. Every
// byte and every row the daemon takes from an agent is bounded by what that
// session may honestly hold, and all sessions share one memory Budget.
const (
	// DefaultMaxOutboxBytes caps the outbox file the daemon is willing to
	// copy when the reader is given no cap. The cap actually used is the
	// smaller of this (or MaxBytes) and the size of the filesystem the file
	// sits on: a session's outbox filesystem is the most it may honestly hold.
	DefaultMaxOutboxBytes = 64 << 20
	// MaxRowsPerBatch caps the rows decoded and handed on at once; more are
	// read from the same copy in further batches.
	MaxRowsPerBatch = 256
	// MaxBatchBytes caps the sealed bytes decoded in one batch (at least one
	// row is always taken, and a row is at most wire.MaxRowSize).
	MaxBatchBytes = 8 << 20
	// MaxPendingRows caps the rows past the cursor one outbox may hold. An
	// honest agent rings after every commit and waits for the daemon to take
	// what it wrote, so it never has more than one turn's rows pending.
	MaxPendingRows = 65536
	// MaxFreeBytes is how much of an outbox may be free pages, when they are
	// also most of the file. An honest agent vacuums after every prune (its
	// outbox uses auto_vacuum=INCREMENTAL); a file of free pages only makes
	// the daemon copy bytes that carry nothing.
	MaxFreeBytes = 8 << 20
	// DefaultQueryTimeout bounds the SQLite work on one copy (opening and
	// checking it, and each batch): SQLite's progress handler interrupts a
	// query a crafted file makes slow.
	DefaultQueryTimeout = 5 * time.Second
	// budgetWait bounds how long a read waits for the shared Budget before
	// giving up for now (not a refusal: the rows are offered again later).
	budgetWait = time.Minute
)

// ErrHostile is matched (errors.Is) by every reason an outbox is refused.
// The session that owns the outbox is failed; nothing else is affected.
var ErrHostile = errors.New("queue: refusing the outbox")

// ErrHotJournal means the agent crashed mid-transaction. Its journal is the
// agent's to roll back when it restarts; the daemon does not read until then.
var ErrHotJournal = errors.New("queue: the outbox has an unfinished transaction; the agent recovers it when it restarts")

// ErrBusy means the shared Budget had no room for this copy within
// budgetWait. Nothing was read; the rows are offered again later.
var ErrBusy = errors.New("queue: the daemon's outbox copy budget is in use by other sessions; try again")

// Refusal classes: the only words about a hostile outbox that reach the
// audit log. The detail (which may quote what the agent wrote) goes only to
// the error's text, for the operator's log.
const (
	RefusedLink        = "link"
	RefusedNotRegular  = "not a regular file"
	RefusedTooLarge    = "larger than the session's outbox may be"
	RefusedOverBudget  = "larger than the daemon's copy budget"
	RefusedSparse      = "sparse file"
	RefusedChanged     = "changed while being read"
	RefusedNotDatabase = "not a database"
	RefusedSchema      = "schema"
	RefusedBadRow      = "bad row"
	RefusedTooMany     = "too many pending rows"
	RefusedFreePages   = "mostly free pages"
	RefusedTrailing    = "bytes past its last page"
	RefusedSlow        = "query deadline"
	RefusedPanic       = "decoder panic"
)

// HostileError is a refused outbox: a fixed Class and the detail.
type HostileError struct {
	Class string
	Err   error
}

func (e *HostileError) Error() string {
	if e.Err == nil {
		return "queue: refusing the outbox: " + e.Class
	}
	return "queue: refusing the outbox: " + e.Class + ": " + e.Err.Error()
}

// Is makes every HostileError match ErrHostile.
func (e *HostileError) Is(target error) bool { return target == ErrHostile }

func (e *HostileError) Unwrap() error { return e.Err }

// HostileClass returns the refusal class of err ("" if it is not a refusal).
func HostileClass(err error) string {
	var h *HostileError
	if errors.As(err, &h) {
		return h.Class
	}
	return ""
}

func hostile(class string, format string, args ...any) error {
	return &HostileError{Class: class, Err: fmt.Errorf(format, args...)}
}

// Row is one decoded, verified outbox row.
type Row = queuedb.Row

// decodeHook, when set, sees every row decoded from an outbox (tests inject a
// panic through it to prove a decoder panic fails one session only).
var decodeHook atomic.Pointer[func(Row)]

// afterStat runs between the fstat and the read of the copy (tests grow
// the file there).
var afterStat func()

// SetDecodeHookForTest makes f see every row the daemon decodes from any
// outbox, until the returned function restores the previous hook. Tests only.
func SetDecodeHookForTest(f func(Row)) (restore func()) {
	old := decodeHook.Swap(&f)
	return func() { decodeHook.Store(old) }
}

// OutboxReader reads a session's outbox from a cursor.
type OutboxReader struct {
	Path     string // host path of outbox.db, in an agent-writable directory
	Session  wire.SessionID
	Key      *wire.Key
	MaxBytes int64 // DefaultMaxOutboxBytes if zero; the filesystem's size if smaller
	// Budget is shared by every session's reader; nil means a private one of
	// twice the cap (tests).
	Budget *Budget
	// QueryTimeout bounds SQLite's work on a copy; DefaultQueryTimeout if 0.
	QueryTimeout time.Duration
}

// Snapshot is a verified private copy of an outbox, read in batches. It
// holds its share of the Budget until Close.
type Snapshot struct {
	conn    *sqlite.Conn
	release func()
	session wire.SessionID
	key     *wire.Key
	timeout time.Duration
	next    uint64 // the seq the next row must have
	last    uint64 // the last seq in the copy
	copied  int64
}

// Copied is how many bytes were copied from the agent's file.
func (s *Snapshot) Copied() int64 { return s.copied }

// Pending is how many rows past the cursor are left to read.
func (s *Snapshot) Pending() uint64 {
	if s.last < s.next {
		return 0
	}
	return s.last - s.next + 1
}

// Close frees the copy and returns its share of the Budget.
func (s *Snapshot) Close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.release != nil {
		s.release()
		s.release = nil
	}
}

// Open copies the outbox into memory, under the shared Budget, and checks
// it: a regular file, not sparse, within the session's cap, unchanged while
// read, a SQLite database with exactly our schema, no more than
// MaxPendingRows past after and not mostly free pages. Call it only while
// the agent is not writing: before the sandbox starts, after it stops, or
// while the agent waits for the answer to its outbox doorbell. The caller
// must Close the Snapshot.
//
// A panic in the copy or in SQLite is recovered and refuses the outbox
// (RefusedPanic): it fails this session, never the daemon.
func (r *OutboxReader) Open(ctx context.Context, after uint64) (snap *Snapshot, err error) {
	s := &Snapshot{session: r.Session, key: r.Key, timeout: r.timeout(), next: after + 1}
	defer func() {
		if p := recover(); p != nil {
			err = hostile(RefusedPanic, "opening the copy: %v", p)
		}
		if err != nil {
			s.Close()
		}
	}()
	data, release, err := r.copyFile(ctx)
	if err != nil {
		return nil, err
	}
	s.release, s.copied = release, int64(len(data))
	if s.conn, err = openPrivate(data, s.timeout); err != nil {
		return nil, err
	}
	data = nil // SQLite holds its own copy now
	if err := s.check(after); err != nil {
		return nil, err
	}
	return s, nil
}

func (r *OutboxReader) timeout() time.Duration {
	if r.QueryTimeout > 0 {
		return r.QueryTimeout
	}
	return DefaultQueryTimeout
}

// deadline runs fn under the query deadline; an interrupted query refuses
// the outbox.
func (s *Snapshot) deadline(what string, fn func() error) error {
	done := make(chan struct{})
	t := time.AfterFunc(s.timeout, func() { close(done) })
	s.conn.SetInterrupt(done)
	err := fn()
	fired := !t.Stop()
	s.conn.SetInterrupt(nil)
	if err != nil && fired {
		// Whatever SQLite said, it was interrupted (the reason may be
		// wrapped in a text by then).
		return hostile(RefusedSlow, "%s took longer than %v: %v", what, s.timeout, err)
	}
	return err
}

// check bounds the rows pending and the free pages, from the copy.
func (s *Snapshot) check(after uint64) error {
	var maxSeq, pageSize, free, pages int64
	err := s.deadline("sizing the copy", func() error {
		return errors.Join(
			sqlitex.ExecuteTransient(s.conn, "SELECT coalesce(max(seq), 0) FROM rows", &sqlitex.ExecOptions{
				ResultFunc: func(st *sqlite.Stmt) error { maxSeq = st.ColumnInt64(0); return nil }}),
			sqlitex.ExecuteTransient(s.conn, "PRAGMA page_size", &sqlitex.ExecOptions{
				ResultFunc: func(st *sqlite.Stmt) error { pageSize = st.ColumnInt64(0); return nil }}),
			sqlitex.ExecuteTransient(s.conn, "PRAGMA freelist_count", &sqlitex.ExecOptions{
				ResultFunc: func(st *sqlite.Stmt) error { free = st.ColumnInt64(0); return nil }}),
			sqlitex.ExecuteTransient(s.conn, "PRAGMA page_count", &sqlitex.ExecOptions{
				ResultFunc: func(st *sqlite.Stmt) error { pages = st.ColumnInt64(0); return nil }}),
		)
	})
	if err != nil {
		if errors.Is(err, ErrHostile) {
			return err
		}
		return hostile(RefusedNotDatabase, "%v", err)
	}
	if maxSeq < 0 {
		return hostile(RefusedBadRow, "negative sequence number %d", maxSeq)
	}
	s.last = uint64(maxSeq)
	if uint64(maxSeq) > after && uint64(maxSeq)-after > MaxPendingRows {
		return hostile(RefusedTooMany, "%d rows past %d, at most %d", uint64(maxSeq)-after, after, MaxPendingRows)
	}
	// SQLite's files are exactly their pages: anything past the last page
	// (or a file that is not a whole number of them) was put there by hand.
	if pages*pageSize != s.copied {
		return hostile(RefusedTrailing, "%d bytes for %d pages of %d", s.copied, pages, pageSize)
	}
	if fb := free * pageSize; fb > MaxFreeBytes && free*4 > pages*3 {
		return hostile(RefusedFreePages, "%d of %d pages are free (%d bytes)", free, pages, fb)
	}
	return nil
}

// Next returns the next batch of verified rows in order — at most
// MaxRowsPerBatch of them and MaxBatchBytes sealed — or none when the copy
// holds no more. Every row is verified: contiguous sequence numbers,
// sealed for this session, queue and position, strictly decoded. The first
// bad row fails the whole batch, so the caller never acts past it.
func (s *Snapshot) Next() (rows []Row, err error) {
	defer func() {
		if p := recover(); p != nil {
			rows, err = nil, hostile(RefusedPanic, "decoding row %d: %v", s.next, p)
		}
	}()
	if s.conn == nil || s.Pending() == 0 {
		return nil, nil
	}
	// SQLite's part runs under the deadline; opening and decoding the rows
	// (our own Go, bounded by the batch) runs after it, so that a busy
	// machine slowing the decryption of an honest batch is never mistaken
	// for a crafted, slow file.
	var sealed [][]byte
	first := s.next
	err = s.deadline("reading rows", func() error {
		var size int
		want := first
		return sqlitex.Execute(s.conn, "SELECT seq, typeof(sealed), sealed FROM rows WHERE seq >= ? ORDER BY seq LIMIT ?", &sqlitex.ExecOptions{
			Args: []any{int64(first), MaxRowsPerBatch},
			ResultFunc: func(st *sqlite.Stmt) error {
				if len(sealed) > 0 && size+st.ColumnLen(2) > MaxBatchBytes {
					return errBatchFull
				}
				b, err := queuedb.ScanRow(st, want)
				if err != nil {
					return hostile(RefusedBadRow, "%v", err)
				}
				size += len(b)
				sealed = append(sealed, b)
				want++
				return nil
			},
		})
	})
	if errors.Is(err, errBatchFull) {
		err = nil
	}
	if err != nil {
		if !errors.Is(err, ErrHostile) {
			err = hostile(RefusedBadRow, "%v", err)
		}
		return nil, err
	}
	for i, b := range sealed {
		r, err := queuedb.OpenRow(s.session, wire.Outbox, s.key, first+uint64(i), b)
		if err != nil {
			return nil, hostile(RefusedBadRow, "%v", err)
		}
		if h := decodeHook.Load(); h != nil && *h != nil {
			(*h)(r)
		}
		rows = append(rows, r)
		s.next++
	}
	if len(rows) == 0 && s.Pending() > 0 {
		return nil, hostile(RefusedBadRow, "row %d is missing (max is %d)", s.next, s.last)
	}
	return rows, nil
}

var errBatchFull = errors.New("batch full")

// Snapshot copies the outbox and returns its rows with seq > after, in order,
// at most max of them (all if max <= 0), through Open and Next.
func (r *OutboxReader) Snapshot(after uint64, max int) ([]Row, error) {
	s, err := r.Open(context.Background(), after)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var all []Row
	for max <= 0 || len(all) < max {
		rows, err := s.Next()
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			break
		}
		all = append(all, rows...)
	}
	if max > 0 && len(all) > max {
		all = all[:max]
	}
	return all, nil
}

// copyFile reads the outbox's bytes without following links or blocking on
// special files, under the shared Budget. The directory is agent-writable,
// so every name in it is hostile: the file may be a symlink to a host
// secret, a FIFO that would hang a reader, sparse (an apparent size far past
// its blocks), larger than its session may hold, or growing while read.
func (r *OutboxReader) copyFile(ctx context.Context) (_ []byte, release func(), err error) {
	if fi, err := os.Lstat(r.Path + "-journal"); err == nil {
		if !fi.Mode().IsRegular() {
			return nil, nil, hostile(RefusedNotRegular, "the journal beside it is a %s", fi.Mode().Type())
		}
		if fi.Size() > 0 && journalIsHot(r.Path+"-journal") {
			return nil, nil, ErrHotJournal
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("queue: checking the outbox journal: %w", err)
	}
	fd, err := unix.Open(r.Path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, nil, hostile(RefusedLink, "%s is a symbolic link", filepath.Base(r.Path))
		}
		return nil, nil, hostile(RefusedNotRegular, "opening %s: %v", filepath.Base(r.Path), err)
	}
	f := os.NewFile(uintptr(fd), r.Path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, fmt.Errorf("queue: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, hostile(RefusedNotRegular, "%s is not a regular file (mode %o)", filepath.Base(r.Path), st.Mode)
	}
	limit, err := r.limit(fd)
	if err != nil {
		return nil, nil, err
	}
	size := st.Size
	if size > limit {
		return nil, nil, hostile(RefusedTooLarge, "%d bytes is over the %d-byte limit", size, limit)
	}
	// A sparse file's apparent size is not backed by blocks: its holes read
	// as zeros the daemon would copy into memory for nothing (a 64 MiB
	// filesystem can hold a file of 1,000 MiB this way). SQLite writes every
	// page it uses, so an outbox never has holes.
	if st.Blocks*512 < size {
		return nil, nil, hostile(RefusedSparse, "%d bytes apparent but %d allocated", size, st.Blocks*512)
	}
	budget := r.Budget
	if budget == nil {
		budget = NewBudget(2 * limit)
	}
	rel, err := budget.acquire(ctx, size)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			rel()
		}
	}()
	if h := afterStat; h != nil {
		h()
	}
	// Read exactly what fstat promised, and one byte more to see the file
	// grow: the agent must not be writing now, so any change is hostile.
	data := make([]byte, size+1)
	n, err := io.ReadFull(f, data)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if int64(n) != size {
			return nil, nil, hostile(RefusedChanged, "shrank from %d to %d bytes while being read", size, n)
		}
	case err != nil:
		return nil, nil, fmt.Errorf("queue: reading the outbox: %w", err)
	default:
		return nil, nil, hostile(RefusedChanged, "grew past %d bytes while being read", size)
	}
	return data[:size], rel, nil
}

// limit is the most bytes this outbox may honestly hold: the reader's cap,
// or the size of the filesystem the file lives on if that is smaller (the
// session's own outbox filesystem, in production).
func (r *OutboxReader) limit(fd int) (int64, error) {
	limit := r.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxOutboxBytes
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return 0, fmt.Errorf("queue: statfs of the outbox: %w", err)
	}
	if total := int64(fs.Blocks) * int64(fs.Bsize); total > 0 && total < limit {
		limit = total
	}
	return limit, nil
}

// checkHeader looks at the raw file before SQLite parses a byte of it: a
// SQLite file whose schema is one entry on page 1. Our schema (the rows
// table) always fits there, so a schema spread over more pages or entries —
// the way to make SQLite's schema load slow, and memory-hungry — is refused
// without parsing it.
func checkHeader(data []byte) error {
	const magic = "SQLite format 3\x00"
	if len(data) < 512 || string(data[:16]) != magic {
		return hostile(RefusedNotDatabase, "no SQLite header")
	}
	// Page 1's b-tree header follows the 100-byte file header: a leaf table
	// page (0x0d) with exactly one cell.
	if kind, cells := data[100], binary.BigEndian.Uint16(data[103:105]); kind != 0x0d || cells != 1 {
		return hostile(RefusedSchema, "page 1 is b-tree page type %#x with %d cells, want one schema entry on a leaf", kind, cells)
	}
	return nil
}

// schemaMu serialises openPrivate's schema loads (see there).
var schemaMu sync.Mutex

// openPrivate opens a copy of a hostile database in memory with every
// defence SQLite offers, and checks its schema is exactly ours, all under the
// query deadline.
func openPrivate(data []byte, timeout time.Duration) (*sqlite.Conn, error) {
	if err := checkHeader(data); err != nil {
		return nil, err
	}
	conn, err := sqlite.OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenMemory|sqlite.OpenNoMutex)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// One schema load at a time across the daemon: measured, modernc's
	// SQLite corrupts its heap when several connections load large crafted
	// schemas at once (concurrent honest reads are fine). Each load is
	// bounded by the query deadline, and a session whose schema is refused
	// is failed, so one hostile agent delays others' reads by at most one
	// deadline, once.
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if err := harden(conn); err != nil {
		return nil, err
	}
	if err := conn.Deserialize("main", data); err != nil {
		return nil, hostile(RefusedNotDatabase, "%v", err)
	}
	s := &Snapshot{conn: conn, timeout: timeout}
	err = s.deadline("checking the schema", func() error {
		// Deserialize reopens main: the pragmas that are per-schema go again.
		if err := queuedb.Pragmas(conn, "PRAGMA query_only=ON", "PRAGMA cell_size_check=ON"); err != nil {
			return hostile(RefusedNotDatabase, "%v", err)
		}
		if err := queuedb.CheckSchema(conn); err != nil {
			return hostile(RefusedSchema, "%v", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return conn, nil
}

// harden sets SQLite's defences on a connection that will open hostile
// bytes: defensive mode, trusted_schema off, no attached databases, no
// triggers, no memory-mapped I/O, and tight limits on lengths, expression
// depth and program size.
func harden(conn *sqlite.Conn) error {
	if err := conn.SetDefensive(true); err != nil {
		return err
	}
	conn.Limit(sqlite.LimitLength, wire.MaxRowSize+1024)
	conn.Limit(sqlite.LimitSQLLength, 4096)
	conn.Limit(sqlite.LimitAttached, 0)
	conn.Limit(sqlite.LimitExprDepth, 32)
	conn.Limit(sqlite.LimitTriggerDepth, 0)
	conn.Limit(sqlite.LimitVDBEOp, 1<<20)
	return queuedb.Pragmas(conn, "PRAGMA trusted_schema=OFF", "PRAGMA cell_size_check=ON", "PRAGMA mmap_size=0")
}

// journalIsHot applies SQLite's own test (pager.c, hasHotJournal): a
// non-empty journal whose first byte is zero is not hot, and SQLite neither
// rolls it back nor removes it until its next write commits. Treating such
// a leftover (an agent killed while its journal was being created) as hot
// would refuse the outbox forever: the restarted agent rings before it
// writes, and is refused each time. A journal that cannot be read counts
// as hot (fail closed: the rows wait).
func journalIsHot(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return !errors.Is(err, unix.ENOENT)
	}
	defer unix.Close(fd)
	var first [1]byte
	n, err := unix.Pread(fd, first[:], 0)
	return err != nil || n != 1 || first[0] != 0
}
