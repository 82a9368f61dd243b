package gateway

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/audit"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
)

// Audit actions the gateway writes.
const (
	ActionSubmit  = "change.submit"
	ActionApprove = "change.approve"
	ActionDeny    = "change.deny"
	ActionApply   = "change.apply"
	ActionNotify  = "change.notify"
)

// MaxReasonLen caps a request's reason (the wire caps the agent's lower).
const MaxReasonLen = store.MaxChangeReasonLen

// Request is a change request as a source hands it to Submit.
type Request struct {
	// Session whose profile is to change; zero for a change of the rules.
	// For agent and channel requests it comes from the session binding,
	// never from anything the requester wrote.
	Session wire.SessionID
	// Kind is one of policy.Kinds().
	Kind string
	// Requester is who asks: "agent:<session hex>", "operator:SHA256:<fp>",
	// "operator:local:<unix user>" or "channel:<matrix user id>". Set by the
	// daemon from the source, never from request content.
	Requester string
	// Reason is the requester's text. Untrusted; stored sealed, shown marked
	// as untrusted.
	Reason string
	// Proposed is the full proposed version in canonical form: a profile
	// (profile.Canonical) or, for kind "rules", the rules
	// (policy.CanonicalRules).
	Proposed []byte
	// BaseVersion, if not 0, is the version the requester built on; if it is
	// no longer current Submit fails with ErrStale. 0 means "whatever is
	// current" (the agent and channels). Either way the request binds to the
	// base that was current at submission, and the human sees the diff
	// against it.
	BaseVersion uint64
}

// Ticket is what Submit returns: the request's id and where it stands.
type Ticket struct {
	ID    ID
	State State
	// Outcome and Rule are the policy decision.
	Outcome policy.Outcome
	Rule    string
	// Binding is the hash an approval must present.
	Binding     [32]byte
	BaseVersion uint64
	// Duplicate is true when an identical request was already pending and
	// this ticket is that request's.
	Duplicate bool
	// AppliedVersion is the new version when an operator rule approved the
	// change and it was applied.
	AppliedVersion uint64
}

// SubmitAgentChange files a change request the agent of session wrote to
// its outbox (the row already verified and strictly decoded by the outbox
// reader). The requester is the session's agent, from where the row was
// found; nothing in the request can name another. This is the production
// path (supervisor.ChangeSink) and the one FuzzSubmitAgentRequest drives.
// A refusal is an outcome, audited here; the error says why.
func (g *Gateway) SubmitAgentChange(ctx context.Context, session wire.SessionID, req wire.ChangeRequest) (Ticket, error) {
	return g.Submit(ctx, Request{
		Session:   session,
		Kind:      req.Change,
		Requester: "agent:" + session.String(),
		Reason:    req.Reason,
		Proposed:  []byte(req.Proposed),
	})
}

// SubmitContact files a channel's request: a stranger (Matrix user id user)
// asks to talk to session's agent. The proposed profile is the current one
// with user added to the contacts.
func (g *Gateway) SubmitContact(ctx context.Context, session wire.SessionID, user, reason string) (Ticket, error) {
	requester := "channel:" + user
	if err := policy.CheckMatrixUserID(user); err != nil {
		return Ticket{}, g.refuseSubmit(requester, sessionSubject(session, policy.KindContacts), "malformed requester", ErrMalformed)
	}
	version, cur, err := g.st.CurrentProfile(ctx, session)
	if err != nil {
		return Ticket{}, fmt.Errorf("gateway: %w", err)
	}
	cur.Contacts = append(slices.Clone(cur.Contacts), user)
	return g.Submit(ctx, Request{
		Session:     session,
		Kind:        policy.KindContacts,
		Requester:   requester,
		Reason:      reason,
		Proposed:    cur.Canonical(),
		BaseVersion: version,
	})
}

// SubmitRules files an operator's proposal to replace the operator rules
// with specs. It always needs a human.
func (g *Gateway) SubmitRules(ctx context.Context, requester string, specs []policy.RuleSpec, baseVersion uint64, reason string) (Ticket, error) {
	return g.Submit(ctx, Request{
		Kind:        policy.KindRules,
		Requester:   requester,
		Reason:      reason,
		Proposed:    policy.CanonicalRules(specs),
		BaseVersion: baseVersion,
	})
}

