package operator

import (
	"context"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/api"
	"github.com/ironclaw/ironclaw/daemon/gateway"
	"github.com/ironclaw/ironclaw/daemon/store"
)

// Change requests through the api: list, read, decide, propose.

func summary(s gateway.Summary) api.ChangeSummary {
	out := api.ChangeSummary{
		ID: s.ID.String(), Kind: s.Kind, Requester: s.Requester, State: string(s.State),
		Outcome: s.Outcome, Rule: s.Rule, Created: s.Created, DecidedBy: s.DecidedBy,
		Result: s.Result, BaseVersion: s.BaseVersion, Binding: fmt.Sprintf("%x", s.Binding),
	}
	if s.Session != (wire.SessionID{}) {
		out.Session = s.Session.String()
	}
	return out
}

func (b *bound) ListChanges(ctx context.Context, f api.ChangeFilter) ([]api.ChangeSummary, error) {
	gf := gateway.Filter{}
	if !f.All {
		gf.States = []store.ChangeState{store.ChangePending}
	}
	list, err := b.s.cfg.Gateway.List(ctx, gf)
	if err != nil {
		return nil, internal("listing changes", err)
	}
	out := make([]api.ChangeSummary, 0, len(list))
	for _, s := range list {
		out = append(out, summary(s))
	}
	return out, nil
}

func parseChangeID(s string) (gateway.ID, error) {
	id, err := gateway.ParseID(s)
	if err != nil {
		return id, &api.Error{Code: api.CodeInvalid, Message: "not a change request id", Hint: "ids are 32 lower-case hex digits; list them with `changes`"}
	}
	return id, nil
}

func (b *bound) Change(ctx context.Context, ids string) (api.Change, error) {
	id, err := parseChangeID(ids)
	if err != nil {
		return api.Change{}, err
	}
	v, err := b.s.cfg.Gateway.Show(ctx, id)
	if err == nil {
		err = v.Check()
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return api.Change{}, &api.Error{Code: api.CodeNotFound, Message: "no change request " + ids, Hint: "list them with `changes --all`"}
	case errors.Is(err, gateway.ErrTampered):
		return api.Change{}, &api.Error{Code: api.CodeConflict, Message: err.Error(), Hint: "deny it; it will never be applied"}
	case err != nil:
		return api.Change{}, internal("showing change "+ids, err)
	}
	return api.Change{
		ChangeSummary: summary(v.Summary), Diff: v.Diff,
		Base: string(v.Base), Proposed: string(v.Proposed), UntrustedReason: v.UntrustedReason,
		PolicyReasons: v.PolicyReasons, ChangedFields: v.ChangedFields, Restart: v.Restart,
		BaseIsCurrent: v.BaseIsCurrent, Note: v.Note,
	}, nil
}

// decisionError maps a gateway refusal to what the operator can do.
func decisionError(err error) error {
	switch {
	case errors.Is(err, gateway.ErrNotPending):
		return &api.Error{Code: api.CodeConflict, Message: "already decided: " + err.Error(), Hint: "nothing was done twice; refresh to see who decided it"}
	case errors.Is(err, gateway.ErrHashMismatch):
		return &api.Error{Code: api.CodeConflict, Message: err.Error(), Hint: "open the request again and decide on what it shows now"}
	case errors.Is(err, gateway.ErrStale), errors.Is(err, gateway.ErrRefused), errors.Is(err, gateway.ErrTampered):
		return &api.Error{Code: api.CodeConflict, Message: err.Error(), Hint: "nothing was applied"}
	case errors.Is(err, gateway.ErrNotOperator):
		return &api.Error{Code: api.CodeForbidden, Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return &api.Error{Code: api.CodeNotFound, Message: "no such change request", Hint: "list them with `changes --all`"}
	case errors.Is(err, gateway.ErrMalformed), errors.Is(err, gateway.ErrTooManyPending), errors.Is(err, gateway.ErrCoolingDown):
		return &api.Error{Code: api.CodeInvalid, Message: err.Error()}
	}
	return internal("deciding", err)
}

func (b *bound) decide(ctx context.Context, ids string, d api.DecideRequest, approve bool) (api.Decision, error) {
	id, err := parseChangeID(ids)
	if err != nil {
		return api.Decision{}, err
	}
	hash, err := gateway.ParseBinding(d.Binding)
	if err != nil {
		return api.Decision{}, &api.Error{Code: api.CodeInvalid, Message: err.Error(), Hint: "pass the binding shown with the request"}
	}
	what := "denied"
	if approve {
		what = "applied"
		err = b.s.cfg.Gateway.Approve(ctx, id, b.who.Actor, hash)
	} else {
		err = b.s.cfg.Gateway.Deny(ctx, id, b.who.Actor, hash, d.Note)
	}
	out := api.Decision{ID: ids, Result: what}
	if errors.Is(err, gateway.ErrNotify) {
		out.Result = "applied; the daemon will deliver it at its next start (" + err.Error() + ")"
		err = nil
	}
	// Whatever happened (applied, stale, refused), others should re-read it.
	b.s.hub.Publish(api.Event{Kind: api.EventChange, ID: ids, What: what})
	if err != nil {
		return api.Decision{}, decisionError(err)
	}
	return out, nil
}

func (b *bound) Approve(ctx context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return b.decide(ctx, id, d, true)
}

func (b *bound) Deny(ctx context.Context, id string, d api.DecideRequest) (api.Decision, error) {
	return b.decide(ctx, id, d, false)
}

func (b *bound) Propose(ctx context.Context, r api.ChangeRequest) (api.Ticket, error) {
	var session wire.SessionID
	if r.Session != "" {
		id, err := wire.ParseSessionID(r.Session)
		if err != nil {
			return api.Ticket{}, &api.Error{Code: api.CodeInvalid, Message: "not a session id", Hint: "list them with `sessions`"}
		}
		session = id
	}
	t, err := b.s.cfg.Gateway.Submit(ctx, gateway.Request{
		Session: session, Kind: r.Kind, Requester: b.who.Actor, Reason: r.Reason,
		Proposed: []byte(r.Proposed), BaseVersion: r.BaseVersion,
	})
	if err != nil {
		return api.Ticket{}, decisionError(err)
	}
	b.s.hub.Publish(api.Event{Kind: api.EventChange, ID: t.ID.String(), What: "filed"})
	return api.Ticket{ID: t.ID.String(), State: string(t.State), Outcome: t.Outcome.String(), Rule: t.Rule, Duplicate: t.Duplicate}, nil
}
