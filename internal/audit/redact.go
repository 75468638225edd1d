package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"sort"
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

// HMACPrefix starts every value that redact_mode "hmac" stores in place of
// what it redacts: HMACPrefix + 32 hex digits (the first 128 bits of
// HMAC-SHA256 under the key derived for HMACKeyPurpose).
const HMACPrefix = "hmac-sha256:"

// HMACKeyPurpose is the vault.MasterKey.DeriveKey purpose of the redaction
// HMAC key. The key is derived from the master key on each node (every node
// of a cluster shares the master key, so they hash alike) and never stored:
// whoever reads the audit store without the master key cannot test guesses.
const HMACKeyPurpose = "audit-redact-hmac"

// HashValue is what redact_mode "hmac" stores in place of v: the same
// value always gives the same string under one key, so a reader who knows
// a value can find the records that carried it (POST /api/v1/audit/hash)
// while the log never holds it.
func HashValue(key []byte, v string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	sum := m.Sum(nil)
	return HMACPrefix + hex.EncodeToString(sum[:16])
}

// Redactor removes, before storage, every secret value (and derived value)
// of a proxy, every keyhole token, credential headers, the proxy's
// redact_headers and the JSON fields of redact_json (SPEC §6). Redaction
// works on the captured copy only: what is forwarded never changes.
//
// By default (capture.redact_mode "mask") what is removed becomes
// "[REDACTED]". With WithHMAC (redact_mode "hmac") it becomes HashValue of
// what was there, so records can be searched for a known value.
type Redactor struct {
	secrets *scrub.Set
	vals    [][]byte
	headers map[string]bool
	json    []jsonpath.Path
	params  map[string]bool

	// hmac mode only (key != nil).
	key    []byte
	bylen  []string          // the secret values, longest first
	hashes map[string]string // each secret value's HashValue
	marker []byte            // the placeholder MaskPrefix writes, then replaced
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

// WithHMAC returns a copy of r in redact_mode "hmac": every value r would
// mask is stored as HashValue(key, value) instead. key is the master key's
// DeriveKey(HMACKeyPurpose); a nil key returns r unchanged. Responses to
// agents are not affected: they are scrubbed by the proxy's scrub.Set.
func (r *Redactor) WithHMAC(key []byte) *Redactor {
	if r == nil || len(key) == 0 {
		return r
	}
	c := *r
	c.key = bytes.Clone(key)
	c.hashes = map[string]string{}
	c.bylen = nil
	for _, v := range r.vals {
		if len(v) > 0 && c.hashes[string(v)] == "" {
			c.hashes[string(v)] = HashValue(c.key, string(v))
			c.bylen = append(c.bylen, string(v))
		}
	}
	// Longest first: of two values found at the same place, the longer
	// one is replaced (leftmost-longest, as scrub.Set does).
	sort.SliceStable(c.bylen, func(i, j int) bool { return len(c.bylen[i]) > len(c.bylen[j]) })
	// A placeholder no agent can send (random per redactor), so JSON
	// fields can be masked by jsonpath.MaskPrefix and then hashed.
	var rnd [16]byte
	rand.Read(rnd[:])
	c.marker = []byte("\x00redact-" + hex.EncodeToString(rnd[:]) + "\x00")
	return &c
}

// Mode is the redactor's capture.redact_mode: "mask" or "hmac".
func (r *Redactor) Mode() string {
	if r != nil && r.key != nil {
		return "hmac"
	}
	return "mask"
}

// replacement is what is stored in place of v.
func (r *Redactor) replacement(v string) string {
	if r == nil || r.key == nil {
		return Redacted
	}
	return HashValue(r.key, v)
}

// String redacts secrets and tokens in one value. A nil Redactor still
// redacts keyhole tokens.
func (r *Redactor) String(s string) string {
	if r != nil && r.secrets != nil {
		s = r.replaceSecrets(s)
	}
	return r.redactTokens(s)
}

// replaceSecrets replaces each secret value in s. The Aho–Corasick set
// answers "none here" (the common case) without allocating; in hmac mode a
// value found is then replaced by its own hash.
func (r *Redactor) replaceSecrets(s string) string {
	out := r.secrets.ReplaceString(s)
	if r.key == nil || out == s {
		return out
	}
	var b strings.Builder
	pos := 0
	next := make([]int, len(r.bylen)) // next occurrence at or after pos; -1: none left
	for i := range next {
		next[i] = -2
	}
	for {
		at, which := -1, -1
		for i, v := range r.bylen {
			if next[i] != -1 && next[i] < pos {
				if k := strings.Index(s[pos:], v); k >= 0 {
					next[i] = pos + k
				} else {
					next[i] = -1
				}
			}
			if next[i] >= 0 && (at < 0 || next[i] < at) {
				at, which = next[i], i
			}
		}
		if which < 0 {
			break
		}
		b.WriteString(s[pos:at])
		b.WriteString(r.hashes[r.bylen[which]])
		pos = at + len(r.bylen[which])
	}
	b.WriteString(s[pos:])
	h := b.String()
	if r.secrets.Contains([]byte(h)) {
		// Belt and braces: whatever the set still finds is masked.
		return r.secrets.ReplaceString(h)
	}
	return h
}

func (r *Redactor) redactTokens(s string) string {
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
		b.WriteString(r.replacement(s[sp[0]:sp[1]]))
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// Headers returns a redacted copy of h as {"Canonical-Name": [values]}.
// Credential headers keep their scheme ("Bearer [REDACTED]", in hmac mode
// "Bearer hmac-sha256:…" of the credential after the scheme) so a reader
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
				cp[i] = r.credential(v)
			default:
				cp[i] = r.String(v)
			}
		}
		out[ck] = cp
	}
	return out
}