// Submit files a change request. In order:
//
//  1. The request is checked for shape (requester form, agent requester ==
//     session, reason size) and the proposed text parsed strictly: a text
//     that is not exactly canonical fails with ErrMalformed.
//  2. An identical pending request (same session, kind, base version and
//     proposed bytes) is returned as is (Ticket.Duplicate).
//  3. For agent and channel requesters: a human denial of this session and
//     kind within the cool-down fails with ErrCoolingDown; a session that
//     already has the maximum of pending requests from this source fails
//     with ErrTooManyPending. Operators are subject to neither.
//  4. Policy decides, on the diff between the current version and the
//     proposed one. Deny: stored as refused, naming the rule (the Ticket
//     says so; the error is nil). Needs-human: stored pending.
//     Auto-approve (only where an operator rule says so): stored, then
//     applied at once exactly as an approval would be.
//
// Every outcome is audited before Submit returns; if the audit write fails,
// nothing is stored and the error wraps ErrAudit.
func (g *Gateway) Submit(ctx context.Context, r Request) (Ticket, error) {
	if r.Kind == policy.KindRules {
		return g.submitRules(ctx, r)
	}
	kind := kindLabel(r.Kind)
	subj := sessionSubject(r.Session, kind)
	actor := actorLabel(r.Requester)
	if err := policy.CheckRequester(r.Requester); err != nil {
		return Ticket{}, g.refuseSubmit(actor, subj, "malformed requester", ErrMalformed)
	}
	if strings.HasPrefix(r.Requester, "agent:") && r.Requester != "agent:"+r.Session.String() {
		return Ticket{}, g.refuseSubmit(actor, subj, "an agent may only ask for its own session", ErrMalformed)
	}
	if len(r.Reason) > MaxReasonLen {
		return Ticket{}, g.refuseSubmit(actor, subj, "reason too long", ErrMalformed)
	}
	unlock, err := g.locks.lock(ctx, r.Session.String())
	if err != nil {
		return Ticket{}, err
	}
	defer unlock()

	baseVersion, base, err := g.st.CurrentProfile(ctx, r.Session)
	if err != nil {
		return Ticket{}, fmt.Errorf("gateway: %w", err)
	}
	if r.BaseVersion != 0 && r.BaseVersion != baseVersion {
		return Ticket{}, g.refuseSubmit(actor, subj, "stale base version", ErrStale)
	}
	proposed, err := profile.Parse(r.Proposed)
	if err != nil {
		return Ticket{}, g.refuseSubmit(actor, subj, "proposed profile is not canonical", ErrMalformed)
	}
	if user, ok := strings.CutPrefix(r.Requester, "channel:"); ok && !addsOnlyContact(base, proposed, r.Kind, user) {
		// A stranger may ask to talk, and for nothing else.
		return Ticket{}, g.refuseSubmit(actor, subj, "a channel may only ask to add its own user as a contact", ErrMalformed)
	}
	if t, ok, err := g.duplicate(ctx, r.Session, kind, baseVersion, r.Proposed); err != nil || ok {
		return t, err
	}
	if err := g.admit(ctx, r.Session, kind, r.Requester, actor, subj); err != nil {
		return Ticket{}, err
	}
	d, err := policy.EvaluateContext(ctx, *g.host.Load(), g.rules.Load().set, policy.Change{
		Kind:        r.Kind,
		Requester:   r.Requester,
		Base:        base,
		Proposed:    proposed,
		BaseVersion: baseVersion,
	})
	if err != nil {
		return Ticket{}, err
	}
	return g.record(ctx, r.Session, kind, r.Requester, r.Reason, baseVersion, base.Canonical(), r.Proposed, d)
}

