package inject

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// fakeClock is a settable clock: lifetimes are tested by moving it, never
// by sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tokenRequest is one request the token server received, as parsed from
// the wire.
type tokenRequest struct {
	form         url.Values
	basicID      string // HTTP Basic user (URL-decoded per RFC 6749 §2.3.1)
	basicSecret  string
	rawBasic     string // the Authorization header as sent
	contentType  string
	method       string
	basicPresent bool
}

// tokenServer is an RFC 6749 token endpoint. reply decides each answer;
// every request is recorded.
type tokenServer struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []tokenRequest
	reply func(n int, r tokenRequest, w http.ResponseWriter)
}

func newTokenServer(t *testing.T, reply func(n int, r tokenRequest, w http.ResponseWriter)) *tokenServer {
	ts := &tokenServer{reply: reply}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr := tokenRequest{method: r.Method, contentType: r.Header.Get("Content-Type"), rawBasic: r.Header.Get("Authorization")}
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Basic ") {
			tr.basicPresent = true
			raw, _ := base64.StdEncoding.DecodeString(h[len("Basic "):])
			u, p, _ := strings.Cut(string(raw), ":")
			tr.basicID, _ = url.QueryUnescape(u)
			tr.basicSecret, _ = url.QueryUnescape(p)
		}
		b, _ := io.ReadAll(r.Body)
		tr.form, _ = url.ParseQuery(string(b))
		ts.mu.Lock()
		ts.reqs = append(ts.reqs, tr)
		n := len(ts.reqs)
		ts.mu.Unlock()
		ts.reply(n, tr, w)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.reqs)
}

func (ts *tokenServer) req(i int) tokenRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.reqs[i]
}

// tokenJSON answers an RFC 6749 §5.1 success. expiresIn nil omits it.
func tokenJSON(w http.ResponseWriter, access string, expiresIn any, extra map[string]any) {
	m := map[string]any{"access_token": access, "token_type": "Bearer"}
	if expiresIn != nil {
		m["expires_in"] = expiresIn
	}
	for k, v := range extra {
		m[k] = v
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(m)
}

// oauthError answers an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q,"error_description":%q}`, code, desc)
}

const (
	testClientID     = "client id:with@chars"
	testClientSecret = "s3cret&value=with+special chars"
	testRefresh      = "rt-1-canary-refresh-token"
)

func ccMaterial(version int) *Material {
	return &Material{Name: "oauth", Version: version, Fields: map[string]string{"client_id": testClientID, "client_secret": testClientSecret}}
}