func (r *Redactor) credential(v string) string {
	if scheme, cred, ok := strings.Cut(v, " "); ok {
		switch strings.ToLower(scheme) {
		case "bearer", "basic", "digest", "token", "aws4-hmac-sha256":
			return scheme + " " + r.replacement(strings.TrimSpace(cred))
		}
	}
	return r.replacement(v)
}

// Query redacts the injected parameters' values and any secret or token.
func (r *Redactor) Query(raw string) string {
	if raw == "" {
		return ""
	}
	if r != nil && (len(r.params) > 0 || len(r.json) > 0) {
		parts := strings.Split(raw, "&")
		for i, p := range parts {
			k, v, _ := strings.Cut(p, "=")
			if uk, err := url.QueryUnescape(k); err == nil && r.params[uk] || r.fieldRedacted(k) {
				parts[i] = k + "=" + r.replacement(unescape(v))
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
	hm := r != nil && r.key != nil
	if hm {
		// In hmac mode the named fields are hashed first, as sent: a
		// field holding a token or a secret hashes like that value does
		// anywhere else, not as the hash of its hash.
		out = r.maskFields(out, contentType, truncated)
	}
	if r != nil && r.secrets != nil {
		if hm {
			if r.secrets.Contains(out) {
				out = []byte(r.replaceSecrets(string(out)))
			}
		} else {
			out = r.secrets.ReplaceBytes(out)
		}
	}
	if bytes.Contains(out, []byte("kh")) {
		out = []byte(r.redactTokens(string(out)))
	}
	if !hm {
		out = r.maskFields(out, contentType, truncated)
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

// maskFields masks the fields named by redact_json: in a JSON body, or the
// same names in a form body. A JSON capture is masked as a prefix, so a
// field is masked even when the body was cut and no longer parses.
func (r *Redactor) maskFields(b []byte, contentType string, truncated bool) []byte {
	if r == nil || len(r.json) == 0 {
		return b
	}
	if isForm(contentType) {
		return r.maskForm(b, truncated)
	}
	if r.key != nil {
		return r.hashJSON(b)
	}
	if m, changed, _ := jsonpath.MaskPrefix(b, r.json, []byte(`"`+Redacted+`"`)); changed {
		return m
	}
	return b
}

// hashJSON replaces each redact_json value with the JSON string of its
// hash: a string value hashes as its decoded text, any other value as its
// JSON text ("4111111111111111" for the number). A value cut by the end of
// the capture is masked ("[REDACTED]"): the hash of a part would be a
// guessable stand-in for the whole.
//
// jsonpath.MaskPrefix finds the fields (the same walk as mask mode) and
// writes r.marker in place of each value; the values are then found again
// by aligning the output with the input. Should the alignment ever fail,
// every field is masked: the fallback over-redacts, never leaks.
func (r *Redactor) hashJSON(in []byte) []byte {
	out, changed, _ := jsonpath.MaskPrefix(in, r.json, r.marker)
	if !changed {
		return in
	}
	res := make([]byte, 0, len(out))
	i, j := 0, 0
	for {
		k := bytes.Index(out[j:], r.marker)
		if k < 0 {
			if !bytes.Equal(out[j:], in[i:]) {
				break
			}
			return append(res, out[j:]...)
		}
		if i+k > len(in) || !bytes.Equal(out[j:j+k], in[i:i+k]) {
			break
		}
		res = append(res, out[j:j+k]...)
		from := i + k
		to, whole := jsonpath.ValueEnd(in, from)
		rep := `"` + Redacted + `"`
		if whole && to > from {
			v := in[from:to]
			var str string
			if v[0] != '"' {
				str = string(v)
			} else if json.Unmarshal(v, &str) != nil {
				str = string(v)
			}
			rep = `"` + r.replacement(str) + `"`
		}
		res = append(res, rep...)
		i, j = to, j+k+len(r.marker)
	}
	return bytes.ReplaceAll(out, r.marker, []byte(`"`+Redacted+`"`))
}

// unescape is a query or form value as text (the raw text if it is not
// valid percent-encoding).
func unescape(v string) string {
	if u, err := url.QueryUnescape(v); err == nil {
		return u
	}
	return v
}

// maskForm masks the values of form fields named by redact_json. In hmac
// mode a value is hashed URL-decoded, except the last one of a cut body
// (it may be cut itself), which is masked.
func (r *Redactor) maskForm(b []byte, truncated bool) []byte {
	parts := bytes.Split(b, []byte("&"))
	changed := false
	for i, p := range parts {
		k, v, _ := bytes.Cut(p, []byte("="))
		if r.fieldRedacted(string(k)) {
			rep := Redacted
			if !truncated || i < len(parts)-1 {
				rep = r.replacement(unescape(string(v)))
			}
			parts[i] = append(append(append([]byte{}, k...), '='), rep...)
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
