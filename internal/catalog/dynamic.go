package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/scrub"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// Upstream auth state that outlives snapshots.
//
// Snapshots are immutable and rebuilt on every change, but an OAuth 2.0
// access token changes without any change to the configuration, and a new
// snapshot must not throw away a token that is still good (nor start a
// second fetch beside one in flight). So the token sources live here, on
// the Catalog, keyed by secret name and OAuth settings (two proxies with the
// same secret and settings share one token and one fetch); each snapshot's
// injector is a view over its source, and each rebuild hands the source the
// secret's current version (inject.OAuthSource.Update), which keeps the
// token when only the refresh token keyhole itself stored has changed.
// Sources that no snapshot uses any more are dropped at the next rebuild.
//
// Scrubbing a token that is newer than the snapshot: scrubbers are compiled
// per snapshot (Aho–Corasick automata: cheap to run, not to change), so a
// fresh access token reaches them through a per-token view of the compiled
// proxy — a shallow copy whose Scrub and Redact also hold that token (and
// the one before it), compiled once per token and proxy and cached. The
// gateway swaps its exchange to that view right after Apply (ForRequest),
// before anything is read from the upstream: responses and audit records
// are scrubbed with exactly the token that request carried.

type dynamic struct {
	mu      sync.Mutex
	sources map[string]*inject.OAuthSource
	client  *http.Client
}