func rtMaterial(version int, refresh string) *Material {
	return &Material{Name: "google", Version: version, Fields: map[string]string{"client_id": testClientID, "client_secret": testClientSecret, "refresh_token": refresh}}
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testOpt(clk *fakeClock, logs *logBuf) OAuthOptions {
	o := OAuthOptions{Now: clk.Now, Backoff: time.Millisecond, AttemptTimeout: 5 * time.Second, Cooldown: 10 * time.Second}
	var w io.Writer = io.Discard
	if logs != nil {
		w = logs
	}
	o.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return o
}

func newSource(t *testing.T, a spec.Auth, m *Material, opt OAuthOptions) *OAuthSource {
	t.Helper()
	set, err := SettingsOf(a)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewOAuthSource(set, m, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// settle waits for the fetch in flight, if any, to publish its result.
func (s *OAuthSource) settle() {
	s.mu.Lock()
	f := s.flight
	s.mu.Unlock()
	if f != nil {
		<-f.done
	}
}

func mustToken(t *testing.T, s *OAuthSource) string {
	t.Helper()
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

// TestOAuthWireFormat pins what keyhole sends to token endpoints: POST,
// application/x-www-form-urlencoded, the grant, scopes space-separated
// (RFC 6749 §3.3), audience when set, and client authentication either as
// HTTP Basic with client_id and client_secret form-urlencoded first
// (RFC 6749 §2.3.1 — so ":" and "&" in them survive) or in the body.
func TestOAuthWireFormat(t *testing.T) {
	tests := []struct {
		name      string
		auth      spec.Auth
		m         *Material
		wantForm  url.Values
		wantBasic bool
	}{
		{"client credentials, header", spec.Auth{Type: "oauth2_client_credentials", Scopes: []string{"read:a", "write:b"}, Audience: "https://api.example.com/"},
			ccMaterial(1), url.Values{"grant_type": {"client_credentials"}, "scope": {"read:a write:b"}, "audience": {"https://api.example.com/"}}, true},
		{"client credentials, body", spec.Auth{Type: "oauth2_client_credentials", AuthStyle: "body"},
			ccMaterial(1), url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID}, "client_secret": {testClientSecret}}, false},
		{"refresh token, header, scopes", spec.Auth{Type: "oauth2_refresh_token", Scopes: []string{"https://www.googleapis.com/auth/drive.readonly", "openid"}},
			rtMaterial(1, testRefresh), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {testRefresh}, "scope": {"https://www.googleapis.com/auth/drive.readonly openid"}}, true},
		{"refresh token, body, no scopes", spec.Auth{Type: "oauth2_refresh_token", AuthStyle: "body"},
			rtMaterial(1, testRefresh), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {testRefresh}, "client_id": {testClientID}, "client_secret": {testClientSecret}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) { tokenJSON(w, "at-wire", 3600, nil) })
			tc.auth.TokenURL = ts.URL + "/oauth/token"
			s := newSource(t, tc.auth, tc.m, testOpt(newClock(), nil))
			o := NewOAuth(s)
			r, _ := http.NewRequest("GET", "https://api.example.com/v1/x", nil)
			r.Header.Set("Authorization", "Bearer kh_agent_would_be_gone")
			if err := o.Apply(r); err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer at-wire" {
				t.Errorf("Authorization = %q", got)
			}
			got := ts.req(0)
			if got.method != "POST" || got.contentType != "application/x-www-form-urlencoded" {
				t.Errorf("%s %s", got.method, got.contentType)
			}
			if fmt.Sprint(got.form) != fmt.Sprint(tc.wantForm) {
				t.Errorf("form\n got  %v\n want %v", got.form, tc.wantForm)
			}
			if got.basicPresent != tc.wantBasic {
				t.Errorf("Basic present = %v", got.basicPresent)
			}
			if tc.wantBasic {
				if got.basicID != testClientID || got.basicSecret != testClientSecret {
					t.Errorf("Basic credentials decode to %q / %q", got.basicID, got.basicSecret)
				}
				want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(testClientID)+":"+url.QueryEscape(testClientSecret)))
				if got.rawBasic != want {
					t.Errorf("Authorization %q, want form-urlencoded id and secret %q", got.rawBasic, want)
				}
			}
		})
	}
}

