// Package spec holds keyhole's declarative objects as users write them: the
// JSON (and YAML) shapes of proxies, rules and their parts (SPEC §5, §7.1),
// with their defaults and the validation that does not need the store.
//
// Field comments are the user documentation (Caddy's habit): docs/configuration.md
// is written from them. Compiling a spec into what the hot path runs lives
// elsewhere (internal/catalog); this package only says what is well-formed.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// NameRE is the pattern of proxy, agent, secret and rule names (SPEC §3.1):
// lower-case, URL-safe, and never starting with "-" so a name cannot be
// mistaken for a flag or collide with keyhole's own "-admin" and "/-/" names.
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// secretNameRE allows the extra characters people use in secret names
// (stripe-key, openai_prod, aws.billing) but still nothing that needs
// escaping in a URL path segment.
var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName reports whether s is a valid proxy, agent or rule name.
func ValidName(s string) bool { return NameRE.MatchString(s) }

// ValidSecretName reports whether s is a valid secret name.
func ValidSecretName(s string) bool { return secretNameRE.MatchString(s) }

// Error is a validation error: its message is written for the person who
// sent the config and is safe to return to them.
type Error struct {
	Msg string
	// Path, when known, is where in the document the problem is
	// (proxies[2].rules[0].effect): ParseConfig turns it into a YAML line
	// number. It is already part of Msg.
	Path string
}

func (e *Error) Error() string { return e.Msg }

