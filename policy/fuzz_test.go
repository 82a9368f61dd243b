package policy

import (
	"reflect"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

// FuzzEvaluate feeds Evaluate a fuzzed proposed profile (as canonical text,
// the form the agent sends), kind and requester, with no rules and with the
// rule pool: it must never panic, and the same input must give the same
// decision twice.
func FuzzEvaluate(f *testing.F) {
	for _, c := range validChanges() {
		f.Add(c.Kind, c.Requester, c.Proposed.Canonical())
	}
	f.Add("tools", operatorReq, []byte(profile.Header+"\n"))
	bad := change(KindContacts, func(p *profile.Profile) { p.Contacts = []string{"@Eve:x", "\x00"} })
	f.Add("contacts", channelReq, bad.Proposed.Canonical())

	rs, err := LoadRules(rulePool)
	if err != nil {
		f.Fatal(err)
	}
	h := testHost()
	base := baseProfile()
	f.Fuzz(func(t *testing.T, kind, requester string, proposed []byte) {
		p, err := profile.Parse(proposed)
		if err != nil {
			t.Skip()
		}
		c := Change{Kind: kind, Requester: requester, Base: base, Proposed: p, BaseVersion: 1}
		for _, rules := range []*RuleSet{nil, rs} {
			d1 := Evaluate(h, rules, c)
			d2 := Evaluate(h, rules, c)
			if !reflect.DeepEqual(d1, d2) {
				t.Fatalf("not deterministic:\n%#v\n%#v", d1, d2)
			}
			if d1.Rule == "" || len(d1.Reasons) == 0 {
				t.Fatalf("decision without a rule or reason: %#v", d1)
			}
			if d1.Outcome == AutoApprove && (kind == KindRules || kind == KindSoftware) {
				t.Fatalf("auto-approved a %q change", kind)
			}
		}
	})
}
