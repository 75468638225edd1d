package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// OAuth 2.0 upstream authentication (SPEC §4: oauth2_client_credentials and
// oauth2_refresh_token).
//
// The moving part is the access token, which changes without the
// configuration changing. It lives in an OAuthSource, which the catalog keeps
// across snapshot rebuilds (catalog/dynamic.go); each snapshot's OAuth
// injector is a thin view over it. A source:
//
//   - caches the access token and refreshes it ahead of expiry, by
//     min(refresh_margin (default 60 s), half the token's lifetime), the
//     lifetime counted from the moment the response was received
//     (expires_in), so the clocks of keyhole and the provider never need to
//     agree and even a 2-second token is reused for its first second;
//   - fetches one token at a time: a request that finds no usable token
//     waits for the fetch in flight, if any, instead of starting its own
//     (500 concurrent requests across an expiry make one token request);
//     between the refresh point and expiry the current token is still sent
//     and one refresh runs in the background, so no request waits for it;
//   - retries a failed fetch a bounded number of times, with exponential
//     backoff, only when the failure may be transient (network, timeout,
//     408, 429, 5xx, an unparsable answer); RFC 6749 §5.2 errors
//     (invalid_client, invalid_grant…) fail at once. After a failed fetch,
//     requests fail at once for a short cooldown rather than hammer the
//     endpoint. A request is never forwarded without its credential: the
//     gateway answers 502 upstream_auth_failed;
//   - stores a refresh token that the provider rotated as a new version of
//     the secret before any other refresh can run (Persist), so a provider
//     that rotates refresh tokens is never left holding one keyhole lost;
//   - never logs or returns a token, a secret or the token endpoint's
//     error_description or body: only the status, the RFC 6749 error code
//     and the number of attempts.

// Grant types.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// DefaultRefreshMargin is how long before expiry a token is refreshed when
// the proxy does not say (SPEC §4).
const DefaultRefreshMargin = 60 * time.Second

// Lifetimes of tokens whose expires_in is missing, zero, negative or not
// a number (RFC 6749 §5.1 makes it only RECOMMENDED; Salesforce omits
// it), and the longest lifetime believed (a token "valid for 68 years" is
// still refreshed daily, and a huge number cannot overflow).
const (
	UnknownTokenLifetime = time.Hour
	MaxTokenLifetime     = 24 * time.Hour
)

// ReplayLimit bounds the request body kept in memory so that a request
// that got 401 can be sent again with a fresh access token. A longer body
// streams and is not retried.
const ReplayLimit = 1 << 20

// ErrAuthCooldown: the last fetch failed moments ago; the request fails at
// once instead of asking the token endpoint again.
var ErrAuthCooldown = fmt.Errorf("%w: the token endpoint failed moments ago", ErrAuthFailed)

// OAuthOptions are a node's settings for talking to token endpoints. The
// zero value of each field takes the default shown.
type OAuthOptions struct {
	// Client sends token requests. It must refuse redirects and carry the
	// node's SSRF guard (the catalog builds it). Default: a plain client
	// without redirects, for tests.
	Client *http.Client
	// Now is the clock (lifetimes are counted on it). Default time.Now.
	Now func() time.Time
	// Attempts per fetch (default 3); Backoff before the second attempt,
	// doubled each time (default 250 ms); AttemptTimeout bounds each
	// attempt (default 10 s); Cooldown is how long requests fail at once
	// after a fetch failed (default 1 s).
	Attempts       int
	Backoff        time.Duration
	AttemptTimeout time.Duration
	Cooldown       time.Duration
	// Persist stores a rotated refresh token: it writes fields as a new
	// version of the secret named name, only if the secret is still at
	// version base, and returns the new version. Nil: rotations are kept in
	// memory only (tests).
	Persist func(ctx context.Context, name string, base int, fields map[string]string) (int, error)
	// Lock, when set, is held across each refresh-token grant and the
	// storing of the refresh token it returns, so that several nodes
	// (SPEC §10) spend a refresh token one at a time: providers revoke
	// the old refresh token when they issue a new one, and a node that
	// sent the old one after another node's refresh would get
	// invalid_grant. It is called with the secret's name; when it
	// returns, the source must already hold the secret's latest version
	// (the catalog's lock rebuilds the snapshot, which calls Update), so
	// that the refresh uses the token the last holder stored. Nil: one
	// node, no lock.
	Lock   func(ctx context.Context, secret string) (unlock func(), err error)
	Logger *slog.Logger
}

