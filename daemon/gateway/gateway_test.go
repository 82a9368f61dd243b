package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
	"github.com/ironclaw/ironclaw/daemon/store"
	"github.com/ironclaw/ironclaw/policy"
)

// proposals is a mix of valid and invalid agent proposals of every kind.
var proposals = []struct {
	kind   string
	mutate func(*profile.Profile)
}{
	{policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "Be terse." }},
	{policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "caf\xe9" }},
	{policy.KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "remember") }},
	{policy.KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "shell") }},
	{policy.KindSoftware, func(p *profile.Profile) { p.AgentDigest = digestB }},
	{policy.KindContacts, func(p *profile.Profile) { p.Contacts = append(p.Contacts, "@bob:example.org") }},
	{policy.KindContacts, func(p *profile.Profile) { p.Contacts = append(p.Contacts, "@eve:evil.test") }},
	{policy.KindPermissions, func(p *profile.Profile) { p.Permissions.Memory = true }},
	{policy.KindModel, func(p *profile.Profile) { p.Model = "qwen2.5:7b" }},
	{policy.KindModel, func(p *profile.Profile) { p.Model = "gpt-4" }},
	{policy.KindLimits, func(p *profile.Profile) { p.Limits.MemoryMiB = 128 }},
	{policy.KindLimits, func(p *profile.Profile) { p.Limits.MemoryMiB = 1 << 40 }},
	{policy.KindLimits, func(p *profile.Profile) { p.Instructions = "sneaky"; p.Limits.MemoryMiB = 128 }},
	{"bogus", func(p *profile.Profile) { p.Model = "qwen2.5:7b" }},
	{policy.KindInstructions, func(p *profile.Profile) {}},
}

var testRules = []policy.RuleSpec{
	{Name: "no-evil", Effect: policy.EffectDeny, Expr: `proposed.contacts.exists(c, c.endsWith(":evil.test"))`},
	{Name: "shrink-limits", Effect: policy.EffectAutoApprove,
		Expr: "change.kind == \"limits\" &&\n  proposed.limits.all(k, proposed.limits[k] <= base.limits[k])"},
}

type outcome struct {
	State   State
	Outcome policy.Outcome
	Rule    string
	Reasons []string
	Diff    string
	Version uint64
}

// TestDecisionsDeterministic runs the same proposals through two separate
// gateways, concurrently, and checks that they decide alike and as policy
// alone would.
func TestDecisionsDeterministic(t *testing.T) {
	run := func(e *env) []outcome {
		e.installRules(testRules...)
		out := make([]outcome, len(proposals))
		var wg sync.WaitGroup
		for i, pr := range proposals {
			s := e.newSession()
			wg.Go(func() {
				tk, err := e.agentAsk(s, pr.kind, pr.mutate, "because")
				if err != nil {
					t.Errorf("proposal %d: %v", i, err)
					return
				}
				v, err := e.gw.Show(ctx, tk.ID)
				if err != nil {
					t.Errorf("proposal %d: Show: %v", i, err)
					return
				}
				ver, _ := e.current(s)
				out[i] = outcome{tk.State, tk.Outcome, tk.Rule, v.PolicyReasons, v.Diff, ver}
			})
		}
		wg.Wait()
		return out
	}
	a, b := run(newEnv(t)), run(newEnv(t))
	rs, err := policy.LoadRules(testRules)
	if err != nil {
		t.Fatal(err)
	}
	for i, pr := range proposals {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Errorf("proposal %d (%s): gateways disagree:\n%+v\n%+v", i, pr.kind, a[i], b[i])
		}
		p := baseProfile()
		pr.mutate(&p)
		d := policy.Evaluate(testHost(), rs, policy.Change{Kind: pr.kind, Requester: "agent:" + strings.Repeat("0", 32),
			Base: baseProfile(), Proposed: p, BaseVersion: 1})
		if a[i].Outcome != d.Outcome || a[i].Rule != d.Rule {
			t.Errorf("proposal %d (%s): gateway decided %v/%s, policy %v/%s", i, pr.kind, a[i].Outcome, a[i].Rule, d.Outcome, d.Rule)
		}
		wantState := map[policy.Outcome]State{policy.Deny: StateRefused, policy.NeedsHuman: StatePending, policy.AutoApprove: StateApplied}[d.Outcome]
		if a[i].State != wantState {
			t.Errorf("proposal %d (%s): state %s, want %s", i, pr.kind, a[i].State, wantState)
		}
	}
}

