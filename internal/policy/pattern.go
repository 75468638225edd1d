package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Path patterns (SPEC §5) are written decoded, segment by segment:
//
//	/v1/customers        exactly that path (not "/v1/customers/")
//	/v1/customers/*      "*" is exactly one non-empty segment
//	/v2/**               "**" is any number of segments, zero included:
//	                     /v2, /v2/, /v2/a/b (not /v2x)
//	/v4/**/end           /v4/end, /v4/a/b/end
//
// Every other segment is a literal compared byte for byte (so case-sensitive;
// see CompilePatternFold). '*' and '**' must be whole segments: there is no
// "cus_*" prefix form, which keeps matching linear and the meaning of a rule
// obvious. A literal '*' segment in a path can only be matched by a wildcard.

type segKind uint8

const (
	segLiteral segKind = iota // matches a segment equal to lit
	segOne                    // "*": one non-empty segment
	segAny                    // "**": any number of segments
)

type patSeg struct {
	kind segKind
	lit  string
}

// Pattern is a compiled path pattern. It is immutable and safe for concurrent
// use. The zero Pattern matches nothing.
type Pattern struct {
	src     string   // as written, for String
	segs    []patSeg // consecutive "**" collapsed into one
	literal bool     // no wildcards: Match is a string comparison with text
	text    string   // the compared form (folded if fold)
	fold    bool
}

// CompilePattern compiles a case-sensitive path pattern. It refuses patterns
// that are malformed or that no canonical path (see CanonicalPath) could ever
// match, so that a rule that can never apply is caught when it is saved.
func CompilePattern(p string) (*Pattern, error) {
	if err := validatePattern(p); err != nil {
		return nil, err
	}
	return compile(p, p, false), nil
}

// CompilePatternFold compiles a pattern for a proxy with
// case_insensitive_paths. The pattern is folded with FoldCase; Match then
// expects a path folded with FoldCase as well (the gateway folds the request
// path once, not once per pattern), and Folded reports true.
func CompilePatternFold(p string) (*Pattern, error) {
	// Validate before folding: strings.ToLower replaces invalid UTF-8 with
	// U+FFFD, which would hide the error.
	if err := validatePattern(p); err != nil {
		return nil, err
	}
	f := FoldCase(p)
	if err := validatePattern(f); err != nil {
		// Lower-casing never creates '/', '*', '.', '%' or control bytes,
		// but check rather than trust the Unicode tables.
		return nil, err
	}
	return compile(p, f, true), nil
}

// String returns the pattern as written (not folded).
func (p *Pattern) String() string {
	if p == nil {
		return ""
	}
	return p.src
}

// Folded reports whether the pattern was compiled with CompilePatternFold,
// that is whether Match expects a path folded with FoldCase.
func (p *Pattern) Folded() bool { return p != nil && p.fold }

func validatePattern(p string) error {
	if p == "" {
		return errors.New("path pattern is empty")
	}
	if p[0] != '/' {
		return errors.New("path pattern must start with '/'")
	}
	if !utf8.ValidString(p) {
		return errors.New("path pattern is not valid UTF-8")
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return errors.New("path pattern contains a control character")
		case c == '\\':
			return errors.New("path pattern contains a backslash, which no accepted path contains")
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			// A lone '%' is a literal percent sign; "%XX" is an escape, and
			// since CanonicalPath refuses double encoding, no decoded path
			// ever contains one.
			return errors.New("path pattern contains a percent-escape; write patterns decoded (\"é\", not \"%C3%A9\")")
		}
	}
	n := strings.Count(p, "/")
	i := 0
	for seg := range strings.SplitSeq(p[1:], "/") {
		i++
		last := i == n
		pre, _, _ := strings.Cut(seg, ";")
		switch {
		case seg == "" && !last:
			return fmt.Errorf("path pattern segment %d is empty (\"//\")", i)
		case seg == "." || seg == "..":
			return fmt.Errorf("path pattern segment %d is a dot segment", i)
		case pre == "." || pre == "..":
			return fmt.Errorf("path pattern segment %d is a dot segment with parameters (\"..;\"), which no accepted path contains", i)
		case seg != "" && pre == "":
			return fmt.Errorf("path pattern segment %d starts with ';', which no accepted path contains", i)
		case seg != "*" && seg != "**" && strings.Contains(seg, "*"):
			return fmt.Errorf("path pattern segment %d mixes '*' with other characters; '*' and '**' must be whole segments", i)
		}
	}
	return nil
}

// compile builds the Pattern for a validated text.
func compile(src, text string, fold bool) *Pattern {
	p := &Pattern{src: src, text: text, fold: fold, literal: true}
	for seg := range strings.SplitSeq(text[1:], "/") {
		switch seg {
		case "**":
			p.literal = false
			if len(p.segs) > 0 && p.segs[len(p.segs)-1].kind == segAny {
				continue // "**/**" is "**"
			}
			p.segs = append(p.segs, patSeg{kind: segAny})
		case "*":
			p.literal = false
			p.segs = append(p.segs, patSeg{kind: segOne})
		default:
			p.segs = append(p.segs, patSeg{kind: segLiteral, lit: seg})
		}
	}
	return p
}

