package policy

import (
	"errors"
	"strings"
	"testing"
)

// hostilePaths are request paths that CanonicalPath must refuse with the
// default options, one row per attack. They also seed FuzzCanonicalPath.
var hostilePaths = []struct {
	name string
	in   string
	want string // reason
}{
	// Dot segments (RFC 3986 §5.2.4), raw and encoded in every case.
	{"dotdot traversal", "/v1/items/../admin", ReasonDotSegment},
	{"single dot", "/v1/items/./1", ReasonDotSegment},
	{"encoded dotdot lower", "/v1/items/%2e%2e/admin", ReasonDotSegment},
	{"encoded dotdot mixed case", "/v1/items/%2E%2e/admin", ReasonDotSegment},
	{"encoded dotdot upper", "/v1/items/%2E%2E/admin", ReasonDotSegment},
	{"half encoded dotdot, encoded second", "/v1/items/.%2e/admin", ReasonDotSegment},
	{"half encoded dotdot, encoded first", "/v1/items/%2e./admin", ReasonDotSegment},
	{"encoded single dot", "/v1/items/%2e/1", ReasonDotSegment},
	{"root dotdot", "/..", ReasonDotSegment},
	{"root dot", "/.", ReasonDotSegment},
	{"trailing dotdot", "/v1/items/..", ReasonDotSegment},
	{"trailing dot", "/v1/items/.", ReasonDotSegment},
	{"trailing encoded dotdot", "/v1/%2E%2E", ReasonDotSegment},
	{"dotdot before trailing slash", "/v1/../", ReasonDotSegment},
	{"tomcat dotdot semicolon", "/v1/items/..;/admin", ReasonDotSegment},
	{"tomcat dotdot with params", "/v1/items/..;x=1/admin", ReasonDotSegment},
	{"tomcat dot semicolon", "/v1/./;/admin", ReasonDotSegment},
	{"tomcat dot semicolon only", "/v1/.;x/admin", ReasonDotSegment},
	{"tomcat encoded dots and semicolon", "/v1/%2e%2e%3b/admin", ReasonDotSegment},
	{"tomcat trailing dotdot semicolon", "/v1/..;", ReasonDotSegment},

	// Encoded separators (RFC 3986 §2.2) and backslashes.
	{"encoded slash lower", "/v1/items%2fadmin", ReasonEncodedSlash},
	{"encoded slash upper", "/v1/items%2Fadmin", ReasonEncodedSlash},
	{"encoded backslash lower", "/v1/items%5cadmin", ReasonEncodedSlash},
	{"encoded backslash upper", "/v1/items%5Cadmin", ReasonEncodedSlash},
	{"encoded slash traversal", "/v1/items/..%2fadmin", ReasonEncodedSlash},
	{"raw backslash", `/v1/items\admin`, ReasonBackslash},
	{"raw backslash traversal", `/v1/items\..\admin`, ReasonBackslash},

	// Empty segments.
	{"leading double slash", "//v1/items/1", ReasonEmptySegment},
	{"middle double slash", "/v1//items/1", ReasonEmptySegment},
	{"double trailing slash", "/v1/items//", ReasonEmptySegment},
	{"root double slash", "//", ReasonEmptySegment},

	// Semicolons (path parameters) without AllowSemicolons.
	{"semicolon param", "/v1/items/1;x=1", ReasonSemicolon},
	{"encoded semicolon upper", "/v1/items/1%3Bx=1", ReasonSemicolon},
	{"encoded semicolon lower", "/v1/items/1%3bx=1", ReasonSemicolon},
	{"jsessionid", "/v1/items;jsessionid=abc", ReasonSemicolon},
	{"semicolon opening segment", "/v1/;x/admin", ReasonSemicolon},

	// Control bytes, raw and encoded.
	{"encoded NUL", "/v1/items/%00", ReasonControlByte},
	{"encoded SOH", "/v1/items/%01x", ReasonControlByte},
	{"encoded DEL", "/v1/items/%7F", ReasonControlByte},
	{"encoded CRLF", "/v1/items/%0d%0aX-Injected:1", ReasonControlByte},
	{"encoded tab", "/v1/items/%09", ReasonControlByte},
	{"raw NUL", "/v1/items/\x00", ReasonControlByte},
	{"raw tab", "/v1/items/a\tb", ReasonControlByte},
	{"raw CR", "/v1/items/a\rb", ReasonControlByte},
	{"raw LF", "/v1/items/a\nb", ReasonControlByte},
	{"raw DEL", "/v1/items/\x7f", ReasonControlByte},
	{"raw escape", "/v1/\x1b[31m", ReasonControlByte},

	// Malformed escapes (RFC 3986 §2.1).
	{"non-hex escape", "/v1/items/%zz", ReasonBadEscape},
	{"half hex escape", "/v1/items/%4g", ReasonBadEscape},
	{"short escape", "/v1/items/%4", ReasonBadEscape},
	{"trailing percent", "/v1/items/%", ReasonBadEscape},
	{"IIS unicode escape", "/v1/%u002e%u002e/admin", ReasonBadEscape},
	{"percent before slash", "/v1/%/admin", ReasonBadEscape},

	// Invalid UTF-8 once decoded (RFC 3629 §3).
	{"overlong dots", "/v1/items/%c0%ae%c0%ae/admin", ReasonInvalidUTF8},
	{"overlong slash", "/v1/items%c0%afadmin", ReasonInvalidUTF8},
	{"overlong three bytes", "/v1/%e0%80%ae", ReasonInvalidUTF8},
	{"encoded 0xff", "/v1/items/%ff", ReasonInvalidUTF8},
	{"surrogate", "/v1/items/%ed%a0%80", ReasonInvalidUTF8},
	{"truncated sequence", "/v1/caf%C3", ReasonInvalidUTF8},
	{"lone continuation", "/v1/%80", ReasonInvalidUTF8},
	{"beyond U+10FFFF", "/v1/%f4%90%80%80", ReasonInvalidUTF8},
	{"raw 0xff", "/v1/items/\xff", ReasonInvalidUTF8},
	{"raw overlong", "/v1/\xc0\xae", ReasonInvalidUTF8},

	// Double encoding.
	{"double encoded dots", "/v1/items/%252e%252e/admin", ReasonDoubleEncoding},
	{"double encoded letter", "/v1/items/%2541", ReasonDoubleEncoding},
	{"double encoded slash", "/v1/items%252fadmin", ReasonDoubleEncoding},
	{"double encoded via encoded hex", "/v1/%25%34%31", ReasonDoubleEncoding},
	{"double encoded mixed", "/v1/%25%341", ReasonDoubleEncoding},
	{"double encoded after literal percent", "/v1/%25%2541", ReasonDoubleEncoding},

	// Characters that cannot appear raw in a request-target path.
	{"raw fragment", "/v1/items#admin", ReasonFragment},
	{"raw space", "/v1/items/a b", ReasonUnescapedChar},
	{"raw question mark", "/v1/items?x=1", ReasonUnescapedChar},

	// Not a path.
	{"relative", "v1/items", ReasonNotAbsolute},
	{"asterisk form", "*", ReasonNotAbsolute},
	{"absolute form", "http://evil/v1", ReasonNotAbsolute},
}

