package httpfront

import (
	"bytes"
	"net/http"
)

// parseResult is what headerParser.parse concluded about a header block.
type parseResult uint8

const (
	needMore    parseResult = iota // the block is not complete yet
	accepted                       // the block ends at h.end; framing in h
	passthrough                    // an HTTP/2 prior-knowledge preface
	refused                        // h.reason, h.status
)

// maxPOSTSkip mirrors net/http's tolerance (server.go, conn.readRequest) for
// old clients that send a CRLF after a POST body: after a POST it discards up
// to 4 leading CR or LF bytes (found with Peek(4)) before the next request
// line. The guard must skip exactly the same bytes to stay in step.
const maxPOSTSkip = 4

// headerParser parses one request header block incrementally, line by line,
// as its bytes arrive. All offsets are relative to the start of the slice
// passed to parse, which always begins where the block (including any bytes
// skipped after a POST) begins; the caller may move the bytes between calls.
//
// It is a strict subset of net/http's parser (net/textproto's
// ReadMIMEHeader and net/http's readRequest/readTransfer): each line must end
// in CRLF, so its idea of where the block ends is also net/http's, and every
// framing decision it accepts is the one net/http makes. Whatever it cannot
// be sure of, it refuses.
type headerParser struct {
	skip  int  // leading CR/LF bytes that may still be skipped
	pre   int  // leading CR/LF bytes skipped; the block starts here
	begun bool // the first byte of the request line was seen
	scan  int  // next byte to look at
	line  int  // start of the current line
	nline int  // complete lines seen (the request line is line 0)
	max   int  // Options.MaxHeaderBytes

	// Request line, as offsets.
	mS, mE, tS, tE int
	major, minor   int
	pri            bool // the request line is exactly "PRI * HTTP/2.0"

	// Framing.
	clN        int  // Content-Length values seen (fields and list members)
	clS, clE   int  // the first one
	clConflict bool // values that differ
	clBad      bool // a list, or a value that is not 1*DIGIT
	teN        int  // Transfer-Encoding fields
	teS, teE   int  // the first one's value

	// Results.
	end        int   // accepted: the block's end (exclusive)
	chunked    bool  // accepted: the body is chunked
	length     int64 // accepted, !chunked: the body length
	reason     string
	status     int
	searchFrom int // refused with 431: where the CRLFCRLF search resumes
}

func (h *headerParser) reset(max int, afterPOST bool) {
	*h = headerParser{max: max}
	if afterPOST {
		h.skip = maxPOSTSkip
	}
}

// fresh reports whether parse has not consumed any byte yet.
func (h *headerParser) fresh() bool { return h.scan == 0 }

// parse continues parsing b, which holds the block's bytes seen so far (and
// possibly bytes beyond it).
func (h *headerParser) parse(b []byte) parseResult {
	if !h.begun {
		for h.scan < len(b) && h.skip > 0 && (b[h.scan] == '\r' || b[h.scan] == '\n') {
			h.scan++
			h.skip--
		}
		if h.scan == len(b) {
			h.pre, h.line = h.scan, h.scan
			return needMore
		}
		h.begun = true
		h.pre, h.line = h.scan, h.scan
	}
	for {
		i := bytes.IndexByte(b[h.scan:], '\n')
		if i < 0 {
			h.scan = len(b)
			if len(b)-h.pre > h.max {
				// The block cannot end within the limit.
				return h.tooLarge()
			}
			return needMore
		}
		lf := h.scan + i
		h.scan = lf + 1
		// Size first, so that the verdict does not depend on how the
		// bytes were split into reads.
		if h.scan-h.pre > h.max {
			return h.tooLarge()
		}
		// RFC 9112 §2.2: a bare LF is accepted by net/http (textproto
		// uses bufio.ReadLine), but two parsers that disagree on line
		// ends disagree on where a request ends. Requiring CRLF makes
		// "the first CRLFCRLF" the end for every parser.
		if lf == h.line || b[lf-1] != '\r' {
			return h.refuse(ReasonBadHeaderSyntax)
		}
		content := b[h.line : lf-1]
		// RFC 9112 §2.2: a bare CR is invalid.
		if bytes.IndexByte(content, '\r') >= 0 {
			return h.refuse(ReasonBadHeaderSyntax)
		}
		var r parseResult
		switch {
		case h.nline == 0:
			r = h.requestLine(content, h.line)
		case len(content) == 0:
			h.end = h.scan
			return h.finish(b)
		default:
			r = h.fieldLine(b, content, h.line)
		}
		if r != needMore {
			return r
		}
		h.nline++
		h.line = h.scan
	}
}

