package policy

import (
	"context"
	"fmt"
	"slices"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

// Kinds of change. A change request names exactly one, and it must be the
// one field that actually changes (invariant "kind-mismatch").
const (
	KindInstructions = "instructions"
	KindTools        = "tools"
	KindSoftware     = "software" // the agent binary: Profile.AgentDigest
	KindContacts     = "contacts"
	KindPermissions  = "permissions"
	KindModel        = "model"
	KindLimits       = "limits"
	KindRules        = "rules"     // the operator rules themselves
	KindOperators    = "operators" // who may use the console (policy/operators.go)
)

// Field names, as CEL rules see them in change.fields and as the kinds map
// onto them.
const (
	FieldInstructions = "instructions"
	FieldModel        = "model"
	FieldTools        = "tools"
	FieldContacts     = "contacts"
	FieldPermissions  = "permissions"
	FieldLimits       = "limits"
	FieldAgentDigest  = "agent_digest"
	FieldRules        = "rules"
	FieldOperators    = "operators"
)

// kindField maps each kind to the one field it may change.
var kindField = map[string]string{
	KindInstructions: FieldInstructions,
	KindTools:        FieldTools,
	KindSoftware:     FieldAgentDigest,
	KindContacts:     FieldContacts,
	KindPermissions:  FieldPermissions,
	KindModel:        FieldModel,
	KindLimits:       FieldLimits,
	KindRules:        FieldRules,
	KindOperators:    FieldOperators,
}

// humanOnly are the kinds no operator rule may auto-approve: a rule that
// could approve changes to the rules could approve itself into anything, and
// a new agent binary is new code that a person must choose to run.
var humanOnly = map[string]bool{KindRules: true, KindSoftware: true, KindOperators: true}

// Kinds returns every kind of change, in a fixed order.
func Kinds() []string {
	return []string{KindInstructions, KindTools, KindSoftware, KindContacts,
		KindPermissions, KindModel, KindLimits, KindRules, KindOperators}
}

// Host holds the facts about this host that bound any profile.
type Host struct {
	Tools                []string // compiled-in tool names
	MaxMemoryMiB         int64
	MaxCPUMillis         int64
	MaxTmpMiB            int64
	MaxOutboxMiB         int64
	MaxOutboxInodes      int64
	MaxTokensPerDay      int64
	MaxCallsPerMinute    int64
	MaxInstructionsBytes int
	Models               []string // models the host offers
	BuiltDigests         []string // agent image digests built on this host
}

// Change is one proposed change: the full profile before and after, so that
// what is checked is exactly what would be applied.
type Change struct {
	// Kind is one of the Kind constants.
	Kind string
	// Requester is "agent:<session id>", "operator:SHA256:<ssh key
	// fingerprint>", "operator:local:<unix user>" or "channel:<matrix user
	// id>" (see CheckRequester).
	Requester string
	// Base is the current profile, Proposed the full profile asked for.
	Base, Proposed profile.Profile
	// BaseVersion is the version Base was read at. Policy does not use it:
	// the gateway refuses a change whose base is no longer current.
	BaseVersion uint64
	// BaseRules and ProposedRules are the operator rules before and after,
	// for a change of kind "rules" (Base and Proposed are then equal).
	BaseRules, ProposedRules []RuleSpec
}

// Outcome is what the gateway must do with a change. The zero value is
// Deny, so a forgotten Decision never approves anything.
type Outcome int

const (
	Deny Outcome = iota
	NeedsHuman
	AutoApprove
)

func (o Outcome) String() string {
	switch o {
	case Deny:
		return "deny"
	case NeedsHuman:
		return "needs-human"
	case AutoApprove:
		return "auto-approve"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Names used in Decision.Rule that are not invariants or operator rules.
const (
	// RuleDefault decided when nothing denied and nothing approved.
	RuleDefault = "default"
	// RuleHumanOnly decided for kinds that no rule may auto-approve.
	RuleHumanOnly = "human-only-kind"
)

// Decision is the outcome of Evaluate.
type Decision struct {
	Outcome Outcome
	// Rule names what decided: an invariant, an operator rule,
	// RuleHumanOnly or RuleDefault.
	Rule string
	// Reasons explain the decision, one fact each, for the owner and the
	// audit log. For a Deny by invariants it lists every failed invariant,
	// so that a requester can fix them all at once.
	Reasons []string
}

// Evaluate decides what happens to c. It is pure: no I/O, no clock, no
// randomness; the same arguments always give the same Decision. rules may be
// nil (no operator rules: nothing is auto-approved).
func Evaluate(h Host, rules *RuleSet, c Change) Decision {
	d, _ := EvaluateContext(context.Background(), h, rules, c)
	return d
}

// EvaluateContext is Evaluate that the caller can abandon (say, at shutdown).
// It returns an error only when ctx ends first, and then no Decision: a
// cancelled evaluation never turns into a different answer.
func EvaluateContext(ctx context.Context, h Host, rules *RuleSet, c Change) (Decision, error) {
	base, proposed := normalize(c.Base), normalize(c.Proposed)
	c.Base, c.Proposed = base, proposed
	fields := changedFields(c)

	if failed := checkInvariants(h, c, fields); len(failed) > 0 {
		reasons := make([]string, len(failed))
		for i, f := range failed {
			reasons[i] = f.rule + ": " + f.reason
		}
		return Decision{Outcome: Deny, Rule: failed[0].rule, Reasons: reasons}, nil
	}
	if rules == nil || len(rules.rules) == 0 {
		return undecided(c.Kind, nil), nil
	}
	return rules.evaluate(ctx, c, fields)
}

// undecided is the decision when no rule decided: a human decides.
func undecided(kind string, reasons []string) Decision {
	if humanOnly[kind] {
		return Decision{Outcome: NeedsHuman, Rule: RuleHumanOnly,
			Reasons: append(reasons, fmt.Sprintf("a %q change always needs a human", kind))}
	}
	return Decision{Outcome: NeedsHuman, Rule: RuleDefault,
		Reasons: append(reasons, "no rule decided: a human must approve")}
}

// ChangedFields returns the fields (Field constants, in a fixed order) that
// differ between c.Base and c.Proposed, plus FieldRules when the rule specs
// differ. Tools and contacts compare as sets, as the canonical rendering
// does.
func ChangedFields(c Change) []string {
	c.Base, c.Proposed = normalize(c.Base), normalize(c.Proposed)
	return changedFields(c)
}

func changedFields(c Change) []string {
	b, p := c.Base, c.Proposed
	var f []string
	if b.Instructions != p.Instructions {
		f = append(f, FieldInstructions)
	}
	if b.Model != p.Model {
		f = append(f, FieldModel)
	}
	if !slices.Equal(b.Tools, p.Tools) {
		f = append(f, FieldTools)
	}
	if !slices.Equal(b.Contacts, p.Contacts) {
		f = append(f, FieldContacts)
	}
	if b.Permissions != p.Permissions {
		f = append(f, FieldPermissions)
	}
	if b.Limits != p.Limits {
		f = append(f, FieldLimits)
	}
	if b.AgentDigest != p.AgentDigest {
		f = append(f, FieldAgentDigest)
	}
	if !slices.Equal(c.BaseRules, c.ProposedRules) {
		f = append(f, FieldRules)
	}
	return f
}

// normalize gives tools and contacts the sorted-set form the canonical
// rendering has, on copies: the caller's slices are never touched.
func normalize(p profile.Profile) profile.Profile {
	p.Tools = sortedSet(p.Tools)
	p.Contacts = sortedSet(p.Contacts)
	return p
}

func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