func TestApproveAppliesExactBytes(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	tk := e.mustPending(e.agentAsk(s, policy.KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "remember") }, "I want memory"))
	v := e.show(tk.ID)
	if !strings.Contains(v.Diff, "+tool = \"remember\"\n") || v.Requester != "agent:"+s.String() || v.UntrustedReason != "I want memory" {
		t.Fatalf("view: %+v", v)
	}
	if err := e.gw.Approve(ctx, tk.ID, opKey, v.Binding); err != nil {
		t.Fatal(err)
	}
	ver, cur := e.current(s)
	if ver != 2 || !bytes.Equal(cur, v.Proposed) {
		t.Fatalf("after approval: version %d, profile %q; want 2, %q", ver, cur, v.Proposed)
	}
	calls := e.app.all()
	if len(calls) != 1 || calls[0].session != s || calls[0].version != 2 || !bytes.Equal(calls[0].canonical, v.Proposed) || !calls[0].restart {
		t.Fatalf("applier calls: %+v", calls)
	}
	if v := e.show(tk.ID); v.State != StateApplied || v.AppliedVersion != 2 || v.DecidedBy != opKey {
		t.Fatalf("after approval: %+v", v.Summary)
	}
	if err := e.gw.Approve(ctx, tk.ID, opKey, v.Binding); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approval: %v, want ErrNotPending", err)
	}
}

// TestApproveOtherHashRefused: an approval carrying the hash of anything
// but the request's exact texts and id applies nothing.
func TestApproveOtherHashRefused(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	a := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "A" }, ""))
	b := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "B" }, ""))
	va, vb := e.show(a.ID), e.show(b.ID)
	for name, h := range map[string][32]byte{
		"B's binding":              vb.Binding,
		"A's id over B's bytes":    BindingHash(a.ID, va.Base, vb.Proposed),
		"B's id over A's bytes":    BindingHash(b.ID, va.Base, va.Proposed),
		"A's bytes without length": sha(append(append([]byte{}, va.Base...), va.Proposed...)),
		"zero":                     {},
	} {
		if err := e.gw.Approve(ctx, a.ID, opKey, h); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("%s: Approve = %v, want ErrHashMismatch", name, err)
		}
		if err := e.gw.Deny(ctx, a.ID, opKey, h, ""); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("%s: Deny = %v, want ErrHashMismatch", name, err)
		}
	}
	if ver, _ := e.current(s); ver != 1 || len(e.app.all()) != 0 {
		t.Fatalf("something was applied: version %d, calls %d", ver, len(e.app.all()))
	}
	if v := e.show(a.ID); v.State != StatePending {
		t.Fatalf("A is %s after refused approvals, want pending", v.State)
	}
	if len(e.findEntries(entry{Action: ActionApprove, Decision: "deny", Result: "hash does not match"})) == 0 {
		t.Error("hash mismatch not audited")
	}
	if err := e.gw.Approve(ctx, a.ID, opKey, va.Binding); err != nil {
		t.Fatalf("the right hash: %v", err)
	}
	if _, cur := e.current(s); !bytes.Equal(cur, va.Proposed) {
		t.Fatal("A's bytes were not applied")
	}
}

func sha(b []byte) [32]byte { return BindingHash(ID{}, nil, b) }

// TestApproveTamperedRowRefused: different bytes planted under A's id in
// the database are never applied, whatever hash the approver brings.
func TestApproveTamperedRowRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(e *env, a, b Ticket)
		hash   func(a, b View) [32]byte
	}{
		{"B's proposed copied into A", func(e *env, a, b Ticket) {
			c := e.raw()
			blob := rawBlob(t, c, "SELECT proposed FROM change_requests WHERE id = ?", b.ID.String())
			rawExec(t, c, "UPDATE change_requests SET proposed = ? WHERE id = ?", blob, a.ID.String())
		}, func(a, b View) [32]byte { return a.Binding }},
		{"B's proposed and binding copied into A", func(e *env, a, b Ticket) {
			c := e.raw()
			blob := rawBlob(t, c, "SELECT proposed FROM change_requests WHERE id = ?", b.ID.String())
			rawExec(t, c, "UPDATE change_requests SET proposed = ?, binding = ? WHERE id = ?", blob, b.Binding[:], a.ID.String())
		}, func(a, b View) [32]byte { return b.Binding }},
		{"A's binding replaced by B's", func(e *env, a, b Ticket) {
			rawExec(t, e.raw(), "UPDATE change_requests SET binding = ? WHERE id = ?", b.Binding[:], a.ID.String())
		}, func(a, b View) [32]byte { return b.Binding }},
		{"A's base and proposed swapped", func(e *env, a, b Ticket) {
			rawExec(t, e.raw(), "UPDATE change_requests SET base = proposed, proposed = base WHERE id = ?", a.ID.String())
		}, func(a, b View) [32]byte { return a.Binding }},
		{"a bit of A's proposed flipped", func(e *env, a, b Ticket) {
			c := e.raw()
			blob := rawBlob(t, c, "SELECT proposed FROM change_requests WHERE id = ?", a.ID.String())
			blob[len(blob)/2] ^= 1
			rawExec(t, c, "UPDATE change_requests SET proposed = ? WHERE id = ?", blob, a.ID.String())
		}, func(a, b View) [32]byte { return a.Binding }},
		{"A moved to another session", func(e *env, a, b Ticket) {
			other := e.newSession()
			rawExec(t, e.raw(), "UPDATE change_requests SET session_id = ? WHERE id = ?", other.String(), a.ID.String())
		}, func(a, b View) [32]byte { return a.Binding }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.newSession()
			a := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "harmless" }, ""))
			b := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "EVIL" }, ""))
			va, vb := e.show(a.ID), e.show(b.ID)
			tc.tamper(e, a, b)
			err := e.gw.Approve(ctx, a.ID, opKey, tc.hash(va, vb))
			if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("Approve = %v, want ErrTampered or ErrHashMismatch", err)
			}
			for _, sess := range []wire.SessionID{s} {
				if ver, cur := e.current(sess); ver != 1 || !bytes.Equal(cur, baseProfile().Canonical()) {
					t.Fatalf("profile changed to version %d: %q", ver, cur)
				}
			}
			if n := len(e.app.all()); n != 0 {
				t.Fatalf("applier called %d times", n)
			}
			// Whatever hash is brought now, nothing is ever applied.
			for _, h := range [][32]byte{va.Binding, vb.Binding} {
				if err := e.gw.Approve(ctx, a.ID, opKey, h); err == nil {
					t.Fatal("a tampered request was approved on a second try")
				}
			}
			if ver, _ := e.current(s); ver != 1 || len(e.app.all()) != 0 {
				t.Fatal("a tampered request was applied")
			}
			if errors.Is(err, ErrTampered) {
				if cs, _ := e.st.GetChangeSummary(ctx, a.ID); cs.State != StateRefused {
					t.Fatalf("tampered request is %s, want refused", cs.State)
				}
			}
		})
	}
}

