package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// ---- proxies ----

type proxyJSON struct {
	spec.Proxy
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

type proxiesData struct {
	Proxies []proxyJSON
}

func (u *UI) proxies(q *req) error {
	var d struct {
		Proxies []proxyJSON `json:"proxies"`
	}
	if err := u.get(q, "/api/v1/proxies", nil, &d); err != nil {
		return err
	}
	sort.Slice(d.Proxies, func(i, j int) bool { return d.Proxies[i].Name < d.Proxies[j].Name })
	return u.render(q, http.StatusOK, "proxies", q.view("Proxies", "proxies", proxiesData{Proxies: d.Proxies}))
}

// proxyForm is the proxy editor's fields as text.
type proxyForm struct {
	Name, Description, Upstream, AuthType, Secret       string
	Headers, Params, TokenURL, Scopes, Audience         string
	AuthStyle, Region, Service, AgentTokenHeader        string
	StaticHeaders, Rules, Template, TemplateDescription string
}

var authTypes = []string{"none", "bearer", "header", "query", "basic", "oauth2_client_credentials", "oauth2_refresh_token", "aws_sigv4"}

type proxyEditData struct {
	New       bool
	F         proxyForm
	AuthTypes []string
	Secrets   []string
	Templates []templateInfo
}

type templateInfo struct {
	Name  string `json:"name"`
	Title string `json:"title"`
}

func lines(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + sep + m[k] + "\n")
	}
	return b.String()
}

func formOf(p spec.Proxy) proxyForm {
	rules := p.Rules
	if rules == nil {
		rules = []spec.Rule{}
	}
	rj, _ := json.MarshalIndent(rules, "", "  ")
	return proxyForm{Name: p.Name, Description: p.Description, Upstream: p.Upstream, AuthType: p.Auth.Type, Secret: p.Auth.Secret,
		Headers: lines(p.Auth.Headers, ": "), Params: lines(p.Auth.Params, "="), TokenURL: p.Auth.TokenURL,
		Scopes: strings.Join(p.Auth.Scopes, " "), Audience: p.Auth.Audience, AuthStyle: p.Auth.AuthStyle, Region: p.Auth.Region,
		Service: p.Auth.Service, AgentTokenHeader: p.AgentTokenHeader, StaticHeaders: lines(p.StaticHeaders, ": "), Rules: string(rj)}
}

func formFromPost(v url.Values) proxyForm {
	g := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	return proxyForm{Name: g("name"), Description: g("description"), Upstream: g("upstream"), AuthType: g("auth_type"),
		Secret: g("secret"), Headers: v.Get("headers"), Params: v.Get("params"), TokenURL: g("token_url"), Scopes: g("scopes"),
		Audience: g("audience"), AuthStyle: g("auth_style"), Region: g("region"), Service: g("service"),
		AgentTokenHeader: g("agent_token_header"), StaticHeaders: v.Get("static_headers"), Rules: v.Get("rules"), Template: g("template")}
}

// parseLines reads "Name: value" (or "name=value") lines into a map.
func parseLines(s, sep, what string) (map[string]string, error) {
	m := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, val, ok := strings.Cut(line, sep)
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%s, line %d: write it as name%svalue", what, i+1, strings.TrimSpace(sep))
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return m, nil
}

