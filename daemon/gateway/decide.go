package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
)

// Approve applies request id on behalf of actor, who saw the request whose
// binding hash is hash. actor must be the caller's authenticated operator
// identity — "operator:SHA256:<fp>" from the console's SSH key,
// "operator:local:<user>" from the admin socket's peer credentials — never
// anything taken from the request.
//
// It refuses (and audits the refusal) when the request is not pending
// (ErrNotPending), hash is not the request's binding (ErrHashMismatch), the
// stored request does not open or hash to its binding (ErrTampered, marked
// refused), the profile or rules moved since the request (ErrStale, marked
// stale — never rebased), or policy now denies it (ErrRefused, marked
// refused).
//
// Otherwise, in this order: the decision is audited ("change.approve",
// fsynced; on failure nothing is applied and the error wraps ErrAudit); the
// store applies exactly the stored proposed bytes as version base+1, in one
// transaction that re-checks the hash and the base; the result is audited
// ("change.apply"); the Applier is told. There is no way to approve more
// than one request at a time.
func (g *Gateway) Approve(ctx context.Context, id ID, actor string, hash [32]byte) error {
	_, err := g.decide(ctx, id, actor, hash, ActionApprove, func(ch *store.Change) (uint64, error) {
		return g.approveLocked(ctx, ch, actor, hash)
	})
	return err
}

// Deny closes request id as denied by actor, who saw the request whose
// binding hash is hash; note is the operator's (sealed). The denial is
// audited before it is recorded, and starts the cool-down for the session
// and kind.
func (g *Gateway) Deny(ctx context.Context, id ID, actor string, hash [32]byte, note string) error {
	if len(note) > MaxReasonLen {
		return fmt.Errorf("gateway: note is %d bytes, at most %d", len(note), MaxReasonLen)
	}
	_, err := g.decide(ctx, id, actor, hash, ActionDeny, func(ch *store.Change) (uint64, error) {
		subj := changeSubject(&ch.ChangeSummary)
		if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionDeny, Subject: subj,
			Decision: "denied", Result: "denied"}); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrAudit, err)
		}
		if err := g.st.CloseChange(ctx, ch.ID, StateDenied, actor, note, "denied by "+actor); err != nil {
			// The audit says denied; the request stays pending and the
			// operator can deny it again. If this follow-up record fails
			// too, the audit log counts it (ironclaw status).
			_, _ = g.log.Append(audit.Record{Actor: actor, Action: ActionDeny, Subject: subj,
				Decision: "denied", Result: "failed: not recorded"})
			return 0, fmt.Errorf("gateway: %w", err)
		}
		return 0, nil
	})
	return err
}

// decide runs the checks Approve and Deny share, under the request's lock,
// then fn. For Deny the summary is enough, so a tampered request can still
// be denied; ch then carries only its summary.
func (g *Gateway) decide(ctx context.Context, id ID, actor string, hash [32]byte, action string, fn func(*store.Change) (uint64, error)) (uint64, error) {
	if !policy.IsOperator(actor) {
		if err := g.log.Refuse(actorLabel(actor), action, "change:"+id.String(), "actor is not an operator"); err != nil {
			return 0, fmt.Errorf("%w (and the refusal could not be audited: %w)", ErrNotOperator, err)
		}
		return 0, ErrNotOperator
	}
	cs, err := g.st.GetChangeSummary(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("gateway: %w", err)
	}
	unlock, err := g.locks.lock(ctx, lockKey(&cs))
	if err != nil {
		return 0, err
	}
	defer unlock()
	// Read again under the lock: it may have been decided meanwhile.
	if cs, err = g.st.GetChangeSummary(ctx, id); err != nil {
		return 0, fmt.Errorf("gateway: %w", err)
	}
	if cs.State != StatePending {
		return 0, fmt.Errorf("%w (it is %s)", ErrNotPending, cs.State)
	}
	if subtle.ConstantTimeCompare(hash[:], cs.Binding[:]) != 1 {
		if err := g.log.Refuse(actor, action, "change:"+id.String(), "hash does not match"); err != nil {
			return 0, fmt.Errorf("%w (and the refusal could not be audited: %w)", ErrHashMismatch, err)
		}
		return 0, ErrHashMismatch
	}
	return fn(&store.Change{ChangeSummary: cs})
}

