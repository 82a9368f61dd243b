package policy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/env"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"

	"github.com/ironclaw/ironclaw/agentd/profile"
)

// Effects an operator rule may have. There is no "needs-human" effect: that
// is what happens when no rule decides.
const (
	EffectDeny        = "deny"
	EffectAutoApprove = "auto-approve"
)

// Bounds on operator rules. They are part of the determinism promise: a rule
// either finishes within its cost or fails the same way on every machine.
const (
	// MaxRules caps how many rules a RuleSet holds.
	MaxRules = 64
	// MaxRuleExprBytes caps one rule's source.
	MaxRuleExprBytes = 4096
	// RuleCostLimit is the CEL runtime cost one rule evaluation may spend
	// (roughly: operations, with string and list operations weighted by
	// size). A rule over a handful of contacts costs tens to thousands; a
	// rule stopped at the limit has spent about 10 ms, so MaxRules runaway
	// rules still decide in well under a second.
	RuleCostLimit = 100_000
	// maxRegexProgramSize caps a regular expression's compiled size.
	maxRegexProgramSize = 1000
)

// RuleSpec is an operator rule as written in config.
type RuleSpec struct {
	// Name identifies the rule in decisions and the audit log: 1–64 of
	// a-z 0-9 . _ -, starting with a letter or digit, unique in the set.
	Name string
	// Expr is a CEL expression over change, base and proposed that
	// returns bool; see LoadRules for the environment.
	Expr string
	// Effect is EffectDeny or EffectAutoApprove.
	Effect string
}

// RuleSet is a compiled, immutable set of operator rules; safe for
// concurrent use.
type RuleSet struct {
	rules []rule
}

type rule struct {
	spec RuleSpec
	prg  cel.Program
}

// Specs returns the rules as loaded, in config order.
func (rs *RuleSet) Specs() []RuleSpec {
	if rs == nil {
		return nil
	}
	out := make([]RuleSpec, len(rs.rules))
	for i, r := range rs.rules {
		out[i] = r.spec
	}
	return out
}

// ruleChange, ruleProfile are what CEL sees as change, base and proposed.
// They are Go structs (not map(string, dyn)) so that the type checker knows
// every field: a misspelt field is refused at load, not discovered when a
// change arrives.
type ruleChange struct {
	Kind      string   `cel:"kind"`
	Requester string   `cel:"requester"`
	Fields    []string `cel:"fields"`
}

type ruleProfile struct {
	Instructions string           `cel:"instructions"`
	Model        string           `cel:"model"`
	Tools        []string         `cel:"tools"`
	Contacts     []string         `cel:"contacts"`
	Permissions  map[string]bool  `cel:"permissions"`
	Limits       map[string]int64 `cel:"limits"`
	AgentDigest  string           `cel:"agent_digest"`
}

func toRuleProfile(p profile.Profile) *ruleProfile {
	return &ruleProfile{
		Instructions: p.Instructions,
		Model:        p.Model,
		Tools:        nonNil(p.Tools),
		Contacts:     nonNil(p.Contacts),
		Permissions:  p.Permissions.ByName(),
		Limits:       p.Limits.ByName(),
		AgentDigest:  p.AgentDigest,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// timeFunctions are left out of the standard library: CEL has no now(), but
// its timestamp functions read the host's time zone database — I/O whose
// answer differs between machines.
var timeFunctions = []string{
	overloads.TypeConvertTimestamp, overloads.TypeConvertDuration,
	overloads.TimeGetFullYear, overloads.TimeGetMonth, overloads.TimeGetDayOfYear,
	overloads.TimeGetDate, overloads.TimeGetDayOfMonth, overloads.TimeGetDayOfWeek,
	overloads.TimeGetHours, overloads.TimeGetMinutes, overloads.TimeGetSeconds,
	overloads.TimeGetMilliseconds,
}

// newEnv builds the one CEL environment rules are written against: the
// standard library without time, three typed variables, no extensions (no
// I/O, no strings.format with its locale, no bindings), and limits on source
// size and regular expressions. The standard macros (all, exists,
// exists_one, map, filter, has) stay: they iterate only over lists and maps
// the change provides, and every iteration counts against RuleCostLimit.
func newEnv() (*cel.Env, error) {
	subset := env.NewLibrarySubset()
	for _, name := range timeFunctions {
		subset.AddExcludedFunctions(env.NewFunction(name))
	}
	return cel.NewCustomEnv(
		cel.StdLib(cel.StdLibSubset(subset)),
		nativeTypes(
			reflect.TypeFor[ruleChange](),
			reflect.TypeFor[ruleProfile](),
			types.ParseStructTags(true),
		),
		cel.Variable("change", cel.ObjectType("policy.ruleChange")),
		cel.Variable("base", cel.ObjectType("policy.ruleProfile")),
		cel.Variable("proposed", cel.ObjectType("policy.ruleProfile")),
		cel.ParserExpressionSizeLimit(MaxRuleExprBytes),
		cel.RegexProgramSizeLimit(maxRegexProgramSize),
		cel.ASTValidators(knownKeysValidator{}),
	)
}

// nativeTypes exposes Go structs to CEL. It is what cel-go's
// ext.NativeTypes does; the ext package itself is not linked because it
// brings extension libraries (and their dependencies) the rules must not
// have.
func nativeTypes(args ...any) cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		p, a, err := types.ComposeTypes(e.CELTypeProvider(), e.CELTypeAdapter(), args...)
		if err != nil {
			return nil, err
		}
		e, err = cel.CustomTypeAdapter(a)(e)
		if err != nil {
			return nil, err
		}
		return cel.CustomTypeProvider(p)(e)
	}
}

