package cli

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/inject/sigv4verify"
)

// tokenEndpoint is an RFC 6749 token endpoint for the template and connect
// tests: client credentials, refresh token and authorization code (PKCE).
type tokenEndpoint struct {
	*httptest.Server
	mu     sync.Mutex
	token  string
	codes  map[string][2]string // code → challenge, redirect_uri
	rts    map[string]bool
	grants []url.Values
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	te := &tokenEndpoint{token: "at_tpl_" + randAlnum(24), codes: map[string][2]string{}, rts: map[string]bool{}}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(b))
		te.mu.Lock()
		defer te.mu.Unlock()
		te.grants = append(te.grants, form)
		bad := func(code string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"`+code+`"}`)
		}
		m := map[string]any{"access_token": te.token, "token_type": "Bearer", "expires_in": 3600}
		switch form.Get("grant_type") {
		case "client_credentials":
		case "refresh_token":
			if !te.rts[form.Get("refresh_token")] {
				bad("invalid_grant")
				return
			}
		case "authorization_code":
			g, ok := te.codes[form.Get("code")]
			delete(te.codes, form.Get("code"))
			sum := sha256.Sum256([]byte(form.Get("code_verifier")))
			if !ok || g[0] != base64.RawURLEncoding.EncodeToString(sum[:]) || g[1] != form.Get("redirect_uri") {
				bad("invalid_grant")
				return
			}
			rt := "rt_cli_" + randAlnum(20)
			te.rts[rt] = true
			m["refresh_token"] = rt
		default:
			bad("unsupported_grant_type")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(te.Close)
	return te
}

// headerUpstream records the headers of the last request.
type headerUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	last http.Header
	path string
	err  error
}

func newHeaderUpstream(t *testing.T, v *sigv4verify.Verifier) *headerUpstream {
	u := &headerUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		defer u.mu.Unlock()
		u.last, u.path, u.err = r.Header.Clone(), r.URL.Path, nil
		if v != nil {
			_, u.err = v.Verify(sigv4verify.FromHTTP(r), body)
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

// TestTemplatesEndToEnd is the table test: for every template of
// the node's catalog, `keyhole proxy create --template` against an httptest
// upstream (and token endpoint), then a call the way the API's official
// SDK makes it (its key in the template's agent_token_header, or Bearer):
// the upstream must receive exactly the credential headers the API wants
// (SigV4 templates: a signature an independent verifier accepts).
func TestTemplatesEndToEnd(t *testing.T) {
	n := startNode(t)
	te := newTokenEndpoint(t)
	n.plant(te.token)
	n.ok(t, "", "agent", "create", "sdk-bot")

	var list struct {
		Templates []templateView `json:"templates"`
	}
	if err := json.Unmarshal([]byte(n.ok(t, "", "proxy", "templates", "--json")), &list); err != nil || len(list.Templates) < 17 {
		t.Fatalf("proxy templates --json: %v (%d)", err, len(list.Templates))
	}
	if out := n.ok(t, "", "proxy", "templates", "anthropic"); !strings.Contains(out, "x-api-key") || !strings.Contains(out, "anthropic-version") {
		t.Errorf("proxy templates anthropic:\n%s", out)
	}
	for _, tp := range list.Templates {
		t.Run(tp.Name, func(t *testing.T) {
			name := "t-" + tp.Name
			secretName := "s-" + tp.Name
			vals := map[string]string{}
			fields := tp.SecretFields
			if len(fields) == 0 {
				v := "sk_tpl_" + randAlnum(24)
				n.plant(v)
				vals[""] = v
				n.ok(t, v, "secret", "set", secretName)
			} else {
				obj := map[string]string{}
				for _, f := range fields {
					obj[f] = f + "_" + randAlnum(16)
					if f == "refresh_token" {
						te.mu.Lock()
						te.rts[obj[f]] = true
						te.mu.Unlock()
					}
					if f != "username" && f != "client_id" && f != "access_key_id" {
						n.plant(obj[f])
					}
				}
				vals = obj
				b, _ := json.Marshal(obj)
				n.ok(t, string(b), "secret", "set", secretName, "--object")
			}
			var v *sigv4verify.Verifier
			if tp.Auth.Type == "aws_sigv4" {
				v = &sigv4verify.Verifier{Secrets: map[string]string{vals["access_key_id"]: vals["secret_access_key"]}, Region: "eu-west-1", Service: tp.Auth.Service}
			}
			up := newHeaderUpstream(t, v)
			args := []string{"proxy", "create", name, "--template", tp.Name, "--secret", secretName, "--upstream", up.URL, "--allow", "* /**"}
			if strings.HasPrefix(tp.Auth.Type, "oauth2_") {
				args = append(args, "--token-url", te.URL+"/token")
			}
			for _, r := range tp.Requires {
				if r == "scopes" {
					args = append(args, "--scope", "read")
				}
			}
			if tp.Auth.Type == "aws_sigv4" {
				args = append(args, "--region", "eu-west-1")
			}
			out := n.ok(t, "", args...)
			if !strings.Contains(out, "proxy "+name+" created") || !strings.Contains(out, "SDK:") {
				t.Errorf("proxy create printed %q", out)
			}
			tok := strings.TrimSpace(n.ok(t, "", "token", "issue", "sdk-bot", "--proxy", name))

			req, _ := http.NewRequest("POST", n.gw+"/"+name+"/v1/call?x=1", strings.NewReader(`{"q":1}`))
			req.Header.Set("Content-Type", "application/json")
			if h := tp.AgentTokenHeader; h != "" {
				req.Header.Set(h, tok) // as the SDK sends its api_key
			} else {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("call → %d %s", res.StatusCode, body)
			}
			up.mu.Lock()
			got, verr := up.last, up.err
			up.mu.Unlock()
			basic := base64.StdEncoding.EncodeToString([]byte(vals["username"] + ":" + vals["password"]))
			want := map[string]map[string]string{
				"openai":          {"Authorization": "Bearer " + vals[""]},
				"anthropic":       {"X-Api-Key": vals[""], "Anthropic-Version": "2023-06-01"},
				"gemini":          {"X-Goog-Api-Key": vals[""]},
				"mistral":         {"Authorization": "Bearer " + vals[""]},
				"stripe":          {"Authorization": "Bearer " + vals[""]},
				"github":          {"Authorization": "Bearer " + vals[""]},
				"slack":           {"Authorization": "Bearer " + vals[""]},
				"notion":          {"Authorization": "Bearer " + vals[""], "Notion-Version": "2022-06-28"},
				"linear":          {"Authorization": vals[""]},
				"hubspot":         {"Authorization": "Bearer " + vals[""]},
				"hubspot-oauth":   {"Authorization": "Bearer " + te.token},
				"salesforce":      {"Authorization": "Bearer " + te.token},
				"google":          {"Authorization": "Bearer " + te.token},
				"microsoft-graph": {"Authorization": "Bearer " + te.token},
				"twilio":          {"Authorization": "Basic " + basic},
				"sendgrid":        {"Authorization": "Bearer " + vals[""]},
				"datadog":         {"Dd-Api-Key": vals["api_key"], "Dd-Application-Key": vals["app_key"]},
				"airtable":        {"Authorization": "Bearer " + vals[""]},
			}
			if tp.Auth.Type == "aws_sigv4" {
				if verr != nil || !strings.HasPrefix(got.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+vals["access_key_id"]+"/") {
					t.Errorf("SigV4: %v (Authorization %q)", verr, got.Get("Authorization"))
				}
				return
			}
			w, ok := want[tp.Name]
			if !ok {
				t.Fatalf("no expectation for template %s: add it", tp.Name)
			}
			for k, v := range w {
				if g := got.Values(k); len(g) != 1 || g[0] != v {
					t.Errorf("%s = %q, want exactly %q", k, g, v)
				}
			}
			// The keyhole token reached the upstream nowhere.
			for k, vs := range got {
				for _, v := range vs {
					if strings.Contains(v, tok) {
						t.Errorf("the agent's token reached the upstream in %s", k)
					}
				}
			}
		})
	}

	t.Run("overrides and requirements", func(t *testing.T) {
		if r := n.run("", "proxy", "create", "sf", "--template", "salesforce", "--secret", "s-salesforce"); r.code == 0 || !strings.Contains(r.err, "--upstream") {
			t.Errorf("salesforce without --upstream: %d %s", r.code, r.err)
		}
		if r := n.run("", "proxy", "create", "oa", "--template", "openai"); r.code == 0 || !strings.Contains(r.err, "--secret") {
			t.Errorf("openai without --secret: %d %s", r.code, r.err)
		}
		if r := n.run("", "proxy", "create", "x", "--template", "nope", "--secret", "s-openai"); r.code == 0 || !strings.Contains(r.err, "no template nope") {
			t.Errorf("unknown template: %d %s", r.code, r.err)
		}
		// --region picks the regional endpoint; --static-header replaces
		// the template's header of that name.
		var p proxyView
		out := n.ok(t, "", "proxy", "create", "bedrock-eu", "--template", "aws-bedrock", "--secret", "s-aws-bedrock", "--region", "eu-central-1", "--json")
		json.Unmarshal([]byte(out), &p)
		if p.Upstream != "https://bedrock-runtime.eu-central-1.amazonaws.com" || p.Auth.Region != "eu-central-1" || p.Auth.Service != "bedrock" {
			t.Errorf("aws-bedrock --region eu-central-1: %s %s %s", p.Upstream, p.Auth.Region, p.Auth.Service)
		}
		out = n.ok(t, "", "proxy", "create", "notion-new", "--template", "notion", "--secret", "s-notion", "--static-header", "notion-version: 2025-09-03", "--json")
		json.Unmarshal([]byte(out), &p)
		if len(p.StaticHeaders) != 1 || (p.StaticHeaders["Notion-Version"] != "2025-09-03" && p.StaticHeaders["notion-version"] != "2025-09-03") {
			t.Errorf("static header override: %v", p.StaticHeaders)
		}
	})
}

// TestSecretConnect: `keyhole secret connect` prints the consent URL and
// waits; the "browser" consents and the provider redirects to keyhole's
// callback; the command then reports the stored version, and a proxy of
// type oauth2_refresh_token uses the refresh token it stored.
func TestSecretConnect(t *testing.T) {
	n := startNode(t)
	te := newTokenEndpoint(t)
	n.plant(te.token)
	const clientSecret = "client_secret_canary_Zr8"
	n.plant(clientSecret)
	env := n.env()
	env["PROVIDER_SECRET"] = clientSecret

	pr, pw := io.Pipe()
	var errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCLI(context.Background(), env, strings.NewReader(""), pw, &errb, "secret", "connect", "gconn",
			"--authorize-url", te.URL+"/authorize", "--token-url", te.URL+"/token", "--scope", "read", "--scope", "offline_access",
			"--param", "access_type=offline", "--client-id", "cid-1", "--client-secret-from-env", "PROVIDER_SECRET", "--poll-interval", "20ms")
		pw.Close()
	}()
	rd := bufio.NewReader(pr)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("no URL printed: %v; stderr %s", err, errb.String())
	}
	consent, err := url.Parse(strings.TrimSpace(line))
	if err != nil || !strings.HasPrefix(line, te.URL+"/authorize?") {
		t.Fatalf("printed %q", line)
	}
	q := consent.Query()
	if q.Get("client_id") != "cid-1" || q.Get("scope") != "read offline_access" || q.Get("access_type") != "offline" ||
		q.Get("code_challenge_method") != "S256" || q.Get("redirect_uri") != n.admin+"/api/v1/oauth/callback" {
		t.Errorf("consent URL %s", line)
	}
	// The user consents: the provider issues a code for this request and
	// sends the browser back to keyhole.
	te.mu.Lock()
	te.codes["the-code"] = [2]string{q.Get("code_challenge"), q.Get("redirect_uri")}
	te.mu.Unlock()
	res, err := http.Get(q.Get("redirect_uri") + "?code=the-code&state=" + url.QueryEscape(q.Get("state")))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("callback → %d", res.StatusCode)
	}
	rest, _ := io.ReadAll(rd)
	if code := <-done; code != 0 {
		t.Fatalf("secret connect exited %d: %s %s", code, rest, errb.String())
	}
	n.mu.Lock()
	n.outputs = append(n.outputs, line+string(rest)+errb.String())
	n.mu.Unlock()
	if !strings.Contains(string(rest), "secret gconn connected: version 1") {
		t.Errorf("secret connect printed %q", rest)
	}
	if out := n.ok(t, "", "secret", "show", "gconn"); !strings.Contains(out, "client_id,client_secret,refresh_token") {
		t.Errorf("secret show:\n%s", out)
	}

	up := newHeaderUpstream(t, nil)
	n.ok(t, "", "proxy", "create", "gapi", "--upstream", up.URL, "--auth", "oauth2_refresh_token", "--secret", "gconn",
		"--token-url", te.URL+"/token", "--allow", "GET /**")
	n.ok(t, "", "agent", "create", "g-bot")
	tok := strings.TrimSpace(n.ok(t, "", "token", "issue", "g-bot", "--proxy", "gapi"))
	if st, body := n.call("GET", "/gapi/drive/v3/files", tok); st != 200 {
		t.Fatalf("call → %d %s", st, body)
	}
	up.mu.Lock()
	if up.last.Get("Authorization") != "Bearer "+te.token {
		t.Error("the upstream did not get the access token from the connected refresh token")
	}
	up.mu.Unlock()

	// Refusals that need no provider.
	if r := n.run("", "secret", "connect", "x"); r.code == 0 || !strings.Contains(r.err, "--authorize-url") {
		t.Errorf("no URLs: %d %s", r.code, r.err)
	}
	if r := n.run("", "secret", "connect", "x", "--template", "openai"); r.code == 0 || !strings.Contains(r.err, "no OAuth connect") {
		t.Errorf("a template without connect: %d %s", r.code, r.err)
	}
	if r := n.run("", "secret", "connect", "x", "--authorize-url", te.URL, "--token-url", te.URL, "--client-id", "c"); r.code == 0 || !strings.Contains(r.err, "client secret") {
		t.Errorf("--client-id without a secret: %d %s", r.code, r.err)
	}
	// --no-wait prints the URL and returns.
	r := n.run("", "secret", "connect", "gconn", "--template", "google", "--scope", "openid", "--no-wait", "--token-url", te.URL+"/token")
	if r.code != 0 || !strings.Contains(r.out, "access_type=offline") || !strings.Contains(r.out, "prompt=consent") ||
		!strings.HasPrefix(r.out, "https://accounts.google.com/o/oauth2/v2/auth?") {
		t.Errorf("--template google --no-wait: %d %q %s", r.code, r.out, r.err)
	}
}
