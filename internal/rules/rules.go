// Package rules compiles a proxy's rules (SPEC §5) into a Set and decides
// requests with them: a matching enforce deny wins, else the first matching
// enforce allow allows, else nothing allows. Every decision carries a
// reason code (Pomerium's habit) that the error body and the audit record
// both show. Report-mode rules are evaluated and recorded, never obeyed.
//
// Conditions are CEL (cel.dev/cel-go), compiled when the rule is saved, and
// they fail closed: an allow whose condition errors does not match, a deny
// whose condition errors does.
package rules

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/policy"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// Options change how rules compile.
type Options struct {
	// CaseInsensitive folds patterns (and the caller folds paths).
	CaseInsensitive bool
	// AllowOnly refuses deny rules (a child token's own rules, SPEC §3.5).
	AllowOnly bool
	// Proxy names the proxy in rate-limit keys.
	Proxy string
	// Limits holds rate-limit state across snapshot rebuilds; nil: none.
	Limits *Limits
}

// Set is a compiled, immutable list of rules.
type Set struct {
	rules []*Rule
	// Body reports whether some rule reads the request body, so the
	// gateway buffers it (up to max_rule_body) for this proxy.
	Body bool
}

// Rule is one compiled rule.
type Rule struct {
	Name   string
	Deny   bool
	Report bool
	Spec   spec.Rule
	agents map[string]bool
	labels map[string]string
	// labelKeys are labels' keys, sorted.
	labelKeys []string
	methods   map[string]bool // nil: every method
	paths     []*policy.Pattern
	cond      *condition
	limit     *limitSpec
	limits    *Limits
	proxy     string
}

// Error is a compile error a person can act on.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errf(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