func (o *OAuthOptions) defaults() {
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.Backoff <= 0 {
		o.Backoff = 250 * time.Millisecond
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	if o.Cooldown <= 0 {
		o.Cooldown = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// OAuthSettings are the parts of a proxy's auth that select a token: two
// proxies whose settings and secret are equal share one source.
type OAuthSettings struct {
	Grant     string // GrantClientCredentials or GrantRefreshToken
	TokenURL  string
	Scopes    []string
	Audience  string
	AuthStyle string // "header" (default) or "body"
	Margin    time.Duration
}

// SettingsOf reads the OAuth settings of a proxy's auth, checking what the
// spec's validation cannot: each scope is one RFC 6749 §3.3 scope-token.
func SettingsOf(a spec.Auth) (OAuthSettings, error) {
	s := OAuthSettings{TokenURL: a.TokenURL, Scopes: a.Scopes, Audience: a.Audience, AuthStyle: a.AuthStyle, Margin: DefaultRefreshMargin}
	switch a.Type {
	case "oauth2_client_credentials":
		s.Grant = GrantClientCredentials
	case "oauth2_refresh_token":
		s.Grant = GrantRefreshToken
	default:
		return s, errf("auth type %s is not an OAuth 2.0 type", a.Type)
	}
	if s.AuthStyle == "" {
		s.AuthStyle = "header"
	}
	if a.RefreshMargin != nil {
		s.Margin = time.Duration(*a.RefreshMargin)
	}
	for i, sc := range s.Scopes {
		if !ValidScope(sc) {
			return s, errf("auth.scopes[%d] is not one scope: RFC 6749 §3.3 scopes are sent space-separated, so give each one separately and without spaces or quotes", i)
		}
	}
	return s, nil
}

// Key identifies the source of a secret and settings.
func (s OAuthSettings) Key(secret string) string {
	sc := append([]string(nil), s.Scopes...)
	sort.Strings(sc)
	b, _ := json.Marshal([]any{secret, s.Grant, s.TokenURL, sc, s.Audience, s.AuthStyle, int64(s.Margin)})
	return string(b)
}

// ValidScope reports whether s is one RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func ValidScope(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// oauthCreds are the secret's fields a source uses, and their version.
type oauthCreds struct {
	clientID, clientSecret, refresh string
	fields                          map[string]string
	version                         int
}

func credsOf(m *Material, grant string) (oauthCreds, error) {
	if m == nil {
		return oauthCreds{}, errf("the secret does not exist")
	}
	need := []string{"client_id", "client_secret"}
	if grant == GrantRefreshToken {
		need = append(need, "refresh_token")
	}
	for _, f := range need {
		if m.Fields[f] == "" {
			return oauthCreds{}, errf("OAuth 2.0 needs an object secret with fields %s; secret %q has fields %s", strings.Join(need, ", "), m.Name, fieldList(m))
		}
	}
	fields := make(map[string]string, len(m.Fields))
	for k, v := range m.Fields {
		fields[k] = v
	}
	return oauthCreds{clientID: m.Fields["client_id"], clientSecret: m.Fields["client_secret"], refresh: m.Fields["refresh_token"],
		fields: fields, version: m.Version}, nil
}

// accessToken is a cached token with its schedule (on the source's clock).
type accessToken struct {
	value     string
	refreshAt time.Time // from here on, one background refresh
	expiry    time.Time // from here on, never sent
}

// flight is one fetch. done closes when its result is known; the source
// stays busy (no new fetch) until a rotated refresh token is stored.
type flight struct {
	done chan struct{}
	tok  *accessToken
	err  error
}

// OAuthSource fetches, caches and refreshes one access token. It outlives
// configuration snapshots; Update gives it each snapshot's secret.
type OAuthSource struct {
	opt    OAuthOptions
	set    OAuthSettings
	secret string

	// pmu is held by a fetch and by the storing of a rotated refresh
	// token, so that no fetch uses a refresh token that is not stored.
	pmu        sync.Mutex
	mu         sync.Mutex
	creds      oauthCreds
	cur        *accessToken
	prev       string  // the token before cur, still scrubbed
	flight     *flight // non-nil while a fetch (or the storing of its refresh token) runs
	failUntil  time.Time
	lastErr    error
	pending    bool // a rotated refresh token is not stored yet
	persisting bool // a background retry of the store runs
	waiting    int
	// onWait, when set (tests), is called with the number of requests
	// waiting for a fetch each time it changes, with mu held.
	onWait  func(n int)
	fetches int // token requests made (tests and metrics)
}

// NewOAuthSource builds the source of a secret's material and settings.
func NewOAuthSource(set OAuthSettings, m *Material, opt OAuthOptions) (*OAuthSource, error) {
	opt.defaults()
	c, err := credsOf(m, set.Grant)
	if err != nil {
		return nil, err
	}
	return &OAuthSource{opt: opt, set: set, secret: m.Name, creds: c}, nil
}

// Update gives the source a snapshot's material. A newer version that only
// stores the refresh token this source already uses (its own rotation)
// keeps the cached access token; any other change of credentials drops it,
// so a token of the old client is never sent after a rotation.
func (s *OAuthSource) Update(m *Material) error {
	c, err := credsOf(m, s.set.Grant)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.version <= s.creds.version {
		return nil
	}
	same := sameCreds(c, s.creds)
	if !same && m.Rotated && c.clientID == s.creds.clientID && c.clientSecret == s.creds.clientSecret {
		// Several nodes: another node refreshed and stored the refresh
		// token the provider rotated. The access token in hand is still
		// good until its own refresh point; dropping it would make this
		// node refresh now, and every other node after it, in turn,
		// forever.
		same = true
	}
	s.creds = c
	if !same {
		s.dropLocked()
		s.pending = false // the secret was rotated by someone else: theirs wins
		s.failUntil = time.Time{}
	}
	return nil
}

func (s *OAuthSource) dropLocked() {
	if s.cur != nil {
		s.prev = s.cur.value
		s.cur = nil
	}
}

// Version is the secret version in use.
func (s *OAuthSource) Version() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creds.version
}

// Fetches counts the token requests made so far.
func (s *OAuthSource) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// Tokens returns the current and previous access tokens (for scrubbing).
func (s *OAuthSource) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if s.cur != nil {
		out = append(out, s.cur.value)
	}
	if s.prev != "" {
		out = append(out, s.prev)
	}
	return out
}

// secretValues are the secret's own fields (client_secret, refresh token).
func (s *OAuthSource) secretValues() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.creds.fields)+1)
	for _, v := range s.creds.fields {
		out = append(out, v)
	}
	return append(out, s.creds.refresh)
}