func (g *Gateway) submitRules(ctx context.Context, r Request) (Ticket, error) {
	const subj = "rules"
	actor := actorLabel(r.Requester)
	if r.Session != (wire.SessionID{}) || !policy.IsOperator(r.Requester) {
		return Ticket{}, g.refuseSubmit(actor, subj, "only an operator may propose rules, and for no session", ErrMalformed)
	}
	if len(r.Reason) > MaxReasonLen {
		return Ticket{}, g.refuseSubmit(actor, subj, "reason too long", ErrMalformed)
	}
	unlock, err := g.locks.lock(ctx, rulesLockKey)
	if err != nil {
		return Ticket{}, err
	}
	defer unlock()
	cur := g.rules.Load()
	if r.BaseVersion != 0 && r.BaseVersion != cur.version {
		return Ticket{}, g.refuseSubmit(actor, subj, "stale base version", ErrStale)
	}
	specs, err := policy.ParseRules(r.Proposed)
	if err != nil {
		return Ticket{}, g.refuseSubmit(actor, subj, "proposed rules are not canonical", ErrMalformed)
	}
	if t, ok, err := g.duplicate(ctx, wire.SessionID{}, policy.KindRules, cur.version, r.Proposed); err != nil || ok {
		return t, err
	}
	d := policy.EvaluateRules(r.Requester, cur.specs, specs)
	return g.record(ctx, wire.SessionID{}, policy.KindRules, r.Requester, r.Reason, cur.version, cur.text, r.Proposed, d)
}

// duplicate finds an identical pending request.
func (g *Gateway) duplicate(ctx context.Context, session wire.SessionID, kind string, baseVersion uint64, proposed []byte) (Ticket, bool, error) {
	cs, ok, err := g.st.FindPendingChange(ctx, session, kind, baseVersion, proposed)
	if err != nil || !ok {
		return Ticket{}, false, err
	}
	return Ticket{ID: cs.ID, State: cs.State, Outcome: outcomeOf(cs.Outcome), Rule: cs.Rule,
		Binding: cs.Binding, BaseVersion: cs.BaseVersion, Duplicate: true}, true, nil
}

// admit applies the cool-down and the pending cap to untrusted requesters.
func (g *Gateway) admit(ctx context.Context, session wire.SessionID, kind, requester, actor, subj string) error {
	if policy.IsOperator(requester) {
		return nil
	}
	if g.cooldown > 0 {
		when, ok, err := g.st.LastDenial(ctx, session, kind)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if ok && g.now().Before(when.Add(g.cooldown)) {
			return g.refuseSubmit(actor, subj, "cooling down after a denial", ErrCoolingDown)
		}
	}
	source, _, _ := strings.Cut(requester, ":")
	n, err := g.st.CountPendingChanges(ctx, session, source+":")
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if n >= g.maxPending {
		return g.refuseSubmit(actor, subj, "too many pending requests", ErrTooManyPending)
	}
	return nil
}

