// Package inject puts the upstream credential on an outgoing request (SPEC
// §4). Built-in static schemes — bearer, header, query, basic — are data
// over one template injector (secretless-broker's shape); OAuth 2.0 and AWS
// SigV4 implement the same interface and run last.
//
// An injector is built once per configuration snapshot from the decrypted
// secret; it never logs, and its errors never carry secret material.
package inject

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// Material is a decrypted secret: its fields ("" holds a string secret's
// value) and its version.
type Material struct {
	Name    string
	Version int
	Fields  map[string]string
	// Rotated: this version only stores a refresh token that the OAuth
	// provider rotated during a node's refresh (catalog/dynamic.go marks
	// it), not a grant an admin gave. Other nodes then keep the access
	// token they hold instead of fetching a new one.
	Rotated bool
}

// Injector sets the upstream credential on an outgoing request. It runs
// inside ReverseProxy.Rewrite, after hop-by-hop headers are gone, so a
// Connection header naming Authorization cannot remove what it sets.
type Injector interface {
	// Apply sets the credential on out.
	Apply(out *http.Request) error
	// Values are the secret values and everything derived from them that
	// must never reach an agent or the audit log (the scrubber's list).
	Values() []string
	// QueryParams are the query parameters the injector owns: the agent
	// cannot send them (SPEC §3.4).
	QueryParams() []string
	// Headers are the header names the injector sets (their incoming
	// values are redacted from the audit log).
	Headers() []string
	// SecretVersion is the version of the secret in use (0: none).
	SecretVersion() int
}

