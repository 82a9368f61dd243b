package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

func TestCELAutoApprove(t *testing.T) {
	rs := mustLoad(t, RuleSpec{
		Name:   "short-instructions",
		Expr:   `change.kind == "instructions" && size(proposed.instructions) < 2000`,
		Effect: EffectAutoApprove,
	})
	d := Evaluate(testHost(), rs, validChanges()[KindInstructions])
	if d.Outcome != AutoApprove || d.Rule != "short-instructions" {
		t.Fatalf("short instructions: got %v by %q %q", d.Outcome, d.Rule, d.Reasons)
	}
	long := change(KindInstructions, func(p *profile.Profile) { p.Instructions = strings.Repeat("x", 2000) })
	if d := Evaluate(testHost(), rs, long); d.Outcome != NeedsHuman || d.Rule != RuleDefault {
		t.Fatalf("long instructions: got %v by %q", d.Outcome, d.Rule)
	}
	if d := Evaluate(testHost(), rs, validChanges()[KindModel]); d.Outcome != NeedsHuman {
		t.Fatalf("model change: got %v by %q", d.Outcome, d.Rule)
	}
}

func TestAutoApprovalIsOffByDefault(t *testing.T) {
	for _, rs := range []*RuleSet{nil, mustLoad(t)} {
		for kind, c := range validChanges() {
			if d := Evaluate(testHost(), rs, c); d.Outcome == AutoApprove {
				t.Fatalf("%s auto-approved without a rule", kind)
			}
		}
	}
}

func TestCELDeny(t *testing.T) {
	rs := mustLoad(t,
		RuleSpec{Name: "approve-all", Expr: `true`, Effect: EffectAutoApprove},
		RuleSpec{Name: "agent-no-new-contacts", Effect: EffectDeny,
			Expr: `change.requester.startsWith("agent:") && proposed.contacts.exists(c, !(c in base.contacts))`},
		RuleSpec{Name: "no-memory", Expr: `proposed.permissions.memory`, Effect: EffectDeny},
	)
	c := validChanges()[KindContacts]
	if d := Evaluate(testHost(), rs, c); d.Outcome != Deny || d.Rule != "agent-no-new-contacts" {
		t.Fatalf("agent adds contact: got %v by %q %q", d.Outcome, d.Rule, d.Reasons)
	}
	c.Requester = operatorReq
	if d := Evaluate(testHost(), rs, c); d.Outcome != AutoApprove || d.Rule != "approve-all" {
		t.Fatalf("operator adds contact: got %v by %q %q", d.Outcome, d.Rule, d.Reasons)
	}
	if d := Evaluate(testHost(), rs, validChanges()[KindPermissions]); d.Outcome != Deny || d.Rule != "no-memory" {
		t.Fatalf("memory permission: got %v by %q", d.Outcome, d.Rule)
	}
}

func TestFirstDenyInConfigOrderWins(t *testing.T) {
	rs := mustLoad(t,
		RuleSpec{Name: "b-first", Expr: `change.kind == "model"`, Effect: EffectDeny},
		RuleSpec{Name: "a-second", Expr: `"model" in change.fields`, Effect: EffectDeny},
	)
	if d := Evaluate(testHost(), rs, validChanges()[KindModel]); d.Rule != "b-first" {
		t.Fatalf("got %q, want the first rule in config order", d.Rule)
	}
}

// TestCELSeesTheChange checks every variable and field of the environment
// against a known change.
func TestCELSeesTheChange(t *testing.T) {
	c := change(KindLimits, func(p *profile.Profile) { p.Limits.MemoryMiB = 512 })
	c.Requester = channelReq
	exprs := []string{
		`change.kind == "limits"`,
		`change.requester == "channel:@alice:example.org"`,
		`change.fields == ["limits"]`,
		`base.limits.memory_mib == 256 && proposed.limits.memory_mib == 512`,
		`proposed.limits["calls_per_minute"] == 30 && size(proposed.limits) == 7`,
		`proposed.limits.all(k, proposed.limits[k] >= base.limits[k])`,
		`base.permissions == {"schedule": false, "memory": false, "notes": false}`,
		`proposed.tools == ["reply", "request_change"]`,
		`proposed.contacts == ["@alice:example.org"] && base.contacts == proposed.contacts`,
		`proposed.model == "llama3.2:3b"`,
		`proposed.agent_digest.startsWith("sha256:a1a1")`,
		`proposed.instructions.contains("helpful")`,
		`proposed.contacts.all(c, c.matches("^@[a-z0-9._=/+-]+:example\\.org$"))`,
	}
	for _, e := range exprs {
		rs := mustLoad(t, RuleSpec{Name: "r", Expr: e, Effect: EffectAutoApprove})
		if d := Evaluate(testHost(), rs, c); d.Outcome != AutoApprove {
			t.Errorf("%s: got %v by %q %q, want it true", e, d.Outcome, d.Rule, d.Reasons)
		}
	}
}