// record audits the policy decision, stores the request and, for an
// auto-approval, applies it.
func (g *Gateway) record(ctx context.Context, session wire.SessionID, kind, requester, reason string,
	baseVersion uint64, base, proposed []byte, d policy.Decision) (Ticket, error) {
	id, err := store.NewChangeID()
	if err != nil {
		return Ticket{}, err
	}
	ch := store.Change{
		ChangeSummary: store.ChangeSummary{
			ID:          id,
			Session:     session,
			Kind:        kind,
			Requester:   requester,
			BaseVersion: baseVersion,
			Binding:     store.ChangeBinding(id, base, proposed),
			Created:     g.now(),
			State:       StatePending,
			Outcome:     d.Outcome.String(),
			Rule:        d.Rule,
		},
		Base:     base,
		Proposed: proposed,
		Reason:   reason,
		Reasons:  d.Reasons,
	}
	t := Ticket{ID: id, State: StatePending, Outcome: d.Outcome, Rule: d.Rule, Binding: ch.Binding, BaseVersion: baseVersion}
	actor := actorLabel(requester)
	subj := changeSubject(&ch.ChangeSummary)

	switch d.Outcome {
	case policy.Deny:
		// Refuse folds a flood of identical refusals into counted entries;
		// the stored row (kept for the last MaxRefusedChangesKept) has the id.
		if err := g.log.Refuse(actor, ActionSubmit, sessionSubject(session, kind), "policy: "+d.Rule); err != nil {
			return Ticket{}, fmt.Errorf("%w: %w", ErrAudit, err)
		}
		ch.State, ch.Result = StateRefused, "refused by policy: "+d.Rule
		t.State = StateRefused
	case policy.NeedsHuman:
		if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionSubmit, Subject: subj,
			Decision: d.Outcome.String(), Result: "pending; policy: " + d.Rule}); err != nil {
			return Ticket{}, fmt.Errorf("%w: %w", ErrAudit, err)
		}
	case policy.AutoApprove:
		if kind == policy.KindRules || kind == policy.KindSoftware {
			// policy never does this; refuse to be the second line that fails.
			return Ticket{}, fmt.Errorf("gateway: internal: policy auto-approved a %q change", kind)
		}
		if _, err := g.log.Append(audit.Record{Actor: actor, Action: ActionSubmit, Subject: subj,
			Decision: d.Outcome.String(), Result: "applying; rule: " + d.Rule}); err != nil {
			return Ticket{}, fmt.Errorf("%w: %w", ErrAudit, err)
		}
	default:
		return Ticket{}, fmt.Errorf("gateway: internal: unknown policy outcome %v", d.Outcome)
	}
	if err := g.st.InsertChange(ctx, ch); err != nil {
		return Ticket{}, fmt.Errorf("gateway: %w", err)
	}
	if d.Outcome != policy.AutoApprove {
		return t, nil
	}
	version, err := g.applyLocked(ctx, &ch, "rule:"+d.Rule, "auto-approved", ch.Binding)
	if version != 0 {
		t.State, t.AppliedVersion = StateApplied, version
	} else if cs, serr := g.st.GetChangeSummary(ctx, id); serr == nil {
		t.State = cs.State
	}
	return t, err
}

// refuseSubmit audits a refusal that stores nothing and returns cause.
func (g *Gateway) refuseSubmit(actor, subject, reason string, cause error) error {
	if err := g.log.Refuse(actor, ActionSubmit, subject, reason); err != nil {
		return fmt.Errorf("%w: %s (and the refusal could not be audited: %w)", cause, reason, err)
	}
	return fmt.Errorf("%w: %s", cause, reason)
}

// kindLabel returns k if it is a known kind, else "unknown": an agent's
// made-up kind is request content and never reaches the audit log or a
// plain column.
func kindLabel(k string) string {
	if slices.Contains(policy.Kinds(), k) {
		return k
	}
	return "unknown"
}

// actorLabel is the audit actor for a requester: itself if well formed.
func actorLabel(requester string) string {
	if policy.CheckRequester(requester) == nil {
		return requester
	}
	return "invalid-requester"
}

func sessionSubject(session wire.SessionID, kind string) string {
	if kind == policy.KindRules {
		return "rules"
	}
	return "session:" + session.String() + " kind:" + kind
}

func changeSubject(cs *store.ChangeSummary) string {
	where := "session:" + cs.Session.String()
	if cs.Kind == store.KindRules {
		where = "rules"
	}
	return "change:" + cs.ID.String() + " " + where + " kind:" + cs.Kind + " binding:" + hex.EncodeToString(cs.Binding[:])
}

// addsOnlyContact reports whether kind is contacts and proposed is base
// with user added to the contacts (and nothing else changed: the policy's
// kind-mismatch invariant checks that).
func addsOnlyContact(base, proposed profile.Profile, kind, user string) bool {
	if kind != policy.KindContacts {
		return false
	}
	want := append(slices.Clone(base.Contacts), user)
	slices.Sort(want)
	got := slices.Clone(proposed.Contacts)
	slices.Sort(got)
	return slices.Equal(slices.Compact(want), slices.Compact(got))
}

func outcomeOf(s string) policy.Outcome {
	for _, o := range []policy.Outcome{policy.Deny, policy.NeedsHuman, policy.AutoApprove} {
		if o.String() == s {
			return o
		}
	}
	return policy.Deny
}