// build turns the editor's fields into a proxy spec, over base (the
// stored proxy when editing, so fields the editor does not show keep
// their values).
func (f proxyForm) build(base map[string]any) (map[string]any, error) {
	p := map[string]any{}
	for k, v := range base {
		p[k] = v
	}
	delete(p, "created_at")
	delete(p, "updated_at")
	p["name"], p["description"], p["upstream"], p["agent_token_header"] = f.Name, f.Description, f.Upstream, f.AgentTokenHeader
	sh, err := parseLines(f.StaticHeaders, ":", "static headers")
	if err != nil {
		return nil, err
	}
	p["static_headers"] = sh
	auth := map[string]any{"type": f.AuthType}
	if old, ok := base["auth"].(map[string]any); ok && old["type"] == f.AuthType && old["refresh_margin"] != nil {
		auth["refresh_margin"] = old["refresh_margin"]
	}
	if f.AuthType != "none" && f.AuthType != "" {
		auth["secret"] = f.Secret
	}
	switch f.AuthType {
	case "header":
		h, err := parseLines(f.Headers, ":", "auth headers")
		if err != nil {
			return nil, err
		}
		auth["headers"] = h
	case "query":
		h, err := parseLines(f.Params, "=", "auth query parameters")
		if err != nil {
			return nil, err
		}
		auth["params"] = h
	case "oauth2_client_credentials", "oauth2_refresh_token":
		auth["token_url"] = f.TokenURL
		if s := strings.Fields(f.Scopes); len(s) > 0 {
			auth["scopes"] = s
		}
		if f.AuthType == "oauth2_client_credentials" {
			if f.Audience != "" {
				auth["audience"] = f.Audience
			}
			if f.AuthStyle != "" {
				auth["auth_style"] = f.AuthStyle
			}
		}
	case "aws_sigv4":
		auth["region"], auth["service"] = f.Region, f.Service
	}
	p["auth"] = auth
	rules := []any{}
	if strings.TrimSpace(f.Rules) != "" {
		if err := json.Unmarshal([]byte(f.Rules), &rules); err != nil {
			return nil, errors.New("rules: not a JSON array of rules (" + err.Error() + ")")
		}
	}
	p["rules"] = rules
	return p, nil
}

func (u *UI) editData(q *req, isNew bool, f proxyForm) (proxyEditData, error) {
	d := proxyEditData{New: isNew, F: f, AuthTypes: authTypes}
	var ss struct {
		Secrets []struct {
			Name string `json:"name"`
		} `json:"secrets"`
	}
	if err := u.get(q, "/api/v1/secrets", nil, &ss); err != nil {
		return d, err
	}
	for _, s := range ss.Secrets {
		d.Secrets = append(d.Secrets, s.Name)
	}
	if isNew {
		var ts struct {
			Templates []templateInfo `json:"templates"`
		}
		if err := u.get(q, "/api/v1/templates", nil, &ts); err != nil {
			return d, err
		}
		d.Templates = ts.Templates
	}
	return d, nil
}

func (u *UI) proxyNew(q *req) error {
	if !q.canChange() {
		return &apiErr{Status: http.StatusForbidden, Message: "Your role (" + q.who.Role + ") cannot create proxies."}
	}
	f := proxyForm{AuthType: "bearer", Rules: "[]"}
	if t := q.r.URL.Query().Get("template"); t != "" {
		var tpl struct {
			Name             string            `json:"name"`
			Title            string            `json:"title"`
			Description      string            `json:"description"`
			Upstream         string            `json:"upstream"`
			Auth             spec.Auth         `json:"auth"`
			AgentTokenHeader string            `json:"agent_token_header"`
			StaticHeaders    map[string]string `json:"static_headers"`
		}
		if err := u.get(q, "/api/v1/templates/"+seg(t), nil, &tpl); err != nil {
			return err
		}
		p := spec.Proxy{Name: tpl.Name, Description: tpl.Description, Upstream: tpl.Upstream, Auth: tpl.Auth,
			AgentTokenHeader: tpl.AgentTokenHeader, StaticHeaders: tpl.StaticHeaders}
		f = formOf(p)
		f.Template, f.TemplateDescription = tpl.Name, tpl.Title
	}
	d, err := u.editData(q, true, f)
	if err != nil {
		return err
	}
	return u.render(q, http.StatusOK, "proxyedit", q.view("New proxy", "proxies", d))
}

func (u *UI) proxyFormError(q *req, isNew bool, f proxyForm, msg string) error {
	d, err := u.editData(q, isNew, f)
	if err != nil {
		return err
	}
	title := "New proxy"
	if !isNew {
		title = "Edit " + f.Name
	}
	v := q.view(title, "proxies", d)
	v.Error = msg
	return u.render(q, http.StatusBadRequest, "proxyedit", v)
}