// Token returns an access token that has not expired, fetching one if
// needed (waiting for the fetch in flight rather than starting another).
func (s *OAuthSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	now := s.opt.Now()
	if t := s.cur; t != nil && now.Before(t.expiry) {
		if !now.Before(t.refreshAt) && s.flight == nil && !now.Before(s.failUntil) {
			s.startLocked() // refresh ahead of expiry; this request goes on with t
		}
		s.maybePersistLocked()
		s.mu.Unlock()
		return t.value, nil
	}
	if s.flight == nil {
		if now.Before(s.failUntil) {
			err := s.lastErr
			s.mu.Unlock()
			return "", err
		}
		s.startLocked()
	}
	f := s.flight
	s.setWaitingLocked(+1)
	s.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.setWaitingLocked(-1)
	s.mu.Unlock()
	select {
	case <-f.done:
	default:
		return "", ctx.Err()
	}
	if f.err != nil {
		return "", f.err
	}
	return f.tok.value, nil
}

func (s *OAuthSource) setWaitingLocked(d int) {
	s.waiting += d
	if s.onWait != nil {
		s.onWait(s.waiting)
	}
}

// Invalidate is told that the upstream refused used (401): unless the
// source already holds a newer token, used is dropped, so the next Token
// fetches (or joins the fetch in flight).
func (s *OAuthSource) Invalidate(used string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.value == used {
		s.dropLocked()
		// A refusal is not an endpoint failure: fetch even in a cooldown.
		s.failUntil = time.Time{}
	}
}