// TestStaleRequestNotApplied: a request whose base moved is marked stale and
// nothing is applied — never rebased.
func TestStaleRequestNotApplied(t *testing.T) {
	for _, how := range []string{"through the gateway", "behind the gateway's back"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			s := e.newSession()
			a := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "A" }, ""))
			va := e.show(a.ID)
			moved := baseProfile()
			moved.Tools = append(moved.Tools, "notes")
			if how == "through the gateway" {
				tk, err := e.gw.Submit(ctx, Request{Session: s, Kind: policy.KindTools, Requester: opKey, Proposed: moved.Canonical()})
				tk = e.mustPending(tk, err)
				if err := e.gw.Approve(ctx, tk.ID, opKey, tk.Binding); err != nil {
					t.Fatal(err)
				}
			} else {
				// Another gateway over the same store (this one's locks
				// know nothing of it) applies a change first.
				other := e.reopen()
				tk, err := other.Submit(ctx, Request{Session: s, Kind: policy.KindTools, Requester: opKey, Proposed: moved.Canonical()})
				tk = e.mustPending(tk, err)
				if err := other.Approve(ctx, tk.ID, opKey, tk.Binding); err != nil {
					t.Fatal(err)
				}
			}
			calls := len(e.app.all())
			if !va.BaseIsCurrent || e.show(a.ID).BaseIsCurrent {
				t.Fatal("View.BaseIsCurrent does not follow the profile")
			}
			if err := e.gw.Approve(ctx, a.ID, opKey, va.Binding); !errors.Is(err, ErrStale) {
				t.Fatalf("Approve = %v, want ErrStale", err)
			}
			if ver, cur := e.current(s); ver != 2 || !bytes.Equal(cur, moved.Canonical()) {
				t.Fatalf("profile is version %d %q, want the moved version 2", ver, cur)
			}
			if len(e.app.all()) != calls {
				t.Fatal("applier called for a stale request")
			}
			if v := e.show(a.ID); v.State != StateStale {
				t.Fatalf("state %s, want stale", v.State)
			}
			if len(e.findEntries(entry{Action: ActionApprove, Decision: "refused", Subject: a.ID.String(), Result: "stale"})) != 1 {
				t.Error("stale refusal not audited")
			}
		})
	}
}

// TestStaleAtTheStore: the store's compare-and-swap refuses a base that
// moved after the gateway's own check (here: simulated by calling it with a
// moved profile directly).
func TestStaleAtTheStore(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	a := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "A" }, ""))
	moved := baseProfile()
	moved.Tools = append(moved.Tools, "notes")
	other := e.reopen()
	tk, err := other.Submit(ctx, Request{Session: s, Kind: policy.KindTools, Requester: opKey, Proposed: moved.Canonical()})
	tk = e.mustPending(tk, err)
	if err := other.Approve(ctx, tk.ID, opKey, tk.Binding); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.ApplyChange(ctx, a.ID, a.Binding, opKey); !errors.Is(err, store.ErrStale) {
		t.Fatalf("ApplyChange = %v, want ErrStale", err)
	}
	if ver, _ := e.current(s); ver != 2 {
		t.Fatalf("version %d", ver)
	}
}

