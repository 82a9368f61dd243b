package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

func TestValidChangesNeedAHuman(t *testing.T) {
	for kind, c := range validChanges() {
		for _, req := range []string{agentReq, operatorReq, channelReq} {
			c.Requester = req
			d := Evaluate(testHost(), nil, c)
			want := RuleDefault
			if kind == KindRules || kind == KindSoftware {
				want = RuleHumanOnly
			}
			if d.Outcome != NeedsHuman || d.Rule != want {
				t.Errorf("%s by %s: got %v by %q %q, want needs-human by %q", kind, req, d.Outcome, d.Rule, d.Reasons, want)
			}
		}
	}
}

// TestInvariants has one failing change per invariant (several for some)
// and checks that the Deny names that invariant.
func TestInvariants(t *testing.T) {
	type mut = func(p *profile.Profile)
	cases := []struct {
		name string
		rule string
		c    Change
	}{
		{"unknown kind", InvUnknownKind, func() Change { c := validChanges()[KindModel]; c.Kind = "shell"; return c }()},
		{"empty kind", InvUnknownKind, func() Change { c := validChanges()[KindModel]; c.Kind = ""; return c }()},
		{"no requester", InvRequester, func() Change { c := validChanges()[KindModel]; c.Requester = ""; return c }()},
		{"bad agent id", InvRequester, func() Change { c := validChanges()[KindModel]; c.Requester = "agent:XYZ"; return c }()},
		{"upper-case agent id", InvRequester, func() Change {
			c := validChanges()[KindModel]
			c.Requester = strings.ToUpper(agentReq[:6]) + agentReq[6:]
			return c
		}()},
		{"bad fingerprint", InvRequester, func() Change { c := validChanges()[KindModel]; c.Requester = "operator:MD5:aa"; return c }()},
		{"bad channel id", InvRequester, func() Change { c := validChanges()[KindModel]; c.Requester = "channel:alice"; return c }()},
		{"unknown requester kind", InvRequester, func() Change { c := validChanges()[KindModel]; c.Requester = "root:x"; return c }()},
		{"no-op", InvNoOp, change(KindModel, nil)},
		{"no-op reordered tools", InvNoOp, change(KindTools, func(p *profile.Profile) {
			p.Tools = []string{"request_change", "reply", "reply"}
		})},
		{"kind says instructions, changes tools", InvKindMismatch, change(KindInstructions, func(p *profile.Profile) {
			p.Tools = append(p.Tools, "schedule")
		})},
		{"kind right but more changes", InvKindMismatch, change(KindInstructions, func(p *profile.Profile) {
			p.Instructions = "x"
			p.Model = "qwen2.5:7b"
		})},
		{"rules kind changing the profile", InvKindMismatch, func() Change {
			c := change(KindRules, mut(func(p *profile.Profile) { p.Instructions = "x" }))
			return c
		}()},
		{"profile too big", InvProfileSize, change(KindContacts, func(p *profile.Profile) {
			for i := 0; i < 12000; i++ {
				p.Contacts = append(p.Contacts, fmt.Sprintf("@user%06d-padding-padding:example.org", i))
			}
		})},
		{"instructions too big", InvInstructionsSize, change(KindInstructions, func(p *profile.Profile) {
			p.Instructions = strings.Repeat("x", 16<<10+1)
		})},
		{"instructions not UTF-8", InvInstructionsUTF8, change(KindInstructions, func(p *profile.Profile) {
			p.Instructions = "caf\xe9"
		})},
		{"tool not compiled in", InvTools, change(KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "shell") })},
		{"empty tool name", InvTools, change(KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "") })},
		{"zero limit", InvLimits, change(KindLimits, func(p *profile.Profile) { p.Limits.CPUMillis = 0 })},
		{"negative limit", InvLimits, change(KindLimits, func(p *profile.Profile) { p.Limits.TokensPerDay = -1 })},
		{"limit over host", InvLimits, change(KindLimits, func(p *profile.Profile) { p.Limits.OutboxInodes = 100001 })},
		{"contact not an id", InvContacts, change(KindContacts, func(p *profile.Profile) { p.Contacts = append(p.Contacts, "bob") })},
		{"contact upper case", InvContacts, change(KindContacts, func(p *profile.Profile) {
			p.Contacts = append(p.Contacts, "@Bob:example.org")
		})},
		{"contact too long", InvContacts, change(KindContacts, func(p *profile.Profile) {
			p.Contacts = append(p.Contacts, "@"+strings.Repeat("b", 250)+":example.org")
		})},
		{"model not offered", InvModel, change(KindModel, func(p *profile.Profile) { p.Model = "gpt-4" })},
		{"model empty", InvModel, change(KindModel, func(p *profile.Profile) { p.Model = "" })},
		{"digest malformed", InvAgentDigest, change(KindSoftware, func(p *profile.Profile) { p.AgentDigest = "sha256:" + strings.Repeat("A1", 32) })},
		{"digest short", InvAgentDigest, change(KindSoftware, func(p *profile.Profile) { p.AgentDigest = "sha256:abc" })},
		{"digest other algorithm", InvAgentDigest, change(KindSoftware, func(p *profile.Profile) { p.AgentDigest = "sha512:" + strings.Repeat("a1", 32) })},
		{"digest not built here", InvAgentDigest, change(KindSoftware, func(p *profile.Profile) { p.AgentDigest = "sha256:" + strings.Repeat("c3", 32) })},
		{"rules do not load", InvRules, func() Change {
			c := change(KindRules, nil)
			c.ProposedRules = []RuleSpec{{Name: "broken", Expr: "proposed.", Effect: EffectDeny}}
			return c
		}()},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		d := Evaluate(testHost(), nil, tc.c)
		if d.Outcome != Deny || d.Rule != tc.rule {
			t.Errorf("%s: got %v by %q %q, want deny by %q", tc.name, d.Outcome, d.Rule, d.Reasons, tc.rule)
			continue
		}
		if len(d.Reasons) == 0 || !strings.HasPrefix(d.Reasons[0], tc.rule+": ") {
			t.Errorf("%s: reasons %q do not start with the rule name", tc.name, d.Reasons)
		}
		seen[tc.rule] = true
	}
	for _, inv := range Invariants() {
		if !seen[inv] {
			t.Errorf("invariant %q has no test case", inv)
		}
	}
}

