package ui_test

// The dashboard's security measures, over plain HTTP (no browser): the
// headers of every page, the session cookie's attributes, CSRF on forms
// and on the API, roles, the end of a session when its admin token is
// revoked, sign-in audit records and limits, and dashboard users.

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/ui"
)

// browser is a cookie-keeping HTTP client that does not follow redirects.
type browser struct {
	t    *testing.T
	n    *node
	c    *http.Client
	csrf string // the session's CSRF token, read from a page
}

func newBrowser(t *testing.T, n *node) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, n: n, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.n.admin+path, rd)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfField.FindStringSubmatch(string(body)); m != nil && path != "/login" {
		b.csrf = m[1]
	}
	return resp, string(body)
}

func (b *browser) origin() map[string]string { return map[string]string{"Origin": b.n.admin} }

// login signs in with a form (token or password) and returns the answer.
func (b *browser) login(form url.Values) *http.Response {
	b.t.Helper()
	_, page := b.do("GET", "/login", nil, nil)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("the sign-in page has no CSRF field:\n%s", page)
	}
	form.Set("csrf", m[1])
	resp, _ := b.do("POST", "/login", form, b.origin())
	return resp
}

func (b *browser) loginToken(tok string) {
	b.t.Helper()
	resp := b.login(url.Values{"method": {"token"}, "token": {tok}, "next": {"/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		b.t.Fatalf("sign-in = %d (Location %q), want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	b.do("GET", "/", nil, nil) // reads the CSRF token
}

func TestPageHeadersAndSessionCookie(t *testing.T) {
	n := startNode(t)
	b := newBrowser(t, n)

	// Signed out: every page sends to the sign-in page; the API answers 401.
	resp, _ := b.do("GET", "/logs?proxy=x", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Flogs%3Fproxy%3Dx" {
		t.Fatalf("GET /logs signed out = %d %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp = b.login(url.Values{"method": {"token"}, "token": {n.token}, "next": {"//evil.example/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("sign-in with next=//evil.example/ redirects to %q, want / (no open redirect)", resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "keyhole_session" {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("no session cookie in %v", resp.Header["Set-Cookie"])
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.Secure {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", session)
	}
	if len(session.Value) != 43 {
		t.Errorf("session cookie value has %d characters, want 43 (256 random bits)", len(session.Value))
	}

	for _, p := range []string{"/", "/logs", "/proxies", "/proxies/new", "/agents", "/secrets", "/audit", "/access", "/login", "/nope"} {
		resp, body := b.do("GET", p, nil, nil)
		h := resp.Header
		if got := h.Get("Content-Security-Policy"); got != ui.CSP {
			t.Errorf("%s: Content-Security-Policy %q, want %q", p, got, ui.CSP)
		}
		for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
			"Cache-Control": "no-store", "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", p, k, got, want)
			}
		}
		if strings.Contains(body, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(body) || strings.Contains(body, "style=") {
			t.Errorf("%s: the page has an inline script, event handler or style attribute", p)
		}
		if strings.Contains(body, n.token) {
			t.Errorf("%s: the page holds the admin token", p)
		}
	}
	for _, want := range []string{"script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(ui.CSP, want) {
			t.Errorf("CSP lacks %s", want)
		}
	}
}

func TestCSRF(t *testing.T) {
	n := startNode(t)
	b := newBrowser(t, n)
	b.loginToken(n.token)
	form := func(csrf string) url.Values { return url.Values{"csrf": {csrf}, "name": {"bot-1"}} }

	tests := []struct {
		name string
		form url.Values
		hdr  map[string]string
		want int
	}{
		{"no token", url.Values{"name": {"bot-1"}}, b.origin(), http.StatusForbidden},
		{"wrong token", form("x" + b.csrf[1:]), b.origin(), http.StatusForbidden},
		{"another origin", form(b.csrf), map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"no origin or referer", form(b.csrf), nil, http.StatusForbidden},
		{"cross-site fetch metadata", form(b.csrf), map[string]string{"Origin": n.admin, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"a referer of this origin", form(b.csrf), map[string]string{"Referer": n.admin + "/agents"}, http.StatusSeeOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := b.do("POST", "/agents", tc.form, tc.hdr)
			if resp.StatusCode != tc.want {
				t.Errorf("POST /agents = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if st, _ := n.api(n.token, "GET", "/api/v1/agents/bot-1", nil); st != 200 {
		t.Errorf("the accepted form did not create the agent (%d)", st)
	}

	// The API with the session cookie: a change needs the header token.
	api := func(hdr map[string]string) int {
		h := map[string]string{"Content-Type": "application/json", "Origin": n.admin}
		for k, v := range hdr {
			h[k] = v
		}
		req, _ := http.NewRequest("POST", n.admin+"/api/v1/agents", strings.NewReader(`{"name":"bot-2"}`))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := api(nil); st != http.StatusForbidden {
		t.Errorf("API change with the cookie and no CSRF header = %d, want 403", st)
	}
	if st := api(map[string]string{ui.CSRFHeader: b.csrf, "Origin": "http://evil.example"}); st != http.StatusForbidden {
		t.Errorf("API change from another origin = %d, want 403", st)
	}
	if st := api(map[string]string{ui.CSRFHeader: b.csrf}); st != http.StatusCreated {
		t.Errorf("API change with the CSRF header = %d, want 201", st)
	}
	// The CSRF token is not kept in the change's audit record.
	out := n.mustAPI(n.token, "GET", "/api/v1/logs?proxy=-admin&reason=agent.create&limit=5", nil, 200)
	for _, r := range out["records"].([]any) {
		if h, _ := r.(map[string]any)["request_headers"].(map[string]any); h != nil {
			if _, ok := h[ui.CSRFHeader]; ok {
				t.Errorf("an audit record keeps the %s header: %v", ui.CSRFHeader, h)
			}
			if c, ok := h["Cookie"].([]any); ok && !strings.Contains(c[0].(string), "REDACTED") {
				t.Errorf("an audit record keeps the session cookie: %v", c)
			}
		}
	}
}

func TestRolesAndRevocation(t *testing.T) {
	n := startNode(t)
	n.setup("sk_test_" + randAlnum(24))
	viewer := n.mustAPI(n.token, "POST", "/api/v1/admin-tokens", map[string]any{"name": "vic", "role": "viewer"}, 201)
	b := newBrowser(t, n)
	b.loginToken(viewer["token"].(string))

	_, page := b.do("GET", "/proxies/echo", nil, nil)
	for _, s := range []string{`/proxies/echo/edit`, `id="rule-form"`, `/proxies/echo/delete`} {
		if strings.Contains(page, s) {
			t.Errorf("a viewer's proxy page offers a change (%s)", s)
		}
	}
	_, page = b.do("GET", "/proxies", nil, nil)
	if strings.Contains(page, `href="/proxies/new"`) {
		t.Errorf("a viewer's proxies page offers New proxy")
	}
	// The server refuses anyway: a form post and an API call.
	resp, _ := b.do("POST", "/proxies/echo/delete", url.Values{"csrf": {b.csrf}}, b.origin())
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's delete form = %d, want 403", resp.StatusCode)
	}
	req, _ := http.NewRequest("DELETE", n.admin+"/api/v1/proxies/echo", nil)
	req.Header.Set(ui.CSRFHeader, b.csrf)
	req.Header.Set("Origin", n.admin)
	r2, _ := b.c.Do(req)
	r2.Body.Close()
	if r2.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's API delete = %d, want 403", r2.StatusCode)
	}
	if st, _ := n.api(n.token, "GET", "/api/v1/proxies/echo", nil); st != 200 {
		t.Fatalf("the proxy is gone after a viewer's refused delete")
	}

	// Revoking the admin token ends the session at once.
	n.mustAPI(n.token, "DELETE", "/api/v1/admin-tokens/"+viewer["id"].(string), nil, 200)
	resp, _ = b.do("GET", "/proxies", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("after revocation GET /proxies = %d %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ = http.NewRequest("GET", n.admin+"/api/v1/proxies", nil)
	r3, _ := b.c.Do(req)
	r3.Body.Close()
	if r3.StatusCode != http.StatusUnauthorized {
		t.Errorf("after revocation the API with the cookie = %d, want 401", r3.StatusCode)
	}
}

func TestSignInAuditAndLimits(t *testing.T) {
	n := startNode(t)
	b := newBrowser(t, n)
	if resp := b.login(url.Values{"method": {"token"}, "token": {"kha_wrong"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong token signs in: %d", resp.StatusCode)
	}
	if resp := b.login(url.Values{"method": {"token"}, "token": {"kh_" + randAlnum(40)}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an agent token signs in: %d", resp.StatusCode)
	}
	// A sign-in form from another origin is refused.
	_, page := b.do("GET", "/login", nil, nil)
	m := csrfField.FindStringSubmatch(page)
	resp, _ := b.do("POST", "/login", url.Values{"csrf": {m[1]}, "method": {"token"}, "token": {n.token}}, map[string]string{"Origin": "http://evil.example"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-origin sign-in = %d, want 403", resp.StatusCode)
	}
	b.loginToken(n.token)
	resp, _ = b.do("POST", "/logout", url.Values{"csrf": {b.csrf}}, b.origin())
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out = %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out GET / = %d, want a redirect to the sign-in page", resp.StatusCode)
	}

	out := n.mustAPI(n.token, "GET", "/api/v1/logs?proxy=-admin&limit=50", nil, 200)
	reasons := map[string]int{}
	for _, r := range out["records"].([]any) {
		reasons[r.(map[string]any)["reason"].(string)]++
	}
	for _, want := range []string{"login_failed:bad_token", "login_failed:agent_token", "login:token", "logout"} {
		if reasons[want] == 0 {
			t.Errorf("no audit record with reason %s (have %v)", want, reasons)
		}
	}

	// Ten failures from one address: the next attempt is refused, even
	// with the right token.
	c := newBrowser(t, n)
	for range 10 {
		c.login(url.Values{"method": {"token"}, "token": {"kha_wrong"}})
	}
	if resp := c.login(url.Values{"method": {"token"}, "token": {n.token}}); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("sign-in after 10 failures = %d, want 429", resp.StatusCode)
	}
}

func TestUsers(t *testing.T) {
	n := startNode(t)
	pw := "correct horse " + randAlnum(8)
	n.mustAPI(n.token, "POST", "/api/v1/users", map[string]any{"name": "alice", "role": "auditor", "password": pw}, 201)
	n.mustAPI(n.token, "POST", "/api/v1/users", map[string]any{"name": "alice", "role": "viewer", "password": pw}, 409)
	if st, out := n.api(n.token, "POST", "/api/v1/users", map[string]any{"name": "bob", "role": "viewer", "password": "short"}); st != 400 {
		t.Errorf("a short password = %d %v, want 400", st, out)
	}
	list := n.mustAPI(n.token, "GET", "/api/v1/users", nil, 200)["users"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["role"] != "auditor" || list[0].(map[string]any)["state"] != "active" {
		t.Errorf("GET /users = %v", list)
	}
	if strings.Contains(strings.ToLower(strings.Join(strings.Fields(func() string { _, o := n.api(n.token, "GET", "/api/v1/users", nil); return toJSON(o) }()), "")), "pbkdf2") {
		t.Errorf("GET /users shows the password hash")
	}

	b := newBrowser(t, n)
	if resp := b.login(url.Values{"method": {"password"}, "user": {"alice"}, "password": {pw + "x"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong password signs in: %d", resp.StatusCode)
	}
	if resp := b.login(url.Values{"method": {"password"}, "user": {"nobody"}, "password": {pw}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unknown user signs in: %d", resp.StatusCode)
	}
	resp := b.login(url.Values{"method": {"password"}, "user": {"alice"}, "password": {pw}, "next": {"/access"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/access" {
		t.Fatalf("alice's sign-in = %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page := b.do("GET", "/access", nil, nil)
	if !strings.Contains(page, "alice") || !strings.Contains(page, "auditor") {
		t.Errorf("the access page does not show alice as auditor")
	}
	// Deleting the user ends the session.
	n.mustAPI(n.token, "DELETE", "/api/v1/users/alice", nil, 204)
	if resp, _ := b.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the user was deleted GET / = %d, want a redirect to the sign-in page", resp.StatusCode)
	}
	out := n.mustAPI(n.token, "GET", "/api/v1/logs?proxy=-admin&limit=50", nil, 200)
	var sawOK, sawBad bool
	for _, r := range out["records"].([]any) {
		rec := r.(map[string]any)
		sawOK = sawOK || rec["reason"] == "login:password" && rec["agent"] == "alice"
		sawBad = sawBad || rec["reason"] == "login_failed:bad_password"
	}
	if !sawOK || !sawBad {
		t.Errorf("the audit log lacks alice's sign-in (%v) or the failed one (%v)", sawOK, sawBad)
	}
}