func errf(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

// Duration is a time.Duration written as a Go duration string ("5s", "1m30s").
type Duration time.Duration

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	// null keeps the default, like every other field (encoding/json's
	// convention for Unmarshalers).
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errf("a duration is a string such as \"30s\" or \"5m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return errf("invalid duration %q: use a Go duration such as \"30s\" or \"5m\"", clip(s))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Auth is how keyhole authenticates to the upstream (SPEC §4).
type Auth struct {
	// Type is one of none, bearer, header, query, basic,
	// oauth2_client_credentials, oauth2_refresh_token, aws_sigv4.
	Type string `json:"type"`
	// Secret names the vaulted secret whose value is injected.
	Secret string `json:"secret,omitempty"`
	// Headers (type header): header name → template, e.g.
	// {"X-Api-Key": "{{secret}}"} or {"DD-API-KEY": "{{secret.api_key}}"}.
	Headers map[string]string `json:"headers,omitempty"`
	// Params (type query): query parameter → template. The agent cannot
	// supply a parameter of the same name.
	Params map[string]string `json:"params,omitempty"`
	// TokenURL, Scopes, Audience, AuthStyle (header|body) and
	// RefreshMargin configure the OAuth 2.0 types.
	TokenURL      string    `json:"token_url,omitempty"`
	Scopes        []string  `json:"scopes,omitempty"`
	Audience      string    `json:"audience,omitempty"`
	AuthStyle     string    `json:"auth_style,omitempty"`
	RefreshMargin *Duration `json:"refresh_margin,omitempty"`
	// Region and Service configure aws_sigv4.
	Region  string `json:"region,omitempty"`
	Service string `json:"service,omitempty"`
}

// Capture says what the audit log keeps of each request (SPEC §6).
type Capture struct {
	// RequestBody and ResponseBody: capture the bodies (up to MaxBytes each).
	RequestBody  bool `json:"request_body"`
	ResponseBody bool `json:"response_body"`
	// MaxBytes bounds each captured body; longer bodies are cut and flagged
	// truncated. What is forwarded is never cut.
	MaxBytes int64 `json:"max_bytes"`
	// RedactHeaders are extra header names whose values are never stored
	// (Authorization, Proxy-Authorization, Cookie and Set-Cookie always are).
	RedactHeaders []string `json:"redact_headers"`
	// RedactJSON are JSON paths (card.number, **.password) whose values are
	// masked in captured JSON bodies.
	RedactJSON []string `json:"redact_json"`
	// RedactMode is how the audit log stores what it redacts: "mask" (the
	// default when omitted) stores "[REDACTED]"; "hmac" stores
	// "hmac-sha256:" and 32 hex digits of a keyed HMAC of the value (the key
	// is derived from the master key, never stored), so records carrying a
	// known value can be found (keyhole audit hash) while the log never
	// holds it. Responses to agents are scrubbed with "[REDACTED]" either way.
	RedactMode string `json:"redact_mode,omitempty"`
}

// Timeouts bound each forwarded call (SPEC §3.6).
type Timeouts struct {
	// Connect bounds the TCP (and TLS) connection to the upstream.
	Connect Duration `json:"connect"`
	// ResponseHeader bounds the wait for the upstream's response headers.
	ResponseHeader Duration `json:"response_header"`
	// Total bounds the whole exchange, streaming included.
	Total Duration `json:"total"`
}

// Filters remove or mask JSON fields of responses before the agent sees
// them (SPEC §3.8). Paths are dotted; "**" matches zero or more keys.
type Filters struct {
	Remove []string `json:"remove,omitempty"`
	Mask   []string `json:"mask,omitempty"`
}

// Empty reports whether f filters nothing.
func (f *Filters) Empty() bool { return f == nil || len(f.Remove) == 0 && len(f.Mask) == 0 }

// Quota bounds what an agent may spend on a proxy per period (SPEC §3.8).
type Quota struct {
	Name string `json:"name,omitempty"`
	// Limit is the number of requests, or the sum of Sum, per Per.
	Limit int64 `json:"limit"`
	// Per is minute, hour, day or month.
	Per string `json:"per"`
	// Sum, when set, is a JSON path into the response whose number is
	// added up (e.g. usage.total_tokens); otherwise requests are counted.
	Sum string `json:"sum,omitempty"`
	// Agents limits the quota to these agents (default: every agent, each
	// with its own budget).
	Agents []string `json:"agents,omitempty"`
}

// Rule is one allow or deny rule of a proxy (SPEC §5).
type Rule struct {
	Name   string `json:"name"`
	Effect string `json:"effect"`
	// Mode is enforce (default) or report: a report rule's would-be
	// decision is written to the audit record and never takes part in the
	// decision (SPEC §3.9).
	Mode string `json:"mode"`
	// Agents and AgentLabels select the agents the rule applies to;
	// omitted, every agent in scope.
	Agents      []string          `json:"agents"`
	AgentLabels map[string]string `json:"agent_labels"`
	// Methods omitted means every method.
	Methods []string `json:"methods"`
	// Paths are patterns: "*" one segment, "**" any number of segments.
	Paths []string `json:"paths"`
	// When is a CEL condition that must be true for the rule to match.
	When string `json:"when"`
	// RateLimit "N/s", "N/m" or "N/h" per agent for this rule.
	RateLimit       string   `json:"rate_limit"`
	ResponseFilters *Filters `json:"response_filters,omitempty"`
}

// Proxy is one upstream API (SPEC §7.1).
type Proxy struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Upstream is the base URL, e.g. https://api.stripe.com or
	// https://api.example.com/v2 (a base path is prefixed to every call).
	Upstream string `json:"upstream"`
	Auth     Auth   `json:"auth"`
	// AgentTokenHeader is an extra header the agent may present its token
	// in (e.g. x-api-key, so an SDK's api_key setting carries it).
	AgentTokenHeader string `json:"agent_token_header"`
	// StaticHeaders are non-secret headers set on every forwarded call.
	StaticHeaders map[string]string `json:"static_headers"`
	Capture       Capture           `json:"capture"`
	Timeouts      Timeouts          `json:"timeouts"`
	Rules         []Rule            `json:"rules"`
	// MaxRuleBody bounds the body read for rules that inspect it (413 beyond).
	MaxRuleBody     int64    `json:"max_rule_body"`
	ResponseFilters *Filters `json:"response_filters"`
	Quotas          []Quota  `json:"quotas"`
	// AllowSemicolons lets ";" through in paths (matrix parameters).
	AllowSemicolons bool `json:"allow_semicolons"`
	// CaseInsensitivePaths matches rules without regard to case, for
	// upstreams that ignore case (so /V1/ADMIN cannot dodge a deny rule).
	CaseInsensitivePaths bool `json:"case_insensitive_paths"`
	// PassCookies forwards the upstream's Set-Cookie to the agent.
	PassCookies bool `json:"pass_cookies"`
	// AllowWebsocket lets Upgrade: websocket through.
	AllowWebsocket bool `json:"allow_websocket"`
}

// Defaults of a proxy (SPEC §7.1).
const (
	DefaultMaxBytes    = 64 << 10
	DefaultMaxRuleBody = 1 << 20
	MaxCaptureBytes    = 16 << 20
	MaxRuleBodyLimit   = 64 << 20
)

