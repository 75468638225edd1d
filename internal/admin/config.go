package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/token"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// ---- secrets (write-only: no response ever holds a value) ----

func secretJSON(s store.Secret) map[string]any {
	fields := s.Fields
	if fields == nil {
		fields = []string{}
	}
	used := s.UsedBy
	if used == nil {
		used = []string{}
	}
	return map[string]any{"name": s.Name, "version": s.Version, "kind": s.Kind, "fields": fields,
		"created_at": fmtTime(s.CreatedAt), "rotated_at": fmtTimePtr(s.RotatedAt), "used_by": used}
}

func (a *API) createSecret(c *call) error {
	var req struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if !spec.ValidSecretName(req.Name) {
		return badRequest("secret name %q is invalid: 1–128 characters A-Z a-z 0-9 . _ -, starting with a letter or digit", clip(req.Name))
	}
	if len(req.Value) == 0 {
		return badRequest("value is required: a string, or an object of string fields")
	}
	pt, kind, fields, err := catalog.EncodeValue(req.Value)
	if err != nil {
		return badRequest("%v", err)
	}
	kr, err := a.keyring(c)
	if err != nil {
		return err
	}
	ct, err := kr.Seal(vault.SecretAAD(req.Name, 1), pt)
	if err != nil {
		return err
	}
	at := now()
	sec := store.Secret{Name: req.Name, Version: 1, Kind: kind, Fields: fields, CreatedAt: at}
	if err := a.Store.CreateSecret(c.r.Context(), sec, store.SecretVersion{Name: req.Name, Version: 1, Ciphertext: ct, CreatedAt: at}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return conflict("secret %s already exists; rotate it with PUT /api/v1/secrets/%s", req.Name, req.Name)
		}
		return err
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return c.json(http.StatusCreated, map[string]any{"name": sec.Name, "version": 1, "kind": kind, "fields": nonNil(fields), "created_at": fmtTime(at)})
}

func (a *API) keyring(c *call) (*vault.Keyring, error) {
	keys, err := a.Store.Keys(c.r.Context())
	if err != nil {
		return nil, err
	}
	return catalog.Keyring(a.Master, keys)
}

func (a *API) listSecrets(c *call) error {
	list, err := a.Store.ListSecrets(c.r.Context())
	if err != nil {
		return err
	}
	out := make([]any, 0, len(list))
	for _, s := range list {
		out = append(out, secretJSON(s))
	}
	return c.json(http.StatusOK, map[string]any{"secrets": out})
}

func (a *API) getSecret(c *call) error {
	s, err := a.Store.GetSecret(c.r.Context(), c.r.PathValue("name"))
	if err != nil {
		return storeErr(err, "secret "+c.r.PathValue("name"))
	}
	return c.json(http.StatusOK, secretJSON(s))
}

