package rules

import (
	"fmt"
	"strings"
)

// Explanation is a dry evaluation: the Decision that Decide makes, and how
// every rule fared, in order. Explain shares Decide's code path (decide and
// Rule.match), so an explanation cannot drift from what the gateway does.
type Explanation struct {
	Decision Decision
	// Rules holds one result per rule, in the rules' order: every rule is
	// evaluated, including those that Decide would have skipped once the
	// decision was known.
	Rules []RuleResult
}

// Results of one rule.
const (
	ResultMatched = "matched"
	ResultNoMatch = "no_match"
	ResultError   = "error"
)

// RuleResult is how one rule fared against the request.
type RuleResult struct {
	Name   string `json:"name"`
	Effect string `json:"effect"` // allow or deny
	Mode   string `json:"mode"`   // enforce or report
	// Result is matched, no_match or error (the condition errored; a deny
	// then matches and an allow does not: evaluation fails closed).
	Result string `json:"result"`
	// Why is a sentence for people: "agent billing-bot not selected",
	// "label team=billing missing", "method POST not in [GET]", "path /v1/x
	// matches none of [/v2/**]", "condition false", "condition error: …
	// (fails closed: deny matches)", "matched".
	Why string `json:"why"`
	// Matched reports whether the rule counts as matching (true for a
	// deny whose condition errored).
	Matched bool `json:"-"`
}

// Explain evaluates every rule against the request, without side effects
// (rate limits are not consumed), and returns the decision with the reason
// for each rule.
func (s *Set) Explain(in *Input) Explanation {
	var ex Explanation
	if s != nil {
		ex.Rules = make([]RuleResult, 0, len(s.rules))
	}
	ex.Decision = s.decide(in, func(i int, o outcome) {
		ex.Rules = append(ex.Rules, s.rules[i].result(in, o))
	})
	return ex
}

// RateLimitSpec is the rate_limit of the deciding allow rule ("" when it
// has none or the request is not allowed), for explanations: a dry
// evaluation never consumes it.
func (d *Decision) RateLimitSpec() string {
	if d.limited == nil || d.limited.limit == nil {
		return ""
	}
	return d.limited.limit.raw
}

func (r *Rule) result(in *Input, o outcome) RuleResult {
	rr := RuleResult{Name: r.Name, Effect: r.Spec.Effect, Mode: r.Spec.Mode, Matched: o.matched, Result: ResultNoMatch}
	if rr.Mode == "" {
		rr.Mode = "enforce"
	}
	switch o.step {
	case stepMatched:
		rr.Result, rr.Why = ResultMatched, "matched"
	case stepAgent:
		rr.Why = fmt.Sprintf("agent %s not selected (agents %s)", orNone(in.Agent), bracket(r.Spec.Agents))
	case stepLabel:
		want := o.label + "=" + r.labels[o.label]
		if got, ok := in.Labels[o.label]; ok {
			rr.Why = fmt.Sprintf("label %s missing (the agent has %s=%s)", want, o.label, got)
		} else {
			rr.Why = fmt.Sprintf("label %s missing", want)
		}
	case stepMethod:
		rr.Why = fmt.Sprintf("method %s not in %s", in.Method, bracket(r.Spec.Methods))
	case stepPath:
		rr.Why = fmt.Sprintf("path %s matches none of %s", in.Path, bracket(r.Spec.Paths))
	case stepCondFalse:
		rr.Why = "condition false"
	case stepCondError:
		rr.Result = ResultError
		effect := "allow does not match"
		if r.Deny {
			effect = "deny matches"
		}
		rr.Why = fmt.Sprintf("condition error: %s (fails closed: %s)", clipMsg(oneLine(o.err.Error())), effect)
	}
	if r.Report && o.matched {
		rr.Why += " (report mode: recorded, never enforced)"
	}
	return rr
}

func bracket(l []string) string { return "[" + strings.Join(l, ", ") + "]" }

func orNone(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// clipMsg bounds a CEL error message in an explanation.
func clipMsg(s string) string {
	const n = 300
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