func (u *UI) proxyCreate(q *req) error {
	f := formFromPost(q.r.PostForm)
	p, err := f.build(nil)
	if err != nil {
		return u.proxyFormError(q, true, f, err.Error())
	}
	if err := u.call(q, http.MethodPost, "/api/v1/proxies", nil, p, nil); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status < 500 && ae.Status != http.StatusForbidden {
			return u.proxyFormError(q, true, f, ae.Message)
		}
		return err
	}
	return u.redirect(q, "/proxies/"+seg(f.Name), "Proxy "+f.Name+" created.")
}

// proxyValidate answers the editor's validation as you type: JSON
// {"ok":true} or {"ok":false,"error":"…"} (POST /api/v1/validate/proxy).
func (u *UI) proxyValidate(q *req) error {
	f := formFromPost(q.r.PostForm)
	var base map[string]any
	if orig := q.r.PostForm.Get("original"); orig != "" {
		if err := u.get(q, "/api/v1/proxies/"+seg(orig), nil, &base); err != nil {
			return writeJSON(q.w, map[string]any{"ok": false, "error": err.Error()})
		}
		f.Name = orig
	}
	p, err := f.build(base)
	if err == nil {
		err = u.call(q, http.MethodPost, "/api/v1/validate/proxy", nil, p, nil)
	}
	if err != nil {
		return writeJSON(q.w, map[string]any{"ok": false, "error": err.Error()})
	}
	return writeJSON(q.w, map[string]any{"ok": true})
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

type proxyDetailData struct {
	P        proxyJSON
	Agents   []string
	Tokens   []string
	LogsLink string
}

func (u *UI) proxyDetail(q *req) error {
	var p proxyJSON
	if err := u.get(q, "/api/v1/proxies/"+seg(q.r.PathValue("name")), nil, &p); err != nil {
		return err
	}
	_, agents := u.names(q)
	d := proxyDetailData{P: p, Agents: agents, LogsLink: "/logs?" + url.Values{"proxy": {p.Name}}.Encode()}
	return u.render(q, http.StatusOK, "proxy", q.view(p.Name, "proxies", d))
}

func (u *UI) proxyEdit(q *req) error {
	if !q.canChange() {
		return &apiErr{Status: http.StatusForbidden, Message: "Your role (" + q.who.Role + ") cannot edit proxies."}
	}
	var p proxyJSON
	if err := u.get(q, "/api/v1/proxies/"+seg(q.r.PathValue("name")), nil, &p); err != nil {
		return err
	}
	d, err := u.editData(q, false, formOf(p.Proxy))
	if err != nil {
		return err
	}
	return u.render(q, http.StatusOK, "proxyedit", q.view("Edit "+p.Name, "proxies", d))
}

func (u *UI) proxyUpdate(q *req) error {
	name := q.r.PathValue("name")
	f := formFromPost(q.r.PostForm)
	f.Name = name
	var base map[string]any
	if err := u.get(q, "/api/v1/proxies/"+seg(name), nil, &base); err != nil {
		return err
	}
	p, err := f.build(base)
	if err != nil {
		return u.proxyFormError(q, false, f, err.Error())
	}
	if err := u.call(q, http.MethodPut, "/api/v1/proxies/"+seg(name), nil, p, nil); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status == http.StatusBadRequest {
			return u.proxyFormError(q, false, f, ae.Message)
		}
		return err
	}
	return u.redirect(q, "/proxies/"+seg(name), "Proxy "+name+" saved.")
}

func (u *UI) proxyDelete(q *req) error {
	name := q.r.PathValue("name")
	if err := u.call(q, http.MethodDelete, "/api/v1/proxies/"+seg(name), nil, nil, nil); err != nil {
		return err
	}
	return u.redirect(q, "/proxies", "Proxy "+name+" deleted.")
}

// ruleFromForm builds a rule from the add-rule form (the page's script
// builds the same JSON to validate as you type).
func ruleFromForm(v url.Values) map[string]any {
	split := func(s string, upper bool) []string {
		out := []string{}
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
			if upper {
				f = strings.ToUpper(f)
			}
			out = append(out, f)
		}
		return out
	}
	r := map[string]any{"name": strings.TrimSpace(v.Get("name")), "effect": v.Get("effect"), "mode": v.Get("mode"),
		"methods": split(v.Get("methods"), true), "paths": split(v.Get("paths"), false), "agents": split(v.Get("agents"), false),
		"when": strings.TrimSpace(v.Get("when")), "rate_limit": strings.TrimSpace(v.Get("rate_limit"))}
	return r
}

