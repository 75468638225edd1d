package audit

import (
	"bytes"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/jsonpath"
	"github.com/keyhole-gw/keyhole/internal/scrub"
	"github.com/keyhole-gw/keyhole/internal/token"
)

// Redacted replaces what the audit log never stores.
const Redacted = "[REDACTED]"

// alwaysRedacted are header names whose values are never stored (SPEC §6).
var alwaysRedacted = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "Set-Cookie": true,
	"X-Keyhole-Token": true,
}

// Redactor removes, before storage, every secret value (and derived value)
// of a proxy, every keyhole token, credential headers, the proxy's
// redact_headers and the JSON fields of redact_json (SPEC §6). Redaction
// works on the captured copy only: what is forwarded never changes.
type Redactor struct {
	secrets *scrub.Set
	vals    [][]byte
	headers map[string]bool
	json    []jsonpath.Path
	params  map[string]bool
}

// NewRedactor builds a proxy's redactor. vals are the secret values (for
// trimming a partial secret at the end of a cut capture).
func NewRedactor(secrets *scrub.Set, vals []string, headers, jsonPaths, params []string) *Redactor {
	r := &Redactor{secrets: secrets, headers: map[string]bool{}, params: map[string]bool{}}
	for _, v := range vals {
		r.vals = append(r.vals, []byte(v))
	}
	for _, h := range headers {
		r.headers[http.CanonicalHeaderKey(h)] = true
	}
	r.json = jsonpath.MustParseAll(jsonPaths)
	for _, p := range params {
		r.params[p] = true
	}
	return r
}

// String redacts secrets and tokens in one value. A nil Redactor still
// redacts keyhole tokens.
func (r *Redactor) String(s string) string {
	if r != nil && r.secrets != nil {
		s = r.secrets.ReplaceString(s)
	}
	return redactTokens(s)
}

func redactTokens(s string) string {
	if !strings.Contains(s, "kh") {
		return s
	}
	spans := token.FindAll([]byte(s))
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp[0]])
		b.WriteString(Redacted)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// Headers returns a redacted copy of h as {"Canonical-Name": [values]}.
// Credential headers keep their scheme ("Bearer [REDACTED]") so a reader
// can still tell how the caller authenticated. Values are stored as data:
// a CR, LF or escape sequence in them stays a character of the JSON string.
func (r *Redactor) Headers(h http.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		cp := make([]string, len(vs))
		for i, v := range vs {
			switch {
			case alwaysRedacted[ck] || r != nil && r.headers[ck]:
				cp[i] = redactCredential(v)
			default:
				cp[i] = r.String(v)
			}
		}
		out[ck] = cp
	}
	return out
}

func redactCredential(v string) string {
	if scheme, _, ok := strings.Cut(v, " "); ok {
		switch strings.ToLower(scheme) {
		case "bearer", "basic", "digest", "token", "aws4-hmac-sha256":
			return scheme + " " + Redacted
		}
	}
	return Redacted
}

// Query redacts the injected parameters' values and any secret or token.
func (r *Redactor) Query(raw string) string {
	if raw == "" {
		return ""
	}
	if r != nil && (len(r.params) > 0 || len(r.json) > 0) {
		parts := strings.Split(raw, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			if uk, err := url.QueryUnescape(k); err == nil && r.params[uk] || r.fieldRedacted(k) {
				parts[i] = k + "=" + Redacted
			}
		}
		raw = strings.Join(parts, "&")
	}
	return r.String(raw)
}

// Capture redacts a captured body and cuts it to max bytes. data may hold
// a little more than max (the gateway captures max plus the longest secret)
// so that a secret straddling the cut is still recognised and replaced; a
// trailing partial secret left after the cut is dropped too.
func (r *Redactor) Capture(data []byte, max int64, truncated bool, contentType string) *Body {
	out := data
	if r != nil && r.secrets != nil {
		out = r.secrets.ReplaceBytes(out)
	}
	if bytes.Contains(out, []byte("kh")) {
		out = []byte(redactTokens(string(out)))
	}
	if r != nil && len(r.json) > 0 {
		// redact_json names JSON fields, and the same names in a form body.
		// A JSON capture is masked as a prefix, so a field is masked even
		// when the body was cut and no longer parses.
		if isForm(contentType) {
			out = r.maskForm(out)
		} else if m, changed, _ := jsonpath.MaskPrefix(out, r.json, []byte(`"`+Redacted+`"`)); changed {
			out = m
		}
	}
	if int64(len(out)) > max {
		out, truncated = out[:max], true
	}
	if truncated {
		// The body goes on after out: a secret or a token may be cut at
		// its end, by the limit or by the capture buffer itself (when
		// redaction shortened what came before, no cut at max happens).
		if r != nil {
			out = r.trimPartial(out)
		}
		out = trimPartialToken(out)
	}
	return &Body{Data: out, Truncated: truncated}
}

func isForm(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "application/x-www-form-urlencoded"
}

// maskForm masks the values of form fields named by redact_json.
func (r *Redactor) maskForm(b []byte) []byte {
	parts := bytes.Split(b, []byte("&"))
	changed := false
	for i, p := range parts {
		k, _, _ := bytes.Cut(p, []byte("="))
		if r.fieldRedacted(string(k)) {
			parts[i] = append(append(append([]byte{}, k...), '='), Redacted...)
			changed = true
		}
	}
	if !changed {
		return b
	}
	return bytes.Join(parts, []byte("&"))
}

// fieldRedacted: a form field or query parameter named by redact_json (a
// one-key path such as "password", or "**.password").
func (r *Redactor) fieldRedacted(escaped string) bool {
	k, err := url.QueryUnescape(escaped)
	if err != nil {
		k = escaped
	}
	for _, p := range r.json {
		if p.Match([]string{k}) {
			return true
		}
	}
	return false
}

// trimPartialToken drops a tail of b that is the beginning of a keyhole
// token ("kh_" or "kha_" and base62 characters up to the end). A whole
// token was redacted already; 39 of its 40 characters would still give it
// away (the last is a checksum digit).
func trimPartialToken(b []byte) []byte {
	i := len(b)
	for i > 0 && isBase62(b[i-1]) {
		i--
	}
	for _, p := range []string{token.AgentPrefix, token.AdminPrefix} {
		if bytes.HasSuffix(b[:i], []byte(p)) {
			return b[:i-len(p)]
		}
	}
	return b
}

// trimPartial drops a tail of b that is a proper prefix of a secret value.
func (r *Redactor) trimPartial(b []byte) []byte {
	cut := 0
	for _, v := range r.vals {
		for n := min(len(v)-1, len(b)); n > cut; n-- {
			if bytes.HasSuffix(b, v[:n]) {
				cut = n
				break
			}
		}
	}
	return b[:len(b)-cut]
}

// MaxSecretLen is the longest secret value (captures take this much extra).
func (r *Redactor) MaxSecretLen() int {
	if r == nil || r.secrets == nil {
		return 0
	}
	return r.secrets.MaxLen()
}
func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}
