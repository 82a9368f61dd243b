// Package inbox is the agent's read-only view of its inbox.
//
// This is one of three independent layers that keep the agent from writing
// its inbox: this package has no method that writes, and it opens the
// database with SQLITE_OPEN_READONLY and query_only; the sandbox mounts the
// directory read-only. Never add a write path here, and never import a
// package that has one (a test over `go list -deps ./cmd/agentd` checks).
//
// Rows may only be read under a lease from the daemon (see daemon/lease):
// gVisor does not carry file locks across its boundary.
package inbox

import (
	"fmt"
	"net/url"

	"github.com/ironclaw/ironclaw/agentd/queuedb"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Reader reads verified rows from an inbox. It is not safe for concurrent use.
type Reader struct {
	conn    *sqlite.Conn
	session wire.SessionID
	key     *wire.Key
}

// Open opens the inbox at path read-only.
func Open(path string, session wire.SessionID, key *wire.Key) (*Reader, error) {
	// nolock: SQLite's file locks taken inside gVisor never reach the host,
	// so they could not keep the daemon's writes out; the read lease does
	// that (see Read). Without them a read makes five fewer system calls,
	// each a trap into gVisor's kernel.
	uri := (&url.URL{Scheme: "file", Path: path, RawQuery: "nolock=1"}).String()
	conn, err := sqlite.OpenConn(uri, sqlite.OpenReadOnly|sqlite.OpenNoMutex|sqlite.OpenURI)
	if err != nil {
		return nil, fmt.Errorf("inbox: opening %s: %w", path, err)
	}
	if err := queuedb.Pragmas(conn, "PRAGMA query_only=ON", "PRAGMA trusted_schema=OFF"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("inbox: %w", err)
	}
	return &Reader{conn: conn, session: session, key: key}, nil
}

// Read returns up to max rows after seq after. Call it only while holding a
// read lease, and act on the rows only if the lease was still valid when
// released.
func (r *Reader) Read(after uint64, max int) (rows []queuedb.Row, err error) {
	// One read transaction for the schema check and the rows: one lock,
	// one look at the journal and the change counter (each a trap into
	// gVisor's kernel), and both see the same snapshot.
	if err := sqlitex.ExecuteTransient(r.conn, "BEGIN", nil); err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	defer func() {
		if cerr := sqlitex.ExecuteTransient(r.conn, "COMMIT", nil); cerr != nil && err == nil {
			rows, err = nil, fmt.Errorf("inbox: %w", cerr)
		}
	}()
	if err := queuedb.CheckSchema(r.conn); err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	rows, err = queuedb.Read(r.conn, r.session, wire.Inbox, r.key, after, max)
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	return rows, nil
}

// Close closes the database.
func (r *Reader) Close() error { return r.conn.Close() }
