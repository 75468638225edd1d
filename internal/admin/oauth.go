package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// ---- OAuth 2.0 authorization-code connect ----
//
// POST /api/v1/secrets/{name}/oauth/start (admin role) begins an RFC 6749
// §4.1 authorization-code flow with PKCE (RFC 7636, S256) and answers the
// provider's consent URL. A person opens it, consents, and the provider
// sends the browser to GET /api/v1/oauth/callback on this admin listener.
// The callback carries no admin token: the state parameter authenticates
// it. A state is 256 random bits, kept (hashed) in the store, bound to the
// admin token that started the flow (which must still be a valid admin
// token when the callback comes), single-use and valid for FlowTTL. The callback exchanges the code (with the PKCE verifier) and
// stores {client_id, client_secret, refresh_token} as the secret: version 1
// if it is new, else the next version (other fields of an object secret
// are kept). Both calls are audit records (proxy -admin); neither answer,
// nor the record, nor a log line holds the code, a token or the client
// secret.
//
// Flows are kept in the store (store.OAuthFlows), so the callback may reach
// any node, and a restart forgets nothing: the row's id is the state's
// SHA-256, and the PKCE verifier and the client secret are sealed by the
// vault's keyring (sealedFlow, flowAAD). Taking a flow deletes it in one
// statement, so a callback replayed on another node, or two nodes racing
// on one, complete it once. Expired flows are deleted by each node's sweep
// (internal/server). A store without store.OAuthFlows keeps them in this
// node's memory (memFlows): the callback must then reach the same node.

// FlowTTL is how long a consent URL can be completed.
const FlowTTL = 10 * time.Minute

// maxFlows bounds the flows in progress that memFlows keeps.
const maxFlows = 256

// CallbackPath is where providers send the browser back.
const CallbackPath = "/api/v1/oauth/callback"

// oauthFlow is a flow as the callback uses it: the stored row's public
// part, and its sealed part opened.
type oauthFlow struct {
	secret    string
	adminID   string
	adminName string
	conf      oauth2.Config
	verifier  string
	expires   time.Time
}