func (u *UI) ruleAdd(q *req) error {
	name := q.r.PathValue("name")
	rule := ruleFromForm(q.r.PostForm)
	if err := u.call(q, http.MethodPost, "/api/v1/proxies/"+seg(name)+"/rules", nil, rule, nil); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status < 500 && ae.Status != http.StatusForbidden && ae.Status != http.StatusNotFound {
			return u.redirect(q, "/proxies/"+seg(name)+"#add-rule", "The rule was not added: "+ae.Message)
		}
		return err
	}
	return u.redirect(q, "/proxies/"+seg(name)+"#rules", fmt.Sprintf("Rule %v added.", rule["name"]))
}

func (u *UI) ruleDelete(q *req) error {
	name, rule := q.r.PathValue("name"), q.r.PathValue("rule")
	if err := u.call(q, http.MethodDelete, "/api/v1/proxies/"+seg(name)+"/rules/"+seg(rule), nil, nil, nil); err != nil {
		return err
	}
	return u.redirect(q, "/proxies/"+seg(name)+"#rules", "Rule "+rule+" removed.")
}

// ---- agents and tokens ----

type agentJSON struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	CreatedAt string            `json:"created_at"`
}

type tokenJSON struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Agent      string   `json:"agent"`
	Proxies    []string `json:"proxies"`
	CreatedAt  string   `json:"created_at"`
	ExpiresAt  *string  `json:"expires_at"`
	RevokedAt  *string  `json:"revoked_at"`
	ParentID   *string  `json:"parent_id"`
	Depth      int      `json:"depth"`
	State      string   `json:"state"`
	LastUsedAt *string  `json:"last_used_at"`
}

func (u *UI) agents(q *req) error {
	var d struct {
		Agents []agentJSON `json:"agents"`
	}
	if err := u.get(q, "/api/v1/agents", nil, &d); err != nil {
		return err
	}
	sort.Slice(d.Agents, func(i, j int) bool { return d.Agents[i].Name < d.Agents[j].Name })
	return u.render(q, http.StatusOK, "agents", q.view("Agents and tokens", "agents", d.Agents))
}

func (u *UI) agentCreate(q *req) error {
	name := strings.TrimSpace(q.r.PostForm.Get("name"))
	labels, err := parseLines(strings.ReplaceAll(q.r.PostForm.Get("labels"), ",", "\n"), "=", "labels")
	if err != nil {
		return u.redirect(q, "/agents", "The agent was not created: "+err.Error())
	}
	if err := u.call(q, http.MethodPost, "/api/v1/agents", nil, map[string]any{"name": name, "labels": labels}, nil); err != nil {
		if ae, ok := err.(*apiErr); ok && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict) {
			return u.redirect(q, "/agents", "The agent was not created: "+ae.Message)
		}
		return err
	}
	return u.redirect(q, "/agents/"+seg(name), "Agent "+name+" created. Issue it a token below.")
}

type agentDetailData struct {
	A       agentJSON
	Tokens  []tokenJSON
	Proxies []string
	Issued  *issuedToken
	Logs    string
}

type issuedToken struct {
	ID        string   `json:"id"`
	Token     string   `json:"token"`
	Name      string   `json:"name"`
	Proxies   []string `json:"proxies"`
	ExpiresAt *string  `json:"expires_at"`
}

func (u *UI) agentData(q *req, name string) (agentDetailData, error) {
	var d agentDetailData
	if err := u.get(q, "/api/v1/agents/"+seg(name), nil, &d.A); err != nil {
		return d, err
	}
	var ts struct {
		Tokens []tokenJSON `json:"tokens"`
	}
	if err := u.get(q, "/api/v1/agents/"+seg(name)+"/tokens", nil, &ts); err != nil {
		return d, err
	}
	// Newest first.
	for i := len(ts.Tokens) - 1; i >= 0; i-- {
		d.Tokens = append(d.Tokens, ts.Tokens[i])
	}
	d.Proxies, _ = u.names(q)
	d.Logs = "/logs?" + url.Values{"agent": {name}}.Encode()
	return d, nil
}

