package policy

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCanonicalPath checks the invariants that make an accepted path safe to
// forward: whatever CanonicalPath accepts decodes the same way net/url does,
// has no structure that an upstream could normalise away, and survives
// re-encoding unchanged.
func FuzzCanonicalPath(f *testing.F) {
	for _, tt := range hostilePaths {
		f.Add(tt.in, false)
		f.Add(tt.in, true)
	}
	for _, s := range []string{
		"", "/", "/v2/", "/a%20b", "/caf%C3%A9", "/v1/cus_123", "/a:b@c", "/100%25",
		"/a;x=1/b", "/a%3Bx", "/%25%25", "/...", "/a%e2%80%a8b",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, escaped string, allowSemi bool) {
		opts := PathOptions{AllowSemicolons: allowSemi}
		decoded, err := CanonicalPath(escaped, opts)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *PathError", err)
			}
			if _, ok := pathMessages[pe.Reason]; !ok {
				t.Fatalf("unknown reason %q", pe.Reason)
			}
			if decoded != "" {
				t.Fatalf("non-empty result %q with an error", decoded)
			}
			return
		}

		if !utf8.ValidString(decoded) {
			t.Fatalf("decoded %q is not UTF-8", decoded)
		}
		if decoded == "" || decoded[0] != '/' {
			t.Fatalf("decoded %q does not start with '/'", decoded)
		}
		for i := 0; i < len(decoded); i++ {
			if c := decoded[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("decoded %q has control byte %#x", decoded, c)
			}
		}
		if strings.ContainsRune(decoded, '\\') {
			t.Fatalf("decoded %q has a backslash", decoded)
		}
		if !allowSemi && strings.ContainsRune(decoded, ';') {
			t.Fatalf("decoded %q has a semicolon", decoded)
		}

		// The decoded form is what net/url makes of the escaped form.
		if escaped != "" {
			want, err := url.PathUnescape(escaped)
			if err != nil {
				t.Fatalf("accepted %q, which net/url cannot unescape: %v", escaped, err)
			}
			if decoded != want {
				t.Fatalf("decoded %q, net/url says %q", decoded, want)
			}
			// The structure of the raw path is the structure of the
			// decoded path: no escape hid a separator.
			if strings.Count(escaped, "/") != strings.Count(decoded, "/") {
				t.Fatalf("escaped %q and decoded %q have different segment counts", escaped, decoded)
			}
		}

		segs := strings.Split(decoded[1:], "/")
		for i, seg := range segs {
			last := i == len(segs)-1
			if seg == "" && !last {
				t.Fatalf("decoded %q has an empty segment", decoded)
			}
			pre, _, _ := strings.Cut(seg, ";")
			if pre == "." || pre == ".." {
				t.Fatalf("decoded %q has a dot segment", decoded)
			}
			if allowSemi && seg != "" && pre == "" {
				t.Fatalf("decoded %q has a segment that starts with ';'", decoded)
			}
		}
		// No escape survives decoding.
		for i := 0; i+2 < len(decoded); i++ {
			if decoded[i] == '%' && isHex(decoded[i+1]) && isHex(decoded[i+2]) {
				t.Fatalf("decoded %q still contains an escape", decoded)
			}
		}

		// An upstream that cleans the decoded path (RFC 3986 §5.2.4,
		// path.Clean) sees the same path, bar the trailing slash.
		if clean, want := path.Clean(decoded), strings.TrimSuffix(decoded, "/"); clean != want && !(decoded == "/" && clean == "/") {
			t.Fatalf("path.Clean(%q) = %q, want %q", decoded, clean, want)
		}

		// Re-escaping each segment and decoding again round-trips, and the
		// re-escaped form is canonical with the same meaning.
		esc := make([]string, len(segs))
		for i, seg := range segs {
			esc[i] = url.PathEscape(seg)
			back, err := url.PathUnescape(esc[i])
			if err != nil || back != seg {
				t.Fatalf("segment %q: PathEscape then PathUnescape = %q, %v", seg, back, err)
			}
		}
		reescaped := "/" + strings.Join(esc, "/")
		again, err := CanonicalPath(reescaped, opts)
		if err != nil {
			t.Fatalf("re-escaped %q of accepted %q refused: %v", reescaped, escaped, err)
		}
		if again != decoded {
			t.Fatalf("re-escaped %q decodes to %q, want %q", reescaped, again, decoded)
		}

		// A literal pattern made of the decoded path matches it, folded too.
		if !strings.ContainsRune(decoded, '*') {
			p, err := CompilePattern(decoded)
			if err != nil {
				t.Fatalf("decoded %q is not a valid literal pattern: %v", decoded, err)
			}
			if !p.Match(decoded) {
				t.Fatalf("literal pattern %q does not match itself", decoded)
			}
			pf, err := CompilePatternFold(decoded)
			if err != nil {
				t.Fatalf("decoded %q is not a valid folded pattern: %v", decoded, err)
			}
			if !pf.Match(FoldCase(decoded)) {
				t.Fatalf("folded literal pattern %q does not match the folded path", decoded)
			}
		}
	})
}

// FuzzPattern compiles random patterns and matches random paths: Match never
// panics, agrees with the recursive reference matcher on small inputs, and
// the folded variants agree with folding by hand.
func FuzzPattern(f *testing.F) {
	for _, tt := range patternMatches {
		f.Add(tt.pattern, tt.path)
	}
	f.Add("/**/a/**/b/**/c", "/x/a/y/b/z/c")
	f.Add("/V1/**", "/v1/X")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		p, err := CompilePattern(pattern)
		if err != nil {
			if _, ferr := CompilePatternFold(pattern); ferr == nil {
				t.Fatalf("CompilePatternFold accepts %q, CompilePattern refuses: %v", pattern, err)
			}
			return
		}
		if p.String() != pattern {
			t.Fatalf("String() = %q, want %q", p.String(), pattern)
		}
		got := p.Match(path)

		// Keep the exponential reference to small inputs.
		if strings.Count(pattern, "**") <= 4 && strings.Count(path, "/") <= 16 {
			if want := refMatch(pattern, path); got != want {
				t.Fatalf("%q.Match(%q) = %v, reference says %v", pattern, path, got, want)
			}
		}
		if !strings.Contains(pattern, "*") && got != (pattern == path) {
			t.Fatalf("literal %q.Match(%q) = %v", pattern, path, got)
		}

		pf, err := CompilePatternFold(pattern)
		if err != nil {
			t.Fatalf("CompilePatternFold(%q) refuses what CompilePattern accepts: %v", pattern, err)
		}
		pl, err := CompilePattern(FoldCase(pattern))
		if err != nil {
			t.Fatalf("CompilePattern(FoldCase(%q)) error: %v", pattern, err)
		}
		fp := FoldCase(path)
		if pf.Match(fp) != pl.Match(fp) {
			t.Fatalf("folded %q and %q disagree on %q", pattern, FoldCase(pattern), fp)
		}
	})
}