func (s *OAuthSource) startLocked() {
	f := &flight{done: make(chan struct{})}
	s.flight = f
	go s.run(f)
}

// maybePersistLocked retries, in the background, storing a rotated refresh
// token that could not be stored when it arrived.
func (s *OAuthSource) maybePersistLocked() {
	if !s.pending || s.persisting {
		return
	}
	s.persisting = true
	go func() {
		s.pmu.Lock()
		s.persistPending()
		s.pmu.Unlock()
		s.mu.Lock()
		s.persisting = false
		s.mu.Unlock()
	}()
}

// run is one fetch: attempts with backoff; with the refresh-token grant, a
// refresh token the provider rotated is stored before anyone gets the new
// access token and before any other fetch starts (pmu is held); then the
// result goes to every waiter.
func (s *OAuthSource) run(f *flight) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	// Several nodes: the cluster-wide lock of the refresh token, held
	// until the rotated token is stored (OAuthOptions.Lock).
	if s.set.Grant == GrantRefreshToken && s.opt.Lock != nil {
		unlock, err := s.lockRefresh()
		if err != nil {
			s.mu.Lock()
			s.lastErr = err
			s.failUntil = s.opt.Now().Add(s.opt.Cooldown)
			f.err = err
			s.flight = nil
			close(f.done)
			s.mu.Unlock()
			return
		}
		defer unlock()
	}
	s.persistPending() // a rotation not stored yet goes first
	s.mu.Lock()
	creds := s.creds
	s.mu.Unlock()
	tok, raw, err := s.fetch(creds)
	if err == nil && s.set.Grant == GrantRefreshToken && raw.RefreshToken != "" && raw.RefreshToken != creds.refresh {
		s.mu.Lock()
		if sameCreds(s.creds, creds) {
			// The provider rotated the refresh token: from now on only the
			// new one is used.
			s.creds.refresh = raw.RefreshToken
			s.creds.fields = cloneFields(s.creds.fields)
			s.creds.fields["refresh_token"] = raw.RefreshToken
			s.pending = true
			creds = s.creds
		}
		s.mu.Unlock()
		s.persistPending()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		s.failUntil = s.opt.Now().Add(s.opt.Cooldown)
		f.err = err
	} else {
		f.tok = tok
		// A token of credentials that were replaced meanwhile goes to
		// the requests that waited for it, and is not kept.
		if sameCreds(s.creds, creds) {
			if s.cur != nil && s.cur.value != tok.value {
				s.prev = s.cur.value
			}
			s.cur = tok
			s.failUntil = time.Time{}
		}
	}
	s.flight = nil
	close(f.done)
}