func (a *API) rotateSecret(c *call) error {
	name := c.r.PathValue("name")
	var req struct {
		Value json.RawMessage `json:"value"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.Value) == 0 {
		return badRequest("value is required")
	}
	pt, kind, fields, err := catalog.EncodeValue(req.Value)
	if err != nil {
		return badRequest("%v", err)
	}
	kr, err := a.keyring(c)
	if err != nil {
		return err
	}
	// A rotation must still fit every proxy that uses the secret (a basic
	// proxy needs username and password): check before storing.
	if err := a.checkRotation(name, kind, fields); err != nil {
		return err
	}
	s, err := a.Store.RotateSecret(c.r.Context(), name, now(), func(v int) ([]byte, string, []string, error) {
		ct, err := kr.Seal(vault.SecretAAD(name, v), pt)
		return ct, kind, fields, err
	})
	if err != nil {
		return storeErr(err, "secret "+name)
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return c.json(http.StatusOK, secretJSON(s))
}

func (a *API) checkRotation(name, kind string, fields []string) error {
	snap := a.Catalog.Load()
	for _, pn := range snap.ProxyNames() {
		p := snap.Proxy(pn)
		if p == nil || p.Spec.Auth.Secret != name {
			continue
		}
		if p.Spec.Auth.Type == "bearer" && kind != "string" && !slices.Contains(fields, "token") {
			return badRequest("proxy %s sends this secret as a bearer token: the new value must be a string (or an object with a \"token\" field)", pn)
		}
		need := neededFields(p.Spec.Auth)
		for _, f := range need {
			if f == "" && kind != "string" {
				return badRequest("proxy %s uses this secret as a string ({{secret}}); the new value is an object", pn)
			}
			if f != "" && !slices.Contains(fields, f) {
				return badRequest("proxy %s uses field %q of this secret; the new value has no such field", pn, f)
			}
		}
	}
	return nil
}

// neededFields lists the secret fields an auth setting reads ("" = the
// string value).
func neededFields(a spec.Auth) []string {
	var out []string
	switch a.Type {
	case "bearer":
	case "basic":
		out = []string{"username", "password"}
	case "header", "query":
		m := a.Headers
		if a.Type == "query" {
			m = a.Params
		}
		for _, v := range m {
			if t, err := spec.ParseTemplate(v); err == nil {
				out = append(out, t.Fields()...)
			}
		}
	case "oauth2_client_credentials":
		out = []string{"client_id", "client_secret"}
	case "oauth2_refresh_token":
		out = []string{"client_id", "client_secret", "refresh_token"}
	case "aws_sigv4":
		out = []string{"access_key_id", "secret_access_key"}
	}
	return out
}

func (a *API) deleteSecret(c *call) error {
	name := c.r.PathValue("name")
	if err := a.Store.DeleteSecret(c.r.Context(), name); err != nil {
		if errors.Is(err, store.ErrInUse) {
			s, _ := a.Store.GetSecret(c.r.Context(), name)
			return conflict("secret %s is used by proxy %s; change or delete those proxies first", name, strings.Join(s.UsedBy, ", "))
		}
		return storeErr(err, "secret "+name)
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	c.status = http.StatusNoContent
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- proxies ----

func proxyJSON(p store.Proxy) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(p.Spec, &m); err != nil {
		return nil, err
	}
	m["created_at"], m["updated_at"] = fmtTime(p.CreatedAt), fmtTime(p.UpdatedAt)
	return m, nil
}

// validateProxy checks a proxy spec against everything the node knows: the
// spec itself, its rules (CEL compiled), the SSRF guard, its secret and
// whether the injector can be built from that secret.
func (a *API) validateProxy(c *call, ps spec.Proxy) (store.Proxy, error) {
	if _, err := rules.Compile(ps.Rules, rules.Options{CaseInsensitive: ps.CaseInsensitivePaths}); err != nil {
		return store.Proxy{}, badRequest("%v", err)
	}
	u, _ := url.Parse(ps.Upstream)
	if err := a.Catalog.Guard().CheckHost(c.r.Context(), u.Hostname()); err != nil {
		return store.Proxy{}, badRequest("%v", err)
	}
	if ps.Auth.Secret != "" {
		if _, err := a.Store.GetSecret(c.r.Context(), ps.Auth.Secret); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return store.Proxy{}, badRequest("secret %q does not exist; create it first (keyhole secret set %s)", ps.Auth.Secret, ps.Auth.Secret)
			}
			return store.Proxy{}, err
		}
	}
	js, err := json.Marshal(ps)
	if err != nil {
		return store.Proxy{}, err
	}
	at := now()
	sp := store.Proxy{Name: ps.Name, Secret: ps.Auth.Secret, Spec: js, CreatedAt: at, UpdatedAt: at}
	if p := a.Catalog.CompileProxy(sp); p.Err != nil {
		return store.Proxy{}, badRequest("%v", p.Err)
	}
	return sp, nil
}

func (a *API) decodeProxy(c *call) (spec.Proxy, error) {
	b, err := c.body()
	if err != nil {
		return spec.Proxy{}, err
	}
	ps, err := spec.DecodeProxy(bytes.NewReader(b))
	if err != nil {
		return spec.Proxy{}, badRequest("%v", err)
	}
	return ps, nil
}

func (a *API) createProxy(c *call) error {
	ps, err := a.decodeProxy(c)
	if err != nil {
		return err
	}
	sp, err := a.validateProxy(c, ps)
	if err != nil {
		return err
	}
	if err := a.Store.PutProxy(c.r.Context(), sp, true); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return conflict("proxy %s already exists; replace it with PUT /api/v1/proxies/%s", ps.Name, ps.Name)
		}
		if errors.Is(err, store.ErrMissingRef) {
			return badRequest("secret %q does not exist", ps.Auth.Secret)
		}
		return err
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return a.writeProxy(c, http.StatusCreated, ps.Name)
}

func (a *API) writeProxy(c *call, status int, name string) error {
	p, err := a.Store.GetProxy(c.r.Context(), name)
	if err != nil {
		return storeErr(err, "proxy "+name)
	}
	m, err := proxyJSON(p)
	if err != nil {
		return err
	}
	return c.json(status, m)
}

func (a *API) listProxies(c *call) error {
	list, err := a.Store.ListProxies(c.r.Context())
	if err != nil {
		return err
	}
	out := make([]any, 0, len(list))
	for _, p := range list {
		m, err := proxyJSON(p)
		if err != nil {
			return err
		}
		out = append(out, m)
	}
	return c.json(http.StatusOK, map[string]any{"proxies": out})
}

func (a *API) getProxy(c *call) error { return a.writeProxy(c, http.StatusOK, c.r.PathValue("name")) }

func (a *API) replaceProxy(c *call) error {
	name := c.r.PathValue("name")
	b, err := c.body()
	if err != nil {
		return err
	}
	// The name may be omitted in the body; it is the one in the URL.
	ps, err := spec.DecodeProxyNamed(bytes.NewReader(b), name)
	if err != nil {
		return badRequest("%v", err)
	}
	if ps.Name != name {
		return badRequest("the body names proxy %q but the URL names %q; a proxy cannot be renamed", ps.Name, name)
	}
	sp, err := a.validateProxy(c, ps)
	if err != nil {
		return err
	}
	if err := a.Store.PutProxy(c.r.Context(), sp, false); err != nil {
		if errors.Is(err, store.ErrMissingRef) {
			return badRequest("secret %q does not exist", ps.Auth.Secret)
		}
		return storeErr(err, "proxy "+name)
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return a.writeProxy(c, http.StatusOK, name)
}

func (a *API) deleteProxy(c *call) error {
	name := c.r.PathValue("name")
	if err := a.Store.DeleteProxy(c.r.Context(), name); err != nil {
		return storeErr(err, "proxy "+name)
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	c.status = http.StatusNoContent
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// changeRules adds or removes a rule in one store transaction.
func (a *API) changeRules(c *call, name string, change func(ps *spec.Proxy) error) error {
	_, err := a.Store.UpdateProxy(c.r.Context(), name, now(), func(p *store.Proxy) error {
		var ps spec.Proxy
		if err := json.Unmarshal(p.Spec, &ps); err != nil {
			return err
		}
		ps.Normalize()
		if err := change(&ps); err != nil {
			return err
		}
		if err := ps.Validate(); err != nil {
			return badRequest("%v", err)
		}
		if _, err := rules.Compile(ps.Rules, rules.Options{CaseInsensitive: ps.CaseInsensitivePaths}); err != nil {
			return badRequest("%v", err)
		}
		js, err := json.Marshal(ps)
		if err != nil {
			return err
		}
		p.Spec = js
		return nil
	})
	if err != nil {
		return storeErr(err, "proxy "+name)
	}
	return a.reload(c.r.Context())
}

func (a *API) addRule(c *call) error {
	name := c.r.PathValue("name")
	b, err := c.body()
	if err != nil {
		return err
	}
	rule, err := spec.DecodeRule(bytes.NewReader(b))
	if err != nil {
		return badRequest("%v", err)
	}
	err = a.changeRules(c, name, func(ps *spec.Proxy) error {
		for _, r := range ps.Rules {
			if r.Name == rule.Name {
				return conflict("proxy %s already has a rule named %s", name, rule.Name)
			}
		}
		ps.Rules = append(ps.Rules, rule)
		return nil
	})
	if err != nil {
		return err
	}
	return a.writeProxy(c, http.StatusCreated, name)
}

func (a *API) removeRule(c *call) error {
	name, rule := c.r.PathValue("name"), c.r.PathValue("rule")
	err := a.changeRules(c, name, func(ps *spec.Proxy) error {
		i := slices.IndexFunc(ps.Rules, func(r spec.Rule) bool { return r.Name == rule })
		if i < 0 {
			return notFound("rule " + rule + " of proxy " + name)
		}
		ps.Rules = slices.Delete(ps.Rules, i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	return a.writeProxy(c, http.StatusOK, name)
}

// ---- agents and tokens ----

func agentJSON(ag store.Agent) map[string]any {
	return map[string]any{"name": ag.Name, "labels": ag.Labels, "created_at": fmtTime(ag.CreatedAt)}
}

func (a *API) createAgent(c *call) error {
	var req struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if !spec.ValidName(req.Name) {
		return badRequest("agent name %q is invalid: 1–63 characters a-z, 0-9 and -, starting with a letter or digit", clip(req.Name))
	}
	if len(req.Labels) > 64 {
		return badRequest("an agent has at most 64 labels")
	}
	for k, v := range req.Labels {
		if k == "" || len(k) > 63 || len(v) > 256 {
			return badRequest("label keys are 1–63 characters and values at most 256")
		}
	}
	ag := store.Agent{Name: req.Name, Labels: req.Labels, CreatedAt: now()}
	if ag.Labels == nil {
		ag.Labels = map[string]string{}
	}
	if err := a.Store.CreateAgent(c.r.Context(), ag); err != nil {
		return storeErr(err, "agent "+req.Name)
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return c.json(http.StatusCreated, agentJSON(ag))
}

func (a *API) listAgents(c *call) error {
	list, err := a.Store.ListAgents(c.r.Context())
	if err != nil {
		return err
	}
	out := make([]any, 0, len(list))
	for _, ag := range list {
		out = append(out, agentJSON(ag))
	}
	return c.json(http.StatusOK, map[string]any{"agents": out})
}

func (a *API) getAgent(c *call) error {
	ag, err := a.Store.GetAgent(c.r.Context(), c.r.PathValue("name"))
	if err != nil {
		return storeErr(err, "agent "+c.r.PathValue("name"))
	}
	return c.json(http.StatusOK, agentJSON(ag))
}

func (a *API) deleteAgent(c *call) error {
	name := c.r.PathValue("name")
	if err := a.Store.DeleteAgent(c.r.Context(), name, now()); err != nil {
		return storeErr(err, "agent "+name)
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	c.status = http.StatusNoContent
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// DefaultTokenTTL is an agent token's life when ttl is omitted (SPEC §7.1).
const DefaultTokenTTL = 720 * time.Hour

// parseTTL reads a Go duration; "0" means never expires.
func parseTTL(s string, def time.Duration) (*time.Time, error) {
	d := def
	if s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			return nil, badRequest("ttl %q is not a Go duration such as \"24h\" or \"30m\" (\"0\" never expires)", clip(s))
		}
		d = v
	}
	if d == 0 {
		return nil, nil
	}
	e := now().Add(d)
	return &e, nil
}

func (a *API) issueToken(c *call) error {
	agent := c.r.PathValue("name")
	var req struct {
		Proxies []string `json:"proxies"`
		TTL     string   `json:"ttl"`
		Name    string   `json:"name"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if _, err := a.Store.GetAgent(c.r.Context(), agent); err != nil {
		return storeErr(err, "agent "+agent)
	}
	if len(req.Proxies) == 0 {
		return badRequest("a token needs at least one proxy in \"proxies\"")
	}
	snap := a.Catalog.Load()
	seen := map[string]bool{}
	var proxies []string
	for _, p := range req.Proxies {
		if snap.Proxy(p) == nil {
			return badRequest("proxy %q does not exist", clip(p))
		}
		if !seen[p] {
			seen[p] = true
			proxies = append(proxies, p)
		}
	}
	sort.Strings(proxies)
	if len(req.Name) > 128 {
		return badRequest("name is longer than 128 characters")
	}
	exp, err := parseTTL(req.TTL, DefaultTokenTTL)
	if err != nil {
		return err
	}
	raw, err := token.Generate(token.Agent)
	if err != nil {
		return err
	}
	t := store.Token{ID: token.NewID("tok_"), Hash: token.Hash(raw), Agent: agent, Name: req.Name, Proxies: proxies,
		CreatedAt: now(), ExpiresAt: exp}
	if err := a.Store.CreateToken(c.r.Context(), t); err != nil {
		if errors.Is(err, store.ErrMissingRef) {
			return notFound("agent " + agent)
		}
		return err
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return c.json(http.StatusCreated, map[string]any{"id": t.ID, "token": raw, "agent": agent, "name": t.Name,
		"proxies": proxies, "expires_at": fmtTimePtr(exp), "parent_id": nil})
}

func (a *API) listTokens(c *call) error {
	agent := c.r.PathValue("name")
	list, err := a.Store.ListTokens(c.r.Context(), agent)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		if _, err := a.Store.GetAgent(c.r.Context(), agent); err != nil {
			return storeErr(err, "agent "+agent)
		}
	}
	ids := make([]string, len(list))
	for i, t := range list {
		ids[i] = t.ID
	}
	used, err := a.Store.LastUsed(c.r.Context(), ids)
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]any, 0, len(list))
	for _, t := range list {
		state := "active"
		switch {
		case t.RevokedAt != nil:
			state = "revoked"
		case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
			state = "expired"
		}
		var last any
		if u, ok := used[t.ID]; ok {
			last = fmtTime(u)
		}
		out = append(out, map[string]any{"id": t.ID, "name": t.Name, "agent": t.Agent, "proxies": nonNil(t.Proxies),
			"created_at": fmtTime(t.CreatedAt), "expires_at": fmtTimePtr(t.ExpiresAt), "revoked_at": fmtTimePtr(t.RevokedAt),
			"parent_id": nullable(t.ParentID), "depth": t.Depth, "state": state, "last_used_at": last})
	}
	return c.json(http.StatusOK, map[string]any{"tokens": out})
}

