package policy

import (
	"slices"
	"strings"
	"testing"
)

// patternMatches are (pattern, path, want) rows. They also seed FuzzPattern.
var patternMatches = []struct {
	name    string
	pattern string
	path    string
	want    bool
}{
	// Literals: exact and case-sensitive.
	{"literal exact", "/v1/customers", "/v1/customers", true},
	{"literal no trailing slash", "/v1/customers", "/v1/customers/", false},
	{"literal no child", "/v1/customers", "/v1/customers/1", false},
	{"literal no prefix", "/v1/customers", "/v1/customersX", false},
	{"literal case-sensitive", "/v1/customers", "/V1/customers", false},
	{"literal trailing slash", "/v1/customers/", "/v1/customers/", true},
	{"literal trailing slash needs it", "/v1/customers/", "/v1/customers", false},
	{"root matches root", "/", "/", true},
	{"root not child", "/", "/a", false},
	{"literal unicode", "/café", "/café", true},
	{"literal space", "/a b", "/a b", true},
	{"literal percent", "/100%", "/100%", true},
	{"literal semicolon", "/a;b", "/a;b", true},

	// "*": one non-empty segment.
	{"star one segment", "/v1/items/*", "/v1/items/1", true},
	{"star not zero segments", "/v1/items/*", "/v1/items", false},
	{"star not empty segment", "/v1/items/*", "/v1/items/", false},
	{"star not two segments", "/v1/items/*", "/v1/items/1/x", false},
	{"star case-sensitive prefix", "/v1/items/*", "/V1/items/1", false},
	{"star literal prefix", "/v1/items/*", "/v1/itemsX/1", false},
	{"star in middle", "/v1/*/refunds", "/v1/ch_1/refunds", true},
	{"star in middle not empty", "/v1/*/refunds", "/v1//refunds", false},
	{"star in middle not two", "/v1/*/refunds", "/v1/a/b/refunds", false},
	{"star first", "/*/x", "/a/x", true},
	{"root star", "/*", "/a", true},
	{"root star not root", "/*", "/", false},
	{"root star not deeper", "/*", "/a/b", false},
	{"star then trailing slash", "/v1/*/", "/v1/a/", true},
	{"star then trailing slash needs it", "/v1/*/", "/v1/a", false},
	{"star star", "/*/*", "/a/b", true},
	{"star star not one", "/*/*", "/a", false},
	{"star star not trailing empty", "/*/*", "/a/", false},

	// "**" at the end: any number of segments, a trailing slash included.
	{"any end zero", "/v2/**", "/v2", true},
	{"any end trailing slash", "/v2/**", "/v2/", true},
	{"any end one", "/v2/**", "/v2/a", true},
	{"any end many", "/v2/**", "/v2/a/b", true},
	{"any end many trailing slash", "/v2/**", "/v2/a/", true},
	{"any end not prefix of segment", "/v2/**", "/v2x", false},
	{"any end not prefix of segment deeper", "/v2/**", "/v2x/a", false},
	{"any end not parent", "/v2/**", "/", false},
	{"any end case-sensitive", "/v2/**", "/V2/a", false},

	// "**" in the middle.
	{"any middle zero", "/v4/**/end", "/v4/end", true},
	{"any middle one", "/v4/**/end", "/v4/a/end", true},
	{"any middle many", "/v4/**/end", "/v4/a/b/c/end", true},
	{"any middle missing end", "/v4/**/end", "/v4/a/b/c", false},
	{"any middle end twice", "/v4/**/end", "/v4/end/end", true},
	{"any middle end not last", "/v4/**/end", "/v4/end/x", false},
	{"any middle trailing slash", "/v4/**/end", "/v4/end/", false},
	{"any middle end prefix", "/v4/**/end", "/v4/a/endX", false},
	{"any middle then star", "/v4/**/*/end", "/v4/end", false},
	{"any middle then star one", "/v4/**/*/end", "/v4/a/end", true},

	// "**" at the start.
	{"any start", "/**/refunds", "/refunds", true},
	{"any start deep", "/**/refunds", "/v1/ch/refunds", true},
	{"any start no match", "/**/refunds", "/v1/refundsX", false},
	{"any start root", "/**", "/", true},
	{"any start everything", "/**", "/v1/a/b/c/", true},
	{"any start one", "/**", "/a", true},

	// Several "**".
	{"two any", "/**/admin/**", "/admin", true},
	{"two any deep", "/**/admin/**", "/v1/x/admin/y/z", true},
	{"two any trailing", "/**/admin/**", "/v1/admin/", true},
	{"two any missing", "/**/admin/**", "/v1/administrator/x", false},
	{"two any adjacent", "/a/**/**/b", "/a/b", true},
	{"two any adjacent deep", "/a/**/**/b", "/a/x/y/b", true},
	{"three any", "/**/a/**/b/**/c", "/x/a/y/b/z/c", true},
	{"three any order", "/**/a/**/b/**/c", "/x/b/y/a/z/c", false},
	{"any star any", "/**/*/**", "/", false},
	{"any star any one", "/**/*/**", "/a", true},
	{"any then trailing slash", "/v2/**/", "/v2/", true},
	{"any then trailing slash deep", "/v2/**/", "/v2/a/b/", true},
	{"any then trailing slash needs it", "/v2/**/", "/v2/a", false},

	// Inputs that are not decoded canonical paths never match.
	{"empty path", "/**", "", false},
	{"relative path", "/**", "a/b", false},
}

