// Package policy holds the path side of a proxy's policy: the canonical path
// check that runs before any rule (SPEC §3.4), the path patterns that rules
// match (SPEC §5), and the "METHODS PATHS" rule shorthand. Rule compilation
// and evaluation live in package rules, which builds on this one.
//
// Rules match the decoded path, while the gateway forwards the path's
// original escaped bytes upstream. The check refuses every path whose escaped
// and decoded forms could mean different things to an upstream (dot segments,
// encoded slashes, double encoding, path parameters…), so that "the path sent
// upstream is exactly the path that the rules saw".
package policy

import (
	"strings"
	"unicode/utf8"
)

// PathOptions tunes CanonicalPath for one proxy. The zero value is the strict
// default.
type PathOptions struct {
	// AllowSemicolons accepts ';' (raw or %3B) inside segments, for upstreams
	// that use matrix parameters (RFC 3986 §3.3 leaves ';' to the scheme).
	// Segments whose part before the first ';' is empty, "." or ".." are
	// still refused: Tomcat and other servlet containers strip such path
	// parameters before routing, turning "/a/..;/b" into "/a/../b" and
	// "/a/;x/b" into "/a//b" (Orange Tsai, "Breaking Parser Logic", Black
	// Hat USA 2018).
	//
	// Note that an upstream that strips path parameters routes "/admin;x"
	// as "/admin" while the rules see "admin;x": a deny rule on the literal
	// path "/admin" does not catch it. Proxies in front of such upstreams
	// should leave this off.
	AllowSemicolons bool
}

// Reason codes carried by PathError.Reason. They are stable machine words
// that the audit log and the dashboard show next to the bad_path decision.
const (
	ReasonNotAbsolute    = "not_absolute"    // does not start with '/'
	ReasonDotSegment     = "dot_segment"     // ".", "..", %2e forms, "..;"
	ReasonEncodedSlash   = "encoded_slash"   // %2F or %5C
	ReasonBackslash      = "backslash"       // raw '\'
	ReasonEmptySegment   = "empty_segment"   // "//", or ";" opening a segment
	ReasonSemicolon      = "semicolon"       // ';' or %3B without AllowSemicolons
	ReasonControlByte    = "control_byte"    // 0x00–0x1F or 0x7F, raw or encoded
	ReasonBadEscape      = "bad_escape"      // '%' not followed by two hex digits
	ReasonInvalidUTF8    = "invalid_utf8"    // decoded bytes are not UTF-8
	ReasonDoubleEncoding = "double_encoding" // %25 that decodes to another escape
	ReasonFragment       = "fragment"        // raw '#'
	ReasonUnescapedChar  = "unescaped_char"  // raw ' ' or '?'
)

// pathMessages are the client-visible sentences for each reason. They never
// quote the path: it may be long, or crafted to inject into logs and pages.
var pathMessages = map[string]string{
	ReasonNotAbsolute:    "path does not start with a slash",
	ReasonDotSegment:     "path contains a dot segment",
	ReasonEncodedSlash:   "path contains an encoded slash or backslash",
	ReasonBackslash:      "path contains a backslash",
	ReasonEmptySegment:   "path contains an empty segment",
	ReasonSemicolon:      "path contains a semicolon",
	ReasonControlByte:    "path contains a control character",
	ReasonBadEscape:      "path contains an invalid percent-escape",
	ReasonInvalidUTF8:    "path is not valid UTF-8 once decoded",
	ReasonDoubleEncoding: "path contains a percent-escape that decodes to another escape",
	ReasonFragment:       "path contains a fragment ('#')",
	ReasonUnescapedChar:  "path contains a character that must be percent-encoded",
}

// PathError reports why a path is not in canonical form. Its Error text is
// safe to send to the client; the gateway maps it to 400 bad_path.
type PathError struct {
	Reason string // one of the Reason* constants
}

func (e *PathError) Error() string {
	if msg, ok := pathMessages[e.Reason]; ok {
		return msg
	}
	return "path is not in canonical form"
}

func pathErr(reason string) error { return &PathError{Reason: reason} }

