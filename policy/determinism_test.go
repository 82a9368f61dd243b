package policy

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

// rulePool is a mix of rules that match, fail to match and fail to
// evaluate, in both effects.
var rulePool = []RuleSpec{
	{Name: "short-instructions", Expr: `change.kind == "instructions" && size(proposed.instructions) < 40`, Effect: EffectAutoApprove},
	{Name: "operator-any", Expr: `change.requester.startsWith("operator:")`, Effect: EffectAutoApprove},
	{Name: "no-memory", Expr: `proposed.permissions.memory && !base.permissions.memory`, Effect: EffectDeny},
	{Name: "agent-no-contacts", Expr: `change.requester.startsWith("agent:") && change.kind == "contacts"`, Effect: EffectDeny},
	{Name: "limits-shrink", Expr: `proposed.limits.all(k, proposed.limits[k] <= base.limits[k])`, Effect: EffectAutoApprove},
	{Name: "broken", Expr: `proposed.limits[change.kind] > 0`, Effect: EffectDeny},
	{Name: "same-domain", Expr: `proposed.contacts.all(c, c.endsWith(":example.org"))`, Effect: EffectAutoApprove},
	{Name: "tools-known", Expr: `proposed.tools.all(t, t in ["reply", "request_change", "remember", "recall"])`, Effect: EffectAutoApprove},
	{Name: "model-qwen", Expr: `proposed.model.matches("^qwen")`, Effect: EffectDeny},
	{Name: "fields-one", Expr: `size(change.fields) == 1 && change.fields[0] == "limits"`, Effect: EffectAutoApprove},
}

// randomChange draws a change that is sometimes valid and sometimes not,
// of any kind, from any requester.
func randomChange(r *rand.Rand) Change {
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	c := change(pick(append(Kinds(), "bogus")), func(p *profile.Profile) {
		switch r.IntN(9) {
		case 0:
			p.Instructions = pick([]string{"Be terse.", "", "x\ny", "caf\xe9", "a long enough instruction to pass the forty bytes"})
		case 1:
			p.Tools = append(p.Tools, pick([]string{"remember", "schedule", "shell", "notes"}))
		case 2:
			p.AgentDigest = pick([]string{digestB, "sha256:00", ""})
		case 3:
			p.Contacts = append(p.Contacts, pick([]string{"@bob:example.org", "@eve:evil.test", "bob"}))
		case 4:
			p.Permissions.Memory = true
		case 5:
			p.Model = pick([]string{"qwen2.5:7b", "gpt-4"})
		case 6:
			p.Limits.MemoryMiB = int64(r.IntN(5000)) - 10
		case 7:
			p.Limits.CallsPerMinute = int64(r.IntN(40))
		}
	})
	c.Requester = pick([]string{agentReq, operatorReq, channelReq, "agent:nope"})
	return c
}

func randomRules(r *rand.Rand) []RuleSpec {
	out := slices.Clone(rulePool)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:r.IntN(len(out)+1)]
}

// TestDeterminism evaluates random inputs twice on one RuleSet and once more
// on a freshly loaded RuleSet, and demands identical Decisions.
func TestDeterminism(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	outcomes := map[Outcome]int{}
	for i := 0; i < 1500; i++ {
		specs := randomRules(r)
		c := randomChange(r)
		rs1, err1 := LoadRules(specs)
		rs2, err2 := LoadRules(specs)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		d1 := Evaluate(testHost(), rs1, c)
		d2 := Evaluate(testHost(), rs1, c)
		d3 := Evaluate(testHost(), rs2, c)
		if !reflect.DeepEqual(d1, d2) || !reflect.DeepEqual(d1, d3) {
			t.Fatalf("case %d: decisions differ:\n%#v\n%#v\n%#v", i, d1, d2, d3)
		}
		outcomes[d1.Outcome]++
	}
	// The generator must reach every outcome, or the test proves little.
	for _, o := range []Outcome{Deny, NeedsHuman, AutoApprove} {
		if outcomes[o] == 0 {
			t.Errorf("no %v among the random cases: %v", o, outcomes)
		}
	}
}

// TestConcurrentEvaluate shares one RuleSet between goroutines (run with
// -race): each must get the decision a lone call gets.
func TestConcurrentEvaluate(t *testing.T) {
	rs := mustLoad(t, rulePool...)
	r := rand.New(rand.NewPCG(5, 6))
	changes := make([]Change, 64)
	want := make([]Decision, len(changes))
	for i := range changes {
		changes[i] = randomChange(r)
		want[i] = Evaluate(testHost(), rs, changes[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := range changes {
				if got := Evaluate(testHost(), rs, changes[i]); !reflect.DeepEqual(got, want[i]) {
					errs <- fmt.Errorf("change %d: %#v, want %#v", i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
