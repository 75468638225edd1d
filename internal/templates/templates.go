// Package templates is keyhole's catalog of well-known APIs (SPEC §9,
// `proxy create --template`): for each, the upstream, how it wants its
// credential, the header its official SDK sends the API key in (so the SDK
// works unchanged with base_url = GATEWAY/NAME and api_key = kh_…), the
// non-secret headers it needs, and what the secret must hold.
//
// A template is not a proxy: the admin API takes full proxy specs only
// (SPEC §7.1: unknown fields → 400). The CLI fetches a template
// (GET /api/v1/templates/{name}) and merges the user's flags over it into a
// full spec. Templates are data; the catalog's table test builds a proxy of
// each and checks what reaches an upstream.
package templates

import (
	"sort"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// Template describes one well-known API. Its JSON is the API's answer.
type Template struct {
	Name        string `json:"name"`
	Title       string `json:"title"`
	Description string `json:"description"`
	// Upstream is the API's base URL. Requires may say the user must give
	// their own (an instance URL).
	Upstream string `json:"upstream"`
	// UpstreamByRegion, when set, builds the upstream from --region:
	// "{region}" is replaced (AWS services).
	UpstreamByRegion string `json:"upstream_by_region,omitempty"`
	// Auth is the proxy's auth without its secret.
	Auth spec.Auth `json:"auth"`
	// AgentTokenHeader is the header the official SDK puts its API key in,
	// when that is not Authorization: Bearer (which keyhole always reads).
	AgentTokenHeader string            `json:"agent_token_header,omitempty"`
	StaticHeaders    map[string]string `json:"static_headers,omitempty"`
	// SecretFields are the fields the secret must hold; empty means a
	// string secret ({{secret}}).
	SecretFields []string `json:"secret_fields"`
	// Requires lists what the user must supply: "upstream", "scopes".
	Requires []string `json:"requires,omitempty"`
	// Connect is the authorization-code flow of OAuth providers
	// (`keyhole secret connect NAME --template T`).
	Connect *Connect `json:"connect,omitempty"`
	// SDK says how the official SDK is pointed at keyhole.
	SDK string `json:"sdk"`
	// Example is one call through keyhole.
	Example string `json:"example"`
	// Quirks are the provider's oddities and how keyhole handles them.
	Quirks []string `json:"quirks,omitempty"`
	Docs   string   `json:"docs"`
}

// Connect is how an OAuth provider's consent flow starts.
type Connect struct {
	AuthorizeURL string `json:"authorize_url"`
	// Params are extra parameters of the authorization request.
	Params map[string]string `json:"params,omitempty"`
}

// Get returns the template of that name.
func Get(name string) (Template, bool) {
	for _, t := range all {
		if t.Name == name {
			return clone(t), true
		}
	}
	return Template{}, false
}

// All lists the templates, sorted by name.
func All() []Template {
	out := make([]Template, 0, len(all))
	for _, t := range all {
		out = append(out, clone(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names lists the template names, sorted.
func Names() []string {
	var out []string
	for _, t := range All() {
		out = append(out, t.Name)
	}
	return out
}

func clone(t Template) Template {
	t.Auth.Headers = cloneMap(t.Auth.Headers)
	t.Auth.Params = cloneMap(t.Auth.Params)
	t.Auth.Scopes = append([]string(nil), t.Auth.Scopes...)
	t.StaticHeaders = cloneMap(t.StaticHeaders)
	t.SecretFields = append([]string{}, t.SecretFields...)
	t.Requires = append([]string(nil), t.Requires...)
	t.Quirks = append([]string(nil), t.Quirks...)
	if t.Connect != nil {
		c := *t.Connect
		c.Params = cloneMap(c.Params)
		t.Connect = &c
	}
	return t
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Proxy is the proxy spec a template gives with a secret and the
// user's overrides applied by the caller: name, upstream (the template's
// unless given), and the secret name.
func (t Template) Proxy(name, upstream, secret string) spec.Proxy {
	p := spec.NewProxy()
	p.Name = name
	p.Description = t.Description
	p.Upstream = t.Upstream
	if upstream != "" {
		p.Upstream = upstream
	}
	p.Auth = t.Auth
	if p.Auth.Type != "none" {
		p.Auth.Secret = secret
	}
	p.AgentTokenHeader = t.AgentTokenHeader
	for k, v := range t.StaticHeaders {
		p.StaticHeaders[k] = v
	}
	return p
}

// RegionUpstream is the upstream for an AWS region ("" if the template has
// no regional form).
func (t Template) RegionUpstream(region string) string {
	if t.UpstreamByRegion == "" || region == "" {
		return ""
	}
	return strings.ReplaceAll(t.UpstreamByRegion, "{region}", region)
}