// sealedFlow is the confidential part of a flow, sealed by the vault's
// keyring (flowAAD) into store.OAuthFlow.Sealed: the PKCE verifier and the
// client secret never reach the store in clear.
type sealedFlow struct {
	Verifier     string   `json:"verifier"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	RedirectURL  string   `json:"redirect_url"`
	Scopes       []string `json:"scopes,omitempty"`
	AuthURL      string   `json:"auth_url"`
	TokenURL     string   `json:"token_url"`
	AuthStyle    int      `json:"auth_style"`
	AdminName    string   `json:"admin_name"`
}

// flowAAD binds a flow's sealed part to its row: its id (the state's
// hash), the secret it stores and the admin token that started it, each
// length-prefixed. A sealed part copied onto another row fails to open.
func flowAAD(f *store.OAuthFlow) []byte {
	return fmt.Appendf(nil, "oauth-flow/%d:%s/%d:%s/%d:%s", len(f.ID), f.ID, len(f.Secret), f.Secret, len(f.AdminTokenID), f.AdminTokenID)
}

// flowStore is where the API's flows are kept: the store's table when it
// has one (any node can complete a flow), else this API's memory.
func (a *API) flowStore() store.OAuthFlows {
	if fs, ok := a.Store.(store.OAuthFlows); ok {
		return fs
	}
	v, _ := flowsByAPI.LoadOrStore(a, &memFlows{m: map[string]store.OAuthFlow{}})
	return v.(*memFlows)
}

// flowsByAPI keeps each API's in-memory flows, for a store without
// store.OAuthFlows (the API struct is shared with other features; its
// flows live beside it).
var flowsByAPI sync.Map // *API → *memFlows

func stateKey(state string) string {
	h := sha256.Sum256([]byte(state))
	return hex.EncodeToString(h[:])
}

// keyringCtx opens the vault's keyring from the store's keys (keyring, for
// a call without one).
func (a *API) keyringCtx(ctx context.Context) (*vault.Keyring, error) {
	keys, err := a.Store.Keys(ctx)
	if err != nil {
		return nil, err
	}
	return catalog.Keyring(a.Master, keys)
}

// addFlow seals a flow's confidential part and stores it under a new
// state, which it returns.
func (a *API) addFlow(ctx context.Context, fl *oauthFlow, now time.Time) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	state := base64.RawURLEncoding.EncodeToString(b)
	pt, err := json.Marshal(sealedFlow{Verifier: fl.verifier, ClientID: fl.conf.ClientID, ClientSecret: fl.conf.ClientSecret,
		RedirectURL: fl.conf.RedirectURL, Scopes: fl.conf.Scopes, AuthURL: fl.conf.Endpoint.AuthURL, TokenURL: fl.conf.Endpoint.TokenURL,
		AuthStyle: int(fl.conf.Endpoint.AuthStyle), AdminName: fl.adminName})
	if err != nil {
		return "", err
	}
	row := store.OAuthFlow{ID: stateKey(state), Secret: fl.secret, AdminTokenID: fl.adminID, CreatedAt: now, ExpiresAt: fl.expires}
	kr, err := a.keyringCtx(ctx)
	if err != nil {
		return "", err
	}
	if row.Sealed, err = kr.Seal(flowAAD(&row), pt); err != nil {
		return "", err
	}
	switch err := a.flowStore().PutFlow(ctx, row); {
	case errors.Is(err, errTooManyFlows):
		return "", &apiError{http.StatusTooManyRequests, "too_many_flows", "too many OAuth connect flows are in progress on this node; complete or let some expire (10 minutes) first"}
	case err != nil:
		return "", err
	}
	return state, nil
}

// takeFlow returns and forgets the flow of a state (single use, whichever
// node the callback reaches: of two takers only one gets it); nil if it is
// unknown or expired.
func (a *API) takeFlow(ctx context.Context, state string, now time.Time) (*oauthFlow, error) {
	if state == "" || len(state) > 256 {
		return nil, nil
	}
	row, err := a.flowStore().TakeFlow(ctx, stateKey(state), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	kr, err := a.keyringCtx(ctx)
	if err != nil {
		return nil, err
	}
	pt, err := kr.Open(flowAAD(&row), row.Sealed)
	if err != nil {
		return nil, fmt.Errorf("the flow's sealed part does not open: %w", err)
	}
	var sf sealedFlow
	if err := json.Unmarshal(pt, &sf); err != nil {
		return nil, fmt.Errorf("the flow's sealed part does not decode: %w", err)
	}
	return &oauthFlow{secret: row.Secret, adminID: row.AdminTokenID, adminName: sf.AdminName, verifier: sf.Verifier, expires: row.ExpiresAt,
		conf: oauth2.Config{ClientID: sf.ClientID, ClientSecret: sf.ClientSecret, RedirectURL: sf.RedirectURL, Scopes: sf.Scopes,
			Endpoint: oauth2.Endpoint{AuthURL: sf.AuthURL, TokenURL: sf.TokenURL, AuthStyle: oauth2.AuthStyle(sf.AuthStyle)}}}, nil
}

// errTooManyFlows: memFlows is full.
var errTooManyFlows = errors.New("too many OAuth connect flows in progress")

// memFlows is store.OAuthFlows in this node's memory, for a store without
// it: the callback must reach this node, and a restart forgets the flows.
// At most maxFlows are kept.
type memFlows struct {
	mu sync.Mutex
	m  map[string]store.OAuthFlow
}

var _ store.OAuthFlows = (*memFlows)(nil)

func (f *memFlows) PutFlow(_ context.Context, fl store.OAuthFlow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range f.m {
		if !fl.CreatedAt.Before(v.ExpiresAt) {
			delete(f.m, k)
		}
	}
	if _, ok := f.m[fl.ID]; ok {
		return store.ErrConflict
	}
	if len(f.m) >= maxFlows {
		return errTooManyFlows
	}
	f.m[fl.ID] = fl
	return nil
}

func (f *memFlows) TakeFlow(_ context.Context, id string, now time.Time) (store.OAuthFlow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.m[id]
	delete(f.m, id)
	if !ok || !now.Before(fl.ExpiresAt) {
		return store.OAuthFlow{}, store.ErrNotFound
	}
	return fl, nil
}

func (f *memFlows) DeleteExpiredFlows(_ context.Context, now time.Time) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for k, v := range f.m {
		if !now.Before(v.ExpiresAt) {
			delete(f.m, k)
			n++
		}
	}
	return n, nil
}

// oauthClock, when set (tests), is the clock of flows.
var oauthClock atomic.Value // func() time.Time

func oauthNow() time.Time {
	if f, ok := oauthClock.Load().(func() time.Time); ok && f != nil {
		return f()
	}
	return time.Now()
}

// flowParams are the authorization request's own parameters: extra
// params cannot replace them.
var flowParams = map[string]bool{"response_type": true, "client_id": true, "redirect_uri": true, "scope": true,
	"state": true, "code_challenge": true, "code_challenge_method": true}

func checkFlowURL(field, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, badRequest("%s must be an http(s) URL without credentials or fragment", field)
	}
	return u, nil
}

func authStyle(s string) (oauth2.AuthStyle, error) {
	switch s {
	case "":
		return oauth2.AuthStyleAutoDetect, nil
	case "header":
		return oauth2.AuthStyleInHeader, nil
	case "body":
		return oauth2.AuthStyleInParams, nil
	}
	return 0, badRequest("auth_style is header or body")
}

func (a *API) oauthStart(c *call) error {
	name := c.r.PathValue("name")
	if !spec.ValidSecretName(name) {
		return badRequest("secret name %q is invalid: 1–128 characters A-Z a-z 0-9 . _ -, starting with a letter or digit", clip(name))
	}
	var req struct {
		AuthorizeURL string            `json:"authorize_url"`
		TokenURL     string            `json:"token_url"`
		ClientID     string            `json:"client_id"`
		ClientSecret string            `json:"client_secret"`
		Scopes       []string          `json:"scopes"`
		RedirectURI  string            `json:"redirect_uri"`
		Params       map[string]string `json:"params"`
		AuthStyle    string            `json:"auth_style"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.AuthorizeURL == "" || req.TokenURL == "" {
		return badRequest("authorize_url and token_url are required (the provider's authorization and token endpoints)")
	}
	if _, err := checkFlowURL("authorize_url", req.AuthorizeURL); err != nil {
		return err
	}
	tu, err := checkFlowURL("token_url", req.TokenURL)
	if err != nil {
		return err
	}
	// keyhole itself calls the token endpoint: the SSRF guard applies.
	if err := a.Catalog.Guard().CheckHost(c.r.Context(), tu.Hostname()); err != nil {
		return badRequest("token_url: %v", err)
	}
	for i, s := range req.Scopes {
		if !inject.ValidScope(s) {
			return badRequest("scopes[%d] is not one scope: give each scope separately, without spaces or quotes (RFC 6749 §3.3)", i)
		}
	}
	style, err := authStyle(req.AuthStyle)
	if err != nil {
		return err
	}
	var extra []oauth2.AuthCodeOption
	keys := make([]string, 0, len(req.Params))
	for k := range req.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if flowParams[k] || k == "" {
			return badRequest("params cannot set %q: keyhole sets it", clip(k))
		}
		extra = append(extra, oauth2.SetAuthURLParam(k, req.Params[k]))
	}
	switch {
	case req.ClientID == "" && req.ClientSecret == "":
		m := a.Catalog.SecretMaterial(name)
		if m == nil || m.Fields["client_id"] == "" || m.Fields["client_secret"] == "" {
			return badRequest("give client_id and client_secret, or store them first as fields of secret %s (keyhole secret set %s --object)", name, name)
		}
		req.ClientID, req.ClientSecret = m.Fields["client_id"], m.Fields["client_secret"]
	case req.ClientID == "" || req.ClientSecret == "":
		return badRequest("give both client_id and client_secret (or neither, to read them from the secret)")
	}
	redirect := req.RedirectURI
	if redirect == "" {
		scheme := "http"
		if c.r.TLS != nil {
			scheme = "https"
		}
		redirect = scheme + "://" + c.r.Host + CallbackPath
	} else if _, err := checkFlowURL("redirect_uri", redirect); err != nil {
		return err
	}
	now := oauthNow()
	fl := &oauthFlow{
		secret: name, adminID: c.who.ID, adminName: c.who.Name, verifier: oauth2.GenerateVerifier(), expires: now.Add(FlowTTL),
		conf: oauth2.Config{ClientID: req.ClientID, ClientSecret: req.ClientSecret, RedirectURL: redirect, Scopes: req.Scopes,
			Endpoint: oauth2.Endpoint{AuthURL: req.AuthorizeURL, TokenURL: req.TokenURL, AuthStyle: style}},
	}
	state, err := a.addFlow(c.r.Context(), fl, now)
	if err != nil {
		return err
	}
	consent := fl.conf.AuthCodeURL(state, append(extra, oauth2.S256ChallengeOption(fl.verifier))...)
	return c.json(http.StatusOK, map[string]any{"url": consent, "expires_at": fmtTime(fl.expires), "redirect_uri": redirect, "secret": name})
}