func TestDedupe(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	mut := func(p *profile.Profile) { p.Instructions = "same" }
	first := e.mustPending(e.agentAsk(s, policy.KindInstructions, mut, "one"))
	second, err := e.agentAsk(s, policy.KindInstructions, mut, "another reason, same change")
	if err != nil || second.ID != first.ID || !second.Duplicate || second.Binding != first.Binding {
		t.Fatalf("second: %+v, %v; want the first ticket %s again", second, err, first.ID)
	}
	// An operator asking for the same bytes gets the same request too.
	third, err := e.gw.Submit(ctx, Request{Session: s, Kind: policy.KindInstructions, Requester: opKey, Proposed: e.proposal(s, mut)})
	if err != nil || third.ID != first.ID {
		t.Fatalf("operator duplicate: %+v, %v", third, err)
	}
	if l, _ := e.gw.List(ctx, Filter{Session: &s}); len(l) != 1 {
		t.Fatalf("%d requests stored, want 1", len(l))
	}
	// Another kind, or another session, is another request.
	other := e.newSession()
	if tk := e.mustPending(e.agentAsk(other, policy.KindInstructions, mut, "")); tk.ID == first.ID {
		t.Fatal("deduplicated across sessions")
	}
	// Once decided, the same change can be asked again.
	if err := e.gw.Approve(ctx, first.ID, opKey, first.Binding); err != nil {
		t.Fatal(err)
	}
	again, err := e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "same again" }, "")
	if err != nil || again.Duplicate {
		t.Fatalf("after approval: %+v, %v", again, err)
	}
}

// TestPendingCapPerSession: a session's flood hits its own cap and never
// another session's requests.
func TestPendingCapPerSession(t *testing.T) {
	e := newEnv(t)
	a, b := e.newSession(), e.newSession()
	for i := range DefaultMaxPending {
		e.mustPending(e.agentAsk(a, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = fmt.Sprint("ask ", i) }, ""))
	}
	_, err := e.agentAsk(a, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "one too many" }, "")
	if !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("over the cap: %v, want ErrTooManyPending", err)
	}
	// The flood goes on, concurrently with B's request.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			_, err := e.agentAsk(a, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = fmt.Sprint("flood ", i) }, "")
			if !errors.Is(err, ErrTooManyPending) {
				t.Errorf("flood %d: %v", i, err)
			}
		})
	}
	var bt Ticket
	var berr error
	wg.Go(func() {
		bt, berr = e.agentAsk(b, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "B's own" }, "")
	})
	wg.Wait()
	e.mustPending(bt, berr)
	if l, _ := e.gw.List(ctx, Filter{Session: &a, States: []State{StatePending}}); len(l) != DefaultMaxPending {
		t.Fatalf("A has %d pending, want %d", len(l), DefaultMaxPending)
	}
	// Other sources on A have their own budget; operators have none.
	e.mustPending(e.gw.SubmitContact(ctx, a, "@bob:example.org", "hi"))
	e.mustPending(e.gw.Submit(ctx, Request{Session: a, Kind: policy.KindModel, Requester: opKey,
		Proposed: e.proposal(a, func(p *profile.Profile) { p.Model = "qwen2.5:7b" })}))
	// The refusals are audited, and the flood folded into few entries.
	refusals := e.findEntries(entry{Action: ActionSubmit, Decision: "deny", Result: "too many pending requests"})
	if len(refusals) == 0 || len(refusals) > 3 {
		t.Fatalf("%d refusal entries for 41 refusals, want 1 to 3 (aggregated)", len(refusals))
	}
	// Deciding one frees a place.
	l, _ := e.gw.List(ctx, Filter{Session: &a, States: []State{StatePending}, Kind: policy.KindInstructions})
	if err := e.gw.Approve(ctx, l[0].ID, opKey, l[0].Binding); err != nil {
		t.Fatal(err)
	}
	// (The other 7 are now stale-to-be, but still pending: they count.)
	if _, err := e.agentAsk(a, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "now there is room" }, ""); err != nil {
		t.Fatalf("after one was decided: %v", err)
	}
}

func TestCooldownAfterDenial(t *testing.T) {
	e := newEnv(t)
	s, other := e.newSession(), e.newSession()
	tk := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "please" }, ""))
	if err := e.gw.Deny(ctx, tk.ID, opKey, tk.Binding, "no"); err != nil {
		t.Fatal(err)
	}
	if v := e.show(tk.ID); v.State != StateDenied || v.Note != "no" || v.DecidedBy != opKey {
		t.Fatalf("after Deny: %+v", v)
	}
	_, err := e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "pretty please" }, "")
	if !errors.Is(err, ErrCoolingDown) {
		t.Fatalf("right after a denial: %v, want ErrCoolingDown", err)
	}
	// Another kind, another session and an operator are not held back.
	e.mustPending(e.agentAsk(s, policy.KindModel, func(p *profile.Profile) { p.Model = "qwen2.5:7b" }, ""))
	e.mustPending(e.agentAsk(other, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "please" }, ""))
	e.mustPending(e.gw.Submit(ctx, Request{Session: s, Kind: policy.KindInstructions, Requester: opKey,
		Proposed: e.proposal(s, func(p *profile.Profile) { p.Instructions = "operator's own" })}))
	e.clock.advance(DefaultCooldown - time.Minute)
	if _, err := e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "now?" }, ""); !errors.Is(err, ErrCoolingDown) {
		t.Fatalf("9 minutes on: %v, want ErrCoolingDown", err)
	}
	e.clock.advance(time.Minute + time.Second)
	e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "now?" }, ""))
	if len(e.findEntries(entry{Action: ActionSubmit, Result: "cooling down"})) == 0 {
		t.Error("cool-down refusal not audited")
	}
}