// NewProxy returns a proxy with every default filled in.
func NewProxy() Proxy {
	return Proxy{
		StaticHeaders: map[string]string{},
		Capture: Capture{RequestBody: true, ResponseBody: true, MaxBytes: DefaultMaxBytes,
			RedactHeaders: []string{}, RedactJSON: []string{}},
		Timeouts:        Timeouts{Connect: Duration(5 * time.Second), ResponseHeader: Duration(30 * time.Second), Total: Duration(5 * time.Minute)},
		Rules:           []Rule{},
		MaxRuleBody:     DefaultMaxRuleBody,
		ResponseFilters: &Filters{},
		Quotas:          []Quota{},
	}
}

// DecodeProxy reads a proxy from JSON: unknown fields are refused, omitted
// fields take their defaults, and the result is validated.
func DecodeProxy(r io.Reader) (Proxy, error) {
	p := NewProxy()
	if err := decodeStrict(r, &p); err != nil {
		return Proxy{}, err
	}
	p.normalize()
	if err := p.Validate(); err != nil {
		return Proxy{}, err
	}
	return p, nil
}

// DecodeRule reads one rule from JSON (unknown fields refused) and validates
// what can be checked without the proxy.
func DecodeRule(r io.Reader) (Rule, error) {
	var rule Rule
	if err := decodeStrict(r, &rule); err != nil {
		return Rule{}, err
	}
	rule.normalize()
	if err := rule.Validate(); err != nil {
		return Rule{}, err
	}
	return rule, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data, with messages a person can act on.
func decodeStrict(r io.Reader, v any) error {
	// The strict pre-pass (strict.go): duplicate keys, keys that are not
	// exactly a field's JSON name, invalid UTF-8 and the like are refused
	// before encoding/json, which lets them through, reads the body.
	b, err := readStrict(r, v)
	if err != nil {
		return err
	}
	return decodeJSON(bytes.NewReader(b), v)
}

// decodeJSON is encoding/json's decode of exactly one value into v.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errf("the body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errf("the body holds data after its JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ve *Error
	switch {
	case errors.As(err, &ve):
		return ve
	case errors.Is(err, io.EOF):
		return errf("the body is empty; send a JSON object")
	case errors.As(err, &se):
		return errf("the body is not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return errf("field %q must be a %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return errf("the body must be a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errf("unknown field %s", clip(strings.TrimPrefix(err.Error(), "json: unknown field ")))
	}
	return errf("the body is not valid JSON: %s", clip(err.Error()))
}

func jsonKind(k string) string {
	switch k {
	case "struct", "map":
		return "JSON object"
	case "slice", "array":
		return "JSON array"
	case "int", "int64":
		return "whole number"
	case "float64":
		return "number"
	case "bool":
		return "boolean (true or false)"
	}
	return k
}

func (p *Proxy) normalize() {
	if p.StaticHeaders == nil {
		p.StaticHeaders = map[string]string{}
	}
	if p.Rules == nil {
		p.Rules = []Rule{}
	}
	for i := range p.Rules {
		p.Rules[i].normalize()
	}
	if p.Capture.RedactHeaders == nil {
		p.Capture.RedactHeaders = []string{}
	}
	if p.Capture.RedactJSON == nil {
		p.Capture.RedactJSON = []string{}
	}
	if p.ResponseFilters == nil {
		p.ResponseFilters = &Filters{}
	}
	if p.Quotas == nil {
		p.Quotas = []Quota{}
	}
	p.AgentTokenHeader = strings.TrimSpace(p.AgentTokenHeader)
}

func (r *Rule) normalize() {
	if r.Mode == "" {
		r.Mode = "enforce"
	}
	if r.Agents == nil {
		r.Agents = []string{}
	}
	if r.AgentLabels == nil {
		r.AgentLabels = map[string]string{}
	}
	if r.Methods == nil {
		r.Methods = []string{}
	}
	if r.Paths == nil {
		r.Paths = []string{}
	}
}

// Normalize fills the defaults of a proxy read from the store.
func (p *Proxy) Normalize() { p.normalize() }

// Normalize fills the defaults of a rule.
func (r *Rule) Normalize() { r.normalize() }

// AuthTypes lists the upstream auth types keyhole knows, and whether each
// needs a secret.
var AuthTypes = map[string]bool{
	"none": false, "bearer": true, "header": true, "query": true, "basic": true,
	"oauth2_client_credentials": true, "oauth2_refresh_token": true, "aws_sigv4": true,
}

// hopHeaders may never be set by static_headers or auth templates: they are
// connection-level (RFC 9110 §7.6.1) or keyhole's own.
var reservedHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Host": true, "Content-Length": true,
	"X-Keyhole-Request-Id": true, "X-Keyhole-Token": true,
}

// Validate checks a proxy without the store: names, URL shape, auth
// settings, rules, limits. The SSRF guard and secret references are checked
// by the caller, which knows the node's allowed ranges and the secrets.
func (p *Proxy) Validate() error {
	if !ValidName(p.Name) {
		return errf("proxy name %q is invalid: use 1–63 characters a-z, 0-9 and -, starting with a letter or digit", clip(p.Name))
	}
	if len(p.Description) > 4096 {
		return errf("description is longer than 4096 characters")
	}
	if _, err := ParseUpstream(p.Upstream); err != nil {
		return err
	}
	if err := p.Auth.validate(); err != nil {
		return err
	}
	if h := p.AgentTokenHeader; h != "" {
		if !validHeaderName(h) {
			return errf("agent_token_header %q is not a valid header name", clip(h))
		}
		switch http.CanonicalHeaderKey(h) {
		case "Authorization", "X-Keyhole-Token":
			return errf("agent_token_header %q is already a token location; leave it empty", clip(h))
		case "Cookie", "Host", "Content-Type", "Content-Length":
			return errf("agent_token_header cannot be %s", http.CanonicalHeaderKey(h))
		}
	}
	for k, v := range p.StaticHeaders {
		if !validHeaderName(k) {
			return errf("static_headers: %q is not a valid header name", clip(k))
		}
		if reservedHeaders[http.CanonicalHeaderKey(k)] {
			return errf("static_headers: %s is managed by keyhole and cannot be set", http.CanonicalHeaderKey(k))
		}
		if !validHeaderValue(v) {
			return errf("static_headers: the value of %s holds a control character", clip(http.CanonicalHeaderKey(k)))
		}
		if strings.Contains(v, "{{") {
			return errf("static_headers are not templates and never hold secrets; put %s in auth.headers", clip(http.CanonicalHeaderKey(k)))
		}
	}
	if p.Capture.MaxBytes < 0 || p.Capture.MaxBytes > MaxCaptureBytes {
		return errf("capture.max_bytes must be between 0 and %d", MaxCaptureBytes)
	}
	for _, h := range p.Capture.RedactHeaders {
		if !validHeaderName(h) {
			return errf("capture.redact_headers: %q is not a valid header name", clip(h))
		}
	}
	for _, j := range p.Capture.RedactJSON {
		if err := ValidJSONPath(j); err != nil {
			return errf("capture.redact_json: %v", err)
		}
	}
	if m := p.Capture.RedactMode; m != "" && m != "mask" && m != "hmac" {
		return errf("capture.redact_mode is mask (the default) or hmac, not %q", clip(m))
	}
	t := p.Timeouts
	if t.Connect <= 0 || t.ResponseHeader <= 0 || t.Total <= 0 {
		return errf("timeouts must be positive durations")
	}
	if p.MaxRuleBody <= 0 || p.MaxRuleBody > MaxRuleBodyLimit {
		return errf("max_rule_body must be between 1 and %d bytes", MaxRuleBodyLimit)
	}
	if err := p.ResponseFilters.validate(); err != nil {
		return errf("response_filters: %v", err)
	}
	for i, q := range p.Quotas {
		if err := q.validate(); err != nil {
			return errf("quotas[%d]: %v", i, err)
		}
	}
	seen := map[string]bool{}
	for i := range p.Rules {
		r := &p.Rules[i]
		if err := r.Validate(); err != nil {
			return err
		}
		if seen[r.Name] {
			return errf("two rules are named %q; rule names are unique per proxy", r.Name)
		}
		seen[r.Name] = true
	}
	return nil
}

// ParseUpstream checks an upstream base URL: http or https, a host, no
// credentials, query or fragment (credentials belong in the vault).
func ParseUpstream(s string) (*url.URL, error) {
	if s == "" {
		return nil, errf("upstream is required, e.g. \"https://api.stripe.com\"")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errf("upstream %q is not a URL", clip(s))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errf("upstream must start with https:// or http://")
	case u.Host == "" || u.Hostname() == "":
		return nil, errf("upstream %q has no host", clip(s))
	case u.User != nil:
		return nil, errf("upstream must not hold credentials; store them as a secret and set auth")
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "#"):
		// "#" alone leaves Fragment empty, so look at the text: a base URL
		// with any fragment marker would hide every joined path from the upstream.
		return nil, errf("upstream must not hold a query or fragment")
	case u.Opaque != "":
		return nil, errf("upstream %q is not a base URL", clip(s))
	}
	if strings.ContainsAny(u.Path, "\\") || strings.Contains(u.Path, "//") {
		return nil, errf("upstream base path is not canonical")
	}
	return u, nil
}

