package policy

import (
	"strings"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

var (
	digestA = "sha256:" + strings.Repeat("a1", 32)
	digestB = "sha256:" + strings.Repeat("b2", 32)
)

const (
	agentReq    = "agent:0123456789abcdef0123456789abcdef"
	operatorReq = "operator:SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
	channelReq  = "channel:@alice:example.org"
)

func testHost() Host {
	return Host{
		Tools:                []string{"reply", "request_change", "schedule", "remember", "recall", "notes"},
		MaxMemoryMiB:         4096,
		MaxCPUMillis:         4000,
		MaxTmpMiB:            1024,
		MaxOutboxMiB:         1024,
		MaxOutboxInodes:      100000,
		MaxTokensPerDay:      10_000_000,
		MaxCallsPerMinute:    600,
		MaxInstructionsBytes: 16 << 10,
		Models:               []string{"llama3.2:3b", "qwen2.5:7b"},
		BuiltDigests:         []string{digestA, digestB},
	}
}

func baseProfile() profile.Profile {
	p := profile.Default("llama3.2:3b", digestA)
	p.Contacts = []string{"@alice:example.org"}
	return p
}

// change returns a valid change of the given kind from baseProfile, made by
// mutate; kind "rules" changes the rules instead.
func change(kind string, mutate func(p *profile.Profile)) Change {
	base := baseProfile()
	proposed := baseProfile()
	if mutate != nil {
		mutate(&proposed)
	}
	c := Change{Kind: kind, Requester: agentReq, Base: base, Proposed: proposed, BaseVersion: 7}
	if kind == KindRules {
		c.ProposedRules = []RuleSpec{{Name: "small-notes", Expr: `size(proposed.instructions) < 100`, Effect: EffectAutoApprove}}
	}
	return c
}

// validChanges holds one valid change of each kind.
func validChanges() map[string]Change {
	return map[string]Change{
		KindInstructions: change(KindInstructions, func(p *profile.Profile) { p.Instructions = "Be terse." }),
		KindTools:        change(KindTools, func(p *profile.Profile) { p.Tools = append(p.Tools, "remember") }),
		KindSoftware:     change(KindSoftware, func(p *profile.Profile) { p.AgentDigest = digestB }),
		KindContacts:     change(KindContacts, func(p *profile.Profile) { p.Contacts = append(p.Contacts, "@bob:example.org") }),
		KindPermissions:  change(KindPermissions, func(p *profile.Profile) { p.Permissions.Memory = true }),
		KindModel:        change(KindModel, func(p *profile.Profile) { p.Model = "qwen2.5:7b" }),
		KindLimits:       change(KindLimits, func(p *profile.Profile) { p.Limits.MemoryMiB = 512 }),
		KindRules:        change(KindRules, nil),
	}
}

func mustLoad(t interface {
	Helper()
	Fatalf(string, ...any)
}, specs ...RuleSpec) *RuleSet {
	t.Helper()
	rs, err := LoadRules(specs)
	if err != nil {
		t.Fatalf("LoadRules: %v", err)
	}
	return rs
}