func (h *headerParser) tooLarge() parseResult {
	h.reason, h.status = ReasonHeadersTooLarge, http.StatusRequestHeaderFieldsTooLarge
	// The block has no empty line before h.line, so a CRLFCRLF can start
	// no earlier than the CRLF that ends the previous line.
	h.searchFrom = max(h.pre, h.line-2)
	return refused
}

func (h *headerParser) refuse(reason string) parseResult {
	h.reason, h.status = reason, http.StatusBadRequest
	return refused
}

// requestLine checks the request line (RFC 9112 §3) the way net/http's
// parseRequestLine, validMethod, ParseHTTPVersion and url.ParseRequestURI's
// control-byte check do; a line that they would refuse is refused here so
// that it gets the gateway's answer. Anything else about the target (its
// form, its path) is the gateway's business.
func (h *headerParser) requestLine(line []byte, off int) parseResult {
	if string(line) == "PRI * HTTP/2.0" {
		h.pri = true
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return h.refuse(ReasonBadHeaderSyntax)
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return h.refuse(ReasonBadHeaderSyntax)
	}
	method, target, proto := line[:sp1], rest[:sp2], rest[sp2+1:]
	if !isToken(method) || len(target) == 0 || hasCTL(target) {
		return h.refuse(ReasonBadHeaderSyntax)
	}
	var ok bool
	if h.major, h.minor, ok = parseHTTPVersion(proto); !ok {
		return h.refuse(ReasonBadHeaderSyntax)
	}
	h.mS, h.mE = off, off+sp1
	h.tS, h.tE = off+sp1+1, off+sp1+1+sp2
	return needMore
}

// fieldLine checks one field line (RFC 9112 §5) and notes the framing fields.
// b is the whole block; the line is b[off:off+len(line)].
func (h *headerParser) fieldLine(b, line []byte, off int) parseResult {
	// RFC 9112 §5.2: obs-fold is deprecated and a server may reject it
	// with 400; §2.2: whitespace between the start line and the first
	// field must be rejected or the lines ignored. net/http joins such
	// lines to the previous one, which another parser may not do.
	if line[0] == ' ' || line[0] == '\t' {
		return h.refuse(ReasonBadHeaderSyntax)
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return h.refuse(ReasonBadHeaderSyntax)
	}
	// RFC 9112 §5.1: "No whitespace is allowed between the field name and
	// colon ... A server MUST reject, with a response status code of 400
	// (Bad Request), any received request message that contains whitespace
	// between a header field name and colon." A field name is a token
	// (RFC 9110 §5.1).
	name := line[:colon]
	if !isToken(name) {
		return h.refuse(ReasonBadHeaderSyntax)
	}
	// RFC 9110 §5.5: field values are VCHAR, obs-text, SP and HTAB.
	// net/textproto refuses anything else; so does the guard, so that the
	// refusal is the gateway's.
	value := line[colon+1:]
	for _, c := range value {
		if !validValueByte[c] {
			return h.refuse(ReasonBadHeaderSyntax)
		}
	}
	// net/textproto trims SP and HTAB at both ends of a value.
	vs, ve := trimOWS(value)
	vs, ve = off+colon+1+vs, off+colon+1+ve
	switch {
	case len(name) == len("Content-Length") && asciiEqualFold(name, "content-length"):
		h.contentLength(b, vs, ve)
	case len(name) == len("Transfer-Encoding") && asciiEqualFold(name, "transfer-encoding"):
		if h.teN == 0 {
			h.teS, h.teE = vs, ve
		}
		h.teN++
	}
	return needMore
}

// contentLength notes one Content-Length field value, b[vs:ve]. A list
// ("4, 5") is split into its members so that the refusal can say whether
// they conflict; net/http refuses any list, and so does the guard.
func (h *headerParser) contentLength(b []byte, vs, ve int) {
	for start := vs; ; {
		end := ve
		i := bytes.IndexByte(b[start:ve], ',')
		if i >= 0 {
			end = start + i
			// RFC 9110 §8.6 lets a recipient accept "42, 42";
			// net/http does not.
			h.clBad = true
		}
		ms, me := trimOWS(b[start:end])
		ms, me = start+ms, start+me
		member := b[ms:me]
		if len(member) == 0 || !allDigits(member) {
			h.clBad = true
		}
		if h.clN == 0 {
			h.clS, h.clE = ms, me
		} else if !bytes.Equal(member, b[h.clS:h.clE]) {
			// net/http compares the trimmed strings too (fixLength).
			h.clConflict = true
		}
		h.clN++
		if i < 0 {
			return
		}
		start = end + 1
	}
}