// approveLocked opens and checks the request, then applies it. One path
// for profiles and rules: the target is picked once, by kind.
func (g *Gateway) approveLocked(ctx context.Context, sum *store.Change, actor string, hash [32]byte) (uint64, error) {
	ch, err := g.st.GetChange(ctx, sum.ID)
	switch {
	case errors.Is(err, store.ErrSealed):
		return 0, g.closeLocked(ctx, sum, actor, StateRefused, "tampered: stored request does not open", ErrTampered)
	case err != nil:
		return 0, fmt.Errorf("gateway: %w", err)
	}
	if BindingHash(ch.ID, ch.Base, ch.Proposed) != ch.Binding {
		return 0, g.closeLocked(ctx, sum, actor, StateRefused, "tampered: stored texts do not hash to the binding", ErrTampered)
	}
	t := g.targetOf(ch.Kind, ch.Session)
	curVersion, curText, err := t.current(ctx)
	if err != nil {
		return 0, fmt.Errorf("gateway: %w", err)
	}
	if curVersion != ch.BaseVersion || !bytes.Equal(curText, ch.Base) {
		return 0, g.closeLocked(ctx, sum, actor, StateStale,
			fmt.Sprintf("stale: %s is at version %d, request was made against %d", t.name(), curVersion, ch.BaseVersion), ErrStale)
	}
	// Policy again, with today's host facts and rules: a maximum lowered or
	// a deny rule added since the request was made still holds.
	d, err := t.decide(ctx, ch.Kind, ch.Requester, ch.BaseVersion, ch.Base, ch.Proposed)
	switch {
	case errors.Is(err, errNotCanonical):
		return 0, g.closeLocked(ctx, sum, actor, StateRefused, "tampered: stored texts are not canonical", ErrTampered)
	case err != nil:
		return 0, err
	case d.Outcome == policy.Deny:
		return 0, g.closeLocked(ctx, sum, actor, StateRefused, "refused by policy: "+d.Rule,
			fmt.Errorf("%w: rule %s", ErrRefused, d.Rule))
	}
	return g.applyLocked(ctx, &ch, actor, "approved", hash)
}

// errNotCanonical: a stored base or proposed text does not parse to
// exactly itself.
var errNotCanonical = errors.New("gateway: not a canonical text")

// target is what a change request changes — a session's profile or the
// operator rules — picked once by kind.
type target interface {
	name() string
	// current is the version and canonical text now.
	current(ctx context.Context) (uint64, []byte, error)
	// decide parses base and proposed strictly (errNotCanonical) and asks
	// policy about the change.
	decide(ctx context.Context, kind, requester string, baseVersion uint64, base, proposed []byte) (policy.Decision, error)
}

func (g *Gateway) targetOf(kind string, session wire.SessionID) target {
	if kind == store.KindRules {
		return rulesTarget{g}
	}
	return profileTarget{g, session}
}

type profileTarget struct {
	g       *Gateway
	session wire.SessionID
}

func (profileTarget) name() string { return "the profile" }

func (t profileTarget) current(ctx context.Context) (uint64, []byte, error) {
	v, p, err := t.g.st.CurrentProfile(ctx, t.session)
	if err != nil {
		return 0, nil, err
	}
	return v, p.Canonical(), nil
}

func (t profileTarget) decide(ctx context.Context, kind, requester string, baseVersion uint64, base, proposed []byte) (policy.Decision, error) {
	b, berr := profile.Parse(base)
	p, perr := profile.Parse(proposed)
	if berr != nil || perr != nil || !bytes.Equal(p.Canonical(), proposed) {
		return policy.Decision{}, errNotCanonical
	}
	return policy.EvaluateContext(ctx, *t.g.host.Load(), t.g.rules.Load().set, policy.Change{
		Kind: kind, Requester: requester, Base: b, Proposed: p, BaseVersion: baseVersion,
	})
}

type rulesTarget struct{ g *Gateway }

func (rulesTarget) name() string { return "the rules" }

func (t rulesTarget) current(context.Context) (uint64, []byte, error) {
	cur := t.g.rules.Load()
	return cur.version, cur.text, nil
}

func (t rulesTarget) decide(_ context.Context, _, requester string, _ uint64, _, proposed []byte) (policy.Decision, error) {
	specs, err := policy.ParseRules(proposed)
	if err != nil {
		return policy.Decision{}, errNotCanonical
	}
	return policy.EvaluateRules(requester, t.g.rules.Load().specs, specs), nil
}