// Error is a configuration error a person can act on (no secret inside).
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errf(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

// Static is the template injector behind none, bearer, header, query and
// basic: fixed header and query values rendered once from the secret.
type Static struct {
	headers [][2]string // canonical name, value
	params  [][2]string // name, value (unescaped)
	rawQ    string      // the params, encoded once: "&k=v&k2=v2"
	values  []string
	version int
}

var _ Injector = (*Static)(nil)

// NewStatic builds the injector of a static auth type from its spec and
// the secret material (nil for type none).
func NewStatic(a spec.Auth, m *Material) (*Static, error) {
	s := &Static{}
	if a.Type == "none" {
		return s, nil
	}
	if m == nil {
		return nil, errf("secret %q does not exist", a.Secret)
	}
	s.version = m.Version
	render := func(tpl string) (string, error) {
		t, err := spec.ParseTemplate(tpl)
		if err != nil {
			return "", err
		}
		return t.Render(m.Fields)
	}
	switch a.Type {
	case "bearer":
		v, ok := m.Fields[""]
		if !ok {
			if v, ok = m.Fields["token"]; !ok {
				return nil, errf("auth type bearer needs a string secret (or an object secret with a \"token\" field); secret %q has fields %s", m.Name, fieldList(m))
			}
		}
		s.headers = append(s.headers, [2]string{"Authorization", "Bearer " + v})
	case "header":
		for name, tpl := range a.Headers {
			v, err := render(tpl)
			if err != nil {
				return nil, errf("auth.headers[%s]: %v (secret %q has fields %s)", name, err, m.Name, fieldList(m))
			}
			s.headers = append(s.headers, [2]string{http.CanonicalHeaderKey(name), v})
		}
	case "query":
		for name, tpl := range a.Params {
			v, err := render(tpl)
			if err != nil {
				return nil, errf("auth.params[%s]: %v (secret %q has fields %s)", name, err, m.Name, fieldList(m))
			}
			s.params = append(s.params, [2]string{name, v})
		}
	case "basic":
		u, okU := m.Fields["username"]
		p, okP := m.Fields["password"]
		if !okU || !okP {
			return nil, errf("auth type basic needs an object secret with fields username and password; secret %q has fields %s", m.Name, fieldList(m))
		}
		enc := base64.StdEncoding.EncodeToString([]byte(u + ":" + p))
		s.headers = append(s.headers, [2]string{"Authorization", "Basic " + enc})
	default:
		return nil, errf("auth type %s is not a static scheme", a.Type)
	}
	sort.Slice(s.headers, func(i, j int) bool { return s.headers[i][0] < s.headers[j][0] })
	sort.Slice(s.params, func(i, j int) bool { return s.params[i][0] < s.params[j][0] })
	var q strings.Builder
	for _, p := range s.params {
		q.WriteByte('&')
		q.WriteString(url.QueryEscape(p[0]))
		q.WriteByte('=')
		q.WriteString(url.QueryEscape(p[1]))
	}
	s.rawQ = q.String()
	// Scrub the secret's fields and what is derived from them. A rendered
	// value that merely contains a field ("Bearer sk_…") is not added, so
	// the agent sees "Bearer [REDACTED]" and can tell what was there; one
	// that does not (a Basic header's base64) is.
	for _, v := range m.Fields {
		s.values = append(s.values, v)
	}
	for _, h := range s.headers {
		s.values = appendDerived(s.values, m, strings.TrimPrefix(strings.TrimPrefix(h[1], "Bearer "), "Basic "))
	}
	for _, p := range s.params {
		s.values = appendDerived(s.values, m, p[1])
	}
	s.values = DeriveAll(s.values)
	return s, nil
}

// appendDerived adds v unless it contains one of the secret's fields.
func appendDerived(vals []string, m *Material, v string) []string {
	for _, f := range m.Fields {
		if len(f) >= minScrubLen && strings.Contains(v, f) {
			return vals
		}
	}
	return append(vals, v)
}

func fieldList(m *Material) string {
	var f []string
	for k := range m.Fields {
		if k == "" {
			return "(none: it is a string)"
		}
		f = append(f, k)
	}
	sort.Strings(f)
	return "[" + strings.Join(f, ", ") + "]"
}

// Apply implements Injector. Headers are set (never added), so whatever
// the agent sent under those names is overwritten.
func (s *Static) Apply(out *http.Request) error {
	for _, h := range s.headers {
		out.Header[h[0]] = []string{h[1]}
	}
	if s.rawQ != "" {
		if out.URL.RawQuery == "" {
			out.URL.RawQuery = s.rawQ[1:]
		} else {
			out.URL.RawQuery += s.rawQ
		}
	}
	return nil
}

// Values implements Injector.
func (s *Static) Values() []string { return s.values }

// QueryParams implements Injector.
func (s *Static) QueryParams() []string {
	out := make([]string, len(s.params))
	for i, p := range s.params {
		out[i] = p[0]
	}
	return out
}

// Headers implements Injector.
func (s *Static) Headers() []string {
	out := make([]string, len(s.headers))
	for i, h := range s.headers {
		out[i] = h[0]
	}
	return out
}

// SecretVersion implements Injector.
func (s *Static) SecretVersion() int { return s.version }

// minScrubLen: values shorter than this are not scrubbed from responses
// (a 2-character "secret" would redact every occurrence of two letters).
// Secrets are refused below MinSecretLen when saved, so only short object
// fields such as a username fall under it.
const minScrubLen = 6

// MinSecretLen is the shortest string secret (or secret field holding a
// credential) keyhole accepts.
const MinSecretLen = 8

// DeriveAll returns each value with the encodings an upstream might echo it
// in: URL query and path escaping, JSON string escaping, standard and
// URL-safe base64. Duplicates and too-short values are dropped.
func DeriveAll(vals []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(v string) {
		if len(v) >= minScrubLen && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, v := range vals {
		add(v)
		add(url.QueryEscape(v))
		add(url.PathEscape(v))
		if b, err := json.Marshal(v); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		if len(v) >= minScrubLen {
			add(base64.StdEncoding.EncodeToString([]byte(v)))
			add(base64.RawStdEncoding.EncodeToString([]byte(v)))
			add(base64.RawURLEncoding.EncodeToString([]byte(v)))
		}
	}
	sort.Strings(out)
	return out
}

// ErrAuthFailed is returned by dynamic injectors (OAuth) that could not get
// a credential: the request is refused with 502 upstream_auth_failed.
var ErrAuthFailed = errors.New("upstream credential unavailable")
