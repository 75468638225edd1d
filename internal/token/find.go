package token

import "bytes"

// minFindLen is the shortest base62 run after a prefix that FindAll treats
// as a token. SPEC §3.2 promises "40 or more", so longer runs are matched
// whole rather than cut at 40.
const minFindLen = BodyLen

var kh = []byte("kh")

// FindAll returns the [start, end) byte spans of everything in b that looks
// like a keyhole token: "kh_" or "kha_" followed by at least 40 base62
// characters. Each span covers the whole run of base62 characters after the
// prefix (the right-hand word boundary), so a token followed by more letters
// is redacted entirely rather than leaving a tail. Spans are in order and do
// not overlap; nil means none.
//
// The checksum is not verified: a mistyped or truncated-then-extended token
// is still a credential-shaped string the audit log should not keep.
//
// The left side is deliberately not word-bounded. Tokens reach captured
// bytes in encoded forms where a letter or digit sits right before "kh_":
// "%3Dkh_…" and "%20kh_…" in URL-encoded bodies, "\nkh_…" inside a JSON
// string, "token_kh_…" in a made-up field. Requiring a boundary there would
// leak exactly those, while the cost of matching a "kh_" in the middle of an
// identifier is only an over-eager redaction of a 40+ character run.
//
// FindAll does not allocate when b holds no token, and returns at once when
// b does not contain "kh" at all (bytes.Index is vectorised), which is the
// common case for captured bodies.
func FindAll(b []byte) [][2]int {
	var spans [][2]int
	i := 0
	for {
		j := bytes.Index(b[i:], kh)
		if j < 0 {
			return spans
		}
		start := i + j
		p := start + len(kh) // just after "kh"
		switch {
		case p < len(b) && b[p] == '_':
			p++
		case p+1 < len(b) && b[p] == 'a' && b[p+1] == '_':
			p += 2
		default:
			// Not a prefix. The next "kh" starts at start+2 at the
			// earliest, since b[start+1] is 'h'.
			i = start + 2
			continue
		}
		end := p
		for end < len(b) && isBase62Table[b[end]] {
			end++
		}
		if end-p >= minFindLen {
			spans = append(spans, [2]int{start, end})
			i = end
			continue
		}
		// Too short. A later prefix can begin inside this run only as
		// its last two characters followed by the '_' that ended it, so
		// resuming at start+2 rescans each run at most twice: linear.
		i = start + 2
	}
}