func (u *UI) agentDetail(q *req) error {
	d, err := u.agentData(q, q.r.PathValue("name"))
	if err != nil {
		return err
	}
	return u.render(q, http.StatusOK, "agent", q.view(d.A.Name, "agents", d))
}

func (u *UI) agentDelete(q *req) error {
	name := q.r.PathValue("name")
	if err := u.call(q, http.MethodDelete, "/api/v1/agents/"+seg(name), nil, nil, nil); err != nil {
		return err
	}
	return u.redirect(q, "/agents", "Agent "+name+" deleted; its tokens are revoked.")
}

// tokenIssue issues a token and shows it on this answer only: the page is
// not cached (Cache-Control: no-store), and the token is never kept.
func (u *UI) tokenIssue(q *req) error {
	name := q.r.PathValue("name")
	body := map[string]any{"proxies": q.r.PostForm["proxies"], "name": strings.TrimSpace(q.r.PostForm.Get("token_name"))}
	if ttl := strings.TrimSpace(q.r.PostForm.Get("ttl")); ttl != "" {
		body["ttl"] = ttl
	}
	var tok issuedToken
	if err := u.call(q, http.MethodPost, "/api/v1/agents/"+seg(name)+"/tokens", nil, body, &tok); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status == http.StatusBadRequest {
			return u.redirect(q, "/agents/"+seg(name)+"#issue", "The token was not issued: "+ae.Message)
		}
		return err
	}
	d, err := u.agentData(q, name)
	if err != nil {
		return err
	}
	d.Issued = &tok
	return u.render(q, http.StatusCreated, "agent", q.view(d.A.Name, "agents", d))
}

func (u *UI) tokenRevoke(q *req) error {
	id := q.r.PathValue("id")
	var res struct {
		Revoked int `json:"revoked"`
	}
	if err := u.call(q, http.MethodDelete, "/api/v1/tokens/"+seg(id), nil, nil, &res); err != nil {
		return err
	}
	back := localPath(q.r.PostForm.Get("back"))
	return u.redirect(q, back, fmt.Sprintf("Token %s revoked (%d token(s) with its children).", id, res.Revoked))
}

// ---- secrets ----

type secretJSON struct {
	Name      string   `json:"name"`
	Version   int      `json:"version"`
	Kind      string   `json:"kind"`
	Fields    []string `json:"fields"`
	CreatedAt string   `json:"created_at"`
	RotatedAt *string  `json:"rotated_at"`
	UsedBy    []string `json:"used_by"`
}

func (s secretJSON) Versions() []int {
	out := make([]int, 0, s.Version)
	for v := s.Version; v >= 1; v-- {
		out = append(out, v)
	}
	return out
}

func (u *UI) secrets(q *req) error {
	var d struct {
		Secrets []secretJSON `json:"secrets"`
	}
	if err := u.get(q, "/api/v1/secrets", nil, &d); err != nil {
		return err
	}
	return u.render(q, http.StatusOK, "secrets", q.view("Secrets", "secrets", d.Secrets))
}

// secretValue reads a secret form's value: a string, or with kind
// "object" a JSON object of string fields. The value is never put back
// into a page.
func secretValue(v url.Values) (json.RawMessage, bool, error) {
	val := v.Get("value")
	if val == "" {
		return nil, false, nil
	}
	if v.Get("kind") == "object" {
		var obj map[string]string
		if err := json.Unmarshal([]byte(val), &obj); err != nil || obj == nil {
			return nil, true, errors.New(`an object value is a JSON object of string fields, such as {"client_id":"…","client_secret":"…"}`)
		}
		js, err := json.Marshal(obj)
		return js, true, err
	}
	js, err := json.Marshal(val)
	return js, true, err
}

