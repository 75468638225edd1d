package server

// The dashboard's sessions and OAuth connect flows on several nodes (SPEC
// §10: no node keeps state that another needs): behind a load balancer
// without sticky sessions, every request may reach another node. The
// "balancer" here is the test choosing the node for each request; every
// request carries the one name the balancer answers on (Host and Origin
// keyhole.test), as a browser behind a real one would.

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/admin"
	"github.com/keyhole-gw/keyhole/internal/admin/oauthtest"
	"github.com/keyhole-gw/keyhole/internal/store/postgres/pgtest"
	"github.com/keyhole-gw/keyhole/internal/ui"
)

// lbHost is the name the balancer answers on.
const lbHost = "keyhole.test"

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// dashBrowser is a browser on the dashboard behind the balancer: it keeps
// its cookies and the CSRF token of the last page, and sends each request
// to the node it is given.
type dashBrowser struct {
	t       *testing.T
	cookies map[string]string
	csrf    string
}

func newDashBrowser(t *testing.T) *dashBrowser {
	return &dashBrowser{t: t, cookies: map[string]string{}}
}

// do sends a request to node n as the browser would (form posts carry the
// balancer's Origin) and keeps the cookies it is given.
func (b *dashBrowser) do(n *testNode, method, path string, form url.Values, hdr ...string) *resp {
	b.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, "http://"+n.adm+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Host = lbHost
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method != http.MethodGet {
		req.Header.Set("Origin", "http://"+lbHost)
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r := n.do(req, "dashboard "+method+" "+path, false)
	res := http.Response{Header: r.hdr}
	for _, c := range res.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	if m := csrfInput.FindSubmatch(r.body); m != nil && path != "/login" {
		b.csrf = string(m[1])
	}
	return r
}

// signIn signs in on node n with an admin token.
func (b *dashBrowser) signIn(n *testNode, tok string) {
	b.t.Helper()
	r := b.do(n, "GET", "/login", nil)
	m := csrfInput.FindSubmatch(r.body)
	if r.status != 200 || m == nil {
		b.t.Fatalf("GET /login on %s → %d, no sign-in form", n.adm, r.status)
	}
	r = b.do(n, "POST", "/login", url.Values{"method": {"token"}, "token": {tok}, "next": {"/"}, "csrf": {string(m[1])}})
	if r.status != http.StatusSeeOther || r.hdr.Get("Location") != "/" || b.cookies["keyhole_session"] == "" {
		b.t.Fatalf("sign-in on %s → %d (Location %q), want 303 to / with a session cookie", n.adm, r.status, r.hdr.Get("Location"))
	}
}

// signedIn reports whether node n takes the browser's session: a page and
// an API read.
func (b *dashBrowser) signedIn(n *testNode) bool {
	b.t.Helper()
	page := b.do(n, "GET", "/proxies", nil)
	api := b.do(n, "GET", "/api/v1/whoami", nil)
	switch {
	case page.status == 200 && api.status == 200:
		return true
	case page.status == http.StatusSeeOther && strings.HasPrefix(page.hdr.Get("Location"), "/login") && api.status == http.StatusUnauthorized:
		return false
	}
	b.t.Fatalf("on %s: GET /proxies → %d, GET /api/v1/whoami → %d: neither signed in nor out", n.adm, page.status, api.status)
	return false
}

// TestClusterDashboardSessions: a session signed in on node A works on node
// B — pages, a form change with its CSRF token, an API change from the
// page's script, the one-time message of a change made on B shown on A —
// and signing out on B ends it on A. Revoking an admin token on A ends its
// session on B at once (well within the 1 s propagation bound).
func TestClusterDashboardSessions(t *testing.T) {
	pgtest.Base(t)
	nodes := startCluster(t, 2, "")
	a, b := nodes[0], nodes[1]

	br := newDashBrowser(t)
	br.signIn(a, a.adminToken)
	if !br.signedIn(b) {
		t.Fatal("a session signed in on node A is refused by node B")
	}

	// A form change on B, with the CSRF token of a page B served.
	r := br.do(b, "POST", "/agents", url.Values{"name": {"lb-bot"}, "csrf": {br.csrf}})
	if r.status != http.StatusSeeOther || r.hdr.Get("Location") != "/agents/lb-bot" {
		t.Fatalf("POST /agents on B → %d %q, want 303 to /agents/lb-bot\n%s", r.status, r.hdr.Get("Location"), r.body)
	}
	// Its one-time message is shown on A, once.
	r = br.do(a, "GET", "/agents/lb-bot", nil)
	if r.status != 200 || !strings.Contains(string(r.body), "Agent lb-bot created") {
		t.Errorf("GET /agents/lb-bot on A → %d, without the message of the change made on B", r.status)
	}
	if r = br.do(b, "GET", "/agents/lb-bot", nil); strings.Contains(string(r.body), "Agent lb-bot created") {
		t.Error("the one-time message was shown twice")
	}
	// A wrong CSRF token is refused on B as on A.
	if r = br.do(b, "POST", "/agents", url.Values{"name": {"evil-bot"}, "csrf": {"x" + br.csrf[1:]}}); r.status != http.StatusForbidden {
		t.Errorf("a form with a wrong CSRF token on B → %d, want 403", r.status)
	}
	// The page's script: an API change with the CSRF header, on A.
	r = br.do(a, "POST", "/api/v1/agents", nil, "Content-Type", "application/json", ui.CSRFHeader, br.csrf)
	if r.status != http.StatusBadRequest { // no body: the API, not the session, refused it
		t.Errorf("POST /api/v1/agents with the session and its CSRF header on A → %d, want 400 (an empty body)", r.status)
	}
	req, _ := http.NewRequest("POST", "http://"+a.adm+"/api/v1/agents", strings.NewReader(`{"name":"script-bot"}`))
	req.Host = lbHost
	req.Header.Set("Origin", "http://"+lbHost)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ui.CSRFHeader, br.csrf)
	req.AddCookie(&http.Cookie{Name: "keyhole_session", Value: br.cookies["keyhole_session"]})
	if r = a.do(req, "dashboard script POST /api/v1/agents", false); r.status != http.StatusCreated {
		t.Errorf("the page script's POST /api/v1/agents on A → %d %s", r.status, r.body)
	}
	for _, name := range []string{"lb-bot", "script-bot"} {
		if got := b.admin("GET", "/agents/"+name, nil); got.status != 200 {
			t.Errorf("agent %s made through the session: GET on B → %d", name, got.status)
		}
	}
	if got := b.admin("GET", "/agents/evil-bot", nil); got.status != 404 {
		t.Errorf("the refused form made agent evil-bot")
	}

	// Sign out on B: A refuses the cookie from then on.
	old := br.cookies["keyhole_session"]
	r = br.do(b, "POST", "/logout", url.Values{"csrf": {br.csrf}})
	if r.status != http.StatusSeeOther || r.hdr.Get("Location") != "/login" {
		t.Fatalf("POST /logout on B → %d %q", r.status, r.hdr.Get("Location"))
	}
	br.cookies["keyhole_session"] = old // a copy of the cookie kept somewhere
	if br.signedIn(a) {
		t.Error("node A still takes a session signed out on node B")
	}

	// Revocation: a second admin token's session on B ends when A revokes it.
	m := a.must(http.StatusCreated, "POST", "/admin-tokens", map[string]any{"name": "temp-admin", "role": "admin", "ttl": "1h"})
	tok, id := m["token"].(string), m["id"].(string)
	a.plantToken(tok)
	b.plantToken(tok)
	br2 := newDashBrowser(t)
	var since time.Time
	for deadline := time.Now().Add(5 * time.Second); ; {
		// B may not have the new token in its snapshot yet.
		if time.Now().After(deadline) {
			t.Fatal("node B never took the new admin token's session")
		}
		br2.signIn(a, tok)
		if br2.signedIn(b) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.must(http.StatusOK, "DELETE", "/admin-tokens/"+id, nil)
	since = time.Now()
	first := br2.signedIn(b)
	for still := first; still; still = br2.signedIn(b) {
		if time.Since(since) > time.Second {
			t.Fatalf("node B still takes the session of an admin token revoked on node A %v ago (bound: 1 s)", time.Since(since))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revoked on A: B refused the session %v later", time.Since(since))
	if first {
		t.Error("B took the revoked admin token's session once after the revocation returned; want refused at once (its sessions are deleted)")
	}
}

// TestClusterOAuthConnect: an OAuth connect started on node A completes on
// node B (the provider's redirect goes to the balancer, which picks B); the
// same callback replayed on A stores nothing; and when the callback reaches
// both nodes at once, one completes it.
func TestClusterOAuthConnect(t *testing.T) {
	pgtest.Base(t)
	nodes := startCluster(t, 2, "")
	a, b := nodes[0], nodes[1]
	p := oauthtest.New(t)
	a.plant(oauthtest.ClientSecret)
	b.plant(oauthtest.ClientSecret)

	start := func(n *testNode, secret string) string {
		t.Helper()
		js := `{"authorize_url":"` + p.URL + `/authorize","token_url":"` + p.URL + `/token","client_id":"` + oauthtest.ClientID +
			`","client_secret":"` + oauthtest.ClientSecret + `","scopes":["offline_access"]}`
		req, _ := http.NewRequest("POST", "http://"+n.adm+"/api/v1/secrets/"+secret+"/oauth/start", strings.NewReader(js))
		req.Host = lbHost
		req.Header.Set("Authorization", "Bearer "+n.adminToken)
		req.Header.Set("Content-Type", "application/json")
		r := n.do(req, "admin POST oauth/start", false)
		if r.status != 200 {
			t.Fatalf("oauth/start on %s → %d %s", n.adm, r.status, r.body)
		}
		if got := str(r.obj(), "redirect_uri"); got != "http://"+lbHost+admin.CallbackPath {
			t.Fatalf("redirect_uri %q, want the balancer's", got)
		}
		return str(r.obj(), "url")
	}
	// callback sends the provider's redirect to node n.
	callback := func(n *testNode, cb string) *resp {
		u, err := url.Parse(cb)
		if err != nil || u.Host != lbHost {
			t.Fatalf("callback URL %q", cb)
		}
		req, _ := http.NewRequest("GET", "http://"+n.adm+u.RequestURI(), nil)
		req.Host = lbHost
		return n.do(req, "browser GET oauth callback", false)
	}
	exchanges := func() int {
		p.Mu.Lock()
		defer p.Mu.Unlock()
		return p.Exchange
	}

	cb := p.Consent(t, start(a, "conn"), "code-one")
	if r := callback(b, cb); r.status != 200 || !strings.Contains(string(r.body), "connected") {
		t.Fatalf("the callback of a flow started on A, on B → %d %s", r.status, r.body)
	}
	sm := a.must(200, "GET", "/secrets/conn", nil)
	if sm["version"].(float64) != 1 || fmt.Sprint(sm["fields"]) != "[client_id client_secret refresh_token]" {
		t.Errorf("secret after a connect completed on B: %v", sm)
	}
	// Replayed on A: refused, nothing exchanged or stored.
	if r := callback(a, cb); r.status != 400 {
		t.Errorf("the callback replayed on A after B took it → %d, want 400", r.status)
	}
	if n := exchanges(); n != 1 {
		t.Errorf("the provider was asked to exchange %d codes, want 1", n)
	}
	if v := a.must(200, "GET", "/secrets/conn", nil)["version"].(float64); v != 1 {
		t.Errorf("the replayed callback stored version %v", v)
	}

	// One callback reaching both nodes at once: one completes it.
	for round := range 3 {
		cb := p.Consent(t, start(b, "conn"), "code-race-"+string(rune('a'+round)))
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i, n := range []*testNode{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = callback(n, cb).status
			}()
		}
		wg.Wait()
		if ok := (statuses[0] == 200) != (statuses[1] == 200); !ok || statuses[0]+statuses[1] != 600 {
			t.Errorf("round %d: one callback on A and B at once → %v, want one 200 and one 400", round, statuses)
		}
	}
	if v := a.must(200, "GET", "/secrets/conn", nil)["version"].(float64); v != 4 {
		t.Errorf("after three raced callbacks the secret is at version %v, want 4", v)
	}
	if n := exchanges(); n != 4 {
		t.Errorf("the provider was asked to exchange %d codes, want 4", n)
	}
}
