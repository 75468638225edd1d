package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// refScan walks data with encoding/json's tokenizer and reports what
// ParseJSON must refuse even when encoding/json accepts: a repeated key in
// one object, nesting deeper than MaxJSONDepth, a number beyond float64.
func refScan(data []byte) (dup, deep, overflow bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		obj     bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.wantKey {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					dup = true
				}
				top.keys[k] = true
				top.wantKey = false
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.obj {
					top.wantKey = true
				}
				stack = append(stack, &frame{obj: t == '{', keys: map[string]bool{}, wantKey: t == '{'})
				if len(stack) > MaxJSONDepth {
					deep = true
				}
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case json.Number:
			if f, err := strconv.ParseFloat(string(t), 64); err != nil && math.IsInf(f, 0) {
				overflow = true
			}
			if top != nil && top.obj {
				top.wantKey = true
			}
		default:
			if top != nil && top.obj {
				top.wantKey = true
			}
		}
	}
}

// surrogateEscape finds \uD800–\uDFFF escapes (paired or not), which
// encoding/json decodes leniently.
var surrogateEscape = regexp.MustCompile(`\\u[dD][89abcdefABCDEF]`)

// asFloats turns ParseJSON's int64s into float64s, as encoding/json reads them.
func asFloats(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = asFloats(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = asFloats(e)
		}
		return a
	}
	return v
}

func maxDepth(v any) int {
	switch x := v.(type) {
	case map[string]any:
		d := 0
		for _, e := range x {
			d = max(d, maxDepth(e))
		}
		return d + 1
	case []any:
		d := 0
		for _, e := range x {
			d = max(d, maxDepth(e))
		}
		return d + 1
	}
	return 0
}

// FuzzParseJSON compares ParseJSON with encoding/json. What ParseJSON
// accepts, encoding/json accepts with the same structure (ints as floats);
// it never accepts repeated keys, deep nesting, or lone surrogates; and what
// it refuses is either invalid JSON or one of those (plus an out-of-range
// number) — it refuses nothing else.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `1`, `-0`, `1e400`, `"x"`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `"\ud800"`, `"\ud83d\ude00"`,
		`{} {}`, `{}x`, "\xef\xbb\xbf{}", `{"a":[1,2,{"b":null}]}`, `01`, `12345678901234567890`, `[1.5e3,true,false]`,
		strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
		`"\\ud800"`, `"\\\ud800"`, "\"\xed\xa0\x80\"", `{"a":{"a":{"a":1}}}`, `{"":1}`, " \t\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseJSON(data)
		dup, deep, overflow := refScan(data)
		valid := json.Valid(data)
		if err != nil {
			var je *JSONError
			if !errors.As(err, &je) {
				t.Fatalf("error %T is not a *JSONError", err)
			}
			if len(err.Error()) > 120 {
				t.Fatalf("error message is %d bytes", len(err.Error()))
			}
			// encoding/json accepts invalid UTF-8 (and replaces it); ParseJSON
			// must not.
			if valid && utf8.Valid(data) && !dup && !deep && !overflow && !surrogateEscape.Match(data) {
				t.Fatalf("ParseJSON refused valid JSON %q: %v", data, err)
			}
			return
		}
		if !valid {
			t.Fatalf("ParseJSON accepted %q, which encoding/json calls invalid", data)
		}
		if !utf8.Valid(data) {
			t.Fatalf("ParseJSON accepted invalid UTF-8 %q", data)
		}
		if dup {
			t.Fatalf("ParseJSON accepted repeated keys in %q", data)
		}
		if deep || maxDepth(got) > MaxJSONDepth {
			t.Fatalf("ParseJSON accepted nesting deeper than %d", MaxJSONDepth)
		}
		var ref any
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatalf("encoding/json refuses what ParseJSON accepted: %v", err)
		}
		if !reflect.DeepEqual(asFloats(got), ref) {
			t.Fatalf("ParseJSON and encoding/json disagree on %q:\n%s", data, cmp.Diff(ref, asFloats(got)))
		}
		// Numbers: int64 exactly when integral and in range.
		checkNumbers(t, data)
	})
}

// checkNumbers: every number token reads as int64 iff it is written as an
// integer (no '.', 'e', 'E') that fits in 64 bits.
func checkNumbers(t *testing.T, data []byte) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return
		}
		n, ok := tok.(json.Number)
		if !ok {
			continue
		}
		v, err := number(string(n))
		if err != nil {
			t.Fatalf("number(%q): %v in an accepted body", n, err)
		}
		_, isInt := v.(int64)
		_, fitErr := strconv.ParseInt(string(n), 10, 64)
		if wantInt := !strings.ContainsAny(string(n), ".eE") && fitErr == nil; isInt != wantInt {
			t.Fatalf("number %q read as %T", n, v)
		}
	}
}