// finish decides the framing of a complete block, b[:h.end].
func (h *headerParser) finish(b []byte) parseResult {
	if h.pri && h.nline == 1 {
		// "PRI * HTTP/2.0" with no header fields: the HTTP/2 connection
		// preface (RFC 9113 §3.4). net/http either hands the connection
		// to its HTTP/2 server or serves this one request and closes
		// (Request.isH2Upgrade); it never parses HTTP/1.1 after it, so
		// there is nothing left to guard. A PRI line that does carry
		// fields is checked like any other request.
		return passthrough
	}
	// RFC 9112 §6.1: "A server MAY reject a request that contains both
	// Content-Length and Transfer-Encoding or process such a request in
	// accordance with the Transfer-Encoding alone. Regardless, the server
	// MUST close the connection after responding to such a request", and
	// such a message "ought to be handled as an error". net/http takes the
	// second option and deletes Content-Length, so no handler could tell.
	if h.teN > 0 && h.clN > 0 || h.clConflict {
		return h.refuse(ReasonConflictingFraming)
	}
	if h.teN > 0 {
		// RFC 9112 §6.1: "A server or client that receives an HTTP/1.0
		// message containing a Transfer-Encoding header field MUST treat
		// the message as if the framing is faulty". net/http ignores the
		// field instead (Issue 12785) and reads no body, so a chunked
		// body would be parsed as the next request.
		if h.major < 1 || h.major == 1 && h.minor < 1 {
			return h.refuse(ReasonBadTransferEncoding)
		}
		// RFC 9112 §6.3 item 4: chunked must be the final coding, or the
		// length cannot be determined (400). net/http, like nginx,
		// accepts exactly one field whose value is "chunked" in any case
		// (transfer.go, parseTransferEncoding) and answers 501 for the
		// rest; the guard answers all of them with 400.
		if h.teN != 1 || !asciiEqualFold(b[h.teS:h.teE], "chunked") {
			return h.refuse(ReasonBadTransferEncoding)
		}
		h.chunked = true
		return accepted
	}
	if h.clN > 0 {
		// RFC 9112 §6.3 item 5: an invalid Content-Length is an
		// unrecoverable framing error. Same test as net/http's
		// parseContentLength: strconv.ParseUint(v, 10, 63).
		n, ok := parseLength(b[h.clS:h.clE])
		if h.clBad || !ok {
			return h.refuse(ReasonBadContentLength)
		}
		h.length = n
	}
	// RFC 9112 §6.3 item 7: no framing field, no body.
	return accepted
}

// parseHTTPVersion mirrors net/http.ParseHTTPVersion: "HTTP/" DIGIT "." DIGIT.
func parseHTTPVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != len("HTTP/X.Y") || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		!isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// parseLength parses 1*DIGIT up to 2^63-1.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func allDigits(v []byte) bool {
	for _, c := range v {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// isToken reports whether v is an RFC 9110 §5.6.2 token.
func isToken(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

// hasCTL reports whether v holds a byte that url.ParseRequestURI refuses.
func hasCTL(v []byte) bool {
	for _, c := range v {
		if c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// trimOWS returns the bounds of v without leading and trailing SP and HTAB.
func trimOWS(v []byte) (s, e int) {
	s, e = 0, len(v)
	for s < e && (v[s] == ' ' || v[s] == '\t') {
		s++
	}
	for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
		e--
	}
	return s, e
}

// asciiEqualFold reports whether b equals lower, which is lower case, ignoring
// ASCII case only (as net/http's ascii.EqualFold does).
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// tokenByte is tchar (RFC 9110 §5.6.2); validValueByte is field-vchar, SP and
// HTAB (RFC 9110 §5.5), as net/textproto's validHeaderValueByte.
var tokenByte, validValueByte = func() (t, v [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	for c := 0x21; c <= 0xff; c++ {
		v[c] = c != 0x7f
	}
	v[' '], v['\t'] = true, true
	return t, v
}()
