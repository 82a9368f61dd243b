// Package queuedb reads and verifies the rows of a sealed queue database.
// Both sides use it: the agent for its inbox, the daemon for its private copy
// of an outbox. It only ever reads; it must never grow a way to write, because
// the agent links it.
package queuedb

import (
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Row is one decoded, verified queue row.
type Row struct {
	Header wire.Header
	Body   wire.Body
}

// CheckSchema requires that the database holds exactly the rows table: no
// other table, no index, view or trigger that SQLite would run or trust.
func CheckSchema(conn *sqlite.Conn) error {
	n := 0
	err := sqlitex.Execute(conn, "SELECT type, name, tbl_name, sql FROM sqlite_schema", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			n++
			if s.ColumnText(0) != "table" || s.ColumnText(1) != "rows" || s.ColumnText(2) != "rows" || s.ColumnText(3) != wire.RowsTable {
				return fmt.Errorf("unexpected schema object %q %q", s.ColumnText(0), s.ColumnText(1))
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("schema check: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("schema check: want exactly the rows table, found %d objects", n)
	}
	return nil
}

// Read returns the rows of queue q with seq > after, in order, at most max of
// them (all if max <= 0). Every row is verified: contiguous sequence numbers
// from after+1, sealed for this session, queue and position, kind allowed in
// the queue, body strictly decoded. The first bad row fails the whole read,
// so a caller never acts past it.
func Read(conn *sqlite.Conn, session wire.SessionID, q wire.Queue, key *wire.Key, after uint64, max int) ([]Row, error) {
	var rows []Row
	limit := int64(max)
	if max <= 0 {
		limit = -1
	}
	want := after + 1
	err := sqlitex.Execute(conn, "SELECT seq, typeof(sealed), sealed FROM rows WHERE seq > ? ORDER BY seq LIMIT ?", &sqlitex.ExecOptions{
		Args: []any{int64(after), limit},
		ResultFunc: func(s *sqlite.Stmt) error {
			r, err := DecodeRow(s, session, q, key, want)
			if err != nil {
				return err
			}
			rows = append(rows, r)
			want++
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// DecodeRow verifies and decodes the current result of a
// "SELECT seq, typeof(sealed), sealed FROM rows" statement, which must be the
// row with sequence number want.
func DecodeRow(s *sqlite.Stmt, session wire.SessionID, q wire.Queue, key *wire.Key, want uint64) (Row, error) {
	sealed, err := ScanRow(s, want)
	if err != nil {
		return Row{}, err
	}
	return OpenRow(session, q, key, want, sealed)
}

// ScanRow checks the current result of a
// "SELECT seq, typeof(sealed), sealed FROM rows" statement — sequence number
// want, a blob no larger than wire.MaxRowSize — and returns a copy of the
// sealed bytes, for OpenRow.
func ScanRow(s *sqlite.Stmt, want uint64) ([]byte, error) {
	seq := s.ColumnInt64(0)
	if seq < 0 || uint64(seq) != want {
		return nil, fmt.Errorf("row %d: want sequence %d (gap, duplicate or reorder)", seq, want)
	}
	if s.ColumnText(1) != "blob" {
		return nil, fmt.Errorf("row %d: sealed column is %s, not a blob", seq, s.ColumnText(1))
	}
	if n := s.ColumnLen(2); n > wire.MaxRowSize {
		return nil, fmt.Errorf("row %d: %w", seq, wire.ErrTooLarge)
	}
	sealed := make([]byte, s.ColumnLen(2))
	s.ColumnBytes(2, sealed)
	return sealed, nil
}

// OpenRow opens row seq's sealed bytes (for this session, queue and
// position) and decodes its body strictly.
func OpenRow(session wire.SessionID, q wire.Queue, key *wire.Key, seq uint64, sealed []byte) (Row, error) {
	h, body, err := wire.Open(key, session, q, seq, sealed)
	if err != nil {
		return Row{}, fmt.Errorf("row %d: %w", seq, err)
	}
	b, err := wire.DecodeBody(h.Kind, body)
	if err != nil {
		return Row{}, fmt.Errorf("row %d: %w", seq, err)
	}
	return Row{Header: h, Body: b}, nil
}

// Pragmas runs each statement on its own, outside any transaction (some
// pragmas, like synchronous, refuse to run inside one).
func Pragmas(conn *sqlite.Conn, stmts ...string) error {
	for _, s := range stmts {
		if err := sqlitex.ExecuteTransient(conn, s, nil); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}
