package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// What an agent keeps — memory, notes, schedules — and the history its model
// sees live here, sealed under the session's own key (callers pass it), with
// the same caps the agent applies (package wire), so a hostile agent cannot
// grow the store without bound.

// Record kinds.
const (
	RecordMemory   = "memory"
	RecordNote     = "note"
	RecordSchedule = "schedule"
)

// KeptHistory is how many turns the store keeps per session.
const KeptHistory = 2 * wire.MaxHistoryTurns

// ErrFull means a session's memory, notes or schedules are at their cap.
var ErrFull = errors.New("store: at the session's cap")

// Records is what an agent keeps.
type Records struct {
	Memory    []wire.Memory
	Notes     []wire.Note
	Schedules []wire.Schedule
}

func recordCap(kind string) int {
	switch kind {
	case RecordMemory:
		return wire.MaxMemoryItems
	case RecordNote:
		return wire.MaxNotes
	}
	return wire.MaxSchedules
}

// nameMAC is the keyed MAC that stands for a record's name in the clear.
func nameMAC(key *wire.Key, kind, name string) []byte {
	k := hmac.New(sha256.New, key[:])
	k.Write([]byte("ironclaw store record names v1"))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(name))
	return m.Sum(nil)
}

// recordTable binds a sealed record to its kind and name MAC.
func recordSeal(kind string, mac []byte) (string, uint64) {
	return "records/" + kind, binary.BigEndian.Uint64(mac)
}

// RecordOp is one operation on a session's records: put Value (a
// wire.Memory, wire.Note or wire.Schedule) under Name, or remove Name when
// Value is nil.
type RecordOp struct {
	Kind  string
	Name  string
	Value any
	// Due is a schedule's next firing (unix seconds); nil for other kinds.
	Due *int64
}

// OpFromBody turns an outbox operation row into a RecordOp.
func OpFromBody(b any) (RecordOp, bool) {
	switch op := b.(type) {
	case wire.MemoryOp:
		if op.Op == wire.OpRemove {
			return RecordOp{Kind: RecordMemory, Name: op.Key}, true
		}
		return RecordOp{Kind: RecordMemory, Name: op.Key, Value: wire.Memory{Key: op.Key, Text: op.Text}}, true
	case wire.NoteOp:
		if op.Op == wire.OpRemove {
			return RecordOp{Kind: RecordNote, Name: op.Name}, true
		}
		return RecordOp{Kind: RecordNote, Name: op.Name, Value: wire.Note{Name: op.Name, Text: op.Text}}, true
	case wire.ScheduleOp:
		if op.Op == wire.OpCancel {
			return RecordOp{Kind: RecordSchedule, Name: op.ID}, true
		}
		at := op.At
		return RecordOp{Kind: RecordSchedule, Name: op.ID, Value: wire.Schedule{ID: op.ID, At: op.At, Every: op.Every, Text: op.Text}, Due: &at}, true
	}
	return RecordOp{}, false
}

// UpdateMemory applies one memory operation.
func (s *Store) UpdateMemory(ctx context.Context, id wire.SessionID, key *wire.Key, op wire.MemoryOp) error {
	return s.applyOne(ctx, id, key, op)
}

// UpdateNote applies one note operation.
func (s *Store) UpdateNote(ctx context.Context, id wire.SessionID, key *wire.Key, op wire.NoteOp) error {
	return s.applyOne(ctx, id, key, op)
}

// UpdateSchedule applies one schedule operation.
func (s *Store) UpdateSchedule(ctx context.Context, id wire.SessionID, key *wire.Key, op wire.ScheduleOp) error {
	return s.applyOne(ctx, id, key, op)
}

func (s *Store) applyOne(ctx context.Context, id wire.SessionID, key *wire.Key, b any) error {
	op, _ := OpFromBody(b)
	refused, err := s.UpdateRecords(ctx, id, key, []RecordOp{op})
	if err == nil && refused > 0 {
		err = fmt.Errorf("store: keeping a %s of session %s: %w", op.Kind, id, ErrFull)
	}
	return err
}