func (a *Auth) validate() error {
	needs, known := AuthTypes[a.Type]
	if !known {
		if a.Type == "" {
			return errf("auth.type is required: one of none, bearer, header, query, basic, oauth2_client_credentials, oauth2_refresh_token, aws_sigv4")
		}
		return errf("auth.type %q is unknown: use none, bearer, header, query, basic, oauth2_client_credentials, oauth2_refresh_token or aws_sigv4", clip(a.Type))
	}
	if needs && a.Secret == "" {
		return errf("auth type %s needs auth.secret, the name of a secret", a.Type)
	}
	if !needs && a.Secret != "" {
		return errf("auth type none injects nothing; remove auth.secret")
	}
	if a.Secret != "" && !ValidSecretName(a.Secret) {
		return errf("auth.secret %q is not a valid secret name", clip(a.Secret))
	}
	if a.Type != "header" && len(a.Headers) > 0 {
		return errf("auth.headers applies to type header only")
	}
	if a.Type != "query" && len(a.Params) > 0 {
		return errf("auth.params applies to type query only")
	}
	switch a.Type {
	case "header":
		if len(a.Headers) == 0 {
			return errf("auth type header needs auth.headers, e.g. {\"X-Api-Key\": \"{{secret}}\"}")
		}
		for k, v := range a.Headers {
			if !validHeaderName(k) {
				return errf("auth.headers: %q is not a valid header name", clip(k))
			}
			if reservedHeaders[http.CanonicalHeaderKey(k)] {
				return errf("auth.headers: %s cannot be set", http.CanonicalHeaderKey(k))
			}
			if _, err := ParseTemplate(v); err != nil {
				return errf("auth.headers[%s]: %v", clip(k), err)
			}
		}
	case "query":
		if len(a.Params) == 0 {
			return errf("auth type query needs auth.params, e.g. {\"api_key\": \"{{secret}}\"}")
		}
		for k, v := range a.Params {
			if k == "" || strings.ContainsAny(k, "&=#") {
				return errf("auth.params: %q is not a valid parameter name", clip(k))
			}
			if _, err := ParseTemplate(v); err != nil {
				return errf("auth.params[%s]: %v", clip(k), err)
			}
		}
	case "oauth2_client_credentials", "oauth2_refresh_token":
		if a.TokenURL == "" {
			return errf("auth type %s needs auth.token_url", a.Type)
		}
		if u, err := url.Parse(a.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errf("auth.token_url must be an http(s) URL")
		}
		switch a.AuthStyle {
		case "", "header", "body":
		default:
			return errf("auth.auth_style is header or body")
		}
	case "aws_sigv4":
		if a.Region == "" || a.Service == "" {
			return errf("auth type aws_sigv4 needs auth.region and auth.service")
		}
	}
	return nil
}