func TestCanonicalPathRefuses(t *testing.T) {
	for _, tt := range hostilePaths {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalPath(tt.in, PathOptions{})
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("CanonicalPath(%q) = %q, %v; want *PathError %s", tt.in, got, err, tt.want)
			}
			if pe.Reason != tt.want {
				t.Errorf("CanonicalPath(%q) reason = %s, want %s", tt.in, pe.Reason, tt.want)
			}
			if got != "" {
				t.Errorf("CanonicalPath(%q) returned %q with an error, want \"\"", tt.in, got)
			}
		})
	}
}

func TestCanonicalPathAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"proxy root", "", "/"},
		{"slash", "/", "/"},
		{"plain", "/v1/customers", "/v1/customers"},
		{"trailing slash", "/v2/", "/v2/"},
		{"encoded space", "/a%20b", "/a b"},
		{"encoded UTF-8 upper", "/caf%C3%A9", "/café"},
		{"encoded UTF-8 lower", "/caf%c3%a9", "/café"},
		{"raw UTF-8", "/café", "/café"},
		{"raw and encoded UTF-8 mixed", "/caf\xc3%A9", "/café"},
		{"line separator is valid UTF-8", "/a%e2%80%a8b", "/a\u2028b"},
		{"four byte UTF-8", "/%F0%9F%94%91", "/🔑"},
		{"underscore id", "/v1/cus_123", "/v1/cus_123"},
		{"sub-delims", "/a:b@c", "/a:b@c"},
		{"plus stays plus", "/a+b", "/a+b"},
		{"equals comma tilde", "/k=v,w~x", "/k=v,w~x"},
		{"encoded plus", "/a%2Bb", "/a+b"},
		{"lone encoded percent", "/100%25", "/100%"},
		{"encoded percent then one hex", "/100%25a", "/100%a"},
		{"encoded percent then non-hex", "/100%25zz", "/100%zz"},
		{"encoded percent then slash", "/100%25/ab", "/100%/ab"},
		{"two encoded percents", "/%25%25", "/%%"},
		{"encoded hash", "/a%23b", "/a#b"},
		{"encoded question mark", "/a%3Fb", "/a?b"},
		{"three dots", "/v1/...", "/v1/..."},
		{"dot prefix", "/v1/.well-known/x", "/v1/.well-known/x"},
		{"dot suffix", "/v1/file.", "/v1/file."},
		{"dots inside", "/v1/a..b", "/v1/a..b"},
		{"encoded three dots", "/%2e%2e%2e", "/..."},
		{"asterisk segment", "/v1/*", "/v1/*"},
		{"encoded unreserved", "/%41%62%7E", "/Ab~"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalPath(tt.in, PathOptions{})
			if err != nil {
				t.Fatalf("CanonicalPath(%q) error = %v, want %q", tt.in, err, tt.want)
			}
			if got != tt.want {
				t.Errorf("CanonicalPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanonicalPathAllowSemicolons(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		want       string
		wantReason string // empty when the path is accepted
	}{
		{name: "matrix param", in: "/v1/items;color=red", want: "/v1/items;color=red"},
		{name: "encoded semicolon", in: "/v1/items%3Bcolor=red", want: "/v1/items;color=red"},
		{name: "several params", in: "/a;x=1;y=2/b;z", want: "/a;x=1;y=2/b;z"},
		{name: "dotdot after semicolon is data", in: "/a;..", want: "/a;.."},
		{name: "trailing semicolon", in: "/a;", want: "/a;"},
		{name: "three dots then param", in: "/...;x", want: "/...;x"},
		{name: "tomcat dotdot", in: "/v1/items/..;/admin", wantReason: ReasonDotSegment},
		{name: "tomcat dotdot params", in: "/v1/items/..;x=1/admin", wantReason: ReasonDotSegment},
		{name: "tomcat dot", in: "/v1/.;/admin", wantReason: ReasonDotSegment},
		{name: "tomcat encoded", in: "/v1/%2E%2E%3B/admin", wantReason: ReasonDotSegment},
		{name: "tomcat trailing", in: "/v1/..;jsessionid=1", wantReason: ReasonDotSegment},
		{name: "param-only segment", in: "/v1/;x/admin", wantReason: ReasonEmptySegment},
		{name: "param-only first segment", in: "/;x", wantReason: ReasonEmptySegment},
		{name: "plain dotdot still refused", in: "/v1/../admin", wantReason: ReasonDotSegment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalPath(tt.in, PathOptions{AllowSemicolons: true})
			if tt.wantReason == "" {
				if err != nil || got != tt.want {
					t.Errorf("CanonicalPath(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
				}
				return
			}
			var pe *PathError
			if !errors.As(err, &pe) || pe.Reason != tt.wantReason {
				t.Errorf("CanonicalPath(%q) = %q, %v; want reason %s", tt.in, got, err, tt.wantReason)
			}
		})
	}
}

// TestPathErrorMessage pins that client-visible messages describe the
// problem without echoing the path, which may be long or hostile (log and
// HTML injection).
func TestPathErrorMessage(t *testing.T) {
	for _, tt := range hostilePaths {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CanonicalPath(tt.in, PathOptions{})
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if msg == "" || !strings.HasPrefix(msg, "path ") {
				t.Errorf("message %q does not describe the path problem", msg)
			}
			if msg != pathMessages[tt.want] {
				t.Errorf("message = %q, want %q", msg, pathMessages[tt.want])
			}
			if len(tt.in) > 3 && strings.Contains(msg, tt.in) {
				t.Errorf("message %q echoes the input", msg)
			}
		})
	}
	if got, want := (&PathError{Reason: "unknown"}).Error(), "path is not in canonical form"; got != want {
		t.Errorf("unknown reason message = %q, want %q", got, want)
	}
	for reason, msg := range pathMessages {
		if strings.ContainsAny(msg, "\r\n") {
			t.Errorf("message for %s spans lines", reason)
		}
	}
}