// oauthCallback completes a flow: no admin token, the state authenticates.
func (a *API) oauthCallback(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := newID()
	w.Header().Set("X-Keyhole-Request-Id", rid)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	rec := &audit.Start{ID: rid, Time: start, Node: a.Node, Proxy: audit.AdminProxy, Method: r.Method, Path: r.URL.Path,
		Decision: audit.Allow, Reason: "secret.oauth_connect", RequestHeaders: (*audit.Redactor)(nil).Headers(r.Header)}
	end := func(status int, decision, reason string) *audit.End {
		return &audit.End{Status: status, Decision: decision, Reason: reason, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	}
	refuse := func(status int, reason, msg string) {
		rec.Decision, rec.Reason = audit.Deny, reason
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		defer cancel()
		if err := a.Audit.Record(ctx, rec, end(status, "", "")); err != nil {
			a.Logger.Error("a refused OAuth callback could not be recorded in the audit log", "request_id", rid, "err", err)
		}
		page(w, status, "keyhole: not connected", msg)
	}
	q := r.URL.Query()
	now := oauthNow()
	fl, err := a.takeFlow(r.Context(), q.Get("state"), now)
	if err != nil {
		a.Logger.Error("OAuth connect: the flow could not be read", "request_id", rid, "err", err)
		refuse(http.StatusServiceUnavailable, "oauth_flow_unavailable", "The connection in progress could not be read right now (see the keyhole logs). Nothing was stored; start again shortly.")
		return
	}
	if fl == nil {
		refuse(http.StatusBadRequest, "oauth_state_invalid", "This link is unknown, already used or expired (a consent link works once, for 10 minutes). Start again with `keyhole secret connect`.")
		return
	}
	rec.Agent, rec.TokenID = fl.adminName, fl.adminID
	if e := q.Get("error"); e != "" {
		refuse(http.StatusBadRequest, "oauth_denied", "The provider did not grant access ("+inject.SafeCode(e)+"). Nothing was stored.")
		return
	}
	if adm := a.Catalog.Load().AdminByID(fl.adminID, time.Now()); adm == nil || adm.Role != RoleAdmin {
		refuse(http.StatusForbidden, "forbidden", "The admin token that started this connection is no longer valid. Nothing was stored.")
		return
	}
	code := q.Get("code")
	if code == "" {
		refuse(http.StatusBadRequest, "oauth_no_code", "The provider sent no authorization code. Nothing was stored.")
		return
	}
	// A change is recorded before it is made (fail closed).
	if err := a.Audit.Begin(r.Context(), rec); err != nil {
		a.Logger.Warn("OAuth connect refused: its audit record cannot be committed", "request_id", rid, "err", err)
		page(w, http.StatusServiceUnavailable, "keyhole: not connected", "The audit log cannot record this change right now, so nothing was stored. Start again shortly.")
		return
	}
	status, msg, version := a.completeFlow(r.Context(), fl, code)
	e := end(status, "", "")
	if status >= 400 {
		e.Decision = audit.Error
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := a.Audit.Finish(ctx, rid, e); err != nil {
		a.Logger.Warn("the end of an OAuth connect's audit record is not committed yet (it is retried)", "request_id", rid, "err", err)
	}
	if status >= 400 {
		page(w, status, "keyhole: not connected", msg)
		return
	}
	page(w, http.StatusOK, "keyhole: connected", fmt.Sprintf("Secret %s now holds the refresh token (version %d). You can close this window.", fl.secret, version))
}

// completeFlow exchanges the code and stores the secret. It returns the
// status, a message for the person (never a token) and the new version.
func (a *API) completeFlow(ctx context.Context, fl *oauthFlow, code string) (int, string, int) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: catalog.NewTransport(a.Catalog.Guard(), 10*time.Second, 20*time.Second),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tok, err := fl.conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), code, oauth2.VerifierOption(fl.verifier))
	if err != nil {
		reason := inject.DescribeTokenError(err)
		a.Logger.Warn("OAuth connect: the code exchange failed", "secret", fl.secret, "reason", reason)
		return http.StatusBadGateway, "The provider refused to exchange the code: " + reason + ". Nothing was stored.", 0
	}
	if tok.RefreshToken == "" {
		return http.StatusBadGateway, "The provider returned no refresh token, so there is nothing keyhole could keep. " +
			"Google needs access_type=offline and prompt=consent (the google template adds them); other providers need an offline or refresh_token scope. Nothing was stored.", 0
	}
	fields := map[string]string{}
	if m := a.Catalog.SecretMaterial(fl.secret); m != nil {
		if _, str := m.Fields[""]; !str {
			for k, v := range m.Fields {
				fields[k] = v
			}
		}
	}
	fields["client_id"], fields["client_secret"], fields["refresh_token"] = fl.conf.ClientID, fl.conf.ClientSecret, tok.RefreshToken
	v, err := a.storeConnected(ctx, fl.secret, fields)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return ae.status, ae.message + " Nothing was stored.", 0
		}
		a.Logger.Error("OAuth connect: the secret could not be stored", "secret", fl.secret, "err", err)
		return http.StatusInternalServerError, "The secret could not be stored (see the keyhole logs).", 0
	}
	return http.StatusOK, "", v
}