// TestOAuthLifetime: expires_in is read as sent (number, string as PayPal
// sends, form value); missing, zero, negative or malformed values mean
// UnknownTokenLifetime, huge ones MaxTokenLifetime.
func TestOAuthLifetime(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want time.Duration
	}{
		{float64(3600), time.Hour}, {float64(2), 2 * time.Second}, {"3599", 3599 * time.Second}, {int64(60), time.Minute},
		{json.Number("1.5"), 1500 * time.Millisecond}, {nil, UnknownTokenLifetime}, {float64(0), UnknownTokenLifetime},
		{float64(-5), UnknownTokenLifetime}, {"soon", UnknownTokenLifetime}, {float64(1e12), MaxTokenLifetime},
		{"99999999999999999999", MaxTokenLifetime}, {true, UnknownTokenLifetime},
	} {
		if got := Lifetime(tc.in); got != tc.want {
			t.Errorf("Lifetime(%#v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestOAuthCacheAndEarlyRefresh follows one source on a fake clock: a
// token is reused until min(margin, half its lifetime) before expiry; from
// there one background refresh runs while the current token is still
// sent; at expiry requests wait for a fetch. Two-second tokens are reused
// (for their first second). Lifetimes count from receipt, whatever the
// provider's clock says (its Date header is far in the past here).
func TestOAuthCacheAndEarlyRefresh(t *testing.T) {
	for _, tc := range []struct {
		name              string
		expiresIn         any
		margin            *spec.Duration
		wantReuse, wantEx time.Duration // refresh point and expiry after receipt
	}{
		{"2-second token", 2, nil, time.Second, 2 * time.Second},
		{"one hour, default margin", 3600, nil, time.Hour - time.Minute, time.Hour},
		{"one hour, margin 5m", 3600, durp(5 * time.Minute), 55 * time.Minute, time.Hour},
		{"margin larger than half", 100, durp(10 * time.Minute), 50 * time.Second, 100 * time.Second},
		{"margin 0", 100, durp(0), 100 * time.Second, 100 * time.Second},
		{"expires_in missing", nil, nil, UnknownTokenLifetime - time.Minute, UnknownTokenLifetime},
		{"expires_in 0", 0, nil, UnknownTokenLifetime - time.Minute, UnknownTokenLifetime},
		{"expires_in as a string", "120", nil, 60 * time.Second, 120 * time.Second},
		{"expires_in huge", 1e15, nil, MaxTokenLifetime - time.Minute, MaxTokenLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) {
				w.Header().Set("Date", "Mon, 01 Jan 1990 00:00:00 GMT")
				tokenJSON(w, fmt.Sprintf("at-%d", n), tc.expiresIn, nil)
			})
			s := newSource(t, spec.Auth{Type: "oauth2_client_credentials", TokenURL: ts.URL, RefreshMargin: tc.margin}, ccMaterial(1), testOpt(clk, nil))
			if got := mustToken(t, s); got != "at-1" {
				t.Fatalf("first token %q", got)
			}
			clk.Add(tc.wantReuse - time.Millisecond)
			if got := mustToken(t, s); got != "at-1" || ts.count() != 1 {
				t.Fatalf("just before the refresh point: %q after %d fetches, want at-1 after 1", got, ts.count())
			}
			clk.Add(time.Millisecond)
			if tc.wantReuse < tc.wantEx {
				// Refresh point: the current token goes on, one refresh
				// runs in the background.
				if got := mustToken(t, s); got != "at-1" {
					t.Fatalf("at the refresh point the current token is still sent, got %q", got)
				}
				mustToken(t, s)
				s.settle()
				if ts.count() != 2 {
					t.Fatalf("%d fetches at the refresh point, want 2", ts.count())
				}
				if got := mustToken(t, s); got != "at-2" {
					t.Fatalf("after the refresh: %q", got)
				}
				return
			}
			// No margin: at expiry the request waits for the fetch.
			if got := mustToken(t, s); got != "at-2" || ts.count() != 2 {
				t.Fatalf("at expiry: %q after %d fetches", got, ts.count())
			}
		})
	}
}

func durp(d time.Duration) *spec.Duration { v := spec.Duration(d); return &v }

// TestOAuthThunderingHerd is the SPEC §4 requirement "one refresh at a time
// per proxy": 500 concurrent requests arrive after the token expired. The
// token server holds its answer until all 500 are waiting for it, which
// proves none of them started a fetch of its own: exactly one token
// request is made, and every request gets the new token.
func TestOAuthThunderingHerd(t *testing.T) {
	const n = 500
	clk := newClock()
	allWaiting := make(chan struct{})
	var fetches atomic.Int32
	ts := newTokenServer(t, func(k int, r tokenRequest, w http.ResponseWriter) {
		if fetches.Add(1) == 2 {
			<-allWaiting // the herd's fetch: answer once all n wait
		}
		tokenJSON(w, fmt.Sprintf("at-%d", k), 60, nil)
	})
	s := newSource(t, spec.Auth{Type: "oauth2_client_credentials", TokenURL: ts.URL}, ccMaterial(1), testOpt(clk, nil))
	if mustToken(t, s) != "at-1" {
		t.Fatal("priming failed")
	}
	var once sync.Once
	s.mu.Lock()
	s.onWait = func(w int) {
		if w == n {
			once.Do(func() { close(allWaiting) })
		}
	}
	s.mu.Unlock()
	clk.Add(61 * time.Second) // past expiry
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = s.Token(context.Background())
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != "at-2" {
			t.Fatalf("request %d: %q %v", i, got[i], errs[i])
		}
	}
	if c := ts.count(); c != 2 {
		t.Errorf("%d token requests for the priming and %d concurrent requests, want 2", c, n)
	}
}