// Validate checks one rule on its own (the CEL condition is compiled by the
// rules engine, which knows the variables).
func (r *Rule) Validate() error {
	if !ValidName(r.Name) {
		return errf("rule name %q is invalid: use 1–63 characters a-z, 0-9 and -", clip(r.Name))
	}
	switch r.Effect {
	case "allow", "deny":
	default:
		return errf("rule %s: effect must be allow or deny, not %q", r.Name, clip(r.Effect))
	}
	switch r.Mode {
	case "", "enforce", "report":
	default:
		return errf("rule %s: mode must be enforce or report", r.Name)
	}
	if len(r.Paths) == 0 {
		return errf("rule %s: paths is required (use \"/**\" for every path)", r.Name)
	}
	for _, a := range r.Agents {
		if !ValidName(a) {
			return errf("rule %s: agent name %q is invalid", r.Name, clip(a))
		}
	}
	for k := range r.AgentLabels {
		if k == "" || len(k) > 63 {
			return errf("rule %s: agent_labels keys are 1–63 characters", r.Name)
		}
	}
	if len(r.When) > 8192 {
		return errf("rule %s: when is longer than 8192 characters", r.Name)
	}
	if err := r.ResponseFilters.validate(); err != nil {
		return errf("rule %s: response_filters: %v", r.Name, err)
	}
	return nil
}