func (u *UI) secretCreate(q *req) error {
	name := strings.TrimSpace(q.r.PostForm.Get("name"))
	val, ok, err := secretValue(q.r.PostForm)
	if err == nil && !ok {
		err = errors.New("type the value")
	}
	if err != nil {
		return u.redirect(q, "/secrets", "The secret was not created: "+err.Error())
	}
	if err := u.call(q, http.MethodPost, "/api/v1/secrets", nil, map[string]any{"name": name, "value": val}, nil); err != nil {
		if ae, ok := err.(*apiErr); ok && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict) {
			return u.redirect(q, "/secrets", "The secret was not created: "+ae.Message)
		}
		return err
	}
	return u.redirect(q, "/secrets/"+seg(name), "Secret "+name+" stored (version 1).")
}

type secretDetailData struct {
	S       secretJSON
	Connect *struct {
		URL         string `json:"url"`
		ExpiresAt   string `json:"expires_at"`
		RedirectURI string `json:"redirect_uri"`
	}
}

func (u *UI) secretDetail(q *req) error {
	var d secretDetailData
	if err := u.get(q, "/api/v1/secrets/"+seg(q.r.PathValue("name")), nil, &d.S); err != nil {
		return err
	}
	return u.render(q, http.StatusOK, "secret", q.view(d.S.Name, "secrets", d))
}

// secretRotate stores a new version only when a new value was typed: an
// empty form changes nothing.
func (u *UI) secretRotate(q *req) error {
	name := q.r.PathValue("name")
	val, ok, err := secretValue(q.r.PostForm)
	if err != nil {
		return u.redirect(q, "/secrets/"+seg(name), "Not rotated: "+err.Error())
	}
	if !ok {
		return u.redirect(q, "/secrets/"+seg(name), "Nothing changed: no new value was typed.")
	}
	var s secretJSON
	if err := u.call(q, http.MethodPut, "/api/v1/secrets/"+seg(name), nil, map[string]any{"value": val}, &s); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status == http.StatusBadRequest {
			return u.redirect(q, "/secrets/"+seg(name), "Not rotated: "+ae.Message)
		}
		return err
	}
	return u.redirect(q, "/secrets/"+seg(name), fmt.Sprintf("Secret %s rotated: version %d is in use from the next request on.", name, s.Version))
}

func (u *UI) secretDelete(q *req) error {
	name := q.r.PathValue("name")
	if err := u.call(q, http.MethodDelete, "/api/v1/secrets/"+seg(name), nil, nil, nil); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status == http.StatusConflict {
			return u.redirect(q, "/secrets/"+seg(name), "Not deleted: "+ae.Message)
		}
		return err
	}
	return u.redirect(q, "/secrets", "Secret "+name+" deleted.")
}

// secretConnect starts an OAuth authorization-code flow
// (POST /api/v1/secrets/{name}/oauth/start) and shows the consent link:
// a redirect to another origin after a form post would be blocked by
// form-action 'self', and a link is what the person should see anyway.
func (u *UI) secretConnect(q *req) error {
	name := q.r.PathValue("name")
	v := q.r.PostForm
	body := map[string]any{"authorize_url": strings.TrimSpace(v.Get("authorize_url")), "token_url": strings.TrimSpace(v.Get("token_url"))}
	if s := strings.Fields(v.Get("scopes")); len(s) > 0 {
		body["scopes"] = s
	}
	if id := strings.TrimSpace(v.Get("client_id")); id != "" {
		body["client_id"], body["client_secret"] = id, v.Get("client_secret")
	}
	var d secretDetailData
	if err := u.call(q, http.MethodPost, "/api/v1/secrets/"+seg(name)+"/oauth/start", nil, body, &d.Connect); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status == http.StatusBadRequest {
			return u.redirect(q, "/secrets/"+seg(name)+"#connect", "Not started: "+ae.Message)
		}
		return err
	}
	if err := u.get(q, "/api/v1/secrets/"+seg(name), nil, &d.S); err != nil {
		// A new secret is created by the callback: show the name only.
		d.S = secretJSON{Name: name}
	}
	return u.render(q, http.StatusOK, "secret", q.view(name, "secrets", d))
}