func TestMalformedRuleRefusedWithPosition(t *testing.T) {
	cases := []struct{ expr, want string }{
		{"change.kind == \"tools\" &&\n    proposed.tools.exists(t, t ==)", "2:"},
		{"change.kind == \"tools\" &&\n  size(proposed.tols) > 1", "2:16"},
		{"change.knd == \"x\"", "1:7"},
		{"proposed.limits.memry_mib > 3", "1:16"},
		{"base.permissions[\"shedule\"]", "1:17"},
		{"undefined_var", "1:1"},
		{"", "1:1"},
		{"proposed.model.matches(\"(((\")", "regexp"},
	}
	for _, tc := range cases {
		_, err := LoadRules([]RuleSpec{
			{Name: "fine", Expr: "true", Effect: EffectDeny},
			{Name: "broken-rule", Expr: tc.expr, Effect: EffectDeny},
		})
		if err == nil {
			t.Errorf("%q: loaded", tc.expr)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, `"broken-rule"`) || !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q lacks the rule name or %q", tc.expr, msg, tc.want)
		}
	}
}

func TestNonBoolRuleRefused(t *testing.T) {
	for _, e := range []string{`1 + 1`, `proposed.instructions`, `proposed.tools`, `dyn(true)`, `proposed.limits`} {
		_, err := LoadRules([]RuleSpec{{Name: "not-bool", Expr: e, Effect: EffectDeny}})
		if err == nil || !strings.Contains(err.Error(), "must return bool") || !strings.Contains(err.Error(), "not-bool") {
			t.Errorf("%s: got %v, want a must-return-bool refusal", e, err)
		}
	}
}

func TestBadRuleSpecsRefused(t *testing.T) {
	ok := RuleSpec{Name: "ok", Expr: "true", Effect: EffectDeny}
	many := make([]RuleSpec, MaxRules+1)
	for i := range many {
		many[i] = RuleSpec{Name: fmt.Sprintf("r%d", i), Expr: "true", Effect: EffectDeny}
	}
	cases := map[string][]RuleSpec{
		"empty name":          {{Name: "", Expr: "true", Effect: EffectDeny}},
		"upper-case name":     {{Name: "Rule", Expr: "true", Effect: EffectDeny}},
		"name with space":     {{Name: "a rule", Expr: "true", Effect: EffectDeny}},
		"name starts with -":  {{Name: "-rule", Expr: "true", Effect: EffectDeny}},
		"name too long":       {{Name: strings.Repeat("a", 65), Expr: "true", Effect: EffectDeny}},
		"invariant name":      {{Name: InvNoOp, Expr: "true", Effect: EffectDeny}},
		"default name":        {{Name: RuleDefault, Expr: "true", Effect: EffectDeny}},
		"duplicate name":      {ok, ok},
		"needs-human effect":  {{Name: "x", Expr: "true", Effect: "needs-human"}},
		"unknown effect":      {{Name: "x", Expr: "true", Effect: "allow"}},
		"empty effect":        {{Name: "x", Expr: "true"}},
		"expression too long": {{Name: "x", Expr: strings.Repeat("true && ", 600) + "true", Effect: EffectDeny}},
		"too many rules":      many,
		"time function":       {{Name: "x", Expr: `timestamp("2030-01-01T00:00:00Z") > timestamp("2020-01-01T00:00:00Z")`, Effect: EffectDeny}},
		"duration":            {{Name: "x", Expr: `duration("1h") > duration("1m")`, Effect: EffectDeny}},
		"clock-like getter":   {{Name: "x", Expr: `google.protobuf.Timestamp{seconds: 1}.getHours("Europe/Paris") == 1`, Effect: EffectDeny}},
	}
	for name, specs := range cases {
		if rs, err := LoadRules(specs); err == nil {
			t.Errorf("%s: loaded %v", name, rs.Specs())
		}
	}
}

// The literal lists make the minimum cost known at load: 10^6 inner
// iterations can never fit the limit, so the rule is refused outright.
func TestRunawayCostRefusedAtLoad(t *testing.T) {
	l := "[0,1,2,3,4,5,6,7,8,9]"
	expr := fmt.Sprintf("%s.map(a, %s.map(b, %s.map(c, %s.map(d, %s.map(e, %s.map(f, a+b+c+d+e+f)))))).size() > 0", l, l, l, l, l, l)
	_, err := LoadRules([]RuleSpec{{Name: "runaway", Expr: expr, Effect: EffectDeny}})
	if err == nil || !strings.Contains(err.Error(), "runaway") || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("got %v, want a cost refusal", err)
	}
}