// TestOAuthEndpointFaults: each failure mode of a token endpoint is
// retried only when it may be transient, a bounded number of times, then
// the request fails closed — and neither the error nor the log holds the
// secret, the refresh token, the error_description or the body the
// endpoint sent.
func TestOAuthEndpointFaults(t *testing.T) {
	const leak = "LEAKY-BODY-" + testClientSecret
	var stall chan struct{}
	tests := []struct {
		name         string
		reply        func(w http.ResponseWriter)
		wantAttempts int
		wantReason   string
	}{
		{"invalid_client is final", func(w http.ResponseWriter) { oauthError(w, 401, "invalid_client", leak) }, 1, "HTTP 401 error invalid_client"},
		{"invalid_grant is final", func(w http.ResponseWriter) { oauthError(w, 400, "invalid_grant", leak) }, 1, "HTTP 400 error invalid_grant"},
		{"error in a 200 is final", func(w http.ResponseWriter) { oauthError(w, 200, "invalid_scope", leak) }, 1, "error invalid_scope"},
		{"5xx retried", func(w http.ResponseWriter) { w.WriteHeader(503); w.Write([]byte(leak)) }, 3, "HTTP 503"},
		{"429 retried", func(w http.ResponseWriter) { w.WriteHeader(429) }, 3, "HTTP 429"},
		{"non-JSON 200 retried", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>" + leak + "</html>"))
		}, 3, "not an RFC 6749 token response"},
		{"no access_token", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"token_type":"Bearer","expires_in":60,"note":"` + leak + `"}`))
		}, 3, "no access_token"},
		{"redirect is not followed", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://elsewhere.example/token")
			w.WriteHeader(302)
		}, 1, "HTTP 302"},
		{"stall", func(w http.ResponseWriter) { <-stall }, 3, "did not answer in time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			logs := &logBuf{}
			stall = make(chan struct{})
			ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) { tc.reply(w) })
			t.Cleanup(func() { close(stall) }) // before the server closes
			opt := testOpt(clk, logs)
			opt.AttemptTimeout = 50 * time.Millisecond
			s := newSource(t, spec.Auth{Type: "oauth2_refresh_token", TokenURL: ts.URL}, rtMaterial(1, testRefresh), opt)
			o := NewOAuth(s)
			r, _ := http.NewRequest("GET", "https://api.example.com/", nil)
			err := o.Apply(r)
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("Apply = %v, want ErrAuthFailed", err)
			}
			if r.Header.Get("Authorization") != "" {
				t.Error("a credential was set on a request that must not be sent")
			}
			if c := ts.count(); c != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", c, tc.wantAttempts)
			}
			if !strings.Contains(err.Error(), tc.wantReason) {
				t.Errorf("error %q does not say %q", err, tc.wantReason)
			}
			for _, secret := range []string{testClientSecret, url.QueryEscape(testClientSecret), testRefresh, "LEAKY-BODY"} {
				if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("%q leaked: error %q, logs %q", secret, err, logs.String())
				}
			}
			// Cooldown: the next request fails at once, without a fetch.
			before := ts.count()
			if _, err := s.Token(context.Background()); !errors.Is(err, ErrAuthFailed) || ts.count() != before {
				t.Errorf("in the cooldown: %v after %d fetches (was %d)", err, ts.count(), before)
			}
			clk.Add(11 * time.Second)
			s.Token(context.Background())
			if ts.count() == before {
				t.Error("after the cooldown no new fetch was made")
			}
		})
	}
}

// TestOAuthRecovers: a fetch that fails twice then succeeds is one fetch
// with three attempts, and the request gets the token.
func TestOAuthRecovers(t *testing.T) {
	ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) {
		if n < 3 {
			w.WriteHeader(502)
			return
		}
		tokenJSON(w, "at-ok", 60, nil)
	})
	s := newSource(t, spec.Auth{Type: "oauth2_client_credentials", TokenURL: ts.URL}, ccMaterial(1), testOpt(newClock(), nil))
	if got := mustToken(t, s); got != "at-ok" || ts.count() != 3 {
		t.Errorf("%q after %d attempts", got, ts.count())
	}
}

// TestOAuthRefreshTokenRotation: a refresh token returned by the provider
// is used from then on and stored as the next version of the secret (base
// version checked) before the request gets its access token; a store that
// fails is retried; a rotation by someone else wins.
func TestOAuthRefreshTokenRotation(t *testing.T) {
	clk := newClock()
	valid := map[string]bool{"rt-1": true}
	var vmu sync.Mutex
	ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) {
		vmu.Lock()
		defer vmu.Unlock()
		rt := r.form.Get("refresh_token")
		if !valid[rt] {
			oauthError(w, 400, "invalid_grant", "refresh token revoked")
			return
		}
		// A rotating provider: each use retires the refresh token.
		delete(valid, rt)
		next := fmt.Sprintf("rt-%d", n+1)
		valid[next] = true
		tokenJSON(w, fmt.Sprintf("at-%d", n), 60, map[string]any{"refresh_token": next, "scope": "a b"})
	})
	type call struct {
		name   string
		base   int
		fields map[string]string
	}
	var mu sync.Mutex
	var stored []call
	version := 1
	fail := false
	opt := testOpt(clk, nil)
	opt.Persist = func(ctx context.Context, name string, base int, fields map[string]string) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return 0, errors.New("store unavailable")
		}
		if base != version {
			return 0, ErrVersionMoved
		}
		version++
		stored = append(stored, call{name, base, fields})
		return version, nil
	}
	s := newSource(t, spec.Auth{Type: "oauth2_refresh_token", TokenURL: ts.URL}, rtMaterial(1, "rt-1"), opt)
	if got := mustToken(t, s); got != "at-1" {
		t.Fatalf("first token %q", got)
	}
	mu.Lock()
	if len(stored) != 1 || stored[0].base != 1 || stored[0].fields["refresh_token"] != "rt-2" ||
		stored[0].fields["client_id"] != testClientID || stored[0].fields["client_secret"] != testClientSecret {
		t.Fatalf("stored %+v, want version 2 with refresh_token rt-2 and the client", stored)
	}
	mu.Unlock()
	if s.Version() != 2 {
		t.Errorf("version in use %d, want 2", s.Version())
	}
	// The snapshot rebuilt from version 2 (keyhole's own rotation) keeps
	// the access token.
	s.Update(rtMaterial(2, "rt-2"))
	if got := mustToken(t, s); got != "at-1" || ts.count() != 1 {
		t.Errorf("after its own rotation came back: %q after %d fetches", got, ts.count())
	}

	// The store fails: the new refresh token is used from memory, and
	// stored at the next chance (here: the next fetch, before it runs).
	mu.Lock()
	fail = true
	mu.Unlock()
	clk.Add(61 * time.Second)
	if got := mustToken(t, s); got != "at-2" {
		t.Fatalf("with the store failing: %q", got)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	clk.Add(61 * time.Second)
	if got := mustToken(t, s); got != "at-3" {
		t.Fatalf("rt-3 from memory was not used: %q", got)
	}
	mu.Lock()
	if len(stored) != 3 || stored[1].fields["refresh_token"] != "rt-3" || stored[2].fields["refresh_token"] != "rt-4" {
		t.Errorf("stored %+v, want rt-3 (the retry) then rt-4", stored)
	}
	mu.Unlock()

	// An admin rotates the secret (a new grant): the cached token of the
	// old grant is dropped and the new refresh token is used.
	vmu.Lock()
	valid["rt-admin"] = true
	vmu.Unlock()
	s.Update(rtMaterial(10, "rt-admin"))
	if got := mustToken(t, s); got != "at-4" {
		t.Errorf("after an admin rotation: %q", got)
	}
	if r := ts.req(3); r.form.Get("refresh_token") != "rt-admin" {
		t.Errorf("refresh after an admin rotation used %q", r.form.Get("refresh_token"))
	}
}

// TestOAuthRotationLosesToAdmin: the secret was rotated by an admin while
// the provider's new refresh token was being stored: the store refuses
// (version moved) and the admin's value is used.
func TestOAuthRotationLosesToAdmin(t *testing.T) {
	ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) {
		tokenJSON(w, fmt.Sprintf("at-%d", n), 60, map[string]any{"refresh_token": fmt.Sprintf("rt-new-%d", n)})
	})
	opt := testOpt(newClock(), nil)
	var calls atomic.Int32
	opt.Persist = func(ctx context.Context, name string, base int, fields map[string]string) (int, error) {
		calls.Add(1)
		return 0, ErrVersionMoved
	}
	s := newSource(t, spec.Auth{Type: "oauth2_refresh_token", TokenURL: ts.URL}, rtMaterial(1, "rt-1"), opt)
	mustToken(t, s)
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if pending || calls.Load() != 1 {
		t.Errorf("pending %v after %d store calls: a lost race must not be retried", pending, calls.Load())
	}
}

// TestOAuthInvalidate: after a 401 the token used is dropped and one new
// fetch is made, however many requests saw the 401; a request whose token
// is already stale just takes the new one.
func TestOAuthInvalidate(t *testing.T) {
	ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) {
		tokenJSON(w, fmt.Sprintf("access-%d-token", n), 3600, nil)
	})
	s := newSource(t, spec.Auth{Type: "oauth2_client_credentials", TokenURL: ts.URL}, ccMaterial(1), testOpt(newClock(), nil))
	o := NewOAuth(s)
	if mustToken(t, s) != "access-1-token" {
		t.Fatal("priming failed")
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := http.NewRequest("GET", "https://x/", nil)
			r.Header.Set("Authorization", "Bearer access-1-token")
			if err := o.Refresh(r); err != nil || r.Header.Get("Authorization") != "Bearer access-2-token" {
				t.Errorf("Refresh: %v %q", err, r.Header.Get("Authorization"))
			}
		}()
	}
	wg.Wait()
	if ts.count() != 2 {
		t.Errorf("%d fetches, want 2 (one for at-1, one after the 401s)", ts.count())
	}
	vals := strings.Join(o.Values(), " ")
	if !strings.Contains(vals, "access-2-token") || !strings.Contains(vals, "access-1-token") {
		t.Errorf("Values() lacks the current or previous access token")
	}
}

// TestOAuthConfig refuses what cannot work.
func TestOAuthConfig(t *testing.T) {
	if _, err := SettingsOf(spec.Auth{Type: "oauth2_client_credentials", Scopes: []string{"a b"}}); err == nil {
		t.Error("a scope with a space (two scopes in one) was accepted")
	}
	if _, err := SettingsOf(spec.Auth{Type: "oauth2_client_credentials", Scopes: []string{`a"b`}}); err == nil {
		t.Error("a scope with a quote was accepted")
	}
	set, _ := SettingsOf(spec.Auth{Type: "oauth2_refresh_token"})
	if _, err := NewOAuthSource(set, ccMaterial(1), OAuthOptions{}); err == nil || !strings.Contains(err.Error(), "refresh_token") {
		t.Errorf("refresh-token grant without a refresh_token field: %v", err)
	}
	if _, err := NewOAuthSource(set, &Material{Name: "s", Fields: map[string]string{"": "xxxxxxxxx"}}, OAuthOptions{}); err == nil {
		t.Error("a string secret was accepted")
	}
}