// Match reports whether the decoded path (as CanonicalPath returns it, and
// folded with FoldCase if p.Folded()) matches the pattern.
//
// Segments are matched with the classic two-pointer wildcard algorithm,
// "**" playing the part of '*' in a string glob and every other segment that
// of a single character: on a mismatch, only the most recent "**" needs to
// absorb one more segment, because any earlier "**" could not do better. The
// worst case is O(pattern segments × path length), several "**" included, and
// Match never allocates.
func (p *Pattern) Match(path string) bool {
	if p == nil || path == "" || path[0] != '/' {
		return false
	}
	if p.literal {
		return path == p.text
	}
	segs := p.segs
	var (
		pi      = 0  // next pattern segment
		pos     = 1  // start of the next path segment; len(path)+1 once all are consumed
		starPi  = -1 // index of the last "**" seen, -1 if none
		starPos = 0  // path position where that "**" stops absorbing
	)
	for pos <= len(path) {
		end := segmentEnd(path, pos)
		if pi < len(segs) {
			switch s := segs[pi]; s.kind {
			case segAny:
				// Let "**" absorb nothing for now; come back here on a
				// mismatch.
				starPi, starPos = pi, pos
				pi++
				continue
			case segOne:
				if end > pos {
					pi, pos = pi+1, end+1
					continue
				}
			case segLiteral:
				if path[pos:end] == s.lit {
					pi, pos = pi+1, end+1
					continue
				}
			}
		}
		if starPi < 0 {
			return false
		}
		// Mismatch: the last "**" absorbs one more segment, and matching
		// resumes just after it.
		starPos = segmentEnd(path, starPos) + 1
		pi, pos = starPi+1, starPos
	}
	// The path is consumed; what is left of the pattern must match nothing.
	for pi < len(segs) && segs[pi].kind == segAny {
		pi++
	}
	return pi == len(segs)
}

// segmentEnd returns the index of the '/' that ends the segment starting at
// pos, or len(path).
func segmentEnd(path string, pos int) int {
	if i := strings.IndexByte(path[pos:], '/'); i >= 0 {
		return pos + i
	}
	return len(path)
}

// ValidMethod reports whether m is a syntactically valid HTTP method: an
// RFC 9110 §5.6.2 token (1*tchar). Methods are case-sensitive (RFC 9110
// §9.1), so "get" is valid and distinct from "GET"; ValidMethod does not
// change or judge case.
func ValidMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !isTchar(m[i]) {
			return false
		}
	}
	return true
}

// isTchar reports whether c is an RFC 9110 §5.6.2 tchar:
// "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" /
// "`" / "|" / "~" / DIGIT / ALPHA.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ParseShorthand parses the rule shorthand of SPEC §5 used by the CLI and the
// declarative config: "METHODS PATHS", for example "GET,HEAD /v1/customers/**".
//
//   - METHODS is "*" (every method; methods is then nil, as for a rule that
//     omits "methods") or a comma-separated list of RFC 9110 tokens, kept as
//     written: methods are case-sensitive (RFC 9110 §9.1), so "get" is not
//     "GET" and is not upper-cased behind the author's back.
//   - PATHS is a comma-separated list of patterns, each checked with
//     CompilePattern. Every comma separates patterns: a pattern with a
//     literal ',' must use the long form ("paths" list).
//   - A string that starts with '/' is PATHS alone: every method.
//
// METHODS and PATHS are separated by one or more spaces or tabs; whitespace
// around the whole string is ignored. Inside PATHS, spaces are literal
// (decoded paths may contain them). Duplicates are kept as written.
func ParseShorthand(s string) (methods []string, paths []string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil, errors.New("rule shorthand is empty; want \"METHODS PATHS\", e.g. \"GET,HEAD /v1/customers/**\"")
	}
	ps := s
	if s[0] != '/' {
		sp := strings.IndexAny(s, " \t")
		if sp < 0 {
			return nil, nil, errors.New("rule shorthand has no path; want \"METHODS PATHS\", e.g. \"GET,HEAD /v1/customers/**\"")
		}
		ms := s[:sp]
		ps = strings.TrimLeft(s[sp:], " \t")
		if ms != "*" {
			i := 0
			for m := range strings.SplitSeq(ms, ",") {
				i++
				switch {
				case m == "":
					return nil, nil, fmt.Errorf("rule shorthand: method %d is empty", i)
				case m == "*":
					return nil, nil, errors.New("rule shorthand: '*' (all methods) cannot be combined with other methods")
				case !ValidMethod(m):
					return nil, nil, fmt.Errorf("rule shorthand: method %d is not a valid HTTP method token (RFC 9110 §9.1)", i)
				}
				methods = append(methods, m)
			}
		}
	}
	i := 0
	for p := range strings.SplitSeq(ps, ",") {
		i++
		if _, err := CompilePattern(p); err != nil {
			return nil, nil, fmt.Errorf("rule shorthand: path %d: %w", i, err)
		}
		paths = append(paths, p)
	}
	return methods, paths, nil
}
