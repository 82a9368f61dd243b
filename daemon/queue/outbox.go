package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"golang.org/x/sys/unix"
	"zombiezen.com/go/sqlite"
)

// DefaultMaxOutboxBytes caps the outbox file the daemon is willing to copy.
const DefaultMaxOutboxBytes = 64 << 20

// ErrHostile wraps every reason an outbox is refused. The session that owns
// the outbox is failed; nothing else is affected.
var ErrHostile = errors.New("queue: refusing the outbox")

// ErrHotJournal means the agent crashed mid-transaction. Its journal is the
// agent's to roll back when it restarts; the daemon does not read until then.
var ErrHotJournal = errors.New("queue: the outbox has an unfinished transaction; the agent recovers it when it restarts")

// Row is one decoded, verified outbox row.
type Row = queuedb.Row

// OutboxReader reads a session's outbox from a cursor.
type OutboxReader struct {
	Path     string // host path of outbox.db, in an agent-writable directory
	Session  wire.SessionID
	Key      *wire.Key
	MaxBytes int64 // DefaultMaxOutboxBytes if zero

	lastSize int64 // bytes copied by the last Snapshot
}

// LastSize is how many bytes of live data the last Snapshot copied (0 if it
// copied none): pages in use, not free pages an agent has not vacuumed yet.
func (r *OutboxReader) LastSize() int64 { return r.lastSize }

// liveBytes reads the in-use size of a SQLite file from its header (page
// size, page count, freelist count), falling back to the file's length when
// the header is not one (the snapshot is then refused anyway).
func liveBytes(data []byte) int64 {
	if len(data) < 100 {
		return int64(len(data))
	}
	pageSize := int64(binary.BigEndian.Uint16(data[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := int64(binary.BigEndian.Uint32(data[28:32]))
	free := int64(binary.BigEndian.Uint32(data[36:40]))
	live := (pages - free) * pageSize
	if live <= 0 || live > int64(len(data)) {
		return int64(len(data))
	}
	return live
}

// Snapshot copies the outbox and returns its rows with seq > after, in order,
// at most max of them (all if max <= 0). Call it only while the agent is not
// writing: before the sandbox starts, after it stops, or while the agent
// waits for the answer to its outbox doorbell.
//
// Every row is verified: contiguous sequence numbers starting at after+1,
// sealed for this session, queue and position, strictly decoded. The first
// bad row fails the whole read, so the caller never acts past a hostile row.
func (r *OutboxReader) Snapshot(after uint64, max int) ([]Row, error) {
	r.lastSize = 0
	data, err := r.copyFile()
	if err != nil {
		return nil, err
	}
	r.lastSize = liveBytes(data)
	conn, err := openPrivate(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHostile, err)
	}
	defer conn.Close()
	rows, err := queuedb.Read(conn, r.Session, wire.Outbox, r.Key, after, max)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHostile, err)
	}
	return rows, nil
}

// copyFile reads the outbox's bytes without following links or blocking on
// special files. The directory is agent-writable, so every name in it is
// hostile: the file may be a symlink to a host secret, a FIFO that would hang
// a reader, or huge.
func (r *OutboxReader) copyFile() ([]byte, error) {
	limit := r.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxOutboxBytes
	}
	if fi, err := os.Lstat(r.Path + "-journal"); err == nil {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: the journal beside it is a %s", ErrHostile, fi.Mode().Type())
		}
		if fi.Size() > 0 {
			return nil, ErrHotJournal
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("queue: checking the outbox journal: %w", err)
	}
	fd, err := unix.Open(r.Path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symbolic link", ErrHostile, filepath.Base(r.Path))
		}
		return nil, fmt.Errorf("%w: opening %s: %v", ErrHostile, filepath.Base(r.Path), err)
	}
	f := os.NewFile(uintptr(fd), r.Path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is a %s, not a regular file", ErrHostile, filepath.Base(r.Path), fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: %d bytes is over the %d-byte limit", ErrHostile, fi.Size(), limit)
	}
	// The agent could grow the file after fstat; read at most limit+1.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("queue: reading the outbox: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: grew past the %d-byte limit while being read", ErrHostile, limit)
	}
	return data, nil
}

// openPrivate opens a copy of a hostile database in memory with every
// defence SQLite offers, and checks its schema is exactly ours.
func openPrivate(data []byte) (*sqlite.Conn, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file")
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
	if err := conn.SetDefensive(true); err != nil {
		return nil, err
	}
	// Bound what a crafted file can make SQLite do.
	conn.Limit(sqlite.LimitLength, wire.MaxRowSize+1024)
	conn.Limit(sqlite.LimitSQLLength, 4096)
	conn.Limit(sqlite.LimitAttached, 0)
	conn.Limit(sqlite.LimitExprDepth, 32)
	conn.Limit(sqlite.LimitTriggerDepth, 0)
	conn.Limit(sqlite.LimitVDBEOp, 1<<20)
	if err := queuedb.Pragmas(conn, "PRAGMA trusted_schema=OFF", "PRAGMA cell_size_check=ON", "PRAGMA mmap_size=0"); err != nil {
		return nil, err
	}
	if err := conn.Deserialize("main", data); err != nil {
		return nil, fmt.Errorf("not a database: %w", err)
	}
	// Deserialize reopens main: the pragmas that are per-schema go again.
	if err := queuedb.Pragmas(conn, "PRAGMA query_only=ON", "PRAGMA cell_size_check=ON"); err != nil {
		return nil, err
	}
	if err := queuedb.CheckSchema(conn); err != nil {
		return nil, err
	}
	ok = true
	return conn, nil
}
