package gateway

import (
	"fmt"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/policy"
)

// BenchmarkPolicyEvaluate is the policy decision the gateway makes per
// change (invariants and the two test rules), without I/O.
func BenchmarkPolicyEvaluate(b *testing.B) {
	rs, err := policy.LoadRules(testRules)
	if err != nil {
		b.Fatal(err)
	}
	base := baseProfile()
	p := baseProfile()
	p.Contacts = append(p.Contacts, "@bob:example.org")
	c := policy.Change{Kind: policy.KindContacts, Requester: opKey, Base: base, Proposed: p, BaseVersion: 1}
	h := testHost()
	for b.Loop() {
		if d := policy.Evaluate(h, rs, c); d.Outcome != policy.NeedsHuman {
			b.Fatal(d)
		}
	}
}

// BenchmarkSubmit is a needs-human Submit: parse, policy, one audit entry
// (fsynced) and one store transaction (synchronous=FULL).
func BenchmarkSubmit(b *testing.B) {
	e := newEnv(b)
	s := e.newSession()
	i := 0
	for b.Loop() {
		i++
		p := baseProfile()
		p.Instructions = fmt.Sprint("bench ", i)
		if _, err := e.gw.Submit(ctx, Request{Session: s, Kind: policy.KindInstructions, Requester: opKey, Proposed: p.Canonical()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubmitApprove is a whole decided change: Submit, then Approve
// with its three audit entries (submit, decision, result), each fsynced, and
// the binding-checked apply.
func BenchmarkSubmitApprove(b *testing.B) {
	e := newEnv(b)
	s := e.newSession()
	i := 0
	for b.Loop() {
		i++
		proposed := e.proposal(s, func(p *profile.Profile) { p.Instructions = fmt.Sprint("bench ", i) })
		tk, err := e.gw.Submit(ctx, Request{Session: s, Kind: policy.KindInstructions, Requester: opKey, Proposed: proposed})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.gw.Approve(ctx, tk.ID, opKey, tk.Binding); err != nil {
			b.Fatal(err)
		}
	}
}