// lockRefresh takes OAuthOptions.Lock, waiting at most as long as a
// holder's whole fetch may take.
func (s *OAuthSource) lockRefresh() (func(), error) {
	wait := time.Duration(s.opt.Attempts)*(s.opt.AttemptTimeout+s.opt.Backoff) + 15*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	unlock, err := s.opt.Lock(ctx, s.secret)
	if err != nil {
		s.opt.Logger.Warn("cannot take the lock of an OAuth refresh token shared by several nodes; requests that need a new token get 502 upstream_auth_failed",
			"secret", s.secret, "err", err)
		return nil, fmt.Errorf("%w: the refresh token's lock could not be taken", ErrAuthFailed)
	}
	return unlock, nil
}

func sameCreds(a, b oauthCreds) bool {
	return a.clientID == b.clientID && a.clientSecret == b.clientSecret && a.refresh == b.refresh
}

func cloneFields(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// persistPending stores the credentials with a rotated refresh token as
// the secret's next version, if a rotation is pending. pmu is held.
func (s *OAuthSource) persistPending() {
	s.mu.Lock()
	if !s.pending {
		s.mu.Unlock()
		return
	}
	creds := s.creds
	creds.fields = cloneFields(s.creds.fields)
	s.mu.Unlock()
	if s.opt.Persist == nil {
		s.mu.Lock()
		s.pending = false
		s.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := s.opt.Persist(ctx, s.secret, creds.version, creds.fields)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		if s.creds.refresh == creds.refresh {
			s.pending = false
			if v > s.creds.version {
				s.creds.version = v
			}
		}
		s.opt.Logger.Info("the OAuth provider rotated the refresh token; stored it as a new version of the secret", "secret", s.secret, "version", v)
	case errors.Is(err, ErrVersionMoved):
		// Someone rotated the secret meanwhile: their value wins (Update
		// brings it).
		s.pending = false
		s.opt.Logger.Warn("the OAuth provider rotated the refresh token, but the secret was rotated meanwhile; the rotated value is used", "secret", s.secret)
	default:
		s.opt.Logger.Error("the OAuth provider rotated the refresh token and it could not be stored yet; keyhole keeps it in memory and retries", "secret", s.secret, "err", err)
	}
}

// ErrVersionMoved is what Persist returns when the secret is no longer at
// the base version.
var ErrVersionMoved = errors.New("the secret was rotated meanwhile")

// fetch makes up to Attempts token requests.
func (s *OAuthSource) fetch(creds oauthCreds) (*accessToken, *oauth2.Token, error) {
	var last error
	backoff := s.opt.Backoff
	for i := 0; i < s.opt.Attempts; i++ {
		if i > 0 {
			time.Sleep(backoff)
			backoff *= 2
		}
		s.mu.Lock()
		s.fetches++
		s.mu.Unlock()
		tok, err := s.attempt(creds)
		if err == nil {
			return s.schedule(tok), tok, nil
		}
		last = err
		if !transient(err) {
			break
		}
	}
	s.opt.Logger.Warn("OAuth 2.0 token request failed; requests that need the token get 502 upstream_auth_failed",
		"secret", s.secret, "token_url", redactURL(s.set.TokenURL), "grant", s.set.Grant, "reason", describe(last))
	return nil, nil, fmt.Errorf("%w: %s", ErrAuthFailed, describe(last))
}

func (s *OAuthSource) attempt(creds oauthCreds) (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.AttemptTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.opt.Client)
	cfg := clientcredentials.Config{ClientID: creds.clientID, ClientSecret: creds.clientSecret, TokenURL: s.set.TokenURL,
		Scopes: s.set.Scopes, AuthStyle: oauth2.AuthStyleInHeader, EndpointParams: url.Values{}}
	if s.set.AuthStyle == "body" {
		cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	if s.set.Audience != "" {
		cfg.EndpointParams.Set("audience", s.set.Audience)
	}
	if s.set.Grant == GrantRefreshToken {
		// x/oauth2's own refresh (oauth2.Config.TokenSource) sends no
		// scope; clientcredentials sends the configured scopes and lets
		// grant_type be overridden (its documented escape hatch), which
		// makes it the refresh-token grant of RFC 6749 §6.
		cfg.EndpointParams.Set("grant_type", "refresh_token")
		cfg.EndpointParams.Set("refresh_token", creds.refresh)
	}
	return cfg.Token(ctx)
}

// schedule turns a token response into a cache entry: the lifetime is
// counted from now (receipt), the refresh point is min(margin, half the
// lifetime) before expiry.
func (s *OAuthSource) schedule(t *oauth2.Token) *accessToken {
	now := s.opt.Now()
	life := Lifetime(t.Extra("expires_in"))
	margin := min(s.set.Margin, life/2)
	return &accessToken{value: t.AccessToken, expiry: now.Add(life), refreshAt: now.Add(life - margin)}
}

// Lifetime reads expires_in (a JSON number, a string as PayPal sends, or
// a form value) as a duration; missing, zero, negative or malformed values
// give UnknownTokenLifetime, values beyond MaxTokenLifetime are clamped.
func Lifetime(v any) time.Duration {
	var secs float64
	switch x := v.(type) {
	case float64:
		secs = x
	case int64:
		secs = float64(x)
	case int:
		secs = float64(x)
	case json.Number:
		secs, _ = x.Float64()
	case string:
		secs, _ = strconv.ParseFloat(strings.TrimSpace(x), 64)
	}
	if math.IsNaN(secs) || secs <= 0 {
		return UnknownTokenLifetime
	}
	if secs >= MaxTokenLifetime.Seconds() {
		return MaxTokenLifetime
	}
	return time.Duration(secs * float64(time.Second))
}

// transient reports whether a failed attempt may succeed when repeated.
func transient(err error) bool {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.Response == nil {
			return true
		}
		c := re.Response.StatusCode
		if re.ErrorCode != "" && c < 500 {
			return false // an RFC 6749 §5.2 error: asking again changes nothing
		}
		return c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500
	}
	return true // network, timeout, an answer that does not parse
}

