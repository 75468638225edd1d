// Package oauthtest is a fake OAuth 2.0 authorization server for tests of
// keyhole's authorization-code connect (internal/admin/oauth.go): its
// token endpoint serves the authorization-code grant (RFC 6749 §4.1.3)
// with PKCE (RFC 7636 §4.6) and the refresh-token grant. The test plays
// the browser: Consent reads the consent URL keyhole made and registers
// the code the provider would issue for it.
package oauthtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// The client the provider knows.
const ClientID, ClientSecret = "conn-client", "conn_secret_canary_Qx7"

// Grant is what a code was issued for.
type Grant struct{ Challenge, Redirect string }

// Provider is the fake authorization server. Lock Mu to read or change
// its fields while it serves.
type Provider struct {
	*httptest.Server
	Mu       sync.Mutex
	Codes    map[string]Grant // code → what it was issued for
	Refresh  map[string]bool  // refresh tokens issued
	NoRT     bool             // issue no refresh token
	Exchange int              // authorization-code exchanges asked for
	Last     url.Values       // the last token request's form
}

// New starts a provider, closed when t ends. Access and refresh tokens
// start with conn_at_ and conn_rt_.
func New(t testing.TB) *Provider {
	p := &Provider{Codes: map[string]Grant{}, Refresh: map[string]bool{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(b))
		id, secret, ok := r.BasicAuth()
		if ok {
			id, _ = url.QueryUnescape(id)
			secret, _ = url.QueryUnescape(secret)
		} else {
			id, secret = form.Get("client_id"), form.Get("client_secret")
		}
		p.Mu.Lock()
		defer p.Mu.Unlock()
		p.Last = form
		fail := func(code string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":%q,"error_description":"secret %s, code %s"}`, code, ClientSecret, form.Get("code"))
		}
		if id != ClientID || secret != ClientSecret {
			fail("invalid_client")
			return
		}
		switch form.Get("grant_type") {
		case "authorization_code":
			p.Exchange++
			g, ok := p.Codes[form.Get("code")]
			delete(p.Codes, form.Get("code")) // codes are single-use
			sum := sha256.Sum256([]byte(form.Get("code_verifier")))
			if !ok || g.Redirect != form.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != g.Challenge {
				fail("invalid_grant")
				return
			}
		case "refresh_token":
			if !p.Refresh[form.Get("refresh_token")] {
				fail("invalid_grant")
				return
			}
		default:
			fail("unsupported_grant_type")
			return
		}
		m := map[string]any{"access_token": "conn_at_" + random(), "token_type": "Bearer", "expires_in": 3599}
		if !p.NoRT && form.Get("grant_type") == "authorization_code" {
			rt := "conn_rt_" + random()
			p.Refresh[rt] = true
			m["refresh_token"] = rt
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(p.Close)
	return p
}

// Consent is the browser's part: the user consents and the provider
// redirects to keyhole's callback with code, issued for this request. It
// returns the callback URL.
func (p *Provider) Consent(t testing.TB, consentURL, code string) (callback string) {
	t.Helper()
	u, err := url.Parse(consentURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	p.Mu.Lock()
	p.Codes[code] = Grant{Challenge: q.Get("code_challenge"), Redirect: q.Get("redirect_uri")}
	p.Mu.Unlock()
	return q.Get("redirect_uri") + "?" + url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
}

func random() string {
	b := make([]byte, 15)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
