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

// operatorsTarget is the console's operator set as a change target. It has
// no versions: the base is the set itself, compared byte for byte.
type operatorsTarget struct{ g *Gateway }

func (operatorsTarget) name() string { return "the operators" }

func (t operatorsTarget) current(context.Context) (uint64, []byte, error) {
	if t.g.operators == nil {
		return 0, nil, ErrNoOperators
	}
	cur, err := t.g.operators.Current()
	return 0, cur, err
}

func (t operatorsTarget) decide(_ context.Context, _, requester string, _ uint64, base, proposed []byte) (policy.Decision, error) {
	if canon, err := policy.CanonicalOperators(proposed); err != nil || !bytes.Equal(canon, proposed) {
		return policy.Decision{}, errNotCanonical
	}
	return policy.EvaluateOperators(requester, base, proposed), nil
}

// applyOperatorsLocked applies an approved operators change: the store
// re-checks the binding in the transaction that records it applied, around
// the durable replacement of the set, which must still be the base.
func (g *Gateway) applyOperatorsLocked(ctx context.Context, ch *store.Change, actor, decision string, hash [32]byte) error {
	subj := changeSubject(&ch.ChangeSummary)
	if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionApprove, Subject: subj,
		Decision: decision, Result: "applying"}); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	err := g.st.ApplyOperatorsChange(ctx, ch.ID, hash, actor, func(base, proposed []byte) error {
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
		Decision: decision, Result: result}); aerr != nil {
		return errors.Join(err, fmt.Errorf("%w: %w", ErrResultNotAudited, aerr))
	}
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}