func TestPatternMatch(t *testing.T) {
	for _, tt := range patternMatches {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompilePattern(tt.pattern)
			if err != nil {
				t.Fatalf("CompilePattern(%q) error = %v", tt.pattern, err)
			}
			if got := p.Match(tt.path); got != tt.want {
				t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
			}
			if got := refMatch(tt.pattern, tt.path); got != tt.want {
				t.Errorf("reference matcher disagrees with the table on %q, %q", tt.pattern, tt.path)
			}
			if got := p.String(); got != tt.pattern {
				t.Errorf("String() = %q, want %q", got, tt.pattern)
			}
		})
	}
}

func TestCompilePatternRefuses(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		wantErr string // a substring of the error
	}{
		{"empty", "", "empty"},
		{"relative", "v1/customers", "start with '/'"},
		{"star prefix", "/v1/cus_*", "mixes '*'"},
		{"star suffix", "/v1/*_x", "mixes '*'"},
		{"triple star", "/a/***", "mixes '*'"},
		{"star in middle of segment", "/a/b*c", "mixes '*'"},
		{"double slash", "/a//b", "segment 2 is empty"},
		{"leading double slash", "//a", "segment 1 is empty"},
		{"double trailing slash", "/a//", "is empty"},
		{"dot", "/a/./b", "dot segment"},
		{"dotdot", "/a/../b", "dot segment"},
		{"trailing dotdot", "/a/..", "dot segment"},
		{"tomcat dotdot", "/a/..;x/b", "dot segment"},
		{"semicolon first", "/a/;x", "starts with ';'"},
		{"control byte", "/a\x00b", "control character"},
		{"tab", "/a\tb", "control character"},
		{"DEL", "/a\x7f", "control character"},
		{"escape", "/caf%C3%A9", "percent-escape"},
		{"escaped slash", "/a%2Fb", "percent-escape"},
		{"backslash", `/a\b`, "backslash"},
		{"invalid UTF-8", "/a\xff", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompilePattern(tt.pattern)
			if err == nil {
				t.Fatalf("CompilePattern(%q) = %v, want error containing %q", tt.pattern, p, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CompilePattern(%q) error = %q, want it to contain %q", tt.pattern, err, tt.wantErr)
			}
			if _, err := CompilePatternFold(tt.pattern); err == nil {
				t.Errorf("CompilePatternFold(%q) accepted what CompilePattern refuses", tt.pattern)
			}
		})
	}
}