func TestEveryFailedInvariantIsReported(t *testing.T) {
	c := change(KindTools, func(p *profile.Profile) {
		p.Tools = append(p.Tools, "shell")
		p.Model = "gpt-4"
		p.Limits.MemoryMiB = 0
	})
	c.Requester = "nobody"
	d := Evaluate(testHost(), nil, c)
	if d.Outcome != Deny || d.Rule != InvRequester {
		t.Fatalf("got %v by %q, want deny by %q", d.Outcome, d.Rule, InvRequester)
	}
	for _, want := range []string{InvRequester, InvKindMismatch, InvTools, InvLimits, InvModel} {
		if !slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.HasPrefix(r, want+": ") }) {
			t.Errorf("no reason from %q in %q", want, d.Reasons)
		}
	}
}

func TestWholeProfileIsChecked(t *testing.T) {
	// The host lowered its memory maximum after the base was approved: an
	// unrelated change is still refused, because the result is applied
	// whole.
	h := testHost()
	h.MaxMemoryMiB = 128
	d := Evaluate(h, nil, validChanges()[KindInstructions])
	if d.Outcome != Deny || d.Rule != InvLimits {
		t.Fatalf("got %v by %q, want deny by %q", d.Outcome, d.Rule, InvLimits)
	}
}

func TestUntrustedValuesAreQuotedAndCut(t *testing.T) {
	c := change(KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "\x1b[2J"+strings.Repeat("z", 1000)) })
	d := Evaluate(testHost(), nil, c)
	for _, r := range d.Reasons {
		if strings.ContainsRune(r, 0x1b) || len(r) > 200 {
			t.Fatalf("reason not sanitised: %q", r)
		}
	}
}

func TestCheckMatrixUserID(t *testing.T) {
	good := []string{
		"@alice:example.org", "@a:b", "@a.b_c=d-e/f+g:matrix.org", "@0:example.org:8448",
		"@bob:[::1]", "@bob:[2001:db8::1]:8448", "@bob:192.168.1.1", "@bob:Example.ORG",
		"@" + strings.Repeat("a", 255-len("@:example.org")) + ":example.org",
	}
	bad := []string{
		"", "alice:example.org", "@alice", "@:example.org", "@Alice:example.org", "@al ice:example.org",
		"@alice:", "@alice:exa mple.org", "@alice:example.org:", "@alice:example.org:123456",
		"@alice:example.org:80a", "@alice:[::1", "@alice:[zz]", "@alice:[]", "@al!ce:example.org",
		"@" + strings.Repeat("a", 256-len("@:example.org")) + ":example.org", "@alice:exa_mple.org",
		"@é:example.org", "@alice:example.org\n",
	}
	for _, id := range good {
		if err := CheckMatrixUserID(id); err != nil {
			t.Errorf("CheckMatrixUserID(%q) = %v, want ok", id, err)
		}
	}
	for _, id := range bad {
		if err := CheckMatrixUserID(id); err == nil {
			t.Errorf("CheckMatrixUserID(%q) accepted", id)
		}
	}
}

func TestChangedFields(t *testing.T) {
	for kind, c := range validChanges() {
		got := ChangedFields(c)
		if want := []string{kindField[kind]}; !slices.Equal(got, want) {
			t.Errorf("%s: changed fields %q, want %q", kind, got, want)
		}
	}
}

func TestEvaluateLeavesInputsAlone(t *testing.T) {
	c := change(KindTools, func(p *profile.Profile) { p.Tools = []string{"schedule", "reply", "request_change", "reply"} })
	before := slices.Clone(c.Proposed.Tools)
	Evaluate(testHost(), nil, c)
	if !slices.Equal(c.Proposed.Tools, before) {
		t.Fatalf("Evaluate reordered the caller's slice: %q", c.Proposed.Tools)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Deny: "deny", NeedsHuman: "needs-human", AutoApprove: "auto-approve", 9: "Outcome(9)"} {
		if o.String() != want {
			t.Errorf("%d: %q, want %q", int(o), o.String(), want)
		}
	}
	var zero Decision
	if zero.Outcome != Deny {
		t.Fatal("the zero Decision must deny")
	}
}
