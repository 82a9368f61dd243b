package policy

import (
	"bytes"
	"strings"
	"testing"
)

func TestCanonicalRulesRoundTrip(t *testing.T) {
	for _, specs := range [][]RuleSpec{
		nil,
		{{Name: "a", Effect: EffectDeny, Expr: ""}},
		slicesOf(rulePool),
		{{Name: "multi", Effect: EffectAutoApprove, Expr: "change.kind == \"limits\" &&\n  size(change.fields) == 1\n"}},
		{{Name: "odd", Effect: EffectDeny, Expr: "\"\\u202e\" in proposed.tools || '\x00' == ''\r"}},
	} {
		text := CanonicalRules(specs)
		got, err := ParseRules(text)
		if err != nil {
			t.Fatalf("ParseRules(%q): %v", text, err)
		}
		if !bytes.Equal(CanonicalRules(got), text) || len(got) != len(specs) {
			t.Fatalf("round trip changed %q into %+v", text, got)
		}
		for i := range got {
			if got[i] != specs[i] {
				t.Fatalf("rule %d: got %+v, want %+v", i, got[i], specs[i])
			}
		}
	}
}

func slicesOf(s []RuleSpec) []RuleSpec { return append([]RuleSpec(nil), s...) }

func TestParseRulesStrict(t *testing.T) {
	good := string(CanonicalRules([]RuleSpec{{Name: "a", Effect: EffectDeny, Expr: "x\ny"}}))
	for name, text := range map[string]string{
		"no header":        strings.TrimPrefix(good, RulesHeader+"\n"),
		"crlf":             strings.ReplaceAll(good, "\n", "\r\n"),
		"no final newline": strings.TrimSuffix(good, "\n"),
		"effect first":     RulesHeader + "\neffect = \"deny\"\nrule = \"a\"\nexpr.1 = \"x\"\n",
		"no expr":          RulesHeader + "\nrule = \"a\"\neffect = \"deny\"\n",
		"expr skips":       RulesHeader + "\nrule = \"a\"\neffect = \"deny\"\nexpr.1 = \"x\"\nexpr.3 = \"y\"\n",
		"unquoted":         RulesHeader + "\nrule = a\neffect = \"deny\"\nexpr.1 = \"x\"\n",
		"odd quoting":      RulesHeader + "\nrule = \"\\x61\"\neffect = \"deny\"\nexpr.1 = \"x\"\n",
		"unknown key":      good + "comment = \"hi\"\n",
		"double space":     strings.Replace(good, " = ", "  = ", 1),
	} {
		if _, err := ParseRules([]byte(text)); err == nil {
			t.Errorf("%s: ParseRules accepted %q", name, text)
		}
	}
}

func TestEvaluateRules(t *testing.T) {
	proposed := []RuleSpec{{Name: "small", Effect: EffectAutoApprove, Expr: `size(proposed.instructions) < 100`}}
	d := EvaluateRules(operatorReq, nil, proposed)
	if d.Outcome != NeedsHuman || d.Rule != RuleHumanOnly {
		t.Fatalf("operator rules change: %+v, want needs-human by %s", d, RuleHumanOnly)
	}
	local := "operator:local:alice"
	if d := EvaluateRules(local, nil, proposed); d.Outcome != NeedsHuman {
		t.Fatalf("local operator: %+v", d)
	}
	for _, c := range []struct {
		req        string
		base, prop []RuleSpec
		rule       string
	}{
		{agentReq, nil, proposed, InvRequester},
		{channelReq, nil, proposed, InvRequester},
		{operatorReq, proposed, proposed, InvNoOp},
		{operatorReq, nil, []RuleSpec{{Name: "bad", Effect: EffectDeny, Expr: "proposed."}}, InvRules},
	} {
		if d := EvaluateRules(c.req, c.base, c.prop); d.Outcome != Deny || d.Rule != c.rule {
			t.Errorf("EvaluateRules(%s, %v → %v) = %+v, want deny by %s", c.req, c.base, c.prop, d, c.rule)
		}
	}
}

func TestLocalOperatorRequester(t *testing.T) {
	for _, ok := range []string{"operator:local:alice", "operator:local:1000", "operator:local:a.b_c-d"} {
		if err := CheckRequester(ok); err != nil || !IsOperator(ok) {
			t.Errorf("CheckRequester(%q) = %v", ok, err)
		}
		c := validChanges()[KindModel]
		c.Requester = ok
		if d := Evaluate(testHost(), nil, c); d.Outcome != NeedsHuman {
			t.Errorf("change from %s: %+v", ok, d)
		}
	}
	for _, bad := range []string{"operator:local:", "operator:local:-x", "operator:local:a b",
		"operator:local:" + strings.Repeat("a", MaxLocalUserLength+1), "operator:local:é", "operator:remote:alice"} {
		if CheckRequester(bad) == nil || IsOperator(bad) {
			t.Errorf("CheckRequester(%q) accepted it", bad)
		}
	}
	if IsOperator(agentReq) || IsOperator(channelReq) {
		t.Error("IsOperator accepts a non-operator")
	}
}
