package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// This file holds what the change gateway (daemon/gateway) stores: change
// requests and the versions of the operator rules. The store enforces the
// gateway's binding at the last moment: ApplyChange re-opens the sealed
// bytes, recomputes the binding hash and compares it with the approver's,
// inside the same transaction that writes the new version, so nothing read
// earlier can be swapped in between.

// ChangeIDSize is the length of a change request id in bytes; its text form
// is twice as many lower-case hex digits.
const ChangeIDSize = 16

// ChangeID names a change request. It is random, never reused.
type ChangeID [ChangeIDSize]byte

// NewChangeID returns a fresh random change id.
func NewChangeID() (ChangeID, error) {
	var id ChangeID
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("store: reading randomness for a change id: %w", err)
	}
	return id, nil
}

// String returns the id as 32 lower-case hex digits.
func (id ChangeID) String() string { return hex.EncodeToString(id[:]) }

// ParseChangeID parses the 32-lower-case-hex-digit form of a change id.
func ParseChangeID(s string) (ChangeID, error) {
	var id ChangeID
	if len(s) != 2*ChangeIDSize || strings.ToLower(s) != s {
		return id, fmt.Errorf("store: change id %q: want %d lower-case hex digits", trimForError(s), 2*ChangeIDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("store: change id %q: want %d lower-case hex digits", trimForError(s), 2*ChangeIDSize)
	}
	return id, nil
}

func trimForError(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// ChangeBinding is the hash an approval binds to:
//
//	SHA-256( uint64be(len(base)) ‖ base ‖ uint64be(len(proposed)) ‖ proposed ‖ id )
//
// base and proposed are the canonical texts (profile or rules) the diff is
// computed from, id the 16 raw bytes of the request id. The length prefixes
// make the concatenation unambiguous; the id makes two requests with the same
// texts bind differently, so an approval of one is never an approval of the
// other.
func ChangeBinding(id ChangeID, base, proposed []byte) [32]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(base)))
	h.Write(n[:])
	h.Write(base)
	binary.BigEndian.PutUint64(n[:], uint64(len(proposed)))
	h.Write(n[:])
	h.Write(proposed)
	h.Write(id[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ChangeState is where a change request is in its life.
type ChangeState string

const (
	// ChangePending waits for a human.
	ChangePending ChangeState = "pending"
	// ChangeApproved is reserved: this version of the gateway commits an
	// approval and its application in one transaction (pending → applied),
	// so no row is ever left approved-but-not-applied.
	ChangeApproved ChangeState = "approved"
	// ChangeDenied was denied by a human; it starts the cool-down.
	ChangeDenied ChangeState = "denied"
	// ChangeApplied was approved and is the version AppliedVersion.
	ChangeApplied ChangeState = "applied"
	// ChangeStale was approved after its base version had been replaced;
	// nothing was applied.
	ChangeStale ChangeState = "stale"
	// ChangeRefused was refused by policy (or found tampered); nothing was
	// applied.
	ChangeRefused ChangeState = "refused"
)

// ChangeStates lists every state.
func ChangeStates() []ChangeState {
	return []ChangeState{ChangePending, ChangeApproved, ChangeDenied, ChangeApplied, ChangeStale, ChangeRefused}
}

// KindRules is the kind of a change of the operator rules; such a request
// has no session.
const KindRules = "rules"

// KindOperators is the kind of a change of the console's operators; like
// rules, it has no session.
const KindOperators = "operators"

// Sessionless reports whether a change of kind has no session (rules,
// operators): it changes the host, not one session's profile.
func Sessionless(kind string) bool { return kind == KindRules || kind == KindOperators }

// Limits on change request metadata.
const (
	MaxChangeKindLen      = 64
	MaxChangeRequesterLen = 300
	MaxChangeRuleLen      = 128
	MaxChangeActorLen     = 300
	MaxChangeResultLen    = 512
	// MaxChangeReasonLen caps the requester's reason (the wire caps the
	// agent's at 4 KiB) and an operator's note.
	MaxChangeReasonLen = 16 << 10
	// MaxRefusedChangesKept is how many refused requests are kept per
	// session (or for the rules); older ones are deleted as new ones come.
	// Refusals cost a requester nothing, so without this a hostile agent
	// could grow the database forever. The audit log keeps the count.
	MaxRefusedChangesKept = 64
	// MaxListChanges caps one ListChanges answer.
	MaxListChanges = 1000
)

// Errors of the change methods, beside the package's general ones
// (ErrNotFound, ErrStale, ErrErased, ErrSealed).
var (
	// ErrNotPending means the request was already decided.
	ErrNotPending = errors.New("store: change request is not pending")
	// ErrBindingMismatch means the hash the approver passed, the stored
	// binding and the hash of the stored bytes do not all agree. Nothing was
	// written.
	ErrBindingMismatch = errors.New("store: change request binding does not match")
)

// ChangeSummary is a change request's plain metadata: what List shows
// without unsealing anything.
type ChangeSummary struct {
	ID ChangeID
	// Session is the session whose profile the change is for; zero for a
	// change of the rules (Kind == KindRules).
	Session     wire.SessionID
	Kind        string
	Requester   string
	BaseVersion uint64
	Binding     [32]byte
	Created     time.Time
	State       ChangeState
	// Outcome and Rule are the policy decision at submission.
	Outcome string
	Rule    string
	// DecidedBy is who closed the request ("operator:…", "rule:<name>" or
	// "gateway"), empty while pending; Decided when.
	DecidedBy string
	Decided   time.Time
	// Result is a short plain statement of what came of it, no content.
	Result         string
	AppliedVersion uint64
}

// Change is a change request with its sealed content opened.
type Change struct {
	ChangeSummary
	// Base and Proposed are the canonical texts the request was made from
	// and asks for.
	Base, Proposed []byte
	// Reason is the requester's text: untrusted.
	Reason string
	// Reasons are the policy's reasons for its decision.
	Reasons []string
	// Note is the deciding operator's note, if any.
	Note string
}

// Seal bindings: each sealed column names its column and request id in the
// table slot, so a value moved to another column or request never opens.
func changeSealTable(column string, id ChangeID) string {
	return "change_requests." + column + "/" + id.String()
}

func sessionArg(c *ChangeSummary) any {
	if Sessionless(c.Kind) {
		return nil
	}
	return c.Session.String()
}

func checkShortText(what, s string, max int, empty bool) error {
	if (!empty && s == "") || len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("store: change %s must be %s%d bytes of UTF-8", what, map[bool]string{true: "at most ", false: "1 to "}[empty], max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("store: change %s must not contain control characters", what)
		}
	}
	return nil
}

// InsertChange records a new change request, pending or refused (by policy).
// The session must be active (a rules change has none). A refused insert
// also drops the oldest refused requests of the same session beyond
// MaxRefusedChangesKept.
func (s *Store) InsertChange(ctx context.Context, ch Change) error {
	if ch.State != ChangePending && ch.State != ChangeRefused {
		return fmt.Errorf("store: a new change request is pending or refused, not %q", ch.State)
	}
	for _, f := range []struct {
		what, v string
		max     int
	}{{"kind", ch.Kind, MaxChangeKindLen}, {"requester", ch.Requester, MaxChangeRequesterLen},
		{"outcome", ch.Outcome, 32}, {"rule", ch.Rule, MaxChangeRuleLen}} {
		if err := checkShortText(f.what, f.v, f.max, false); err != nil {
			return err
		}
	}
	if err := checkShortText("result", ch.Result, MaxChangeResultLen, true); err != nil {
		return err
	}
	if len(ch.Reason) > MaxChangeReasonLen {
		return fmt.Errorf("store: change reason is %d bytes, at most %d", len(ch.Reason), MaxChangeReasonLen)
	}
	if ChangeBinding(ch.ID, ch.Base, ch.Proposed) != ch.Binding {
		return fmt.Errorf("%w: binding is not the hash of the request's texts", ErrBindingMismatch)
	}
	bv, err := i64("base version", ch.BaseVersion)
	if err != nil {
		return err
	}
	reasons, err := json.Marshal(ch.Reasons)
	if err != nil {
		return fmt.Errorf("store: encoding policy reasons: %w", err)
	}
	created := ch.Created
	if created.IsZero() {
		created = s.now()
	}
	err = s.write(ctx, func(c *sqlite.Conn) (err error) {
		// Sealed here, holding the connection: Close wipes the key under
		// the same token.
		sealed := map[string][]byte{}
		for col, body := range map[string][]byte{"base": ch.Base, "proposed": ch.Proposed, "reason": []byte(ch.Reason), "reasons": reasons} {
			if sealed[col], err = sealColumn(&s.key, changeSealTable(col, ch.ID), ch.Session, 0, body); err != nil {
				return err
			}
		}
		if !Sessionless(ch.Kind) {
			if err := activeSession(c, ch.Session); err != nil {
				return err
			}
		} else if ch.Session != (wire.SessionID{}) {
			return fmt.Errorf("a %s change has no session", ch.Kind)
		}
		err = sqlitex.Execute(c, `INSERT INTO change_requests (id, session_id, kind, requester, base_version,
			base, proposed, reason, reasons, binding, proposed_mac, created, state, outcome, rule, result)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, &sqlitex.ExecOptions{
			Args: []any{ch.ID.String(), sessionArg(&ch.ChangeSummary), ch.Kind, ch.Requester, bv,
				sealed["base"], sealed["proposed"], sealed["reason"], sealed["reasons"], ch.Binding[:],
				s.proposedMAC(ch.Proposed), created.UnixNano(), string(ch.State), ch.Outcome, ch.Rule, ch.Result},
		})
		if err != nil {
			return err
		}
		if ch.State != ChangeRefused {
			return nil
		}
		return sqlitex.Execute(c, `DELETE FROM change_requests WHERE session_id IS ? AND state = 'refused'
			AND id NOT IN (SELECT id FROM change_requests WHERE session_id IS ? AND state = 'refused'
			               ORDER BY created DESC, id DESC LIMIT ?)`, &sqlitex.ExecOptions{
			Args: []any{sessionArg(&ch.ChangeSummary), sessionArg(&ch.ChangeSummary), MaxRefusedChangesKept},
		})
	})
	if err != nil {
		return fmt.Errorf("store: recording change request %s: %w", ch.ID, err)
	}
	return nil
}

const changeSummaryCols = "id, session_id, kind, requester, base_version, binding, created, state, outcome, rule, decided_by, decided, result, applied_version"

func scanChangeSummary(st *sqlite.Stmt) (ChangeSummary, error) {
	var cs ChangeSummary
	id, err := ParseChangeID(st.ColumnText(0))
	if err != nil {
		return cs, fmt.Errorf("store: corrupt change request row: %w", err)
	}
	cs.ID = id
	if !st.ColumnIsNull(1) {
		if cs.Session, err = wire.ParseSessionID(st.ColumnText(1)); err != nil {
			return cs, fmt.Errorf("store: corrupt change request row: %w", err)
		}
	}
	cs.Kind = st.ColumnText(2)
	cs.Requester = st.ColumnText(3)
	cs.BaseVersion = uint64(st.ColumnInt64(4))
	if st.ColumnLen(5) != len(cs.Binding) {
		return cs, errors.New("store: corrupt change request binding")
	}
	st.ColumnBytes(5, cs.Binding[:])
	cs.Created = time.Unix(0, st.ColumnInt64(6)).UTC()
	cs.State = ChangeState(st.ColumnText(7))
	cs.Outcome = st.ColumnText(8)
	cs.Rule = st.ColumnText(9)
	cs.DecidedBy = st.ColumnText(10)
	if !st.ColumnIsNull(11) {
		cs.Decided = time.Unix(0, st.ColumnInt64(11)).UTC()
	}
	cs.Result = st.ColumnText(12)
	cs.AppliedVersion = uint64(st.ColumnInt64(13))
	return cs, nil
}

func columnBlob(st *sqlite.Stmt, col int) ([]byte, error) {
	if st.ColumnIsNull(col) {
		return nil, nil
	}
	if st.ColumnLen(col) > maxSealed {
		return nil, ErrSealed
	}
	b := make([]byte, st.ColumnLen(col))
	st.ColumnBytes(col, b)
	return b, nil
}

// readChange reads and opens one request. A sealed column that does not open
// (tampered, moved from another request, wrong key) fails with ErrSealed.
func (s *Store) readChange(c *sqlite.Conn, id ChangeID) (Change, error) {
	var (
		ch    Change
		blobs [5][]byte
		found bool
	)
	err := sqlitex.Execute(c, "SELECT "+changeSummaryCols+", base, proposed, reason, reasons, note FROM change_requests WHERE id = ?", &sqlitex.ExecOptions{
		Args: []any{id.String()},
		ResultFunc: func(st *sqlite.Stmt) (err error) {
			found = true
			if ch.ChangeSummary, err = scanChangeSummary(st); err != nil {
				return err
			}
			for i := range blobs {
				if blobs[i], err = columnBlob(st, 14+i); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		return Change{}, err
	}
	if !found {
		return Change{}, ErrNotFound
	}
	open := func(col string, sealed []byte) ([]byte, error) {
		return openColumn(&s.key, changeSealTable(col, id), ch.Session, 0, sealed)
	}
	if ch.Base, err = open("base", blobs[0]); err != nil {
		return Change{}, err
	}
	if ch.Proposed, err = open("proposed", blobs[1]); err != nil {
		return Change{}, err
	}
	reason, err := open("reason", blobs[2])
	if err != nil {
		return Change{}, err
	}
	ch.Reason = string(reason)
	reasons, err := open("reasons", blobs[3])
	if err != nil {
		return Change{}, err
	}
	if err := json.Unmarshal(reasons, &ch.Reasons); err != nil {
		return Change{}, ErrSealed
	}
	if blobs[4] != nil {
		note, err := open("note", blobs[4])
		if err != nil {
			return Change{}, err
		}
		ch.Note = string(note)
	}
	return ch, nil
}

// GetChange returns a change request with its content opened. ErrSealed
// means the stored content was tampered with or moved: do not act on it.
func (s *Store) GetChange(ctx context.Context, id ChangeID) (Change, error) {
	var ch Change
	err := s.readTx(ctx, func(c *sqlite.Conn) (err error) {
		ch, err = s.readChange(c, id)
		return err
	})
	if err != nil {
		return Change{}, fmt.Errorf("store: reading change request %s: %w", id, err)
	}
	return ch, nil
}

// ChangeFilter selects change requests. Zero fields select everything.
type ChangeFilter struct {
	// Session selects one session's requests; Rules selects the rules
	// requests (which have no session). At most one may be set.
	Session *wire.SessionID
	Rules   bool
	// States selects requests in any of these states.
	States []ChangeState
	// Kind selects one kind.
	Kind string
	// Limit caps the answer (0: MaxListChanges, the most allowed).
	Limit int
}

// ListChanges returns the selected requests' metadata, newest first.
func (s *Store) ListChanges(ctx context.Context, f ChangeFilter) ([]ChangeSummary, error) {
	if f.Session != nil && f.Rules {
		return nil, errors.New("store: a change filter selects a session or the rules, not both")
	}
	var (
		where []string
		args  []any
	)
	switch {
	case f.Session != nil:
		where, args = append(where, "session_id = ?"), append(args, f.Session.String())
	case f.Rules:
		where = append(where, "session_id IS NULL")
	}
	if len(f.States) > 0 {
		marks := make([]string, len(f.States))
		for i, st := range f.States {
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "state IN ("+strings.Join(marks, ", ")+")")
	}
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxListChanges {
		limit = MaxListChanges
	}
	q := "SELECT " + changeSummaryCols + " FROM change_requests"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created DESC, id DESC LIMIT ?"
	args = append(args, limit)
	var out []ChangeSummary
	err := s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, q, &sqlitex.ExecOptions{
			Args: args,
			ResultFunc: func(st *sqlite.Stmt) error {
				cs, err := scanChangeSummary(st)
				out = append(out, cs)
				return err
			},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing change requests: %w", err)
	}
	return out, nil
}

// proposedMAC is HMAC-SHA256 of a proposed text under a subkey of the
// content key: an index for dedupe that, unlike a plain hash, lets nobody
// without the key confirm a guess of the text. The caller holds the
// connection (the key is wiped under it at Close).
func (s *Store) proposedMAC(proposed []byte) []byte {
	sub := hmac.New(sha256.New, s.key[:])
	sub.Write([]byte("ironclaw-store change dedupe v1"))
	m := hmac.New(sha256.New, sub.Sum(nil))
	m.Write(proposed)
	return m.Sum(nil)
}

// FindPendingChange returns a pending request of the same session (zero
// with kind KindRules: the rules), kind and base version whose proposed text
// is exactly proposed, if there is one. Candidates are found by a keyed MAC
// and confirmed by opening them; requests whose content does not open are
// skipped (they can never be approved).
func (s *Store) FindPendingChange(ctx context.Context, session wire.SessionID, kind string, baseVersion uint64, proposed []byte) (ChangeSummary, bool, error) {
	bv, err := i64("base version", baseVersion)
	if err != nil {
		return ChangeSummary{}, false, err
	}
	key := ChangeSummary{Session: session, Kind: kind}
	var (
		out   ChangeSummary
		found bool
	)
	err = s.readTx(ctx, func(c *sqlite.Conn) error {
		var ids []ChangeID
		err := sqlitex.Execute(c, `SELECT id FROM change_requests WHERE session_id IS ? AND state = 'pending'
			AND kind = ? AND base_version = ? AND proposed_mac = ? ORDER BY created, id`, &sqlitex.ExecOptions{
			Args: []any{sessionArg(&key), kind, bv, s.proposedMAC(proposed)},
			ResultFunc: func(st *sqlite.Stmt) error {
				id, err := ParseChangeID(st.ColumnText(0))
				ids = append(ids, id)
				return err
			},
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			ch, err := s.readChange(c, id)
			if errors.Is(err, ErrSealed) {
				continue
			}
			if err != nil {
				return err
			}
			if bytes.Equal(ch.Proposed, proposed) {
				out, found = ch.ChangeSummary, true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return ChangeSummary{}, false, fmt.Errorf("store: looking for a pending duplicate: %w", err)
	}
	return out, found, nil
}

// CountPendingChanges counts the session's pending requests whose requester
// starts with requesterPrefix ("" counts them all).
func (s *Store) CountPendingChanges(ctx context.Context, session wire.SessionID, requesterPrefix string) (int, error) {
	var n int64
	err := s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, `SELECT count(*) FROM change_requests WHERE session_id = ? AND state = 'pending'
			AND substr(requester, 1, length(?)) = ?`, &sqlitex.ExecOptions{
			Args:       []any{session.String(), requesterPrefix, requesterPrefix},
			ResultFunc: func(st *sqlite.Stmt) error { n = st.ColumnInt64(0); return nil },
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: counting pending change requests of session %s: %w", session, err)
	}
	return int(n), nil
}

// LastDenial returns when a human last denied a request of this session and
// kind; ok is false if none ever was.
func (s *Store) LastDenial(ctx context.Context, session wire.SessionID, kind string) (when time.Time, ok bool, err error) {
	err = s.read(ctx, func(c *sqlite.Conn) error {
		return sqlitex.Execute(c, `SELECT max(decided) FROM change_requests WHERE session_id = ? AND kind = ?
			AND state = 'denied'`, &sqlitex.ExecOptions{
			Args: []any{session.String(), kind},
			ResultFunc: func(st *sqlite.Stmt) error {
				if !st.ColumnIsNull(0) {
					when, ok = time.Unix(0, st.ColumnInt64(0)).UTC(), true
				}
				return nil
			},
		})
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store: reading the last denial of session %s: %w", session, err)
	}
	return when, ok, nil
}

// CloseChange moves a pending request to denied, stale or refused, recording
// who closed it, their note (sealed; may be empty) and a short plain result.
// It fails with ErrNotPending if the request is no longer pending.
func (s *Store) CloseChange(ctx context.Context, id ChangeID, to ChangeState, by, note, result string) error {
	switch to {
	case ChangeDenied, ChangeStale, ChangeRefused:
	default:
		return fmt.Errorf("store: CloseChange cannot move a request to %q", to)
	}
	if err := checkShortText("actor", by, MaxChangeActorLen, false); err != nil {
		return err
	}
	if err := checkShortText("result", result, MaxChangeResultLen, true); err != nil {
		return err
	}
	if len(note) > MaxChangeReasonLen {
		return fmt.Errorf("store: note is %d bytes, at most %d", len(note), MaxChangeReasonLen)
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		cs, err := changeRow(c, id)
		if err != nil {
			return err
		}
		if cs.State != ChangePending {
			return fmt.Errorf("%w (it is %s)", ErrNotPending, cs.State)
		}
		var sealedNote any
		if note != "" {
			if sealedNote, err = sealColumn(&s.key, changeSealTable("note", id), cs.Session, 0, []byte(note)); err != nil {
				return err
			}
		}
		return sqlitex.Execute(c, `UPDATE change_requests SET state = ?, decided_by = ?, decided = ?, note = ?, result = ?
			WHERE id = ? AND state = 'pending'`, &sqlitex.ExecOptions{
			Args: []any{string(to), by, s.now().UnixNano(), sealedNote, result, id.String()},
		})
	})
	if err != nil {
		return fmt.Errorf("store: closing change request %s as %s: %w", id, to, err)
	}
	return nil
}

// GetChangeSummary returns a change request's plain metadata without
// opening its sealed content (so it works on a tampered request too).
func (s *Store) GetChangeSummary(ctx context.Context, id ChangeID) (ChangeSummary, error) {
	var cs ChangeSummary
	err := s.read(ctx, func(c *sqlite.Conn) (err error) {
		cs, err = changeRow(c, id)
		return err
	})
	if err != nil {
		return ChangeSummary{}, fmt.Errorf("store: reading change request %s: %w", id, err)
	}
	return cs, nil
}

func changeRow(c *sqlite.Conn, id ChangeID) (ChangeSummary, error) {
	var (
		cs    ChangeSummary
		found bool
	)
	err := sqlitex.Execute(c, "SELECT "+changeSummaryCols+" FROM change_requests WHERE id = ?", &sqlitex.ExecOptions{
		Args: []any{id.String()},
		ResultFunc: func(st *sqlite.Stmt) (err error) {
			found = true
			cs, err = scanChangeSummary(st)
			return err
		},
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	return cs, err
}