// oauthInjector returns the injector of an OAuth proxy over its (shared,
// long-lived) source, updated to the snapshot's secret version.
func (c *Catalog) oauthInjector(a spec.Auth, m *inject.Material) (inject.Injector, error) {
	set, err := inject.SettingsOf(a)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("secret %q is missing or cannot be opened", a.Secret)
	}
	key := set.Key(a.Secret)
	d := &c.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sources == nil {
		d.sources = map[string]*inject.OAuthSource{}
	}
	if src := d.sources[key]; src != nil {
		if err := src.Update(m); err != nil {
			return nil, err
		}
		return inject.NewOAuth(src), nil
	}
	opt := c.oauthOpt
	if opt.Client == nil {
		if d.client == nil {
			// Token requests go through the SSRF guard like upstream
			// calls, never follow a redirect (a 3xx is a failed fetch),
			// and never use an environment proxy.
			d.client = &http.Client{Transport: NewTransport(c.guard, 10*time.Second, 30*time.Second),
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		opt.Client = d.client
	}
	if opt.Logger == nil {
		opt.Logger = c.log
	}
	if opt.Persist == nil {
		opt.Persist = c.persistRotation
	}
	if lock := opt.Lock; lock != nil {
		// Several nodes (inject.OAuthOptions.Lock): once the lock is
		// held, another node may just have stored a rotated refresh
		// token. Rebuild from the store first (the rebuild hands the
		// source the secret's latest version through Update), so that
		// the refresh spends that token and not the one it replaced. A
		// store that cannot be read means no refresh: the token in hand
		// may be spent already.
		opt.Lock = func(ctx context.Context, secret string) (func(), error) {
			unlock, err := lock(ctx, secret)
			if err != nil {
				return nil, err
			}
			if err := c.ReloadIfChanged(ctx); err != nil {
				unlock()
				return nil, err
			}
			return unlock, nil
		}
	}
	src, err := inject.NewOAuthSource(set, m, opt)
	if err != nil {
		return nil, err
	}
	d.sources[key] = src
	return inject.NewOAuth(src), nil
}

// sweepDynamic drops the sources that the snapshot s does not use.
func (c *Catalog) sweepDynamic(s *Snapshot) {
	used := map[*inject.OAuthSource]bool{}
	for _, p := range s.proxies {
		if o, ok := p.Inject.(*inject.OAuth); ok {
			used[o.Source()] = true
		}
	}
	d := &c.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, src := range d.sources {
		if !used[src] {
			delete(d.sources, k)
		}
	}
}

// persistRotation stores fields (with the refresh token the provider just
// rotated) as the next version of the secret, only if it is still at
// version base: a rotation made meanwhile by an admin wins. Then the node's
// snapshot is rebuilt.
func (c *Catalog) persistRotation(ctx context.Context, name string, base int, fields map[string]string) (int, error) {
	raw, err := json.Marshal(fields)
	if err != nil {
		return 0, err
	}
	pt, kind, names, err := EncodeValue(raw)
	if err != nil {
		return 0, err
	}
	// The sealed value carries a mark (not a field: names stay as they
	// were) that says this version is the provider's rotation, so other
	// nodes keep their access tokens (inject.Material.Rotated).
	marked := make(map[string]string, len(fields)+1)
	for k, v := range fields {
		marked[k] = v
	}
	marked[rotationMark] = "1"
	pt, _ = json.Marshal(marked)
	keys, err := c.st.Keys(ctx)
	if err != nil {
		return 0, err
	}
	kr, err := Keyring(c.master, keys)
	if err != nil {
		return 0, err
	}
	sec, err := c.st.RotateSecret(ctx, name, time.Now().UTC().Truncate(time.Microsecond), func(v int) ([]byte, string, []string, error) {
		if v != base+1 {
			return nil, "", nil, inject.ErrVersionMoved
		}
		ct, err := kr.Seal(vault.SecretAAD(name, v), pt)
		return ct, kind, names, err
	})
	if err != nil {
		return 0, err
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Reload(ctx); err != nil {
			c.log.Warn("the snapshot was not rebuilt after a refresh-token rotation (the next change or poll will)", "err", err)
		}
	}()
	return sec.Version, nil
}

// rotationMark is the key in a sealed object value that persistRotation
// adds. It is not a valid field name (spec.ValidSecretField), so no value
// given through the API can carry it.
const rotationMark = "keyhole:rotated"

// takeRotationMark removes the mark from decoded fields, reporting whether
// it was there: it is never a field, a value to inject, or one to scrub.
func takeRotationMark(fields map[string]string) bool {
	if _, ok := fields[rotationMark]; !ok {
		return false
	}
	delete(fields, rotationMark)
	return true
}

// credView caches, per compiled OAuth proxy, the view whose scrubber holds
// the latest access token.
type credView struct {
	oauth *inject.OAuth
	hmac  []byte // redact_mode hmac: the redactor's key
	last  atomic.Pointer[tokenView]
}

type tokenView struct {
	token string
	proxy *Proxy
}

// attachCredView prepares an OAuth proxy's per-token views (at the end of
// compileProxy).
func (c *Catalog) attachCredView(p *Proxy) {
	o, ok := p.Inject.(*inject.OAuth)
	if !ok || p.Err != nil {
		return
	}
	v := &credView{oauth: o}
	if p.Spec.Capture.RedactMode == "hmac" && c.master != nil {
		v.hmac = c.master.DeriveKey(audit.HMACKeyPurpose)
	}
	p.cred = v
}

// ForRequest returns the compiled proxy that must scrub the response to
// out, whose credential Apply has just set: p itself, or, for an OAuth
// proxy, a view of p whose Scrub and Redact also hold that token (built
// once per token and snapshot: the token may be newer than the snapshot).
func (p *Proxy) ForRequest(out *http.Request) *Proxy {
	cv := p.cred
	if cv == nil {
		return p
	}
	tok := cv.oauth.Applied(out)
	if tok == "" {
		return p
	}
	if v := cv.last.Load(); v != nil && v.token == tok {
		return v.proxy
	}
	cp := *p
	vals := inject.DeriveAll(append(cv.oauth.Values(), tok))
	cp.Scrub, cp.Redact = compileScrub(&p.Spec, p.Inject, p.TokenHeader, vals)
	if cv.hmac != nil {
		cp.Redact = cp.Redact.WithHMAC(cv.hmac)
	}
	cv.last.Store(&tokenView{token: tok, proxy: &cp})
	return &cp
}

// PrepareRetry readies an outgoing request for one replay after a 401
// (OAuth proxies only): a body up to inject.ReplayLimit is kept in memory.
// It reports whether a retry will be possible.
func (p *Proxy) PrepareRetry(out *http.Request) bool {
	if _, ok := p.Inject.(inject.Refresher); !ok {
		return false
	}
	return inject.Replay(out)
}

// RetryUnauthorized is the SPEC §4 rule for an upstream 401 on an OAuth
// proxy: refresh the token once and send the request once more, when its
// body can be replayed. It returns the request to send (res is then closed)
// or nil when the 401 goes to the agent as it came: not an OAuth proxy,
// a body that could not be kept, or no fresh token to be had. It is never
// called for the retried request (the gateway retries once), nor for a 403.
func (p *Proxy) RetryUnauthorized(out *http.Request, res *http.Response, replayable bool) *http.Request {
	rf, ok := p.Inject.(inject.Refresher)
	if !ok || !replayable || res.StatusCode != http.StatusUnauthorized {
		return nil
	}
	r2, ok := inject.RetryRequest(rf, out)
	if !ok {
		return nil
	}
	res.Body.Close()
	return r2
}

// compileScrub builds a proxy's response scrubber and audit redactor from
// the values to hide, as compileProxy does.
func compileScrub(ps *spec.Proxy, in inject.Injector, tokenHeader string, vals []string) (*scrub.Set, *audit.Redactor) {
	bs := make([][]byte, len(vals))
	for i, v := range vals {
		bs[i] = []byte(v)
	}
	set := scrub.New(bs, []byte("[REDACTED]"))
	redactHeaders := append(append([]string{}, ps.Capture.RedactHeaders...), in.Headers()...)
	if tokenHeader != "" {
		redactHeaders = append(redactHeaders, tokenHeader)
	}
	return set, audit.NewRedactor(set, vals, redactHeaders, ps.Capture.RedactJSON, in.QueryParams())
}

// SecretMaterial returns the current snapshot's decrypted secret (nil if
// none): the admin API's OAuth connect reads client_id and client_secret
// from it, and never returns them.
func (c *Catalog) SecretMaterial(name string) *inject.Material {
	sec := c.Load().secrets[name]
	if sec == nil {
		return nil
	}
	return sec.Material
}

// AdminByID returns a valid admin token of the snapshot by id (nil if it
// is unknown, revoked or expired).
func (s *Snapshot) AdminByID(id string, now time.Time) *Admin {
	for _, a := range s.admins {
		if a.ID == id {
			if a.RevokedAt != nil || a.ExpiresAt != nil && !now.Before(*a.ExpiresAt) {
				return nil
			}
			return a
		}
	}
	return nil
}