// closeLocked audits why an approval is refused, then closes the request in
// that state; if the audit fails, the request stays as it was.
func (g *Gateway) closeLocked(ctx context.Context, ch *store.Change, actor string, to State, result string, cause error) error {
	if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionApprove, Subject: changeSubject(&ch.ChangeSummary),
		Decision: "refused", Result: result}); err != nil {
		return fmt.Errorf("%w: %w (%w)", ErrAudit, err, cause)
	}
	if err := g.st.CloseChange(ctx, ch.ID, to, "gateway", "", result); err != nil {
		return fmt.Errorf("%w (and closing the request failed: %w)", cause, err)
	}
	return cause
}

// applyLocked audits the decision, applies the request through the store's
// binding-checked compare-and-swap, audits the result and notifies the
// daemon. It returns the new version, or 0 if nothing was applied.
func (g *Gateway) applyLocked(ctx context.Context, ch *store.Change, actor, decision string, hash [32]byte) (uint64, error) {
	subj := changeSubject(&ch.ChangeSummary)
	if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionApprove, Subject: subj,
		Decision: decision, Result: "applying"}); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrAudit, err)
	}
	var (
		version uint64
		applied []byte
		err     error
	)
	version, applied, err = g.st.ApplyChange(ctx, ch.ID, hash, actor)
	if err != nil {
		var (
			to     State
			result string
			cause  error
		)
		switch {
		case errors.Is(err, store.ErrStale):
			to, result, cause = StateStale, "stale: the base moved before the change committed", ErrStale
		case errors.Is(err, store.ErrBindingMismatch), errors.Is(err, store.ErrSealed):
			to, result, cause = StateRefused, "tampered: the store's binding check failed", ErrTampered
		default:
			result, cause = "failed: not applied", fmt.Errorf("gateway: %w", err)
		}
		var aerr, cerr error
		if _, e := g.log.Append(audit.Record{Actor: actor, Action: ActionApply, Subject: subj,
			Decision: decision, Result: result}); e != nil {
			aerr = fmt.Errorf("%w: %w", ErrResultNotAudited, e)
		}
		if to != "" {
			cerr = g.st.CloseChange(ctx, ch.ID, to, "gateway", "", result)
		}
		return 0, errors.Join(cause, aerr, cerr)
	}

	var errs []error
	if ch.Kind == store.KindRules {
		rs, err := compileRules(version, applied)
		if err != nil {
			// Checked before the decision; only a bug gets here. The new
			// version is stored; New will refuse to start on it.
			errs = append(errs, fmt.Errorf("gateway: internal: applied rules do not load: %w", err))
		} else {
			g.rules.Store(rs)
		}
	}
	if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionApply, Subject: subj,
		Decision: decision, Result: fmt.Sprintf("applied as version %d", version)}); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrResultNotAudited, err))
	}
	if ch.Kind != store.KindRules {
		if err := g.applier.ProfileApplied(ctx, ch.Session, version, applied, needsRestart(ch.Base, applied)); err != nil {
			// The error is returned either way; a failed record of it is
			// counted by the audit log (ironclaw status).
			_, _ = g.log.Append(audit.Record{Actor: "gateway", Action: ActionNotify, Subject: subj,
				Decision: decision, Result: fmt.Sprintf("version %d applied, daemon not notified", version)})
			errs = append(errs, fmt.Errorf("%w: %w", ErrNotify, err))
		}
	}
	return version, errors.Join(errs...)
}

// restartFields are the fields whose change needs a new sandbox: the
// binary, what it may run, the model it calls and the limits the sandbox
// was started with.
var restartFields = []string{policy.FieldTools, policy.FieldModel, policy.FieldLimits, policy.FieldAgentDigest}

// needsRestart reports whether moving from base to proposed (canonical
// profiles) needs the sandbox restarted. A text that does not parse counts
// as needing one.
func needsRestart(base, proposed []byte) bool {
	b, err1 := profile.Parse(base)
	p, err2 := profile.Parse(proposed)
	if err1 != nil || err2 != nil {
		return true
	}
	for _, f := range policy.ChangedFields(policy.Change{Base: b, Proposed: p}) {
		for _, r := range restartFields {
			if f == r {
				return true
			}
		}
	}
	return false
}