// fuzzSet is a proxy's rules with conditions over every input field,
// deny and allow, enforce and report.
func fuzzSet(t testing.TB) *Set {
	rs := []spec.Rule{
		{Name: "deny-big", Effect: "deny", Methods: []string{"POST", "PUT"}, Paths: []string{"/v1/**"}, When: "request.json.amount > 1000"},
		{Name: "deny-form", Effect: "deny", Paths: []string{"/v1/charges"}, When: "int(request.form['amount'][0]) > 500"},
		{Name: "report-size", Effect: "deny", Mode: "report", Paths: []string{"/**"}, When: "request.body_size > 100"},
		{Name: "report-tools", Effect: "allow", Mode: "report", Paths: []string{"/mcp"}, When: "request.json.method == 'tools/call' && request.json.params.name.startsWith('create_')"},
		{Name: "allow-query", Effect: "allow", Methods: []string{"GET"}, Paths: []string{"/v1/customers", "/v1/customers/*"}, When: "int(request.query['limit'][0]) <= 100"},
		{Name: "allow-header", Effect: "allow", Paths: []string{"/v1/**"}, When: "request.headers['x-tag'].exists(v, v == 'ok') && agent.labels.team == 'billing'"},
		{Name: "allow-whole", Effect: "allow", Paths: []string{"/**"}, When: "size(request) > 3 && has(request.json) && request.json.items.all(i, i.qty < 10)"},
		{Name: "allow-token", Effect: "allow", Paths: []string{"/tok/*"}, When: "token.id.startsWith('t') && request.method in ['GET', 'POST']"},
	}
	s, err := Compile(rs, Options{Proxy: "p", Limits: NewLimits()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var fuzzMethods = []string{"GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "get"}
var fuzzPaths = []string{"/v1/customers", "/v1/customers/cus_1", "/v1/charges", "/mcp", "/tok/x", "/other", "/v1/a/b/c"}

// FuzzEvalInput drives the CEL input builder with hostile bodies, content
// types, queries and headers: it never panics, and the same request decided
// twice (fresh body, or the same body re-read) gets the same decision.
func FuzzEvalInput(f *testing.F) {
	f.Add([]byte(`{"amount":5000}`), "application/json", "limit=3", "ok", byte(1), byte(0))
	f.Add([]byte(`{"amount":5}`), "text/plain", "limit=1000", "no", byte(1), byte(2))
	f.Add([]byte(`amount=600&x=1`), "application/x-www-form-urlencoded", "", "ok", byte(1), byte(2))
	f.Add([]byte(`{"method":"tools/call","params":{"name":"create_issue"}}`), "application/json", "", "", byte(1), byte(3))
	f.Add([]byte(`{"items":[{"qty":1},{"qty":11}]}`), "application/vnd.api+json", "a=%zz", "ok", byte(2), byte(6))
	f.Add([]byte("\xff\xfe"), "application/json; charset", "limit=%ff", "\xff", byte(0), byte(1))
	f.Add([]byte(`{"a":1,"a":2}`), "", "limit=1&limit=2", "ok", byte(1), byte(4))
	f.Add([]byte(nil), "multipart/form-data", ";;", "", byte(0), byte(0))
	set := fuzzSet(f)
	f.Fuzz(func(t *testing.T, body []byte, ct, query, tag string, method, path byte) {
		mk := func() *Input {
			return &Input{
				Method:   fuzzMethods[int(method)%len(fuzzMethods)],
				Path:     fuzzPaths[int(path)%len(fuzzPaths)],
				RawQuery: query,
				Header:   http.Header{"X-Tag": {tag, "ok"[:len(tag)%3]}, "Content-Type": {ct}},
				Agent:    "bot",
				Labels:   map[string]string{"team": "billing"},
				TokenID:  "tok_1",
				Body:     NewBody(body, ct),
			}
		}
		in1, in2 := mk(), mk()
		d1 := set.Decide(in1)
		d2 := set.Decide(in2)
		d3 := set.Decide(in1) // the same Body, parsed once already
		for i, d := range []Decision{d2, d3} {
			if diff := cmp.Diff(d1, d, decisionOpts); diff != "" {
				t.Fatalf("decision %d differs (-first +again):\n%s", i+2, diff)
			}
		}
		switch {
		case d1.Allow && !strings.HasPrefix(d1.Reason, "allowed_by_rule:"):
			t.Fatalf("allowed with reason %q", d1.Reason)
		case !d1.Allow && d1.Rule != "" && d1.Reason != "denied_by_rule:"+d1.Rule:
			t.Fatalf("denied by %q with reason %q", d1.Rule, d1.Reason)
		case !d1.Allow && d1.Rule == "" && d1.Reason != "no_rule_allows":
			t.Fatalf("refused with reason %q", d1.Reason)
		}
		// Fail closed: a POST to /v1/** whose body is not JSON is denied
		// by deny-big, whose condition cannot be evaluated.
		if in1.Method == "POST" && strings.HasPrefix(in1.Path, "/v1/") {
			if _, ok := in1.Body.JSON(); !ok && d1.Rule != "deny-big" {
				t.Fatalf("non-JSON POST to %s not denied by deny-big: %+v", in1.Path, d1)
			}
		}
	})
}
