package store

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// checkApproval opens a pending request inside a write transaction and
// checks that the approver's hash, the stored binding and the hash of the
// stored texts all agree.
func (s *Store) checkApproval(c *sqlite.Conn, id ChangeID, approved [32]byte) (Change, error) {
	ch, err := s.readChange(c, id)
	if err != nil {
		return Change{}, err
	}
	if ch.State != ChangePending {
		return Change{}, fmt.Errorf("%w (it is %s)", ErrNotPending, ch.State)
	}
	got := ChangeBinding(id, ch.Base, ch.Proposed)
	if subtle.ConstantTimeCompare(got[:], ch.Binding[:]) != 1 || subtle.ConstantTimeCompare(approved[:], ch.Binding[:]) != 1 {
		return Change{}, ErrBindingMismatch
	}
	return ch, nil
}

// ApplyOperatorsChange applies a pending operators change: in one
// transaction it re-checks the approval's binding against the stored texts
// (ErrBindingMismatch), calls apply with exactly the stored proposed bytes,
// and marks the request applied by `by`. If apply fails nothing is marked;
// if marking fails after apply succeeded, the request stays pending and a
// later approval finds its base moved (stale).
func (s *Store) ApplyOperatorsChange(ctx context.Context, id ChangeID, approved [32]byte, by string, apply func(base, proposed []byte) error) error {
	if err := checkShortText("actor", by, MaxChangeActorLen, false); err != nil {
		return err
	}
	err := s.write(ctx, func(c *sqlite.Conn) error {
		ch, err := s.checkApproval(c, id, approved)
		if err != nil {
			return err
		}
		if ch.Kind != KindOperators {
			return errors.New("only an operators change is applied with ApplyOperatorsChange")
		}
		if err := apply(ch.Base, ch.Proposed); err != nil {
			return err
		}
		err = sqlitex.Execute(c, `UPDATE change_requests SET state = 'applied', decided_by = ?, decided = ?, result = ?
			WHERE id = ? AND state = 'pending'`, &sqlitex.ExecOptions{
			Args: []any{by, s.now().UnixNano(), "applied", id.String()},
		})
		if err == nil && c.Changes() != 1 {
			err = ErrNotPending
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: applying change request %s: %w", id, err)
	}
	return nil
}

func (s *Store) markApplied(c *sqlite.Conn, id ChangeID, version uint64, by string) error {
	err := sqlitex.Execute(c, `UPDATE change_requests SET state = 'applied', decided_by = ?, decided = ?, result = ?, applied_version = ?
		WHERE id = ? AND state = 'pending'`, &sqlitex.ExecOptions{
		Args: []any{by, s.now().UnixNano(), fmt.Sprintf("applied as version %d", version), int64(version), id.String()},
	})
	if err == nil && c.Changes() != 1 {
		err = ErrNotPending
	}
	return err
}

// ApplyChange applies a pending change request — of a session's profile or
// of the operator rules, one path for both — in one transaction, if and
// only if
//
//   - approved equals the request's stored binding, and the binding is the
//     hash of the stored base and proposed texts (else ErrBindingMismatch);
//   - what it changes is still exactly the request's base, version and text
//     (else ErrStale), and for a profile the session is active;
//   - the proposed text is a canonical profile (the store does not parse
//     rules: the gateway checks that they parse and load before calling).
//
// It then stores exactly the proposed bytes as version base+1, makes it
// current and marks the request applied by `by`, with the result "applied
// as version N". On any failure nothing is written; the caller decides how
// to close the request. It returns the new version and the bytes applied.
//
// This is the only way a profile version after the first, or any rules
// version, is written: there is no store method that writes one without an
// approved request.
func (s *Store) ApplyChange(ctx context.Context, id ChangeID, approved [32]byte, by string) (uint64, []byte, error) {
	if err := checkShortText("actor", by, MaxChangeActorLen, false); err != nil {
		return 0, nil, err
	}
	var (
		next    uint64
		applied []byte
	)
	err := s.write(ctx, func(c *sqlite.Conn) error {
		ch, err := s.checkApproval(c, id, approved)
		if err != nil {
			return err
		}
		if ch.Kind == KindOperators {
			return errors.New("an operators change is applied with ApplyOperatorsChange")
		}
		t := s.targetOf(&ch)
		cur, text, err := t.current(c)
		if err != nil {
			return err
		}
		if cur != ch.BaseVersion {
			return fmt.Errorf("%w: %s is at version %d, change was made against %d", ErrStale, t.name(), cur, ch.BaseVersion)
		}
		// Version 0 (no rules yet) has no stored text; the gateway renders
		// it as the empty rule set.
		if cur != 0 && !bytes.Equal(text, ch.Base) {
			return fmt.Errorf("%w: %s version %d is not the text the change was made against", ErrStale, t.name(), cur)
		}
		if err := t.check(ch.Proposed); err != nil {
			return fmt.Errorf("proposed text: %w", err)
		}
		next = cur + 1
		if _, err := i64(t.name()+" version", next); err != nil {
			return err
		}
		if err := t.put(c, cur, next, ch.Proposed, id); err != nil {
			return err
		}
		applied = ch.Proposed
		return s.markApplied(c, id, next, by)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("store: applying change request %s: %w", id, err)
	}
	return next, applied, nil
}

// changeTarget is what a change request changes, picked once by its kind.
type changeTarget interface {
	name() string
	// current is the version and canonical text now (version 0 and no text
	// when there is none yet).
	current(c *sqlite.Conn) (uint64, []byte, error)
	// check refuses a proposed text the store can tell is not canonical.
	check(proposed []byte) error
	// put stores proposed as version next and makes it current, if the
	// current version is still cur.
	put(c *sqlite.Conn, cur, next uint64, proposed []byte, id ChangeID) error
}

func (s *Store) targetOf(ch *Change) changeTarget {
	if ch.Kind == KindRules {
		return rulesTarget{s}
	}
	return profileTarget{s, ch.Session}
}

type profileTarget struct {
	s       *Store
	session wire.SessionID
}

func (t profileTarget) name() string { return "profile of session " + t.session.String() }

func (t profileTarget) current(c *sqlite.Conn) (uint64, []byte, error) {
	if err := activeSession(c, t.session); err != nil {
		return 0, nil, err
	}
	cur, err := currentVersion(c, t.session)
	if err != nil {
		return 0, nil, err
	}
	p, err := t.s.readProfile(c, t.session, cur)
	if err != nil {
		return 0, nil, err
	}
	return cur, p.Canonical(), nil
}

func (t profileTarget) check(proposed []byte) error {
	_, err := profile.Parse(proposed)
	return err
}

func (t profileTarget) put(c *sqlite.Conn, cur, next uint64, proposed []byte, _ ChangeID) error {
	return putProfile(c, &t.s.key, t.session, cur, next, proposed, t.s.now().UnixNano())
}

type rulesTarget struct{ s *Store }

func (rulesTarget) name() string { return "the rules" }

func (t rulesTarget) current(c *sqlite.Conn) (uint64, []byte, error) { return t.s.currentRules(c) }

func (rulesTarget) check([]byte) error { return nil }

func (t rulesTarget) put(c *sqlite.Conn, _, next uint64, proposed []byte, id ChangeID) error {
	sealed, err := sealColumn(&t.s.key, rulesVersionsTable, wire.SessionID{}, next, proposed)
	if err != nil {
		return err
	}
	return sqlitex.Execute(c, "INSERT INTO rules_versions (version, canonical, created, change_id) VALUES (?, ?, ?, ?)", &sqlitex.ExecOptions{
		Args: []any{int64(next), sealed, t.s.now().UnixNano(), id.String()},
	})
}

// CurrentRules returns the current version of the operator rules and its
// canonical text; version 0 and no text when there are none.
func (s *Store) CurrentRules(ctx context.Context) (uint64, []byte, error) {
	var (
		version uint64
		text    []byte
	)
	err := s.readTx(ctx, func(c *sqlite.Conn) (err error) {
		version, text, err = s.currentRules(c)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("store: reading the operator rules: %w", err)
	}
	return version, text, nil
}

const rulesVersionsTable = "rules_versions"

func (s *Store) currentRules(c *sqlite.Conn) (uint64, []byte, error) {
	var (
		version int64
		sealed  []byte
		err     error
	)
	err = sqlitex.Execute(c, "SELECT version, canonical FROM rules_versions ORDER BY version DESC LIMIT 1", &sqlitex.ExecOptions{
		ResultFunc: func(st *sqlite.Stmt) (err error) {
			version = st.ColumnInt64(0)
			sealed, err = columnBlob(st, 1)
			return err
		},
	})
	if err != nil || version == 0 {
		return 0, nil, err
	}
	text, err := openColumn(&s.key, rulesVersionsTable, wire.SessionID{}, uint64(version), sealed)
	if err != nil {
		return 0, nil, err
	}
	return uint64(version), text, nil
}