// LoadRules compiles operator rules. It refuses the whole set if any rule
// is malformed — bad name or effect, a duplicate name, a syntax or type error
// (reported with the rule's name and line:column), a result that is not bool,
// or a minimum cost over RuleCostLimit — so a half-loaded rule set never
// exists.
//
// The environment:
//
//	change.kind       string        one of Kinds()
//	change.requester  string        "agent:…", "operator:…" or "channel:…"
//	change.fields     list(string)  the fields that changed (Field constants)
//	base, proposed    the profile before and after, each with
//	  .instructions  string
//	  .model         string
//	  .tools         list(string)   sorted, unique
//	  .contacts      list(string)   sorted, unique
//	  .permissions   map(string, bool)  schedule, memory, notes
//	  .limits        map(string, int)   memory_mib, cpu_millis, tmp_mib,
//	                 outbox_mib, outbox_inodes, tokens_per_day, calls_per_minute
//	  .agent_digest  string
func LoadRules(src []RuleSpec) (*RuleSet, error) {
	if len(src) > MaxRules {
		return nil, fmt.Errorf("policy: %d rules, at most %d", len(src), MaxRules)
	}
	e, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: building the rule environment: %w", err)
	}
	rs := &RuleSet{}
	seen := map[string]bool{}
	for _, s := range src {
		if err := checkRuleName(s.Name); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("policy: rule %q: name used twice", s.Name)
		}
		seen[s.Name] = true
		switch s.Effect {
		case EffectDeny, EffectAutoApprove:
		case "needs-human":
			return nil, fmt.Errorf("policy: rule %q: effect \"needs-human\" is what happens when no rule decides; use %q or %q",
				s.Name, EffectDeny, EffectAutoApprove)
		default:
			return nil, fmt.Errorf("policy: rule %q: effect %s: want %q or %q", s.Name, q(s.Effect), EffectDeny, EffectAutoApprove)
		}
		prg, err := compile(e, s)
		if err != nil {
			return nil, err
		}
		rs.rules = append(rs.rules, rule{spec: s, prg: prg})
	}
	return rs, nil
}

func checkRuleName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("policy: rule name %s: want 1 to 64 characters", q(name))
	}
	for i, c := range []byte(name) {
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || strings.IndexByte("._-", c) < 0) {
			return fmt.Errorf("policy: rule name %s: want a-z 0-9 . _ -, starting with a letter or digit", q(name))
		}
	}
	// A rule may not pass itself off as something built in.
	if slices.Contains(Invariants(), name) || name == RuleDefault || name == RuleHumanOnly {
		return fmt.Errorf("policy: rule name %q is reserved", name)
	}
	return nil
}

func compile(e *cel.Env, s RuleSpec) (cel.Program, error) {
	if len(s.Expr) > MaxRuleExprBytes {
		return nil, fmt.Errorf("policy: rule %q: expression is %d bytes, at most %d", s.Name, len(s.Expr), MaxRuleExprBytes)
	}
	a, iss := e.Compile(s.Expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("policy: rule %q: %s", s.Name, formatIssues(iss))
	}
	if t := a.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("policy: rule %q: expression returns %s, must return bool", s.Name, cel.FormatCELType(t))
	}
	// The minimum cost holds whatever the change: a rule that cannot
	// finish within the limit on the smallest input can never finish.
	est, err := e.EstimateCost(a, noEstimates{})
	if err != nil {
		return nil, fmt.Errorf("policy: rule %q: estimating cost: %w", s.Name, err)
	}
	if est.Min > RuleCostLimit {
		return nil, fmt.Errorf("policy: rule %q: costs at least %d, over the limit %d", s.Name, est.Min, RuleCostLimit)
	}
	prg, err := e.Program(a,
		cel.CostLimit(RuleCostLimit),
		cel.InterruptCheckFrequency(64),
		cel.OptimizeRegex(interpreter.MatchesRegexOptimization),
	)
	if err != nil {
		return nil, fmt.Errorf("policy: rule %q: %w", s.Name, err)
	}
	return prg, nil
}

// formatIssues renders CEL errors as "line:col: message; …", 1-based, one
// line each — the snippet CEL adds would repeat operator text into logs.
func formatIssues(iss *cel.Issues) string {
	var parts []string
	for _, e := range iss.Errors() {
		// CEL columns are 0-based, and -1 at end of input.
		col := max(e.Location.Column()+1, 1)
		parts = append(parts, fmt.Sprintf("%d:%d: %s", e.Location.Line(), col, e.Message))
	}
	return strings.Join(parts, "; ")
}