// Compile checks and compiles rules; it refuses what can never match.
func Compile(rs []spec.Rule, opt Options) (*Set, error) {
	s := &Set{}
	names := map[string]bool{}
	for i := range rs {
		r, err := compileRule(rs[i], opt)
		if err != nil {
			return nil, err
		}
		if names[r.Name] {
			return nil, errf("two rules are named %q; rule names are unique per proxy", r.Name)
		}
		names[r.Name] = true
		if r.cond != nil && r.cond.uses.body() {
			s.Body = true
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

// CompileRule checks one rule (for the admin API's validation).
func CompileRule(r spec.Rule, opt Options) error {
	_, err := compileRule(r, opt)
	return err
}

func compileRule(sr spec.Rule, opt Options) (*Rule, error) {
	sr.Normalize()
	if err := sr.Validate(); err != nil {
		return nil, err
	}
	r := &Rule{Name: sr.Name, Deny: sr.Effect == "deny", Report: sr.Mode == "report", Spec: sr, limits: opt.Limits, proxy: opt.Proxy}
	if opt.AllowOnly && r.Deny {
		return nil, errf("rule %s: a child token's own rules can only allow (they narrow the proxy's rules); deny rules belong on the proxy", sr.Name)
	}
	if len(sr.Agents) > 0 {
		r.agents = map[string]bool{}
		for _, a := range sr.Agents {
			r.agents[a] = true
		}
	}
	if len(sr.AgentLabels) > 0 {
		r.labels = sr.AgentLabels
		for k := range sr.AgentLabels {
			r.labelKeys = append(r.labelKeys, k)
		}
		// Sorted: the label Explain names as missing does not depend on
		// map order.
		sort.Strings(r.labelKeys)
	}
	if len(sr.Methods) > 0 {
		r.methods = map[string]bool{}
		for _, m := range sr.Methods {
			if !policy.ValidMethod(m) {
				return nil, errf("rule %s: %q is not an HTTP method", sr.Name, clip(m))
			}
			r.methods[m] = true
		}
	}
	for _, p := range sr.Paths {
		var pat *policy.Pattern
		var err error
		if opt.CaseInsensitive {
			pat, err = policy.CompilePatternFold(p)
		} else {
			pat, err = policy.CompilePattern(p)
		}
		if err != nil {
			return nil, errf("rule %s: path %q: %v", sr.Name, clip(p), err)
		}
		r.paths = append(r.paths, pat)
	}
	if sr.When != "" {
		c, err := compileCondition(sr.When)
		if err != nil {
			return nil, errf("rule %s: when: %v", sr.Name, err)
		}
		if c.uses.body() && r.methods != nil && onlyBodyless(r.methods) {
			return nil, errf("rule %s can never match: its condition reads the request body (request.json, request.form or request.body_size) but it applies only to %s, whose bodies keyhole never reads", sr.Name, methodList(r.methods))
		}
		r.cond = c
	}
	if sr.RateLimit != "" {
		l, err := parseLimit(sr.RateLimit)
		if err != nil {
			return nil, errf("rule %s: rate_limit: %v", sr.Name, err)
		}
		r.limit = l
	}
	return r, nil
}

// BodylessMethods are never parsed for rules (SPEC §5).
func BodylessMethods(m string) bool { return m == http.MethodGet || m == http.MethodHead }

func onlyBodyless(ms map[string]bool) bool {
	for m := range ms {
		if !BodylessMethods(m) {
			return false
		}
	}
	return true
}

func methodList(ms map[string]bool) string {
	var l []string
	for m := range ms {
		l = append(l, m)
	}
	if len(l) == 2 {
		return "GET and HEAD"
	}
	return strings.Join(l, ", ")
}

// Rules lists the compiled rules in order.
func (s *Set) Rules() []*Rule {
	if s == nil {
		return nil
	}
	return s.rules
}

// Input is one request as the rules see it.
type Input struct {
	Method string
	// Path is the decoded canonical path (folded by the caller when the
	// proxy is case-insensitive).
	Path     string
	RawQuery string
	Header   http.Header
	Agent    string
	Labels   map[string]string
	TokenID  string
	// Body is the buffered request body, nil when no rule reads it.
	Body *Body
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow bool
	// Rule is the rule that decided ("" when none did).
	Rule string
	// Reason is the reason code: allowed_by_rule:<name>,
	// denied_by_rule:<name>, no_rule_allows.
	Reason string
	// Report holds the would-be results of report-mode rules that
	// matched: report:denied_by_rule:<name>, report:allowed_by_rule:<name>.
	Report []string
	// Filters are the response filters of the deciding allow rule.
	Filters *spec.Filters
	// limited is the deciding allow rule, for its rate limit.
	limited *Rule
}

// Decide applies the rules to one request.
func (s *Set) Decide(in *Input) Decision { return s.decide(in, nil) }

// decide is Decide's one code path, which Explain shares. With trace nil it
// evaluates only what the decision needs (the first matching deny; allows
// until one matches or a deny does); with trace set it evaluates every rule
// and reports each outcome, in order. The decision is the same either way:
// rules have no side effects (rate limits are applied later, by
// Decision.RateLimit).
func (s *Set) decide(in *Input, trace func(i int, o outcome)) Decision {
	var d Decision
	if s == nil {
		d.Reason = "no_rule_allows"
		return d
	}
	ev := newEval(in)
	var allow *Rule
	var deny *Rule
	for i, r := range s.rules {
		need := trace != nil
		switch {
		case r.Report:
			need = true
		case r.Deny:
			need = need || deny == nil
		default:
			need = need || allow == nil && deny == nil
		}
		if !need {
			continue
		}
		o := r.match(in, ev)
		if trace != nil {
			trace(i, o)
		}
		if !o.matched {
			continue
		}
		switch {
		case r.Report && r.Deny:
			d.Report = append(d.Report, "report:denied_by_rule:"+r.Name)
		case r.Report:
			d.Report = append(d.Report, "report:allowed_by_rule:"+r.Name)
		case r.Deny:
			if deny == nil {
				deny = r
			}
		default:
			if allow == nil && deny == nil {
				allow = r
			}
		}
	}
	switch {
	case deny != nil:
		d.Rule, d.Reason = deny.Name, "denied_by_rule:"+deny.Name
	case allow != nil:
		d.Allow, d.Rule, d.Reason, d.Filters, d.limited = true, allow.Name, "allowed_by_rule:"+allow.Name, allow.Spec.ResponseFilters, allow
	default:
		d.Reason = "no_rule_allows"
	}
	return d
}

// step is the check at which a rule stopped: the first selector that did
// not hold, or the condition's result.
type step uint8

const (
	stepMatched   step = iota // every selector held and the condition was true (or absent)
	stepAgent                 // the agent is not in agents
	stepLabel                 // an agent_labels entry is missing or different
	stepMethod                // the method is not in methods
	stepPath                  // no path pattern matches
	stepCondFalse             // the condition is false
	stepCondError             // the condition errored (matched = the rule is a deny)
)

// outcome is how one rule fared against one request: Decide reads matched,
// Explain also says why. Building it allocates nothing.
type outcome struct {
	matched bool
	step    step
	label   string // stepLabel: the label key that failed
	err     error  // stepCondError: the condition's error
}

// match checks the agent selectors, the method, the path, then the
// condition (fail closed: an erroring condition matches a deny and does not
// match an allow).
func (r *Rule) match(in *Input, ev *evaluator) outcome {
	if r.agents != nil && !r.agents[in.Agent] {
		return outcome{step: stepAgent}
	}
	for _, k := range r.labelKeys {
		if got, ok := in.Labels[k]; !ok || got != r.labels[k] {
			return outcome{step: stepLabel, label: k}
		}
	}
	if r.methods != nil && !r.methods[in.Method] {
		return outcome{step: stepMethod}
	}
	hit := false
	for _, p := range r.paths {
		if p.Match(in.Path) {
			hit = true
			break
		}
	}
	if !hit {
		return outcome{step: stepPath}
	}
	if r.cond == nil {
		return outcome{matched: true, step: stepMatched}
	}
	ok, err := ev.eval(r.cond)
	switch {
	case err != nil:
		return outcome{matched: r.Deny, step: stepCondError, err: err}
	case !ok:
		return outcome{step: stepCondFalse}
	}
	return outcome{matched: true, step: stepMatched}
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