func TestPolicyDenyNamesRule(t *testing.T) {
	e := newEnv(t)
	e.installRules(testRules...)
	s := e.newSession()
	for _, c := range []struct {
		kind   string
		mutate func(*profile.Profile)
		rule   string
	}{
		{policy.KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "shell") }, policy.InvTools},
		{policy.KindContacts, func(p *profile.Profile) { p.Contacts = append(p.Contacts, "@eve:evil.test") }, "no-evil"},
		{policy.KindLimits, func(p *profile.Profile) { p.Instructions = "x"; p.Limits.TmpMiB = 1 }, policy.InvKindMismatch},
	} {
		tk, err := e.agentAsk(s, c.kind, c.mutate, "")
		if err != nil || tk.State != StateRefused || tk.Outcome != policy.Deny || tk.Rule != c.rule {
			t.Fatalf("%s: %+v, %v; want refused by %s", c.rule, tk, err, c.rule)
		}
		v := e.show(tk.ID)
		if v.State != StateRefused || v.Rule != c.rule || !strings.Contains(strings.Join(v.PolicyReasons, "\n"), c.rule) {
			t.Fatalf("%s: view %+v", c.rule, v.Summary)
		}
		if len(e.findEntries(entry{Actor: "agent:" + s.String(), Action: ActionSubmit, Decision: "deny", Result: "policy: " + c.rule})) == 0 {
			t.Errorf("%s: denial not audited with the rule's name", c.rule)
		}
	}
	if ver, _ := e.current(s); ver != 1 {
		t.Fatal("a refused change was applied")
	}
}

func TestAutoApproveOnlyWithOperatorRule(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	shrink := func(p *profile.Profile) { p.Limits.MemoryMiB = 128 }
	tk := e.mustPending(e.agentAsk(s, policy.KindLimits, shrink, ""))
	if tk.Rule != policy.RuleDefault {
		t.Fatalf("without rules: %+v", tk)
	}
	if err := e.gw.Deny(ctx, tk.ID, opKey, tk.Binding, ""); err != nil {
		t.Fatal(err)
	}
	e.clock.advance(DefaultCooldown + time.Second)

	e.installRules(testRules...)
	tk, err := e.agentAsk(s, policy.KindLimits, func(p *profile.Profile) { p.Limits.MemoryMiB = 64 }, "")
	if err != nil || tk.State != StateApplied || tk.Outcome != policy.AutoApprove || tk.Rule != "shrink-limits" || tk.AppliedVersion != 2 {
		t.Fatalf("with the rule: %+v, %v", tk, err)
	}
	ver, cur := e.current(s)
	if ver != 2 || !bytes.Equal(cur, e.show(tk.ID).Proposed) {
		t.Fatalf("not applied: version %d", ver)
	}
	if calls := e.app.all(); len(calls) != 1 || !calls[0].restart || calls[0].version != 2 {
		t.Fatalf("applier: %+v", calls)
	}
	if v := e.show(tk.ID); v.DecidedBy != "rule:shrink-limits" {
		t.Fatalf("decided by %q", v.DecidedBy)
	}
	if len(e.findEntries(entry{Actor: "rule:shrink-limits", Action: ActionApprove, Decision: "auto-approved", Subject: tk.ID.String()})) != 1 ||
		len(e.findEntries(entry{Actor: "rule:shrink-limits", Action: ActionApply, Result: "applied as version 2"})) != 1 {
		t.Fatal("auto-approval not audited naming the rule")
	}
	// A growth is not covered by the rule: a human decides.
	e.mustPending(e.agentAsk(s, policy.KindLimits, func(p *profile.Profile) { p.Limits.MemoryMiB = 2048 }, ""))

	// Even an approve-everything rule never approves rules or software.
	e.installRules(append(testRules, policy.RuleSpec{Name: "yes", Effect: policy.EffectAutoApprove, Expr: "true"})...)
	e.mustPending(e.agentAsk(s, policy.KindSoftware, func(p *profile.Profile) { p.AgentDigest = digestB }, ""))
	e.mustPending(e.gw.SubmitRules(ctx, opKey, nil, 0, "drop them"))
	// …but it does approve what it covers, which is why rules need a human.
	if tk, err := e.agentAsk(s, policy.KindModel, func(p *profile.Profile) { p.Model = "qwen2.5:7b" }, ""); err != nil || tk.State != StateApplied {
		t.Fatalf("catch-all: %+v %v", tk, err)
	}
}

