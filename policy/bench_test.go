package policy

import (
	"fmt"
	"testing"
)

func BenchmarkEvaluateInvariants(b *testing.B) {
	h, c := testHost(), validChanges()[KindContacts]
	for b.Loop() {
		if d := Evaluate(h, nil, c); d.Outcome != NeedsHuman {
			b.Fatal(d)
		}
	}
}

// BenchmarkEvaluateWithCEL runs the invariants and ten typical rules, none
// of which decides, so every one is evaluated.
func BenchmarkEvaluateWithCEL(b *testing.B) {
	var specs []RuleSpec
	for i := 0; i < 5; i++ {
		specs = append(specs,
			RuleSpec{Name: fmt.Sprintf("deny-%d", i), Effect: EffectDeny,
				Expr: `change.requester.startsWith("channel:") && proposed.contacts.exists(c, !(c in base.contacts))`},
			RuleSpec{Name: fmt.Sprintf("approve-%d", i), Effect: EffectAutoApprove,
				Expr: `change.kind == "instructions" && size(proposed.instructions) < 2000 && proposed.limits.memory_mib <= base.limits.memory_mib`},
		)
	}
	rs := mustLoad(b, specs...)
	h, c := testHost(), validChanges()[KindContacts]
	for b.Loop() {
		if d := Evaluate(h, rs, c); d.Outcome != NeedsHuman {
			b.Fatal(d)
		}
	}
}

func BenchmarkLoadRules10(b *testing.B) {
	specs := make([]RuleSpec, 10)
	for i := range specs {
		specs[i] = RuleSpec{Name: fmt.Sprintf("r%d", i), Effect: EffectDeny,
			Expr: `change.kind == "contacts" && proposed.contacts.exists(c, !c.endsWith(":example.org"))`}
	}
	for b.Loop() {
		if _, err := LoadRules(specs); err != nil {
			b.Fatal(err)
		}
	}
}