// DescribeTokenError says why a token request failed without anything the
// endpoint sent beyond its status and RFC 6749 error code
// (error_description, error_uri and bodies may echo what they were sent).
func DescribeTokenError(err error) string { return describe(err) }

func describe(err error) string {
	var re *oauth2.RetrieveError
	var ne net.Error
	switch {
	case err == nil:
		return "no error"
	case errors.As(err, &re):
		s := "the token endpoint answered"
		if re.Response != nil {
			s += " HTTP " + strconv.Itoa(re.Response.StatusCode)
		}
		if c := safeCode(re.ErrorCode); c != "" {
			s += " error " + c
		}
		return s
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "the token endpoint did not answer in time"
	case strings.Contains(err.Error(), "missing access_token"):
		return "the token endpoint's answer has no access_token"
	case strings.Contains(err.Error(), "cannot parse"):
		return "the token endpoint's answer is not an RFC 6749 token response"
	case errors.As(err, new(*url.Error)):
		return "the token endpoint could not be reached"
	}
	return "the token request failed"
}

// SafeCode keeps an RFC 6749 error code if it looks like one (letters,
// digits, _ - .); anything else is not repeated.
func SafeCode(c string) string { return safeCode(c) }

func safeCode(c string) string {
	if len(c) > 64 {
		return "(unrecognised)"
	}
	for i := 0; i < len(c); i++ {
		if !(c[i] >= 'a' && c[i] <= 'z' || c[i] >= 'A' && c[i] <= 'Z' || c[i] >= '0' && c[i] <= '9' || c[i] == '_' || c[i] == '-' || c[i] == '.') {
			return "(unrecognised)"
		}
	}
	return c
}

// redactURL drops a token URL's query (some providers take parameters
// there).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	u.RawQuery, u.User, u.Fragment = "", nil, ""
	return u.String()
}