func TestCompilePatternAccepts(t *testing.T) {
	for _, p := range []string{
		"/", "/**", "/*", "/a/", "/**/", "/v1/**/**", "/100%", "/100%4", "/a%zz",
		"/...", "/.well-known/*", "/a;b", "/a b", "/café", "/a:b@c", "/*/**/*",
	} {
		if _, err := CompilePattern(p); err != nil {
			t.Errorf("CompilePattern(%q) error = %v", p, err)
		}
	}
}

func TestCompilePatternFold(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		path    string // as the request carries it; folded before matching
		want    bool
	}{
		{"upper path", "/v1/admin/**", "/V1/ADMIN/x", true},
		{"upper pattern", "/V1/Admin", "/v1/admin", true},
		{"mixed", "/V1/*/Refunds", "/v1/CH_1/REFUNDS", true},
		{"unicode", "/CAFÉ", "/café", true},
		{"still literal", "/v1/admin", "/v1/administrator", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompilePatternFold(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Folded() {
				t.Error("Folded() = false")
			}
			if p.String() != tt.pattern {
				t.Errorf("String() = %q, want the pattern as written %q", p.String(), tt.pattern)
			}
			if got := p.Match(FoldCase(tt.path)); got != tt.want {
				t.Errorf("Match(FoldCase(%q)) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
	p, err := CompilePattern("/V1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Folded() {
		t.Error("CompilePattern: Folded() = true")
	}
}

func TestZeroPattern(t *testing.T) {
	var zero Pattern
	for _, path := range []string{"/", "/a", ""} {
		if zero.Match(path) {
			t.Errorf("zero Pattern matches %q", path)
		}
	}
	var nilp *Pattern
	if nilp.Match("/") || nilp.String() != "" || nilp.Folded() {
		t.Error("nil Pattern is not inert")
	}
}

// TestMatchManyWildcards pins that several "**" do not backtrack
// exponentially: with a naive recursive matcher this pattern against this
// path takes about C(60, 20) steps.
func TestMatchManyWildcards(t *testing.T) {
	pat := strings.Repeat("/**/a", 20) + "/b"
	p, err := CompilePattern(pat)
	if err != nil {
		t.Fatal(err)
	}
	path := strings.Repeat("/a", 60)
	if p.Match(path) {
		t.Error("matched a path without the final segment")
	}
	if !p.Match(path + "/b") {
		t.Error("did not match")
	}
}

func TestMatchAllocs(t *testing.T) {
	p, err := CompilePattern("/v1/**/items/*/x/**")
	if err != nil {
		t.Fatal(err)
	}
	path := strings.Repeat("/seg", 28) + "/items/1/x/y"
	allocs := testing.AllocsPerRun(100, func() { p.Match(path) })
	if allocs != 0 {
		t.Errorf("Match allocates %v times per call, want 0", allocs)
	}
}

func TestValidMethod(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"GET", "GET", true},
		{"lower case is a different valid method", "get", true},
		{"extension method", "PROPFIND", true},
		{"all tchar symbols", "!#$%&'*+-.^_`|~", true},
		{"digits", "M2", true},
		{"empty", "", false},
		{"space", "GE T", false},
		{"comma", "GET,HEAD", false},
		{"slash", "GET/", false},
		{"colon", "A:B", false},
		{"non-ASCII", "GÉT", false},
		{"control", "GET\r", false},
		{"quote", `"GET"`, false},
		{"brackets", "(GET)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidMethod(tt.in); got != tt.want {
				t.Errorf("ValidMethod(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseShorthand(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantMethods []string
		wantPaths   []string
		wantErr     string // substring; empty when no error is expected
	}{
		{name: "spec example", in: "GET,HEAD /v1/customers/**",
			wantMethods: []string{"GET", "HEAD"}, wantPaths: []string{"/v1/customers/**"}},
		{name: "one method", in: "POST /v1/charges",
			wantMethods: []string{"POST"}, wantPaths: []string{"/v1/charges"}},
		{name: "all methods star", in: "* /v1/**", wantPaths: []string{"/v1/**"}},
		{name: "bare path", in: "/v1/**", wantPaths: []string{"/v1/**"}},
		{name: "bare paths", in: "/v1/a,/v1/b/*", wantPaths: []string{"/v1/a", "/v1/b/*"}},
		{name: "several paths", in: "GET /v1/customers,/v1/customers/*",
			wantMethods: []string{"GET"}, wantPaths: []string{"/v1/customers", "/v1/customers/*"}},
		{name: "methods kept as written", in: "get,Patch /x",
			wantMethods: []string{"get", "Patch"}, wantPaths: []string{"/x"}},
		{name: "extra spaces and tab", in: "  GET \t /x  ",
			wantMethods: []string{"GET"}, wantPaths: []string{"/x"}},
		{name: "space inside path is literal", in: "GET /a b",
			wantMethods: []string{"GET"}, wantPaths: []string{"/a b"}},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "blank", in: "   ", wantErr: "empty"},
		{name: "methods only", in: "GET,HEAD", wantErr: "no path"},
		{name: "empty method", in: "GET,,HEAD /x", wantErr: "method 2 is empty"},
		{name: "trailing comma in methods", in: "GET, /x", wantErr: "method 2 is empty"},
		{name: "space after comma", in: "GET, HEAD /x", wantErr: "method 2 is empty"},
		{name: "star mixed", in: "GET,* /x", wantErr: "cannot be combined"},
		{name: "bad method", in: "GE:T /x", wantErr: "not a valid HTTP method"},
		{name: "bad pattern", in: "GET /v1/cus_*", wantErr: "path 1"},
		{name: "second pattern bad", in: "GET /v1/a,v1/b", wantErr: "path 2"},
		{name: "empty path in list", in: "GET /a,,/b", wantErr: "path 2"},
		{name: "trailing comma in paths", in: "GET /a,", wantErr: "path 2"},
		{name: "escaped pattern", in: "GET /caf%C3%A9", wantErr: "percent-escape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			methods, paths, err := ParseShorthand(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseShorthand(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				if methods != nil || paths != nil {
					t.Errorf("ParseShorthand(%q) returned results with an error", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseShorthand(%q) error = %v", tt.in, err)
			}
			if !slices.Equal(methods, tt.wantMethods) || (methods == nil) != (tt.wantMethods == nil) {
				t.Errorf("methods = %#v, want %#v", methods, tt.wantMethods)
			}
			if !slices.Equal(paths, tt.wantPaths) {
				t.Errorf("paths = %#v, want %#v", paths, tt.wantPaths)
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, bb := range []struct {
		name    string
		pattern string
		path    string
	}{
		{"literal", "/v1/customers", "/v1/customers"},
		{"star", "/v1/customers/*", "/v1/customers/cus_123"},
		{"any end", "/v1/customers/**", "/v1/customers/cus_123/sources/src_1"},
		{"any middle 32 segments", "/v1/**/refunds/*", "/v1" + strings.Repeat("/seg", 29) + "/refunds/re_1"},
		{"three any miss", "/**/a/**/b/**/c", strings.Repeat("/a/b", 16)},
	} {
		p, err := CompilePattern(bb.pattern)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Match(bb.path)
			}
		})
	}
}

// refMatch is the reference matcher: a direct recursive transcription of the
// pattern semantics over split segments. It is exponential with many "**",
// so tests only use it on small inputs.
func refMatch(pattern, path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	return refMatchSegs(strings.Split(pattern[1:], "/"), strings.Split(path[1:], "/"))
}

func refMatchSegs(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	switch pat[0] {
	case "**":
		for k := 0; k <= len(segs); k++ {
			if refMatchSegs(pat[1:], segs[k:]) {
				return true
			}
		}
		return false
	case "*":
		return len(segs) > 0 && segs[0] != "" && refMatchSegs(pat[1:], segs[1:])
	default:
		return len(segs) > 0 && segs[0] == pat[0] && refMatchSegs(pat[1:], segs[1:])
	}
}