// TestAuditFailureFailsApprove: if the decision cannot be audited, the
// approval fails and the profile is unchanged.
func TestAuditFailureFailsApprove(t *testing.T) {
	t.Run("injected", func(t *testing.T) {
		e := newEnv(t)
		s := e.newSession()
		tk := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "A" }, ""))
		e.faults.failAction.Store(ActionApprove)
		if err := e.gw.Approve(ctx, tk.ID, opKey, tk.Binding); !errors.Is(err, ErrAudit) {
			t.Fatalf("Approve = %v, want ErrAudit", err)
		}
		if ver, cur := e.current(s); ver != 1 || !bytes.Equal(cur, baseProfile().Canonical()) || len(e.app.all()) != 0 {
			t.Fatalf("applied despite the audit failure: version %d", ver)
		}
		if v := e.show(tk.ID); v.State != StatePending {
			t.Fatalf("state %s, want pending", v.State)
		}
		e.faults.failAction.Store(ActionDeny)
		if err := e.gw.Deny(ctx, tk.ID, opKey, tk.Binding, ""); !errors.Is(err, ErrAudit) {
			t.Fatalf("Deny = %v, want ErrAudit", err)
		}
		if v := e.show(tk.ID); v.State != StatePending {
			t.Fatalf("state %s after a failed deny, want pending", v.State)
		}
		e.faults.failAction.Store("")
		if err := e.gw.Approve(ctx, tk.ID, opKey, tk.Binding); err != nil {
			t.Fatalf("once the audit works: %v", err)
		}
	})
	t.Run("auto-approval", func(t *testing.T) {
		e := newEnv(t)
		e.installRules(testRules...)
		s := e.newSession()
		e.faults.failAction.Store(ActionApprove)
		tk, err := e.agentAsk(s, policy.KindLimits, func(p *profile.Profile) { p.Limits.MemoryMiB = 64 }, "")
		if !errors.Is(err, ErrAudit) || tk.State == StateApplied {
			t.Fatalf("Submit = %+v, %v; want ErrAudit", tk, err)
		}
		if ver, _ := e.current(s); ver != 1 || len(e.app.all()) != 0 {
			t.Fatal("auto-applied despite the audit failure")
		}
	})
	t.Run("closed log", func(t *testing.T) {
		e := newEnv(t)
		s := e.newSession()
		tk := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "A" }, ""))
		if err := e.log.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.gw.Approve(ctx, tk.ID, opKey, tk.Binding); !errors.Is(err, ErrAudit) {
			t.Fatalf("Approve = %v, want ErrAudit", err)
		}
		if ver, _ := e.current(s); ver != 1 || len(e.app.all()) != 0 {
			t.Fatal("applied with a closed audit log")
		}
		if _, err := e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "B" }, ""); !errors.Is(err, ErrAudit) {
			t.Fatalf("Submit = %v, want ErrAudit", err)
		}
		if l, _ := e.gw.List(ctx, Filter{Session: &s}); len(l) != 1 {
			t.Fatalf("%d requests stored, want 1 (nothing stored unaudited)", len(l))
		}
	})
}

// TestReasonSealed: the agent's reason (and the profile texts, and the
// operator's note) appear in no file under the state directory.
func TestReasonSealed(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	m := make([]byte, 12)
	rand.Read(m)
	reason := "REASON-MARKER-" + hex.EncodeToString(m)
	instr := "INSTRUCTION-MARKER-" + hex.EncodeToString(m)
	note := "NOTE-MARKER-" + hex.EncodeToString(m)
	tk := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = instr }, reason))
	refused, err := e.agentAsk(s, policy.KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "shell") }, reason+"-refused")
	if err != nil || refused.State != StateRefused {
		t.Fatal(refused, err)
	}
	other := e.mustPending(e.agentAsk(s, policy.KindModel, func(p *profile.Profile) { p.Model = "qwen2.5:7b" }, reason+"-denied"))
	if err := e.gw.Deny(ctx, other.ID, opKey, other.Binding, note); err != nil {
		t.Fatal(err)
	}
	if v := e.show(tk.ID); v.UntrustedReason != reason || !strings.Contains(v.Diff, instr) {
		t.Fatalf("reason not stored: %q", v.UntrustedReason)
	}
	check := func(when string) {
		for _, marker := range []string{"MARKER-" + hex.EncodeToString(m), hex.EncodeToString(m)} {
			filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(b, []byte(marker)) {
					t.Errorf("%s: %s holds %q in plain text", when, filepath.Base(p), marker)
				}
				return nil
			})
		}
	}
	check("while open")
	e.log.Close()
	e.st.Close()
	check("after close")
}