func (a *API) revokeToken(c *call) error {
	id := c.r.PathValue("id")
	n, err := a.Store.RevokeToken(c.r.Context(), id, now())
	if err != nil {
		return storeErr(err, "token "+id)
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"id": id, "revoked": n})
}

// ---- admin tokens ----

func (a *API) issueAdminToken(c *call) error {
	var req struct {
		Name string `json:"name"`
		Role string `json:"role"`
		TTL  string `json:"ttl"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	switch req.Role {
	case RoleAdmin, RoleAuditor, RoleViewer:
	default:
		return badRequest("role must be admin, auditor or viewer")
	}
	if req.Name == "" || len(req.Name) > 128 {
		return badRequest("name is required (at most 128 characters): it says whose token this is")
	}
	exp, err := parseTTL(req.TTL, DefaultTokenTTL)
	if err != nil {
		return err
	}
	raw, err := token.Generate(token.Admin)
	if err != nil {
		return err
	}
	t := store.AdminToken{ID: token.NewID("adm_"), Hash: token.Hash(raw), Name: req.Name, Role: req.Role,
		CreatedAt: now(), ExpiresAt: exp}
	if err := a.Store.CreateAdminToken(c.r.Context(), t); err != nil {
		return err
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return c.json(http.StatusCreated, map[string]any{"id": t.ID, "token": raw, "name": t.Name, "role": t.Role,
		"expires_at": fmtTimePtr(exp)})
}

func (a *API) listAdminTokens(c *call) error {
	list, err := a.Store.ListAdminTokens(c.r.Context())
	if err != nil {
		return err
	}
	out := make([]any, 0, len(list))
	for _, t := range list {
		out = append(out, map[string]any{"id": t.ID, "name": t.Name, "role": t.Role, "created_at": fmtTime(t.CreatedAt),
			"expires_at": fmtTimePtr(t.ExpiresAt), "revoked_at": fmtTimePtr(t.RevokedAt)})
	}
	return c.json(http.StatusOK, map[string]any{"admin_tokens": out})
}

func (a *API) revokeAdminToken(c *call) error {
	id := c.r.PathValue("id")
	if err := a.Store.RevokeAdminToken(c.r.Context(), id, now()); err != nil {
		return storeErr(err, "admin token "+id)
	}
	a.endSessions(c.r.Context(), id)
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"id": id, "revoked": true})
}

// now is the API's clock, at the microsecond precision the store keeps, so
// a time answered at creation equals the one read back later.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
