package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// allowAll is the smallest valid rule; tests change what they need.
func allowAll(name string) spec.Rule {
	return spec.Rule{Name: name, Effect: "allow", Paths: []string{"/**"}}
}

func TestCompileRefuses(t *testing.T) {
	with := func(f func(*spec.Rule)) spec.Rule {
		r := allowAll("r")
		f(&r)
		return r
	}
	tests := []struct {
		name    string
		rules   []spec.Rule
		opt     Options
		wantErr string
	}{
		// CEL that does not compile.
		{name: "cel syntax", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "request.method ==" })}, wantErr: "rule r: when:"},
		{name: "cel unbalanced", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "(request.method == 'GET'" })}, wantErr: "rule r: when:"},
		{name: "cel unknown variable", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "req.method == 'GET'" })}, wantErr: "undeclared reference to 'req'"},
		{name: "cel unknown function", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "nope(request.method)" })}, wantErr: "rule r: when:"},
		// Not boolean.
		{name: "cel int", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "1 + 1" })}, wantErr: "must be boolean"},
		{name: "cel string", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "'true'" })}, wantErr: "evaluates to string"},
		{name: "cel bare json field is dyn", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "request.json.flag" })}, wantErr: "only known at run time"},
		{name: "cel bare method is dyn", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "request.method" })}, wantErr: "only known at run time"},
		{name: "cel list", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "[true]" })}, wantErr: "must be boolean"},
		{name: "cel null", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = "null" })}, wantErr: "must be boolean"},
		{name: "cel too long", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = strings.Repeat("true && ", 1100) + "true" })}, wantErr: "when is longer than 8192"},
		{name: "cel too deep", rules: []spec.Rule{with(func(r *spec.Rule) { r.When = strings.Repeat("(", 100) + "true" + strings.Repeat(")", 100) })}, wantErr: "rule r: when:"},
		// Body conditions on methods whose bodies are never read.
		{name: "json on GET", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET"}; r.When = "request.json.a == 1" })}, wantErr: "rule r can never match"},
		{name: "json on GET,HEAD", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET", "HEAD"}; r.When = "request.json.a == 1" })}, wantErr: "applies only to GET and HEAD"},
		{name: "json on HEAD", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"HEAD"}; r.When = "has(request.json.a)" })}, wantErr: "can never match"},
		{name: "form on GET", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET"}; r.When = "request.form['a'][0] == '1'" })}, wantErr: "can never match"},
		{name: "body_size on GET", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET"}; r.When = "request.body_size > 10" })}, wantErr: "can never match"},
		{name: "json index on GET", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET"}; r.When = "request['json'].a == 1" })}, wantErr: "can never match"},
		{name: "json on deny GET", rules: []spec.Rule{with(func(r *spec.Rule) {
			r.Effect = "deny"
			r.Methods = []string{"GET"}
			r.When = "request.json.a == 1"
		})}, wantErr: "can never match"},
		// Allow-only (a child token's own rules).
		{name: "allow-only refuses deny", rules: []spec.Rule{with(func(r *spec.Rule) { r.Effect = "deny" })}, opt: Options{AllowOnly: true}, wantErr: "can only allow"},
		{name: "allow-only refuses report deny", rules: []spec.Rule{with(func(r *spec.Rule) { r.Effect = "deny"; r.Mode = "report" })}, opt: Options{AllowOnly: true}, wantErr: "can only allow"},
		// Methods.
		{name: "empty method", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{""} })}, wantErr: `"" is not an HTTP method`},
		{name: "method with space", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET POST"} })}, wantErr: "is not an HTTP method"},
		{name: "method with newline", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET\n"} })}, wantErr: "is not an HTTP method"},
		{name: "method with comma", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GET,POST"} })}, wantErr: "is not an HTTP method"},
		{name: "method non-ASCII", rules: []spec.Rule{with(func(r *spec.Rule) { r.Methods = []string{"GÉT"} })}, wantErr: "is not an HTTP method"},
		// Path patterns.
		{name: "path empty", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{""} })}, wantErr: `path "": path pattern is empty`},
		{name: "path relative", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"v1/x"} })}, wantErr: "must start with '/'"},
		{name: "path empty segment", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"/a//b"} })}, wantErr: "is empty"},
		{name: "path dot segment", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"/a/../b"} })}, wantErr: "dot segment"},
		{name: "path star prefix", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"/v1/cus_*"} })}, wantErr: "mixes '*'"},
		{name: "path triple star", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"/***"} })}, wantErr: "mixes '*'"},
		{name: "path percent escape", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"/a%2Fb"} })}, wantErr: "percent-escape"},
		{name: "path backslash", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{`/a\b`} })}, wantErr: "backslash"},
		{name: "path control", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"/a\x00"} })}, wantErr: "control character"},
		{name: "path case-insensitive bad", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = []string{"/A/../b"} })}, opt: Options{CaseInsensitive: true}, wantErr: "dot segment"},
		{name: "no paths", rules: []spec.Rule{with(func(r *spec.Rule) { r.Paths = nil })}, wantErr: "paths is required"},
		// Rate limits.
		{name: "rate zero", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "0/m" })}, wantErr: "N must be a whole number from 1 to 1000000"},
		{name: "rate per day", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "5/d" })}, wantErr: "the period is s, m or h"},
		{name: "rate not a number", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "x/m" })}, wantErr: "N must be a whole number"},
		{name: "rate too big", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "2000000/s" })}, wantErr: "N must be a whole number from 1 to 1000000"},
		{name: "rate negative", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "-1/m" })}, wantErr: "N must be a whole number"},
		{name: "rate no slash", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "60" })}, wantErr: "write N/s, N/m or N/h"},
		{name: "rate empty period", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "60/" })}, wantErr: "the period is s, m or h"},
		{name: "rate upper period", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "60/M" })}, wantErr: "the period is s, m or h"},
		{name: "rate long period", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "60/min" })}, wantErr: "the period is s, m or h"},
		{name: "rate fraction", rules: []spec.Rule{with(func(r *spec.Rule) { r.RateLimit = "1.5/s" })}, wantErr: "N must be a whole number"},
		// Spec-level checks still run.
		{name: "bad name", rules: []spec.Rule{with(func(r *spec.Rule) { r.Name = "Bad" })}, wantErr: `rule name "Bad" is invalid`},
		{name: "bad effect", rules: []spec.Rule{with(func(r *spec.Rule) { r.Effect = "maybe" })}, wantErr: "effect must be allow or deny"},
		{name: "duplicate names", rules: []spec.Rule{allowAll("r"), allowAll("r")}, wantErr: `two rules are named "r"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(tt.rules, tt.opt)
			if err == nil {
				t.Fatalf("Compile accepted it: %+v", s.Rules())
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Compile error = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("Compile error spans lines: %q", err)
			}
			var re *Error
			var se *spec.Error
			if !errors.As(err, &re) && !errors.As(err, &se) {
				t.Errorf("error is %T, want *rules.Error or *spec.Error", err)
			}
			if s != nil {
				t.Errorf("Compile returned a Set with its error")
			}
			if len(tt.rules) == 1 {
				if err2 := CompileRule(tt.rules[0], tt.opt); err2 == nil || err2.Error() != err.Error() {
					t.Errorf("CompileRule = %v, Compile = %v", err2, err)
				}
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	with := func(f func(*spec.Rule)) spec.Rule {
		r := allowAll("r")
		f(&r)
		return r
	}
	tests := []struct {
		name     string
		rule     spec.Rule
		opt      Options
		wantBody bool
	}{
		{name: "minimal", rule: allowAll("r")},
		{name: "json on POST", rule: with(func(r *spec.Rule) { r.Methods = []string{"POST"}; r.When = "request.json.a == 1" }), wantBody: true},
		{name: "json on GET,POST", rule: with(func(r *spec.Rule) { r.Methods = []string{"GET", "POST"}; r.When = "request.json.a == 1" }), wantBody: true},
		{name: "json on every method", rule: with(func(r *spec.Rule) { r.When = "request.json.a == 1" }), wantBody: true},
		{name: "query on GET", rule: with(func(r *spec.Rule) { r.Methods = []string{"GET"}; r.When = "int(request.query['limit'][0]) <= 100" })},
		{name: "headers on HEAD", rule: with(func(r *spec.Rule) { r.Methods = []string{"HEAD"}; r.When = "'x-a' in request.headers" })},
		{name: "agent and token", rule: with(func(r *spec.Rule) { r.When = "agent.name == 'a' && agent.labels.team == 'b' && token.id != ''" })},
		{name: "lower-case method is a token", rule: with(func(r *spec.Rule) { r.Methods = []string{"get", "PROPFIND"} })},
		{name: "allow-only allow", rule: allowAll("r"), opt: Options{AllowOnly: true}},
		{name: "report deny", rule: with(func(r *spec.Rule) { r.Effect = "deny"; r.Mode = "report" })},
		{name: "rates", rule: with(func(r *spec.Rule) { r.RateLimit = "1000000/h" })},
		{name: "rate with spaces", rule: with(func(r *spec.Rule) { r.RateLimit = " 60/m " })},
		{name: "optional select", rule: with(func(r *spec.Rule) { r.When = "request.?json.orValue({}) == {}" }), wantBody: true},
		{name: "case-insensitive", rule: with(func(r *spec.Rule) { r.Paths = []string{"/V1/Admin/**"} }), opt: Options{CaseInsensitive: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile([]spec.Rule{tt.rule}, tt.opt)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if s.Body != tt.wantBody {
				t.Errorf("Set.Body = %v, want %v", s.Body, tt.wantBody)
			}
			if got := len(s.Rules()); got != 1 {
				t.Errorf("%d rules compiled", got)
			}
		})
	}
}

// TestUses pins the analysis that decides whether the gateway buffers
// bodies for a proxy: reading only metadata must not, reading the body in
// any spelling must, and handing `request` whole counts as reading it all.
func TestUses(t *testing.T) {
	tests := []struct {
		name     string
		when     string
		want     uses
		wantBody bool
	}{
		{name: "method only", when: "request.method == 'GET'", want: uses{}},
		{name: "path only", when: "request.path.startsWith('/v1')", want: uses{}},
		{name: "agent and token", when: "agent.name == 'a' && token.id == 'b'", want: uses{}},
		{name: "query", when: "'a' in request.query", want: uses{query: true}},
		{name: "headers", when: "request.headers['x-a'][0] == '1'", want: uses{headers: true}},
		{name: "json select", when: "request.json.a == 1", want: uses{json: true}, wantBody: true},
		{name: "json index", when: `request["json"].a == 1`, want: uses{json: true}, wantBody: true},
		{name: "json optional index", when: `request[?"json"].hasValue()`, want: uses{json: true}, wantBody: true},
		{name: "has json", when: "has(request.json)", want: uses{json: true}, wantBody: true},
		{name: "has json field", when: "has(request.json.a)", want: uses{json: true}, wantBody: true},
		{name: "form", when: "request.form['a'][0] == 'x'", want: uses{form: true}, wantBody: true},
		{name: "body_size", when: "request.body_size < 10", want: uses{bodySize: true}, wantBody: true},
		{name: "computed index", when: "request['js' + 'on'] == {}", want: uses{all: true}, wantBody: true},
		{name: "request whole in size", when: "size(request) > 0", want: uses{all: true}, wantBody: true},
		{name: "request whole in list", when: "[request].exists(r, r.json.a == 1)", want: uses{all: true}, wantBody: true},
		{name: "request whole in", when: "'json' in request", want: uses{all: true}, wantBody: true},
		{name: "request whole compared", when: "request == {}", want: uses{all: true}, wantBody: true},
		{name: "optional select is whole", when: "request.?json.hasValue()", want: uses{all: true}, wantBody: true},
		{name: "several", when: "request.method == 'POST' && 'a' in request.query && request.json.b == 2", want: uses{query: true, json: true}, wantBody: true},
		{name: "json under a macro", when: "request.json.items.all(i, i.price < 10)", want: uses{json: true}, wantBody: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileCondition(tt.when)
			if err != nil {
				t.Fatalf("compileCondition(%q): %v", tt.when, err)
			}
			if c.uses != tt.want {
				t.Errorf("uses(%q) = %+v, want %+v", tt.when, c.uses, tt.want)
			}
			r := allowAll("r")
			r.Methods = []string{"POST"}
			r.When = tt.when
			s, err := Compile([]spec.Rule{allowAll("meta"), r}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Body != tt.wantBody {
				t.Errorf("Set.Body = %v, want %v", s.Body, tt.wantBody)
			}
		})
	}
}

func TestCompileSetBodyAnyRule(t *testing.T) {
	a, b := allowAll("a"), allowAll("b")
	a.When = "request.method == 'POST'"
	b.When = "request.body_size > 0"
	b.Mode = "report"
	s, err := Compile([]spec.Rule{a, b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Body {
		t.Error("a report rule that reads the body must still make the proxy buffer it")
	}
	s, err = Compile(nil, Options{})
	if err != nil || s.Body || len(s.Rules()) != 0 {
		t.Errorf("Compile(nil) = %+v, %v", s, err)
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantN      int
		wantWindow time.Duration
		wantErr    bool
	}{
		{name: "per second", in: "10/s", wantN: 10, wantWindow: time.Second},
		{name: "per minute", in: "60/m", wantN: 60, wantWindow: time.Minute},
		{name: "per hour", in: "1/h", wantN: 1, wantWindow: time.Hour},
		{name: "max", in: "1000000/s", wantN: 1000000, wantWindow: time.Second},
		{name: "spaces around", in: " 5/m ", wantN: 5, wantWindow: time.Minute},
		{name: "leading zero", in: "05/m", wantN: 5, wantWindow: time.Minute},
		{name: "zero", in: "0/m", wantErr: true},
		{name: "days", in: "5/d", wantErr: true},
		{name: "x", in: "x/m", wantErr: true},
		{name: "too many", in: "2000000/s", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "space inside", in: "5 /m", wantErr: true},
		{name: "plus", in: "+5/m", wantN: 5, wantWindow: time.Minute},
		{name: "two slashes", in: "5/m/s", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := parseLimit(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseLimit(%q) = %+v, want an error", tt.in, l)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseLimit(%q): %v", tt.in, err)
			}
			if l.n != tt.wantN || l.window != tt.wantWindow {
				t.Errorf("parseLimit(%q) = %d per %v, want %d per %v", tt.in, l.n, l.window, tt.wantN, tt.wantWindow)
			}
		})
	}
}