// noEstimates gives the cost estimator no size hints: unknown sizes count
// as 0 for the minimum, so the minimum is a true lower bound.
type noEstimates struct{}

func (noEstimates) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }
func (noEstimates) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// knownKeysValidator refuses at load a constant key on permissions or
// limits that the profile does not have (proposed.limits.memry_mib,
// base.permissions["shedule"]): maps are not checked by the type checker,
// and such a rule would otherwise fail on every change.
type knownKeysValidator struct{}

func (knownKeysValidator) Name() string { return "ironclaw.known_profile_keys" }

func (knownKeysValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	keys := map[string][]string{
		"permissions": slices.Sorted(maps.Keys(profile.Permissions{}.ByName())),
		"limits":      profile.LimitNames(),
	}
	// mapOf reports which profile map e is, if any: base.limits,
	// proposed.permissions, ….
	mapOf := func(e ast.Expr) []string {
		if e.Kind() != ast.SelectKind || e.AsSelect().IsTestOnly() {
			return nil
		}
		op := e.AsSelect().Operand()
		if op.Kind() != ast.IdentKind || (op.AsIdent() != "base" && op.AsIdent() != "proposed") {
			return nil
		}
		return keys[e.AsSelect().FieldName()]
	}
	check := func(id int64, m []string, key string) {
		if !slices.Contains(m, key) {
			iss.ReportErrorAtID(id, "no key %q; the keys are %s", key, strings.Join(m, ", "))
		}
	}
	root := ast.NavigateAST(a)
	for _, e := range ast.MatchDescendants(root, ast.AllMatcher()) {
		switch e.Kind() {
		case ast.SelectKind:
			if m := mapOf(e.AsSelect().Operand()); m != nil {
				check(e.ID(), m, e.AsSelect().FieldName())
			}
		case ast.CallKind:
			c := e.AsCall()
			if c.FunctionName() != operators.Index || len(c.Args()) != 2 {
				continue
			}
			if m := mapOf(c.Args()[0]); m != nil && c.Args()[1].Kind() == ast.LiteralKind {
				if key, ok := c.Args()[1].AsLiteral().Value().(string); ok {
					check(e.ID(), m, key)
				}
			}
		}
	}
}

// evaluate runs the operator rules on a change that passed the invariants.
func (rs *RuleSet) evaluate(ctx context.Context, c Change, fields []string) (Decision, error) {
	act, err := cel.NewActivation(map[string]any{
		"change":   &ruleChange{Kind: c.Kind, Requester: c.Requester, Fields: nonNil(fields)},
		"base":     toRuleProfile(c.Base),
		"proposed": toRuleProfile(c.Proposed),
	})
	if err != nil {
		// Only a bug in this package gets here; fail to a human.
		return undecided(c.Kind, []string{"internal: " + err.Error()}), nil
	}

	// Deny rules first, all of them, in config order. A rule that fails
	// to evaluate cannot be trusted to have said no: it blocks
	// auto-approval and is reported, and the change goes to a human
	// unless a later deny rule matches.
	var failed []string
	var firstFailed string
	for _, r := range rs.rules {
		if r.spec.Effect != EffectDeny {
			continue
		}
		match, err := r.eval(ctx, act)
		if err := ctx.Err(); err != nil {
			return Decision{}, err
		}
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("rule %s failed: %v", r.spec.Name, err))
			if firstFailed == "" {
				firstFailed = r.spec.Name
			}
		case match:
			return Decision{Outcome: Deny, Rule: r.spec.Name,
				Reasons: append(failed, fmt.Sprintf("rule %s denies this change", r.spec.Name))}, nil
		}
	}
	if firstFailed != "" {
		return Decision{Outcome: NeedsHuman, Rule: firstFailed,
			Reasons: append(failed, "a deny rule could not be evaluated: a human must approve")}, nil
	}
	if humanOnly[c.Kind] {
		// Not even evaluated: no rule's opinion counts here.
		return undecided(c.Kind, nil), nil
	}
	for _, r := range rs.rules {
		if r.spec.Effect != EffectAutoApprove {
			continue
		}
		match, err := r.eval(ctx, act)
		if err := ctx.Err(); err != nil {
			return Decision{}, err
		}
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("rule %s failed: %v", r.spec.Name, err))
		case match:
			return Decision{Outcome: AutoApprove, Rule: r.spec.Name,
				Reasons: append(failed, fmt.Sprintf("rule %s approves this change", r.spec.Name))}, nil
		}
	}
	return undecided(c.Kind, failed), nil
}

var errNotBool = errors.New("result is not a bool")

func (r rule) eval(ctx context.Context, act cel.Activation) (bool, error) {
	out, _, err := r.prg.ContextEval(ctx, act)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errNotBool
	}
	return b, nil
}
