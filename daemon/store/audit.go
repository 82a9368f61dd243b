package store

import (
	"context"
	"fmt"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// SetAuditAnchor records the sequence number and hash of the latest audit
// entry, so that truncating the audit log (which lives in its own file) is
// detectable. The anchor only moves forward: a lower seq, or the same seq
// with another hash, fails with ErrBackwards and writes nothing.
func (s *Store) SetAuditAnchor(ctx context.Context, seq uint64, hash [32]byte) error {
	v, err := i64("audit sequence", seq)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(c *sqlite.Conn) error {
		cur, curHash, ok, err := auditAnchor(c)
		if err != nil {
			return err
		}
		if ok && (seq < cur || seq == cur && curHash != hash) {
			return fmt.Errorf("%w: anchor is at entry %d, refusing entry %d", ErrBackwards, cur, seq)
		}
		return sqlitex.Execute(c, `INSERT INTO audit_anchor (id, seq, hash, updated) VALUES (1, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, updated = excluded.updated`, &sqlitex.ExecOptions{
			Args: []any{v, hash[:], s.now().UnixNano()},
		})
	})
	if err != nil {
		return fmt.Errorf("store: setting the audit anchor to entry %d: %w", seq, err)
	}
	return nil
}

// AuditAnchor returns the anchor; ok is false if none was ever set.
func (s *Store) AuditAnchor(ctx context.Context) (seq uint64, hash [32]byte, ok bool, err error) {
	err = s.read(ctx, func(c *sqlite.Conn) error {
		seq, hash, ok, err = auditAnchor(c)
		return err
	})
	if err != nil {
		return 0, hash, false, fmt.Errorf("store: reading the audit anchor: %w", err)
	}
	return seq, hash, ok, nil
}

func auditAnchor(c *sqlite.Conn) (seq uint64, hash [32]byte, ok bool, err error) {
	err = sqlitex.Execute(c, "SELECT seq, hash FROM audit_anchor WHERE id = 1", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) error {
			if st.ColumnLen(1) != len(hash) {
				return fmt.Errorf("corrupt audit anchor hash")
			}
			seq = uint64(st.ColumnInt64(0))
			st.ColumnBytes(1, hash[:])
			ok = true
			return nil
		},
	})
	return seq, hash, ok, err
}