// Over the change's own lists the cost is unknown at load; the runtime
// limit stops the rule, which then can neither deny nor approve: a human
// decides, told which rule failed.
func TestRunawayCostStoppedAtRuntime(t *testing.T) {
	c := change(KindContacts, func(p *profile.Profile) {
		for i := 0; i < 300; i++ {
			p.Contacts = append(p.Contacts, fmt.Sprintf("@user%d:example.org", i))
		}
	})
	cubed := `proposed.contacts.all(a, proposed.contacts.all(b, proposed.contacts.all(c, a + b + c != "")))`
	for _, effect := range []string{EffectDeny, EffectAutoApprove} {
		rs := mustLoad(t, RuleSpec{Name: "runaway", Expr: cubed, Effect: effect})
		d := Evaluate(testHost(), rs, c)
		if d.Outcome != NeedsHuman {
			t.Fatalf("%s: got %v by %q %q, want needs-human", effect, d.Outcome, d.Rule, d.Reasons)
		}
		if !strings.Contains(strings.Join(d.Reasons, "\n"), "runaway failed") ||
			!strings.Contains(strings.Join(d.Reasons, "\n"), "cost limit") {
			t.Fatalf("%s: reasons %q do not name the rule and the cost limit", effect, d.Reasons)
		}
	}
}

func TestAutoApproveNeverForRulesOrSoftware(t *testing.T) {
	rs := mustLoad(t, RuleSpec{Name: "approve-everything", Expr: `true`, Effect: EffectAutoApprove})
	for kind, c := range validChanges() {
		c.Requester = operatorReq
		d := Evaluate(testHost(), rs, c)
		if kind == KindRules || kind == KindSoftware {
			if d.Outcome != NeedsHuman || d.Rule != RuleHumanOnly {
				t.Errorf("%s: got %v by %q, want needs-human by %q", kind, d.Outcome, d.Rule, RuleHumanOnly)
			}
		} else if d.Outcome != AutoApprove {
			t.Errorf("%s: got %v by %q, want auto-approve", kind, d.Outcome, d.Rule)
		}
	}
	// Deny rules still apply to them.
	rs = mustLoad(t, RuleSpec{Name: "no-new-binaries", Expr: `change.kind == "software"`, Effect: EffectDeny})
	if d := Evaluate(testHost(), rs, validChanges()[KindSoftware]); d.Outcome != Deny || d.Rule != "no-new-binaries" {
		t.Errorf("software with deny rule: got %v by %q", d.Outcome, d.Rule)
	}
}

func TestFailingDenyRuleBlocksAutoApproval(t *testing.T) {
	rs := mustLoad(t,
		RuleSpec{Name: "approve-all", Expr: `true`, Effect: EffectAutoApprove},
		// Fails at run time: no limit is named after a kind.
		RuleSpec{Name: "broken-deny", Expr: `proposed.limits[change.kind] > 0`, Effect: EffectDeny},
		RuleSpec{Name: "later-deny", Expr: `change.kind == "model"`, Effect: EffectDeny},
	)
	d := Evaluate(testHost(), rs, validChanges()[KindInstructions])
	if d.Outcome != NeedsHuman || d.Rule != "broken-deny" {
		t.Fatalf("got %v by %q %q, want needs-human by broken-deny", d.Outcome, d.Rule, d.Reasons)
	}
	// A later deny that matches still denies.
	d = Evaluate(testHost(), rs, validChanges()[KindModel])
	if d.Outcome != Deny || d.Rule != "later-deny" {
		t.Fatalf("got %v by %q %q, want deny by later-deny", d.Outcome, d.Rule, d.Reasons)
	}
}

func TestFailingApproveRuleDoesNotApprove(t *testing.T) {
	rs := mustLoad(t,
		RuleSpec{Name: "broken-approve", Expr: `proposed.limits[change.kind] > 0`, Effect: EffectAutoApprove},
	)
	d := Evaluate(testHost(), rs, validChanges()[KindInstructions])
	if d.Outcome != NeedsHuman || !strings.Contains(strings.Join(d.Reasons, " "), "broken-approve failed") {
		t.Fatalf("got %v by %q %q", d.Outcome, d.Rule, d.Reasons)
	}
}

func TestInvariantsBeforeRules(t *testing.T) {
	rs := mustLoad(t, RuleSpec{Name: "approve-all", Expr: `true`, Effect: EffectAutoApprove})
	c := change(KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "shell") })
	if d := Evaluate(testHost(), rs, c); d.Outcome != Deny || d.Rule != InvTools {
		t.Fatalf("got %v by %q, want deny by %q", d.Outcome, d.Rule, InvTools)
	}
}

func TestEvaluateContextCancelled(t *testing.T) {
	rs := mustLoad(t, RuleSpec{Name: "r", Expr: `true`, Effect: EffectDeny})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := EvaluateContext(ctx, testHost(), rs, validChanges()[KindModel]); err == nil {
		t.Fatal("a cancelled evaluation returned a decision")
	}
}

func TestSpecsRoundTrip(t *testing.T) {
	specs := []RuleSpec{
		{Name: "a", Expr: "true", Effect: EffectDeny},
		{Name: "b", Expr: "false", Effect: EffectAutoApprove},
	}
	got := mustLoad(t, specs...).Specs()
	if fmt.Sprint(got) != fmt.Sprint(specs) {
		t.Fatalf("Specs() = %v, want %v", got, specs)
	}
}
