package templates

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/inject/sigv4verify"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// required is the list: every one must be in the catalog.
var required = []string{"openai", "anthropic", "gemini", "mistral", "stripe", "github", "slack", "notion", "linear",
	"hubspot", "salesforce", "google", "twilio", "sendgrid", "datadog", "airtable", "aws-bedrock"}

// want is, per template, what must reach the upstream: exact header values
// (the secret's fields are "SECRET", "ID", "PW", "API", "APP"; OAuth
// tokens "ACCESS"), and the agent token header the official SDK uses.
var want = map[string]struct {
	headers    map[string]string
	tokenHdr   string
	authType   string
	secretKind []string
}{
	"openai":          {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"anthropic":       {map[string]string{"X-Api-Key": "SECRET-VALUE", "Anthropic-Version": "2023-06-01"}, "X-Api-Key", "header", nil},
	"gemini":          {map[string]string{"X-Goog-Api-Key": "SECRET-VALUE"}, "X-Goog-Api-Key", "header", nil},
	"mistral":         {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"stripe":          {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"github":          {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"slack":           {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"notion":          {map[string]string{"Authorization": "Bearer SECRET-VALUE", "Notion-Version": "2022-06-28"}, "", "bearer", nil},
	"linear":          {map[string]string{"Authorization": "SECRET-VALUE"}, "", "header", nil},
	"hubspot":         {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"hubspot-oauth":   {map[string]string{"Authorization": "Bearer ACCESS-TOKEN"}, "", "oauth2_refresh_token", []string{"client_id", "client_secret", "refresh_token"}},
	"salesforce":      {map[string]string{"Authorization": "Bearer ACCESS-TOKEN"}, "", "oauth2_refresh_token", []string{"client_id", "client_secret", "refresh_token"}},
	"google":          {map[string]string{"Authorization": "Bearer ACCESS-TOKEN"}, "", "oauth2_refresh_token", []string{"client_id", "client_secret", "refresh_token"}},
	"twilio":          {map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ACID-VALUE:PW-VALUE"))}, "", "basic", []string{"username", "password"}},
	"sendgrid":        {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"datadog":         {map[string]string{"Dd-Api-Key": "API-VALUE", "Dd-Application-Key": "APP-VALUE"}, "Dd-Api-Key", "header", []string{"api_key", "app_key"}},
	"airtable":        {map[string]string{"Authorization": "Bearer SECRET-VALUE"}, "", "bearer", nil},
	"aws-bedrock":     {nil, "", "aws_sigv4", []string{"access_key_id", "secret_access_key"}},
	"aws-s3":          {nil, "", "aws_sigv4", []string{"access_key_id", "secret_access_key"}},
	"microsoft-graph": {map[string]string{"Authorization": "Bearer ACCESS-TOKEN"}, "", "oauth2_client_credentials", []string{"client_id", "client_secret"}},
}

func material(fields []string) *inject.Material {
	m := &inject.Material{Name: "s", Version: 1, Fields: map[string]string{}}
	if len(fields) == 0 {
		m.Fields[""] = "SECRET-VALUE"
		return m
	}
	vals := map[string]string{"username": "ACID-VALUE", "password": "PW-VALUE", "api_key": "API-VALUE", "app_key": "APP-VALUE",
		"client_id": "CLIENT-ID", "client_secret": "CLIENT-SECRET", "refresh_token": "REFRESH-TOKEN",
		"access_key_id": "AKIDTEMPLATES", "secret_access_key": "aws-secret-value"}
	for _, f := range fields {
		m.Fields[f] = vals[f]
	}
	return m
}

func TestCatalogComplete(t *testing.T) {
	names := Names()
	for _, n := range required {
		if !slices.Contains(names, n) {
			t.Errorf("template %s is missing", n)
		}
	}
	for _, n := range names {
		if _, ok := want[n]; !ok {
			t.Errorf("template %s has no expectation in this test", n)
		}
	}
	seen := map[string]bool{}
	for _, tp := range All() {
		if seen[tp.Name] {
			t.Errorf("template %s twice", tp.Name)
		}
		seen[tp.Name] = true
		if !spec.ValidName(tp.Name) || tp.Title == "" || tp.Description == "" || tp.SDK == "" || tp.Example == "" || !strings.HasPrefix(tp.Docs, "https://") {
			t.Errorf("%s: name, title, description, SDK, example and docs are all required", tp.Name)
		}
		for _, r := range tp.Requires {
			switch r {
			case "upstream", "scopes", "token_url":
			default:
				t.Errorf("%s: unknown requirement %q", tp.Name, r)
			}
		}
		if tp.Connect != nil && !strings.HasPrefix(tp.Connect.AuthorizeURL, "https://") {
			t.Errorf("%s: connect needs an https authorize URL", tp.Name)
		}
		if w := want[tp.Name]; w.authType != tp.Auth.Type || !slices.Equal(tp.SecretFields, w.secretKind) {
			t.Errorf("%s: auth %s fields %v, want %s %v", tp.Name, tp.Auth.Type, tp.SecretFields, w.authType, w.secretKind)
		}
		if w := want[tp.Name]; http.CanonicalHeaderKey(tp.AgentTokenHeader) != w.tokenHdr {
			t.Errorf("%s: agent_token_header %q, want %q", tp.Name, tp.AgentTokenHeader, w.tokenHdr)
		}
		// Get hands out copies: changing one changes nothing.
		g, _ := Get(tp.Name)
		g.StaticHeaders = map[string]string{"X": "y"}
		if g.Auth.Headers != nil {
			for k := range g.Auth.Headers {
				g.Auth.Headers[k] = "changed"
			}
		}
		if again, _ := Get(tp.Name); again.Auth.Headers != nil && slices.Contains(mapValues(again.Auth.Headers), "changed") {
			t.Errorf("%s: Get returns shared maps", tp.Name)
		}
	}
	if _, ok := Get("nope"); ok {
		t.Error("an unknown template was found")
	}
	// The JSON is the API's answer: it must round-trip.
	b, err := json.Marshal(All())
	if err != nil {
		t.Fatal(err)
	}
	var back []Template
	if err := json.Unmarshal(b, &back); err != nil || len(back) != len(all) {
		t.Fatalf("JSON round trip: %v", err)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestEveryTemplateInjects builds each template's proxy spec (validated as
// the admin API validates it), its injector from a secret with the
// template's fields, and sends a request to an httptest upstream: the
// headers that arrive are exactly the expected ones; SigV4 templates'
// requests verify at an independent verifier.
func TestEveryTemplateInjects(t *testing.T) {
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"ACCESS-TOKEN","token_type":"bearer","expires_in":3600}`))
	}))
	defer tokenSrv.Close()
	for _, tp := range All() {
		t.Run(tp.Name, func(t *testing.T) {
			w := want[tp.Name]
			var got http.Header
			var verr error
			var h http.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })
			if tp.Auth.Type == "aws_sigv4" {
				v := &sigv4verify.Verifier{Secrets: map[string]string{"AKIDTEMPLATES": "aws-secret-value"}, Region: "eu-central-1", Service: tp.Auth.Service}
				inner := h
				h = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
					_, verr = v.Verify(sigv4verify.FromHTTP(r), nil)
					inner.ServeHTTP(rw, r)
				})
			}
			up := httptest.NewServer(h)
			defer up.Close()

			p := tp.Proxy("p-"+tp.Name, "", "s")
			if tp.RegionUpstream("eu-central-1") != "" {
				p.Upstream = tp.RegionUpstream("eu-central-1")
				p.Auth.Region = "eu-central-1"
			}
			for _, r := range tp.Requires {
				switch r {
				case "upstream":
					p.Upstream = "https://yourco.my.salesforce.com"
				case "token_url":
					p.Auth.TokenURL = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token"
				case "scopes":
					if len(p.Auth.Scopes) == 0 {
						p.Auth.Scopes = []string{"openid"}
					}
				}
			}
			p.Normalize()
			if err := p.Validate(); err != nil {
				t.Fatalf("the template's proxy does not validate: %v", err)
			}
			p.Upstream = up.URL
			m := material(tp.SecretFields)
			var in inject.Injector
			var err error
			switch tp.Auth.Type {
			case "oauth2_client_credentials", "oauth2_refresh_token":
				p.Auth.TokenURL = tokenSrv.URL
				set, serr := inject.SettingsOf(p.Auth)
				if serr != nil {
					t.Fatal(serr)
				}
				var src *inject.OAuthSource
				src, err = inject.NewOAuthSource(set, m, inject.OAuthOptions{})
				if err == nil {
					in = inject.NewOAuth(src)
				}
			case "aws_sigv4":
				in, err = inject.NewSigV4(p.Auth, m, nil)
			default:
				in, err = inject.NewStatic(p.Auth, m)
			}
			if err != nil {
				t.Fatalf("injector: %v", err)
			}
			r, _ := http.NewRequest("GET", up.URL+"/v1/x", nil)
			for k, v := range p.StaticHeaders { // as the gateway's rewrite does, before Apply
				r.Header.Set(k, v)
			}
			if err := in.Apply(r); err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if tp.Auth.Type == "aws_sigv4" {
				if verr != nil {
					t.Errorf("the signature does not verify: %v", verr)
				}
				if !strings.HasPrefix(got.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEMPLATES/") {
					t.Errorf("Authorization %q", got.Get("Authorization"))
				}
				return
			}
			for k, v := range w.headers {
				if g := got.Values(k); len(g) != 1 || g[0] != v {
					t.Errorf("%s: got %q, want %q", k, g, v)
				}
			}
		})
	}
}