// UpdateRecords applies ops in order, in one transaction (so a flood of
// operations costs one commit, not one each). A put that would take a kind
// past its cap is skipped and counted in refused; the rest apply.
func (s *Store) UpdateRecords(ctx context.Context, id wire.SessionID, key *wire.Key, ops []RecordOp) (refused int, err error) {
	type prepared struct {
		op     RecordOp
		mac    []byte
		sealed []byte
	}
	prep := make([]prepared, 0, len(ops))
	for _, op := range ops {
		p := prepared{op: op, mac: nameMAC(key, op.Kind, op.Name)}
		if op.Value != nil {
			body, err := json.Marshal(op.Value)
			if err != nil {
				return 0, err
			}
			table, rowKey := recordSeal(op.Kind, p.mac)
			if p.sealed, err = sealColumn((*[32]byte)(key), table, id, rowKey, body); err != nil {
				return 0, err
			}
		}
		prep = append(prep, p)
	}
	now := s.now().UnixNano()
	err = s.write(ctx, func(c *sqlite.Conn) error {
		refused = 0
		if err := activeSession(c, id); err != nil {
			return err
		}
		for _, p := range prep {
			if p.sealed == nil {
				if err := sqlitex.Execute(c, "DELETE FROM records WHERE session_id = ? AND kind = ? AND name_mac = ?",
					&sqlitex.ExecOptions{Args: []any{id.String(), p.op.Kind, p.mac}}); err != nil {
					return err
				}
				continue
			}
			var n, exists int64
			err := sqlitex.Execute(c, "SELECT count(*), coalesce(sum(name_mac = ?), 0) FROM records WHERE session_id = ? AND kind = ?", &sqlitex.ExecOptions{
				Args:       []any{p.mac, id.String(), p.op.Kind},
				ResultFunc: func(st *sqlite.Stmt) error { n, exists = st.ColumnInt64(0), st.ColumnInt64(1); return nil },
			})
			if err != nil {
				return err
			}
			if exists == 0 && n >= int64(recordCap(p.op.Kind)) {
				refused++
				continue
			}
			var due any
			if p.op.Due != nil {
				due = *p.op.Due
			}
			if err := sqlitex.Execute(c, `INSERT INTO records (session_id, kind, name_mac, sealed, due, updated) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (session_id, kind, name_mac) DO UPDATE SET sealed = excluded.sealed, due = excluded.due, updated = excluded.updated`,
				&sqlitex.ExecOptions{Args: []any{id.String(), p.op.Kind, p.mac, p.sealed, due, now}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: applying record operations of session %s: %w", id, err)
	}
	return refused, nil
}

// Records returns what the session's agent keeps, sorted by name (schedules
// by time).
func (s *Store) Records(ctx context.Context, id wire.SessionID, key *wire.Key) (Records, error) {
	var r Records
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		return sqlitex.Execute(c, "SELECT kind, name_mac, sealed FROM records WHERE session_id = ?", &sqlitex.ExecOptions{
			Args: []any{id.String()},
			ResultFunc: func(st *sqlite.Stmt) error {
				kind := st.ColumnText(0)
				mac := make([]byte, st.ColumnLen(1))
				st.ColumnBytes(1, mac)
				sealed := make([]byte, st.ColumnLen(2))
				st.ColumnBytes(2, sealed)
				table, rowKey := recordSeal(kind, mac)
				body, err := openColumn((*[32]byte)(key), table, id, rowKey, sealed)
				if err != nil {
					return err
				}
				defer clear(body)
				switch kind {
				case RecordMemory:
					var m wire.Memory
					err = wire.StrictUnmarshal(body, &m)
					r.Memory = append(r.Memory, m)
				case RecordNote:
					var n wire.Note
					err = wire.StrictUnmarshal(body, &n)
					r.Notes = append(r.Notes, n)
				case RecordSchedule:
					var sc wire.Schedule
					err = wire.StrictUnmarshal(body, &sc)
					r.Schedules = append(r.Schedules, sc)
				}
				return err
			},
		})
	})
	if err != nil {
		return Records{}, fmt.Errorf("store: reading the records of session %s: %w", id, err)
	}
	sort.Slice(r.Memory, func(i, j int) bool { return r.Memory[i].Key < r.Memory[j].Key })
	sort.Slice(r.Notes, func(i, j int) bool { return r.Notes[i].Name < r.Notes[j].Name })
	sort.Slice(r.Schedules, func(i, j int) bool {
		a, b := r.Schedules[i], r.Schedules[j]
		return a.At < b.At || a.At == b.At && a.ID < b.ID
	})
	return r, nil
}

const historyTable = "history"

// AppendHistory records turns (user messages or firings the daemon wrote at
// inbox row t.Seq, replies it delivered), in one transaction, and drops the
// oldest turns beyond KeptHistory.
func (s *Store) AppendHistory(ctx context.Context, id wire.SessionID, key *wire.Key, turns ...wire.Turn) error {
	type sealedTurn struct {
		seq    int64
		sealed []byte
	}
	prep := make([]sealedTurn, 0, len(turns))
	for _, t := range turns {
		seq, err := i64("history seq", t.Seq)
		if err != nil {
			return err
		}
		body, err := json.Marshal(t)
		if err != nil {
			return err
		}
		sealed, err := sealColumn((*[32]byte)(key), historyTable, id, t.Seq, body)
		if err != nil {
			return err
		}
		prep = append(prep, sealedTurn{seq, sealed})
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		for _, p := range prep {
			if err := sqlitex.Execute(c, "INSERT OR REPLACE INTO history (session_id, seq, sealed) VALUES (?, ?, ?)",
				&sqlitex.ExecOptions{Args: []any{id.String(), p.seq, p.sealed}}); err != nil {
				return err
			}
		}
		return sqlitex.Execute(c, `DELETE FROM history WHERE session_id = ?1 AND seq <= (
			SELECT seq FROM history WHERE session_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)`,
			&sqlitex.ExecOptions{Args: []any{id.String(), KeptHistory}})
	})
	if err != nil {
		return fmt.Errorf("store: recording history of session %s: %w", id, err)
	}
	return nil
}

// History returns the newest n turns, oldest first.
func (s *Store) History(ctx context.Context, id wire.SessionID, key *wire.Key, n int) ([]wire.Turn, error) {
	var out []wire.Turn
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, id); err != nil {
			return err
		}
		return sqlitex.Execute(c, "SELECT seq, sealed FROM history WHERE session_id = ? ORDER BY seq DESC LIMIT ?", &sqlitex.ExecOptions{
			Args: []any{id.String(), n},
			ResultFunc: func(st *sqlite.Stmt) error {
				seq := uint64(st.ColumnInt64(0))
				sealed := make([]byte, st.ColumnLen(1))
				st.ColumnBytes(1, sealed)
				body, err := openColumn((*[32]byte)(key), historyTable, id, seq, sealed)
				if err != nil {
					return err
				}
				var t wire.Turn
				if err := wire.StrictUnmarshal(body, &t); err != nil {
					return err
				}
				if t.Seq != seq {
					return ErrSealed
				}
				out = append(out, t)
				return nil
			},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading history of session %s: %w", id, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Due is a schedule whose time has come, as the scheduler sees it before
// unsealing: which session, which record, when.
type Due struct {
	Session wire.SessionID
	MAC     []byte
	At      int64
}

// NextDue returns the earliest schedule of any active session.
func (s *Store) NextDue(ctx context.Context) (Due, bool, error) {
	ds, err := s.dueQuery(ctx, "ORDER BY r.due, r.session_id LIMIT 1", nil)
	if err != nil || len(ds) == 0 {
		return Due{}, false, err
	}
	return ds[0], true, nil
}

// NextDueAfter returns the earliest schedule of any active session due
// after t (unix seconds).
func (s *Store) NextDueAfter(ctx context.Context, t int64) (Due, bool, error) {
	ds, err := s.dueQuery(ctx, "AND r.due > ?1 ORDER BY r.due, r.session_id LIMIT 1", []any{t})
	if err != nil || len(ds) == 0 {
		return Due{}, false, err
	}
	return ds[0], true, nil
}

// DueBy returns every schedule due at or before t (unix seconds), earliest
// first, at most limit.
func (s *Store) DueBy(ctx context.Context, t int64, limit int) ([]Due, error) {
	return s.dueQuery(ctx, "AND r.due <= ?1 ORDER BY r.due, r.session_id LIMIT ?2", []any{t, limit})
}

func (s *Store) dueQuery(ctx context.Context, tail string, args []any) ([]Due, error) {
	var out []Due
	err := s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, `SELECT r.session_id, r.name_mac, r.due FROM records r JOIN sessions s ON s.id = r.session_id
			WHERE r.kind = 'schedule' AND s.state = 'active' `+tail, &sqlitex.ExecOptions{
			Args: args,
			ResultFunc: func(st *sqlite.Stmt) error {
				id, err := wire.ParseSessionID(st.ColumnText(0))
				if err != nil {
					return err
				}
				mac := make([]byte, st.ColumnLen(1))
				st.ColumnBytes(1, mac)
				out = append(out, Due{Session: id, MAC: mac, At: st.ColumnInt64(2)})
				return nil
			},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: finding due schedules: %w", err)
	}
	return out, nil
}

// DueSchedule unseals the schedule d names.
func (s *Store) DueSchedule(ctx context.Context, d Due, key *wire.Key) (wire.Schedule, error) {
	var sc wire.Schedule
	err := s.readTx(ctx, func(c *sqlite.Conn) error {
		if err := activeSession(c, d.Session); err != nil {
			return err
		}
		found := false
		err := sqlitex.Execute(c, "SELECT sealed FROM records WHERE session_id = ? AND kind = 'schedule' AND name_mac = ?", &sqlitex.ExecOptions{
			Args: []any{d.Session.String(), d.MAC},
			ResultFunc: func(st *sqlite.Stmt) error {
				found = true
				sealed := make([]byte, st.ColumnLen(0))
				st.ColumnBytes(0, sealed)
				table, rowKey := recordSeal(RecordSchedule, d.MAC)
				body, err := openColumn((*[32]byte)(key), table, d.Session, rowKey, sealed)
				if err != nil {
					return err
				}
				return wire.StrictUnmarshal(body, &sc)
			},
		})
		if err == nil && !found {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return sc, fmt.Errorf("store: reading a schedule of session %s: %w", d.Session, err)
	}
	return sc, nil
}

// ScheduleFired records that the schedule d named fired for its time d.At:
// a one-off one is deleted, a recurring one moves to next. It does nothing
// if the schedule changed meanwhile (cancelled or re-added by the agent).
func (s *Store) ScheduleFired(ctx context.Context, d Due, key *wire.Key, next *wire.Schedule) error {
	var sealed []byte
	if next != nil {
		body, err := json.Marshal(next)
		if err != nil {
			return err
		}
		table, rowKey := recordSeal(RecordSchedule, d.MAC)
		if sealed, err = sealColumn((*[32]byte)(key), table, d.Session, rowKey, body); err != nil {
			return err
		}
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		if next == nil {
			return sqlitex.Execute(c, "DELETE FROM records WHERE session_id = ? AND kind = 'schedule' AND name_mac = ? AND due = ?",
				&sqlitex.ExecOptions{Args: []any{d.Session.String(), d.MAC, d.At}})
		}
		return sqlitex.Execute(c, "UPDATE records SET sealed = ?, due = ?, updated = ? WHERE session_id = ? AND kind = 'schedule' AND name_mac = ? AND due = ?",
			&sqlitex.ExecOptions{Args: []any{sealed, next.At, s.now().UnixNano(), d.Session.String(), d.MAC, d.At}})
	})
	if err != nil {
		return fmt.Errorf("store: recording a schedule firing of session %s: %w", d.Session, err)
	}
	return nil
}