// storeConnected creates the secret or stores a new version of it.
func (a *API) storeConnected(ctx context.Context, name string, fields map[string]string) (int, error) {
	raw, _ := json.Marshal(fields)
	pt, kind, names, err := catalog.EncodeValue(raw)
	if err != nil {
		return 0, badRequest("%v", err)
	}
	kr, err := a.keyringCtx(ctx)
	if err != nil {
		return 0, err
	}
	at := now()
	_, err = a.Store.GetSecret(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		ct, err := kr.Seal(vault.SecretAAD(name, 1), pt)
		if err != nil {
			return 0, err
		}
		sec := store.Secret{Name: name, Version: 1, Kind: kind, Fields: names, CreatedAt: at}
		if err := a.Store.CreateSecret(ctx, sec, store.SecretVersion{Name: name, Version: 1, Ciphertext: ct, CreatedAt: at}); err != nil {
			return 0, err
		}
		return 1, a.reload(ctx)
	case err != nil:
		return 0, err
	}
	if err := a.checkRotation(name, kind, names); err != nil {
		return 0, err
	}
	s, err := a.Store.RotateSecret(ctx, name, at, func(v int) ([]byte, string, []string, error) {
		ct, err := kr.Seal(vault.SecretAAD(name, v), pt)
		return ct, kind, names, err
	})
	if err != nil {
		return 0, err
	}
	return s.Version, a.reload(ctx)
}

// page answers the person's browser with a small HTML page.
func page(w http.ResponseWriter, status int, title, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>%s</title><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>%s</h1><p>%s</p>\n",
		html.EscapeString(title), html.EscapeString(title), html.EscapeString(msg))
}