// OAuth is the injector of the OAuth 2.0 types: Authorization: Bearer with
// the source's access token (RFC 6750 §2.1; whatever case of token_type
// the provider returned, the scheme sent is "Bearer").
type OAuth struct {
	src *OAuthSource
}

var (
	_ Injector  = (*OAuth)(nil)
	_ Refresher = (*OAuth)(nil)
)

// NewOAuth is a snapshot's injector over a source.
func NewOAuth(src *OAuthSource) *OAuth { return &OAuth{src: src} }

// Source is the injector's token source.
func (o *OAuth) Source() *OAuthSource { return o.src }

// Apply implements Injector: it sets the access token, waiting for a fetch
// when there is none; an error means the request must not be sent.
func (o *OAuth) Apply(out *http.Request) error {
	tok, err := o.src.Token(out.Context())
	if err != nil {
		return err
	}
	out.Header["Authorization"] = []string{"Bearer " + tok}
	return nil
}

// Applied returns the access token Apply set on out ("" if none).
func (o *OAuth) Applied(out *http.Request) string {
	v := out.Header.Get("Authorization")
	if !strings.HasPrefix(v, "Bearer ") {
		return ""
	}
	return v[len("Bearer "):]
}

// Refresh implements Refresher: out was refused with 401; a newer token is
// set on it (fetched unless the source already has one).
func (o *OAuth) Refresh(out *http.Request) error {
	o.src.Invalidate(o.Applied(out))
	return o.Apply(out)
}

// Values implements Injector: the secret's fields, the current and
// previous access tokens, and their encoded forms. It is consulted when a
// snapshot is built; a token that arrives later reaches the scrubber
// through the catalog's per-token view (catalog/dynamic.go).
func (o *OAuth) Values() []string {
	return DeriveAll(append(o.src.secretValues(), o.src.Tokens()...))
}

// QueryParams implements Injector.
func (o *OAuth) QueryParams() []string { return nil }

// Headers implements Injector.
func (o *OAuth) Headers() []string { return []string{"Authorization"} }

// SecretVersion implements Injector: the version in use, which moves when
// the provider rotates the refresh token.
func (o *OAuth) SecretVersion() int { return o.src.Version() }

// Refresher is an injector whose credential can be renewed after the
// upstream refused it (OAuth 2.0): the gateway retries such a request
// once, after Refresh, when its body can be replayed (SPEC §4).
type Refresher interface {
	Injector
	// Refresh sets a renewed credential on out, which was refused.
	Refresh(out *http.Request) error
}

// Replay keeps a request body for one more send: bodies up to ReplayLimit
// are read into memory (Body and GetBody then serve the copy); a longer
// one is put back together (what was read, then the rest) and cannot be
// replayed. ok reports whether the request can be sent again.
func Replay(r *http.Request) (ok bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	if r.GetBody != nil && r.ContentLength >= 0 {
		return true
	}
	if r.ContentLength > ReplayLimit {
		return false
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, ReplayLimit+1))
	if len(buf) > ReplayLimit || err != nil {
		var rest io.Reader = r.Body
		if err != nil {
			rest = errReader{err}
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), rest), r.Body}
		return false
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.ContentLength = int64(len(buf))
	r.TransferEncoding = nil
	return true
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// RetryRequest is the request to send again after a 401: a copy of r with
// a fresh body from GetBody and the renewed credential. ok is false when
// the body cannot be replayed or no credential could be had (the 401 then
// goes to the agent as it came).
func RetryRequest(rf Refresher, r *http.Request) (*http.Request, bool) {
	r2 := r.Clone(r.Context())
	if r.Body != nil && r.Body != http.NoBody {
		if r.GetBody == nil {
			return nil, false
		}
		b, err := r.GetBody()
		if err != nil {
			return nil, false
		}
		r2.Body = b
	}
	if err := rf.Refresh(r2); err != nil {
		return nil, false
	}
	return r2, true
}