func TestActorRecorded(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	a := e.mustPending(e.agentAsk(s, policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "A" }, ""))
	b := e.mustPending(e.agentAsk(s, policy.KindModel, func(p *profile.Profile) { p.Model = "qwen2.5:7b" }, ""))
	for _, bad := range []string{"agent:" + s.String(), "channel:@alice:example.org", "", "operator:alice", "root"} {
		if err := e.gw.Approve(ctx, a.ID, bad, a.Binding); !errors.Is(err, ErrNotOperator) {
			t.Errorf("actor %q: %v, want ErrNotOperator", bad, err)
		}
	}
	if ver, _ := e.current(s); ver != 1 {
		t.Fatal("a non-operator approved")
	}
	if err := e.gw.Approve(ctx, a.ID, opLocal, a.Binding); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Deny(ctx, b.ID, opKey, b.Binding, ""); err != nil {
		t.Fatal(err)
	}
	if v := e.show(a.ID); v.DecidedBy != opLocal {
		t.Errorf("A decided by %q, want %q", v.DecidedBy, opLocal)
	}
	if v := e.show(b.ID); v.DecidedBy != opKey {
		t.Errorf("B decided by %q, want %q", v.DecidedBy, opKey)
	}
	if len(e.findEntries(entry{Actor: opLocal, Action: ActionApprove, Decision: "approved", Subject: a.ID.String()})) != 1 ||
		len(e.findEntries(entry{Actor: opLocal, Action: ActionApply, Subject: a.ID.String(), Result: "applied as version 2"})) != 1 ||
		len(e.findEntries(entry{Actor: opKey, Action: ActionDeny, Decision: "denied", Subject: b.ID.String()})) != 1 {
		t.Fatalf("audit does not name the actors: %+v", e.entries())
	}
}

func TestRulesChange(t *testing.T) {
	e := newEnv(t)
	if _, err := e.gw.SubmitRules(ctx, "agent:"+strings.Repeat("0", 32), testRules, 0, ""); !errors.Is(err, ErrMalformed) {
		t.Fatalf("agent proposing rules: %v", err)
	}
	s := e.newSession()
	if _, err := e.gw.Submit(ctx, Request{Session: s, Kind: policy.KindRules, Requester: "agent:" + s.String(),
		Proposed: policy.CanonicalRules(testRules)}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("agent proposing rules for its session: %v", err)
	}
	first := e.mustPending(e.gw.SubmitRules(ctx, opKey, testRules, 0, "first rules"))
	second := e.mustPending(e.gw.SubmitRules(ctx, opKey, testRules[:1], 0, "other rules"))
	if first.Rule != policy.RuleHumanOnly {
		t.Fatalf("rules change decided by %s", first.Rule)
	}
	v := e.show(first.ID)
	if !strings.Contains(v.Diff, "+rule = \"no-evil\"\n") || !strings.Contains(v.Diff, "+expr.2 = ") || v.Session != (wire.SessionID{}) {
		t.Fatalf("rules diff:\n%s", v.Diff)
	}
	if err := e.gw.Approve(ctx, first.ID, opLocal, v.Binding); err != nil {
		t.Fatal(err)
	}
	if ver, _, specs := e.gw.Rules(); ver != 1 || !reflect.DeepEqual(specs, testRules) {
		t.Fatalf("rules now %d %+v", ver, specs)
	}
	if err := e.gw.Approve(ctx, second.ID, opLocal, second.Binding); !errors.Is(err, ErrStale) {
		t.Fatalf("second rules change: %v, want ErrStale", err)
	}
	if ver, _, specs := e.reopen().Rules(); ver != 1 || !reflect.DeepEqual(specs, testRules) {
		t.Fatalf("after reopening: %d %+v", ver, specs)
	}
	bad, err := e.gw.SubmitRules(ctx, opKey, []policy.RuleSpec{{Name: "bad", Effect: policy.EffectDeny, Expr: "proposed."}}, 1, "")
	if err != nil || bad.State != StateRefused || bad.Rule != policy.InvRules {
		t.Fatalf("rules that do not load: %+v %v", bad, err)
	}
	if l, _ := e.gw.List(ctx, Filter{Rules: true}); len(l) != 3 {
		t.Fatalf("%d rules requests listed, want 3", len(l))
	}
}

