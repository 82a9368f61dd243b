package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
)

// Operators is where the console's operator keys live (the state
// directory's operators file). A change of kind "operators" proposes the
// whole new set in canonical form (policy.CanonicalOperators); an existing
// operator must approve it — never a rule — and it may not leave none.
type Operators interface {
	// Current returns the current set in canonical form.
	Current() ([]byte, error)
	// Replace makes canonical the set, durably, or fails having changed
	// nothing.
	Replace(canonical []byte) error
}

const operatorsLockKey = "operators"

// ErrNoOperators: this gateway was made without an operators set.
var ErrNoOperators = errors.New("gateway: operators changes are not configured")

func (g *Gateway) submitOperators(ctx context.Context, r Request) (Ticket, error) {
	const subj = "operators"
	actor := actorLabel(r.Requester)
	if g.operators == nil {
		return Ticket{}, ErrNoOperators
	}
	if r.Session != (wire.SessionID{}) || !policy.IsOperator(r.Requester) || r.BaseVersion != 0 {
		return Ticket{}, g.refuseSubmit(actor, subj, "only an operator may propose operators, for no session and no base version", ErrMalformed)
	}
	if len(r.Reason) > MaxReasonLen {
		return Ticket{}, g.refuseSubmit(actor, subj, "reason too long", ErrMalformed)
	}
	unlock, err := g.locks.lock(ctx, operatorsLockKey)
	if err != nil {
		return Ticket{}, err
	}
	defer unlock()
	base, err := g.operators.Current()
	if err != nil {
		return Ticket{}, fmt.Errorf("gateway: reading the operators: %w", err)
	}
	if canon, err := policy.CanonicalOperators(r.Proposed); err != nil || !bytes.Equal(canon, r.Proposed) {
		return Ticket{}, g.refuseSubmit(actor, subj, "proposed operators are not canonical", ErrMalformed)
	}
	if t, ok, err := g.duplicate(ctx, wire.SessionID{}, policy.KindOperators, 0, r.Proposed); err != nil || ok {
		return t, err
	}
	d := policy.EvaluateOperators(r.Requester, base, r.Proposed)
	return g.record(ctx, wire.SessionID{}, policy.KindOperators, r.Requester, r.Reason, 0, base, r.Proposed, d)
}

// approveOperatorsLocked applies an approved operators change: the set must
// still be the request's base, policy must still allow it, and the store
// re-checks the binding in the transaction that records it applied, around
// the replacement of the set itself.
func (g *Gateway) approveOperatorsLocked(ctx context.Context, ch *store.Change, actor string, hash [32]byte) (uint64, error) {
	if g.operators == nil {
		return 0, ErrNoOperators
	}
	cur, err := g.operators.Current()
	if err != nil {
		return 0, fmt.Errorf("gateway: reading the operators: %w", err)
	}
	if !bytes.Equal(cur, ch.Base) {
		return 0, g.closeLocked(ctx, ch, actor, StateStale, "stale: the operators changed since this request", ErrStale)
	}
	if d := policy.EvaluateOperators(actor, ch.Base, ch.Proposed); d.Outcome == policy.Deny {
		return 0, g.closeLocked(ctx, ch, actor, StateRefused, "refused by policy: "+d.Rule, fmt.Errorf("%w: rule %s", ErrRefused, d.Rule))
	}
	subj := changeSubject(&ch.ChangeSummary)
	if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionApprove, Subject: subj,
		Decision: "approved", Result: "applying"}); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrAudit, err)
	}
	err = g.st.ApplyOperatorsChange(ctx, ch.ID, hash, actor, func(base, proposed []byte) error {
		// What the store opened and re-hashed, checked against the set once more.
		now, err := g.operators.Current()
		if err != nil {
			return err
		}
		if !bytes.Equal(now, base) {
			return store.ErrStale
		}
		return g.operators.Replace(proposed)
	})
	result := "applied"
	if err != nil {
		result = "failed: not applied"
	}
	if _, aerr := g.log.Append(audit.Record{Actor: actor, Action: ActionApply, Subject: subj,
		Decision: "approved", Result: result}); aerr != nil {
		return 0, errors.Join(err, fmt.Errorf("%w: %w", ErrResultNotAudited, aerr))
	}
	if err != nil {
		return 0, fmt.Errorf("gateway: %w", err)
	}
	return 0, nil
}
