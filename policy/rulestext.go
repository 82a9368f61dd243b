package policy

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RulesHeader is the first line of every canonical rendering of a rule set.
const RulesHeader = "ironclaw-rules 1"

// MaxRulesTextSize caps a canonical rule text accepted by ParseRules. MaxRules
// rules of MaxRuleExprBytes each fit with room for quoting.
const MaxRulesTextSize = 512 << 10

// CanonicalRules renders rule specs as text, in their order (which is the
// order they are evaluated in): a header line, then for each rule
//
//	rule = "<name>"
//	effect = "<effect>"
//	expr.1 = "<first line of the expression>"
//	expr.2 = "<second line>" …
//
// every value Go-quoted so that no value can forge a line, and the
// expression split at newlines so that a diff shows which line of a rule
// changed. Two rule sets are equal exactly when their renderings are
// byte-equal. The gateway diffs and binds approvals to these bytes, as it
// does for profiles.
func CanonicalRules(specs []RuleSpec) []byte {
	var b bytes.Buffer
	b.WriteString(RulesHeader + "\n")
	for _, s := range specs {
		fmt.Fprintf(&b, "rule = %s\n", strconv.Quote(s.Name))
		fmt.Fprintf(&b, "effect = %s\n", strconv.Quote(s.Effect))
		for i, line := range strings.Split(s.Expr, "\n") {
			fmt.Fprintf(&b, "expr.%d = %s\n", i+1, strconv.Quote(line))
		}
	}
	return b.Bytes()
}

// ParseRules reads a canonical rule text. It accepts exactly what
// CanonicalRules produces (the result re-renders to the same bytes) and
// checks nothing else: whether the rules load is LoadRules' business.
func ParseRules(data []byte) ([]RuleSpec, error) {
	if len(data) > MaxRulesTextSize {
		return nil, fmt.Errorf("policy: rule text of %d bytes is over the %d-byte limit", len(data), MaxRulesTextSize)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxRulesTextSize)
	if !sc.Scan() || sc.Text() != RulesHeader {
		return nil, fmt.Errorf("policy: rules line 1: want %q", RulesHeader)
	}
	var (
		specs []RuleSpec
		expr  []string
		cur   *RuleSpec
		want  = "rule" // the key the next line must have
	)
	flush := func() {
		if cur != nil {
			cur.Expr = strings.Join(expr, "\n")
			specs = append(specs, *cur)
		}
	}
	for n := 2; sc.Scan(); n++ {
		key, val, ok := strings.Cut(sc.Text(), " = ")
		if !ok {
			return nil, fmt.Errorf("policy: rules line %d: want \"key = value\"", n)
		}
		s, err := strconv.Unquote(val)
		if err != nil {
			return nil, fmt.Errorf("policy: rules line %d: %w", n, err)
		}
		switch {
		case key == "rule" && (want == "rule" || want == "expr"):
			flush()
			cur, expr = &RuleSpec{Name: s}, nil
			want = "effect"
		case key == "effect" && want == "effect":
			cur.Effect = s
			want = "expr.1"
		case want == "expr.1" && key == "expr.1",
			want == "expr" && key == fmt.Sprintf("expr.%d", len(expr)+1):
			expr = append(expr, s)
			want = "expr"
		default:
			return nil, fmt.Errorf("policy: rules line %d: unexpected key %q", n, key)
		}
		if len(specs) > MaxRules {
			return nil, fmt.Errorf("policy: more than %d rules", MaxRules)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("policy: rules: %w", err)
	}
	if want != "rule" && want != "expr" {
		return nil, fmt.Errorf("policy: rules: the last rule is incomplete")
	}
	flush()
	if !bytes.Equal(CanonicalRules(specs), data) {
		return nil, fmt.Errorf("policy: rules are not in canonical form (spacing, quoting or line ending differ)")
	}
	return specs, nil
}

// EvaluateRules decides a change of the operator rules themselves (kind
// "rules"). Such a change touches no profile, so the profile invariants do
// not apply; instead: the requester must be an operator (an agent or a
// stranger never proposes rules), the proposal must change something, and
// the proposed rules must load. No operator rule is consulted — a rule
// cannot approve, or veto, a change of the rules — and anything that passes
// needs a human (RuleHumanOnly). Like Evaluate it is pure.
func EvaluateRules(requester string, base, proposed []RuleSpec) Decision {
	var fs []failure
	if err := checkRequester(requester); err != nil {
		fs = append(fs, failure{InvRequester, err.Error()})
	} else if !IsOperator(requester) {
		fs = append(fs, failure{InvRequester, fmt.Sprintf("requester %s: only an operator may propose a change of the rules", q(requester))})
	}
	if slices.Equal(base, proposed) {
		fs = append(fs, failure{InvNoOp, "the proposed rules change nothing"})
	}
	if _, err := LoadRules(proposed); err != nil {
		fs = append(fs, failure{InvRules, fmt.Sprintf("the proposed rules do not load: %v", err)})
	}
	if len(fs) > 0 {
		reasons := make([]string, len(fs))
		for i, f := range fs {
			reasons[i] = f.rule + ": " + f.reason
		}
		return Decision{Outcome: Deny, Rule: fs[0].rule, Reasons: reasons}
	}
	return undecided(KindRules, nil)
}
