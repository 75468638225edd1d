package rules

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
)

// CEL limits: conditions are written by operators, but bodies come from
// agents, so evaluation is bounded (a comprehension over a 1 MiB array must
// not stall a request) and a condition that exceeds it errors — and errors
// fail closed.
const (
	costLimit      = 1_000_000
	maxExprSize    = 8192
	maxExprNesting = 64
)

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

// celEnv declares the variables of SPEC §5: request (method, path, query,
// headers, json, form, body_size), agent (name, labels), token (id).
func celEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("agent", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("token", cel.MapType(cel.StringType, cel.DynType)),
			cel.CrossTypeNumericComparisons(true),
			cel.OptionalTypes(),
			cel.ParserExpressionSizeLimit(maxExprSize),
			cel.ParserRecursionLimit(maxExprNesting),
		)
	})
	return env, envErr
}

// uses records which request fields a condition reads, so the gateway
// buffers bodies only for proxies that need them and the evaluator builds
// only what is read.
type uses struct {
	all, json, form, bodySize, query, headers bool
}

func (u uses) body() bool { return u.all || u.json || u.form || u.bodySize }

type condition struct {
	src  string
	prg  cel.Program
	uses uses
}

// compileCondition compiles a `when` expression; it must type-check to bool.
func compileCondition(src string) (*condition, error) {
	e, err := celEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, errors.New(oneLine(iss.Err().Error()))
	}
	// The condition must be boolean by type. A bare JSON field is dyn
	// (it could be anything at run time), so it must be compared:
	// `request.json.flag == true`, not `request.json.flag`.
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		if t.IsExactType(cel.DynType) {
			return nil, fmt.Errorf("the condition must be boolean (true or false); this one's type is only known at run time — compare it, e.g. `request.json.flag == true`")
		}
		return nil, fmt.Errorf("the condition must be boolean (true or false); it evaluates to %s", t)
	}
	prg, err := e.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, errors.New(oneLine(err.Error()))
	}
	return &condition{src: src, prg: prg, uses: findUses(ast.NativeRep().Expr())}, nil
}

// findUses walks the expression: request.X and request["X"] name field X;
// any other use of `request` (passed whole) counts as using everything.
func findUses(root celast.Expr) uses {
	var u uses
	claimed := map[int64]bool{}
	mark := func(f string) {
		switch f {
		case "json":
			u.json = true
		case "form":
			u.form = true
		case "body_size":
			u.bodySize = true
		case "query":
			u.query = true
		case "headers":
			u.headers = true
		}
	}
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.SelectKind:
			s := e.AsSelect()
			if op := s.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "request" {
				claimed[op.ID()] = true
				mark(s.FieldName())
			}
		case celast.CallKind:
			c := e.AsCall()
			if c.FunctionName() == "_[_]" || c.FunctionName() == "_[?_]" {
				args := c.Args()
				if len(args) == 2 && args[0].Kind() == celast.IdentKind && args[0].AsIdent() == "request" {
					claimed[args[0].ID()] = true
					if args[1].Kind() == celast.LiteralKind {
						if s, ok := args[1].AsLiteral().Value().(string); ok {
							mark(s)
							return
						}
					}
					u.all = true
				}
			}
		}
	}))
	celast.PostOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.IdentKind && e.AsIdent() == "request" && !claimed[e.ID()] {
			u.all = true
		}
	}))
	return u
}

func oneLine(s string) string {
	s = strings.TrimPrefix(s, "ERROR: <input>:")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// evaluator builds the CEL activation for one request once, lazily: only
// the fields some condition reads are built, at most once per request.
type evaluator struct {
	in      *Input
	request map[string]any
	vars    map[string]any
	built   uses
}

func newEval(in *Input) *evaluator { return &evaluator{in: in} }

func (ev *evaluator) need(u uses) {
	in := ev.in
	if ev.request == nil {
		ev.request = map[string]any{"method": in.Method, "path": in.Path}
		labels := in.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		ev.vars = map[string]any{"request": ev.request,
			"agent": map[string]any{"name": in.Agent, "labels": labels},
			"token": map[string]any{"id": in.TokenID}}
	}
	if (u.all || u.query) && !ev.built.query {
		ev.built.query = true
		q, err := url.ParseQuery(in.RawQuery)
		if err == nil {
			ev.request["query"] = map[string][]string(q)
		}
	}
	if (u.all || u.headers) && !ev.built.headers {
		ev.built.headers = true
		h := make(map[string][]string, len(in.Header))
		for k, v := range in.Header {
			h[strings.ToLower(k)] = v
		}
		ev.request["headers"] = h
	}
	if (u.all || u.bodySize) && !ev.built.bodySize {
		ev.built.bodySize = true
		if in.Body != nil {
			ev.request["body_size"] = int64(len(in.Body.Data))
		} else {
			ev.request["body_size"] = int64(0)
		}
	}
	if (u.all || u.json) && !ev.built.json {
		ev.built.json = true
		// A body that is not JSON leaves request.json absent: a condition
		// reading it errors, and errors fail closed (SPEC §5).
		if in.Body != nil {
			if v, ok := in.Body.JSON(); ok {
				ev.request["json"] = v
			}
		}
	}
	if (u.all || u.form) && !ev.built.form {
		ev.built.form = true
		if in.Body != nil {
			if f, ok := in.Body.Form(); ok {
				ev.request["form"] = f
			}
		}
	}
}

func (ev *evaluator) eval(c *condition) (bool, error) {
	ev.need(c.uses)
	out, _, err := c.prg.Eval(ev.vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition did not evaluate to a boolean")
	}
	return b, nil
}