func (f *Filters) validate() error {
	if f == nil {
		return nil
	}
	for _, p := range append(append([]string{}, f.Remove...), f.Mask...) {
		if err := ValidJSONPath(p); err != nil {
			return err
		}
	}
	return nil
}

func (q *Quota) validate() error {
	if q.Limit <= 0 {
		return errf("limit must be a positive number")
	}
	switch q.Per {
	case "minute", "hour", "day", "month":
	default:
		return errf("per must be minute, hour, day or month")
	}
	if q.Sum != "" {
		if err := ValidJSONPath(q.Sum); err != nil {
			return err
		}
		if strings.Contains(q.Sum, "*") {
			return errf("sum must name one field, without *")
		}
	}
	if q.Name != "" && !ValidName(q.Name) {
		return errf("name %q is invalid", clip(q.Name))
	}
	return nil
}

// ValidJSONPath checks a dotted JSON path such as card.number or **.ssn.
func ValidJSONPath(p string) error {
	if p == "" || len(p) > 512 {
		return errf("JSON path must be 1–512 characters")
	}
	for _, seg := range strings.Split(p, ".") {
		if seg == "" {
			return errf("JSON path %q has an empty segment", clip(p))
		}
		if strings.Contains(seg, "*") && seg != "*" && seg != "**" {
			return errf("JSON path %q: * and ** stand for whole keys", clip(p))
		}
	}
	return nil
}

// Template is a parsed injection template: literal text with {{secret}} or
// {{secret.FIELD}} references.
type Template struct {
	Parts []TemplatePart
}

// TemplatePart is literal text (Field == "" and !Ref) or a secret reference.
type TemplatePart struct {
	Text  string
	Ref   bool
	Field string // "" for {{secret}} (a string secret)
}

// ParseTemplate parses "Bearer {{secret}}" or "{{secret.api_key}}".
func ParseTemplate(s string) (Template, error) {
	var t Template
	rest := s
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.Parts = append(t.Parts, TemplatePart{Text: rest})
			break
		}
		if i > 0 {
			t.Parts = append(t.Parts, TemplatePart{Text: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return Template{}, errf("template %q has an unclosed {{", clip(s))
		}
		ref := strings.TrimSpace(rest[i+2 : i+j])
		switch {
		case ref == "secret":
			t.Parts = append(t.Parts, TemplatePart{Ref: true})
		case strings.HasPrefix(ref, "secret.") && validField(ref[len("secret."):]):
			t.Parts = append(t.Parts, TemplatePart{Ref: true, Field: ref[len("secret."):]})
		default:
			return Template{}, errf("template %q: use {{secret}} or {{secret.FIELD}}", clip(s))
		}
		rest = rest[i+j+2:]
	}
	if !validHeaderValue(s) {
		return Template{}, errf("template holds a control character")
	}
	return t, nil
}

// Fields lists the secret fields a template references ("" for {{secret}}).
func (t Template) Fields() []string {
	var f []string
	for _, p := range t.Parts {
		if p.Ref {
			f = append(f, p.Field)
		}
	}
	return f
}

// Render fills the template from a secret's fields ("" is a string
// secret's value).
func (t Template) Render(fields map[string]string) (string, error) {
	var b strings.Builder
	for _, p := range t.Parts {
		if !p.Ref {
			b.WriteString(p.Text)
			continue
		}
		v, ok := fields[p.Field]
		if !ok {
			if p.Field == "" {
				return "", errf("the template uses {{secret}} but the secret is an object; use {{secret.FIELD}}")
			}
			return "", errf("the secret has no field %q", p.Field)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func validField(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidSecretField reports whether s can be a field name of an object secret.
func ValidSecretField(s string) bool { return validField(s) }

func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// ValidHeaderName reports whether s is an RFC 9110 field name.
func ValidHeaderName(s string) bool { return validHeaderName(s) }

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isTokenChar: RFC 9110 §5.6.2 tchar.
func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

func clip(s string) string {
	if len(s) > 80 {
		// Cut on a rune boundary so the message stays valid UTF-8.
		n := 80
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		return s[:n] + "…"
	}
	return s
}