// CanonicalPath checks that escaped, a request path as it came on the request
// line (after the gateway stripped the "/{proxy}" prefix, still
// percent-encoded), is in canonical form, and returns its decoded form, the
// string that rules match against. An empty escaped path is the proxy root
// and decodes to "/".
//
// A path is canonical when decoding it cannot change its structure, so that
// any upstream, whether it routes on the raw or on the decoded path, sees the
// same segments as the rules. CanonicalPath refuses, with a *PathError:
//
//   - dot segments "." and "..", raw or percent-encoded in any case
//     (RFC 3986 §5.2.4 removes them; many upstreams also decode first), and
//     a segment whose part before the first ';' is "." or ".." (Tomcat);
//   - %2F and %5C: an upstream that decodes before routing would see an
//     extra segment (RFC 3986 §2.2: encoded reserved characters are data);
//   - a raw '\', which Windows and some frameworks treat as '/';
//   - an empty segment ("//"), which many upstreams merge; a single trailing
//     slash is allowed ("/v2/" is a different resource from "/v2");
//   - ';' raw or encoded unless opts.AllowSemicolons;
//   - control bytes (0x00–0x1F, 0x7F) raw or encoded: NUL truncates C
//     strings, CR/LF split headers and log lines;
//   - malformed percent-escapes (RFC 3986 §2.1 requires two hex digits);
//   - decoded bytes that are not UTF-8, including overlong forms such as
//     %C0%AE (an old encoding of '.') and surrogates (RFC 3629 §3);
//   - double encoding: a decoded '%' followed by two hex digits (%252e),
//     which an upstream that decodes twice reads as a different path;
//   - a raw '#', ' ' or '?', which cannot appear in the path of an
//     origin-form request-target (RFC 9112 §3.2); a client that sends them
//     and an upstream that reads them cannot agree on where the path ends.
//
// Everything else is accepted, decoded and returned. CanonicalPath runs in
// time linear in len(escaped); an accepted path costs an allocation only
// when it contains percent-escapes.
func CanonicalPath(escaped string, opts PathOptions) (decoded string, err error) {
	if escaped == "" {
		return "/", nil
	}
	if escaped[0] != '/' {
		return "", pathErr(ReasonNotAbsolute)
	}

	var (
		escapes int  // number of %XX escapes; zero means decoded == escaped
		segLen  int  // decoded bytes in the current segment
		preLen  int  // decoded bytes before the segment's first ';'
		allDots bool // the bytes before the first ';' are all '.'
		semi    bool // the current segment has seen a ';'
		pct     int  // double-encoding state: 1 after a decoded '%', 2 after '%' and a hex digit
	)
	allDots = true
	for i := 1; i < len(escaped); {
		c := escaped[i]
		if pct == 0 && plainByte[c] {
			// The common case: a byte that stands for itself and needs no
			// check beyond the final UTF-8 one.
			i++
			segLen++
			if !semi {
				preLen++
				allDots = false
			}
			continue
		}
		raw := true
		if c == '%' {
			if i+2 >= len(escaped) || !isHex(escaped[i+1]) || !isHex(escaped[i+2]) {
				return "", pathErr(ReasonBadEscape)
			}
			c = unhex(escaped[i+1])<<4 | unhex(escaped[i+2])
			raw = false
			escapes++
			i += 3
		} else {
			i++
		}

		// From here on c is the decoded byte, raw says whether it was
		// written as itself.
		switch {
		case c == '/':
			if !raw {
				return "", pathErr(ReasonEncodedSlash)
			}
			if segLen == 0 {
				return "", pathErr(ReasonEmptySegment)
			}
			if isDotSegment(allDots, preLen) {
				return "", pathErr(ReasonDotSegment)
			}
			segLen, preLen, allDots, semi, pct = 0, 0, true, false, 0
			continue
		case c == '\\':
			if raw {
				return "", pathErr(ReasonBackslash)
			}
			return "", pathErr(ReasonEncodedSlash)
		case c < 0x20 || c == 0x7f:
			return "", pathErr(ReasonControlByte)
		case raw && c == '#':
			return "", pathErr(ReasonFragment)
		case raw && (c == ' ' || c == '?'):
			return "", pathErr(ReasonUnescapedChar)
		case c == ';' && !semi:
			// Check the Tomcat-style forms first, so that "..;" is
			// reported as the traversal it is, whatever the options.
			if isDotSegment(allDots, preLen) {
				return "", pathErr(ReasonDotSegment)
			}
			if !opts.AllowSemicolons {
				return "", pathErr(ReasonSemicolon)
			}
			if preLen == 0 {
				// "/a/;x/b" is "/a//b" to a server that strips path
				// parameters.
				return "", pathErr(ReasonEmptySegment)
			}
			semi = true
		}

		// Double encoding: after decoding, '%' followed by two hex digits.
		// A decoded '%' only comes from %25, since a raw '%' always starts
		// an escape.
		switch {
		case pct == 2 && isHex(c):
			return "", pathErr(ReasonDoubleEncoding)
		case pct == 1 && isHex(c):
			pct = 2
		case c == '%':
			pct = 1
		default:
			pct = 0
		}

		segLen++
		if !semi {
			preLen++
			if c != '.' {
				allDots = false
			}
		}
	}
	// The last segment. An empty one is a trailing slash (or the root "/"),
	// which is allowed.
	if isDotSegment(allDots, preLen) {
		return "", pathErr(ReasonDotSegment)
	}

	if escapes == 0 {
		decoded = escaped
	} else {
		var b strings.Builder
		b.Grow(len(escaped) - 2*escapes)
		for i := 0; i < len(escaped); i++ {
			c := escaped[i]
			if c == '%' {
				// Escapes were validated above.
				c = unhex(escaped[i+1])<<4 | unhex(escaped[i+2])
				i += 2
			}
			b.WriteByte(c)
		}
		decoded = b.String()
	}
	// utf8.ValidString refuses overlong encodings and surrogates, as
	// RFC 3629 §3 requires.
	if !utf8.ValidString(decoded) {
		return "", pathErr(ReasonInvalidUTF8)
	}
	return decoded, nil
}

// FoldCase maps a decoded path or a pattern to the form compared when a proxy
// sets case_insensitive_paths. The gateway folds the request path and
// CompilePatternFold folds the pattern with this same function, so that the
// two always agree.
func FoldCase(p string) string {
	return strings.ToLower(p)
}

// plainByte marks the raw bytes that CanonicalPath passes through without a
// second look: everything but control bytes, '%', '/', '\\', '#', '?', ';',
// ' ' and '.'. Bytes >= 0x80 are plain here; utf8.ValidString checks them at
// the end.
var plainByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 0x20 && c != 0x7f && !strings.ContainsRune("%/\\#?; .", rune(c))
	}
	return t
}()

// isDotSegment reports whether a segment whose part before its first ';' is
// preLen bytes long, all of them '.' if allDots, is "." or "..". A raw and an
// encoded dot count alike: %2E is '.' to every upstream that decodes. Once a
// segment has seen its ';', preLen and allDots stop changing, so the answer
// given at the ';' holds for the rest of the segment.
func isDotSegment(allDots bool, preLen int) bool {
	return allDots && (preLen == 1 || preLen == 2)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default: // 'A'–'F'
		return c - 'A' + 10
	}
}
