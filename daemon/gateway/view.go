package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
)

// Summary is a request's metadata, as List returns it: id, session (zero
// for rules), kind, requester, base version, binding hash, created, state,
// policy outcome and rule, who decided and when, result, applied version.
// Nothing in it is request text.
type Summary = store.ChangeSummary

// Filter selects requests for List; see store.ChangeFilter. The zero Filter
// lists the newest requests of every session and the rules.
type Filter = store.ChangeFilter

// View is everything a human needs to decide one request.
type View struct {
	Summary
	// Diff is the exact whole-file diff from Base to Proposed
	// (profile.Diff): every line of both, prefixed " ", "-" or "+".
	Diff string
	// Base and Proposed are the canonical texts the binding hash covers;
	// Check recomputes the hash and the diff from them.
	Base, Proposed []byte
	// UntrustedReason is the requester's own words. It is NOT verified and
	// may try to mislead: show it marked as the requester's claim, after
	// sanitising it for the terminal.
	UntrustedReason string
	// PolicyReasons explain the policy decision (they may quote, Go-quoted,
	// values from the proposal).
	PolicyReasons []string
	// Note is the deciding operator's note.
	Note string
	// ChangedFields are the fields that differ (policy.Field* names).
	ChangedFields []string
	// Restart says whether applying it restarts the session's sandbox.
	Restart bool
	// BaseIsCurrent says whether the request's base is still the current
	// version. If not, approving it will only mark it stale: the requester
	// must ask again against the current version.
	BaseIsCurrent bool
}

// Check recomputes the binding hash and the diff from the view's own texts
// and fails if either differs from what the view says. A console calls it
// before showing a request, so that what it shows is what the hash binds.
func (v *View) Check() error {
	if BindingHash(v.ID, v.Base, v.Proposed) != v.Binding {
		return errors.New("gateway: view's texts do not hash to its binding")
	}
	if profile.Diff(v.Base, v.Proposed) != v.Diff {
		return errors.New("gateway: view's diff is not the diff of its texts")
	}
	return nil
}

// List returns the selected requests, newest first, without unsealing
// anything.
func (g *Gateway) List(ctx context.Context, f Filter) ([]Summary, error) {
	out, err := g.st.ListChanges(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return out, nil
}

// Show returns one request with its diff. A request whose stored content
// does not open fails with ErrTampered (List still shows its metadata, and
// Deny still closes it).
func (g *Gateway) Show(ctx context.Context, id ID) (View, error) {
	ch, err := g.st.GetChange(ctx, id)
	switch {
	case errors.Is(err, store.ErrSealed):
		return View{}, fmt.Errorf("%w: %w", ErrTampered, err)
	case err != nil:
		return View{}, fmt.Errorf("gateway: %w", err)
	}
	if BindingHash(ch.ID, ch.Base, ch.Proposed) != ch.Binding {
		return View{}, fmt.Errorf("%w: stored texts do not hash to the binding", ErrTampered)
	}
	v := View{
		Summary:         ch.ChangeSummary,
		Diff:            profile.Diff(ch.Base, ch.Proposed),
		Base:            ch.Base,
		Proposed:        ch.Proposed,
		UntrustedReason: ch.Reason,
		PolicyReasons:   ch.Reasons,
		Note:            ch.Note,
	}
	if ch.Kind == store.KindOperators {
		v.ChangedFields = []string{policy.FieldOperators}
		if g.operators != nil {
			cur, err := g.operators.Current()
			v.BaseIsCurrent = err == nil && bytes.Equal(cur, ch.Base)
		}
		return v, nil
	}
	if ch.Kind == store.KindRules {
		cur := g.rules.Load()
		v.ChangedFields = []string{policy.FieldRules}
		v.BaseIsCurrent = cur.version == ch.BaseVersion && bytes.Equal(cur.text, ch.Base)
		return v, nil
	}
	if version, cur, err := g.st.CurrentProfile(ctx, ch.Session); err == nil {
		v.BaseIsCurrent = version == ch.BaseVersion && bytes.Equal(cur.Canonical(), ch.Base)
	}
	b, err1 := profile.Parse(ch.Base)
	p, err2 := profile.Parse(ch.Proposed)
	if err1 == nil && err2 == nil {
		v.ChangedFields = policy.ChangedFields(policy.Change{Base: b, Proposed: p})
	}
	v.Restart = needsRestart(ch.Base, ch.Proposed)
	return v, nil
}