// TestCanonicalPathLong checks that a long hostile path is handled in linear
// time and refused without echoing it.
func TestCanonicalPathLong(t *testing.T) {
	long := "/" + strings.Repeat("%25", 100000) + "41"
	if _, err := CanonicalPath(long, PathOptions{}); err == nil {
		t.Fatal("accepted a double-encoded path")
	}
	ok := strings.Repeat("/a%20b", 50000)
	got, err := CanonicalPath(ok, PathOptions{})
	if err != nil || got != strings.Repeat("/a b", 50000) {
		t.Fatalf("long path: err = %v", err)
	}
}

func TestFoldCase(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"ascii", "/V1/ADMIN", "/v1/admin"},
		{"already folded", "/v1/admin", "/v1/admin"},
		{"unicode", "/CAFÉ", "/café"},
		{"wildcards untouched", "/V1/**/*", "/v1/**/*"},
		{"kelvin sign", "/\u212A", "/k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FoldCase(tt.in); got != tt.want {
				t.Errorf("FoldCase(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, bb := range []struct {
		name string
		in   string
	}{
		{"plain", "/v1/customers/cus_123/invoices"},
		{"escaped", "/v1/items/caf%C3%A9/a%20b"},
		{"hostile", "/v1/items/%2e%2e/admin"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.in)))
			for b.Loop() {
				_, _ = CanonicalPath(bb.in, PathOptions{})
			}
		})
	}
}