func TestRestartFlag(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		kind    string
		mutate  func(*profile.Profile)
		restart bool
	}{
		{policy.KindInstructions, func(p *profile.Profile) { p.Instructions = "x" }, false},
		{policy.KindContacts, func(p *profile.Profile) { p.Contacts = append(p.Contacts, "@bob:example.org") }, false},
		{policy.KindPermissions, func(p *profile.Profile) { p.Permissions.Notes = true }, false},
		{policy.KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "notes") }, true},
		{policy.KindModel, func(p *profile.Profile) { p.Model = "qwen2.5:7b" }, true},
		{policy.KindLimits, func(p *profile.Profile) { p.Limits.CPUMillis = 100 }, true},
		{policy.KindSoftware, func(p *profile.Profile) { p.AgentDigest = digestB }, true},
	} {
		s := e.newSession()
		tk := e.mustPending(e.agentAsk(s, c.kind, c.mutate, ""))
		if v := e.show(tk.ID); v.Restart != c.restart {
			t.Errorf("%s: view says restart %v", c.kind, v.Restart)
		}
		if err := e.gw.Approve(ctx, tk.ID, opKey, tk.Binding); err != nil {
			t.Fatal(err)
		}
		calls := e.app.all()
		if last := calls[len(calls)-1]; last.session != s || last.restart != c.restart {
			t.Errorf("%s: restart %v, want %v", c.kind, last.restart, c.restart)
		}
	}
}

func TestChannelContact(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	tk := e.mustPending(e.gw.SubmitContact(ctx, s, "@carol:example.org", "hi, I am Carol"))
	v := e.show(tk.ID)
	if v.Requester != "channel:@carol:example.org" || v.Kind != policy.KindContacts ||
		!strings.Contains(v.Diff, "+contact = \"@carol:example.org\"\n") {
		t.Fatalf("view: %+v\n%s", v.Summary, v.Diff)
	}
	if again, err := e.gw.SubmitContact(ctx, s, "@carol:example.org", "hello?"); err != nil || again.ID != tk.ID {
		t.Fatalf("asking twice: %+v %v", again, err)
	}
	// A stranger asks for nothing but itself.
	for _, r := range []Request{
		{Session: s, Kind: policy.KindModel, Requester: "channel:@carol:example.org",
			Proposed: e.proposal(s, func(p *profile.Profile) { p.Model = "qwen2.5:7b" })},
		{Session: s, Kind: policy.KindContacts, Requester: "channel:@carol:example.org",
			Proposed: e.proposal(s, func(p *profile.Profile) { p.Contacts = append(p.Contacts, "@dave:example.org") })},
	} {
		if _, err := e.gw.Submit(ctx, r); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", r.Kind, err)
		}
	}
	if _, err := e.gw.SubmitContact(ctx, s, "not an id", ""); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad user id: %v", err)
	}
	if err := e.gw.Approve(ctx, tk.ID, opKey, v.Binding); err != nil {
		t.Fatal(err)
	}
}

func TestSubmitMalformed(t *testing.T) {
	e := newEnv(t)
	s := e.newSession()
	other := e.newSession()
	good := e.proposal(s, func(p *profile.Profile) { p.Instructions = "x" })
	for name, r := range map[string]Request{
		"non-canonical":      {Session: s, Kind: policy.KindInstructions, Requester: "agent:" + s.String(), Proposed: bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))},
		"another's session":  {Session: s, Kind: policy.KindInstructions, Requester: "agent:" + other.String(), Proposed: good},
		"bad requester":      {Session: s, Kind: policy.KindInstructions, Requester: "agent:me", Proposed: good},
		"empty":              {Session: s, Kind: policy.KindInstructions, Requester: opKey},
		"reason too long":    {Session: s, Kind: policy.KindInstructions, Requester: opKey, Proposed: good, Reason: strings.Repeat("x", MaxReasonLen+1)},
		"stale base version": {Session: s, Kind: policy.KindInstructions, Requester: opKey, Proposed: good, BaseVersion: 7},
	} {
		if _, err := e.gw.Submit(ctx, r); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrStale) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An agent's request reaches the gateway only strictly decoded (the outbox
	// reader refuses the whole outbox otherwise): a case-variant key never
	// gets here.
	if _, err := wire.DecodeBody(wire.KindChangeRequest, []byte(`{"change":"model","proposed":"","reason":"","Change":"x"}`)); err == nil {
		t.Errorf("case-variant key decoded")
	}
	if l, _ := e.gw.List(ctx, Filter{}); len(l) != 0 {
		t.Fatalf("malformed requests were stored: %+v", l)
	}
}

func TestParseBinding(t *testing.T) {
	h := BindingHash(ID{1}, []byte("a"), []byte("b"))
	got, err := ParseBinding(hex.EncodeToString(h[:]))
	if err != nil || got != h {
		t.Fatal(got, err)
	}
	for _, bad := range []string{"", strings.ToUpper(hex.EncodeToString(h[:])), hex.EncodeToString(h[:31])} {
		if _, err := ParseBinding(bad); err == nil {
			t.Errorf("ParseBinding(%q) accepted", bad)
		}
	}
	// The length prefixes keep the split between base and proposed.
	if BindingHash(ID{}, []byte("ab"), []byte("c")) == BindingHash(ID{}, []byte("a"), []byte("bc")) {
		t.Fatal("binding is ambiguous")
	}
}