// TestReplay: a small body is kept for a retry (and reads the same both
// times); a body over ReplayLimit streams untouched and cannot be
// replayed.
func TestReplay(t *testing.T) {
	small := strings.Repeat("s", 1000)
	r, _ := http.NewRequest("POST", "https://x/", io.NopCloser(strings.NewReader(small)))
	r.ContentLength = -1
	if !Replay(r) {
		t.Fatal("a small body is not replayable")
	}
	b1, _ := io.ReadAll(r.Body)
	rb, _ := r.GetBody()
	b2, _ := io.ReadAll(rb)
	if string(b1) != small || string(b2) != small || r.ContentLength != int64(len(small)) {
		t.Errorf("replayed bodies differ")
	}
	big := strings.Repeat("b", ReplayLimit+10)
	r, _ = http.NewRequest("POST", "https://x/", io.NopCloser(strings.NewReader(big)))
	r.ContentLength = -1
	if Replay(r) {
		t.Fatal("a body over the limit is replayable")
	}
	if b, _ := io.ReadAll(r.Body); string(b) != big {
		t.Errorf("the streamed body was changed (%d bytes)", len(b))
	}
	r, _ = http.NewRequest("GET", "https://x/", nil)
	if !Replay(r) {
		t.Error("a bodyless request is not replayable")
	}
}
