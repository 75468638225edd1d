// Package catalog builds and holds the node's compiled, immutable snapshot
// of its configuration: proxies with their compiled rules, injectors,
// scrubbers and upstream transports; tokens by hash; admin tokens; agents.
// The gateway reads it through an atomic pointer without locks or database
// round trips; every change to the store is followed by a rebuild and a
// pointer swap, so a rotation, revocation or rule change applies to the
// next request.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/metrics"
	"github.com/keyhole-gw/keyhole/internal/netguard"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/scrub"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/token"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// Snapshot is one immutable compiled configuration.
type Snapshot struct {
	Version int64
	Built   time.Time

	proxies    map[string]*Proxy
	agents     map[string]*Agent
	tokens     map[string]*Token // by hash
	tokenIDs   map[string]*Token
	admins     map[string]*Admin // by hash
	secrets    map[string]*Secret
	proxyNames []string
}

// Proxy is a compiled proxy.
type Proxy struct {
	Name     string
	Spec     spec.Proxy
	Upstream *url.URL
	Rules    *rules.Set
	Inject   inject.Injector
	// Scrub replaces the secret's values (and derived ones) in responses
	// and captured bodies.
	Scrub  *scrub.Set
	Redact *audit.Redactor
	// Transport talks to the upstream (pooled across rebuilds).
	Transport *http.Transport
	// TokenHeader is the canonical agent_token_header ("" if none).
	TokenHeader string
	// InjectedParams are the query parameters the auth sets.
	InjectedParams map[string]bool
	// Err is set when the proxy could not be compiled (its secret is
	// missing or no longer fits): requests get 502 and the reason is logged.
	Err error

	// cred: an OAuth proxy's per-access-token views (dynamic.go).
	cred *credView
}

// Agent is an agent identity.
type Agent struct {
	Name   string
	Labels map[string]string
}

// Token is an agent token with what authentication needs.
type Token struct {
	store.Token
	Parent *Token
	Scope  map[string]bool
	// Rules are a child token's own allow rules (nil for none);
	// RulesFold the same compiled for case-insensitive proxies.
	Rules     *rules.Set
	RulesFold *rules.Set
}

// RulesFor returns the child token's rules compiled for a proxy.
func (t *Token) RulesFor(caseInsensitive bool) *rules.Set {
	if caseInsensitive {
		return t.RulesFold
	}
	return t.Rules
}

// Admin is an admin API token.
type Admin struct {
	store.AdminToken
}

// Secret is a secret's material, for injectors and scrubbers.
type Secret struct {
	Meta     store.Secret
	Material *inject.Material
}

// Proxy returns a compiled proxy, or nil.
func (s *Snapshot) Proxy(name string) *Proxy { return s.proxies[name] }

// ProxyNames lists the proxies, sorted.
func (s *Snapshot) ProxyNames() []string { return s.proxyNames }

// Agent returns an agent, or nil.
func (s *Snapshot) Agent(name string) *Agent { return s.agents[name] }

// TokenByID returns a token, or nil.
func (s *Snapshot) TokenByID(id string) *Token { return s.tokenIDs[id] }

// Auth failure reasons (SPEC §3.3).
const (
	ReasonBadToken = "bad_token"
	ReasonExpired  = "token_expired"
	ReasonRevoked  = "token_revoked"
)

// Authenticate looks a presented agent token up by its hash and checks it
// and every ancestor: a revoked ancestor revokes it, an expired one expires
// it (the child's expiry is clamped at mint, this is belt and braces).
func (s *Snapshot) Authenticate(raw string, now time.Time) (*Token, string) {
	if _, err := token.Parse(raw); err != nil {
		return nil, ReasonBadToken
	}
	t := s.tokens[token.Hash(raw)]
	if t == nil {
		return nil, ReasonBadToken
	}
	reason := ""
	for a := t; a != nil; a = a.Parent {
		if a.RevokedAt != nil {
			return t, ReasonRevoked
		}
		if a.ExpiresAt != nil && !now.Before(*a.ExpiresAt) && reason == "" {
			reason = ReasonExpired
		}
		if a.Parent == nil && a.ParentID != "" {
			return t, ReasonRevoked // the parent is gone
		}
	}
	if reason != "" {
		return t, reason
	}
	return t, ""
}

// AuthenticateAdmin checks an admin token (kha_… or the bootstrap token).
func (s *Snapshot) AuthenticateAdmin(raw string, now time.Time) *Admin {
	if raw == "" {
		return nil
	}
	a := s.admins[token.Hash(raw)]
	if a == nil || a.RevokedAt != nil || a.ExpiresAt != nil && !now.Before(*a.ExpiresAt) {
		return nil
	}
	return a
}

// Catalog holds the current snapshot and rebuilds it.
type Catalog struct {
	st     store.Config
	master *vault.MasterKey
	guard  *netguard.Guard
	limits *rules.Limits
	log    *slog.Logger
	m      *metrics.Metrics

	cur atomic.Pointer[Snapshot]
	mu  sync.Mutex // one rebuild at a time

	tmu        sync.Mutex
	transports map[string]*http.Transport

	// Upstream auth state that outlives snapshots (dynamic.go).
	dyn      dynamic
	oauthOpt inject.OAuthOptions
}

// Options configure a Catalog.
type Options struct {
	Store   store.Config
	Master  *vault.MasterKey
	Guard   *netguard.Guard
	Limits  *rules.Limits
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// OAuth tunes token fetching (attempts, timeouts, clock); the zero
	// value takes inject's defaults.
	OAuth inject.OAuthOptions
}

// New builds the first snapshot.
func New(ctx context.Context, o Options) (*Catalog, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Limits == nil {
		o.Limits = rules.NewLimits()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	c := &Catalog{st: o.Store, master: o.Master, guard: o.Guard, limits: o.Limits, log: o.Logger, m: o.Metrics,
		transports: map[string]*http.Transport{}, oauthOpt: o.OAuth}
	if err := c.Reload(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Load returns the current snapshot.
func (c *Catalog) Load() *Snapshot { return c.cur.Load() }

// Limits is the rate-limit state shared by every snapshot.
func (c *Catalog) Limits() *rules.Limits { return c.limits }

// Guard is the node's SSRF guard.
func (c *Catalog) Guard() *netguard.Guard { return c.guard }

// Reload rebuilds the snapshot from the store and swaps it in. A rebuild
// that fails leaves the previous snapshot serving.
func (c *Catalog) Reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.st.Load(ctx)
	if err != nil {
		c.m.SnapshotReloads.WithLabelValues("error").Inc()
		return fmt.Errorf("cannot read the configuration: %w", err)
	}
	if cur := c.cur.Load(); cur != nil && cur.Version == st.Version {
		return nil
	}
	snap, err := c.build(st)
	if err != nil {
		c.m.SnapshotReloads.WithLabelValues("error").Inc()
		return err
	}
	c.cur.Store(snap)
	c.m.SnapshotReloads.WithLabelValues("ok").Inc()
	c.m.SnapshotVersion.Set(float64(snap.Version))
	return nil
}

// ReloadIfChanged rebuilds when the store's version moved (the poll of
// several-node deployments).
func (c *Catalog) ReloadIfChanged(ctx context.Context) error {
	v, err := c.st.Version(ctx)
	if err != nil {
		return err
	}
	if cur := c.cur.Load(); cur != nil && cur.Version == v {
		return nil
	}
	return c.Reload(ctx)
}

// Keyring opens the vault's keyring from stored keys.
func Keyring(master *vault.MasterKey, keys []store.Key) (*vault.Keyring, error) {
	var wk []vault.WrappedKey
	var active uint32
	for _, k := range keys {
		wk = append(wk, vault.WrappedKey{ID: k.ID, Wrapped: k.Wrapped, Created: k.CreatedAt})
		if k.Active {
			active = k.ID
		}
	}
	if len(wk) == 0 {
		return nil, errors.New("the store has no vault keys")
	}
	return master.OpenKeyring(wk, active)
}

func (c *Catalog) build(st *store.State) (*Snapshot, error) {
	kr, err := Keyring(c.master, st.Keys)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Version: st.Version, Built: time.Now(), proxies: map[string]*Proxy{}, agents: map[string]*Agent{},
		tokens: map[string]*Token{}, tokenIDs: map[string]*Token{}, admins: map[string]*Admin{}, secrets: map[string]*Secret{}}
	for _, sec := range st.Secrets {
		sv, ok := st.Sealed[sec.Name]
		if !ok {
			continue
		}
		pt, err := kr.Open(vault.SecretAAD(sec.Name, sv.Version), sv.Ciphertext)
		if err != nil {
			c.log.Error("a secret does not open with the vault keys; proxies using it will answer 502", "secret", sec.Name, "version", sv.Version)
			continue
		}
		fields, err := DecodeValue(pt)
		if err != nil {
			c.log.Error("a secret's value is malformed", "secret", sec.Name)
			continue
		}
		rotated := takeRotationMark(fields) // dynamic.go
		s.secrets[sec.Name] = &Secret{Meta: sec, Material: &inject.Material{Name: sec.Name, Version: sv.Version, Fields: fields, Rotated: rotated}}
	}
	for _, a := range st.Agents {
		s.agents[a.Name] = &Agent{Name: a.Name, Labels: a.Labels}
	}
	used := map[string]bool{}
	for _, sp := range st.Proxies {
		p := c.compileProxy(sp, s)
		s.proxies[p.Name] = p
		s.proxyNames = append(s.proxyNames, p.Name)
		if p.Transport != nil {
			used[transportKey(p.Spec)] = true
		}
	}
	sort.Strings(s.proxyNames)
	c.dropTransports(used)
	c.sweepDynamic(s)
	for i := range st.Tokens {
		t := &Token{Token: st.Tokens[i], Scope: map[string]bool{}}
		for _, p := range t.Proxies {
			t.Scope[p] = true
		}
		if len(t.Token.Rules) > 0 {
			var rs []spec.Rule
			t.Rules, t.RulesFold = &rules.Set{}, &rules.Set{} // fail closed: rules that do not load allow nothing
			if err := json.Unmarshal(t.Token.Rules, &rs); err == nil {
				opt := rules.Options{AllowOnly: true, Proxy: "-token:" + t.ID, Limits: c.limits}
				plain, err1 := rules.Compile(rs, opt)
				opt.CaseInsensitive = true
				fold, err2 := rules.Compile(rs, opt)
				if err1 == nil && err2 == nil {
					t.Rules, t.RulesFold = plain, fold
				} else {
					c.log.Error("a child token's rules do not compile; it allows nothing", "token_id", t.ID, "err", errors.Join(err1, err2))
				}
			}
		}
		s.tokens[t.Hash] = t
		s.tokenIDs[t.ID] = t
	}
	for _, t := range s.tokenIDs {
		if t.ParentID != "" {
			t.Parent = s.tokenIDs[t.ParentID]
		}
	}
	for _, a := range st.AdminTokens {
		s.admins[a.Hash] = &Admin{AdminToken: a}
	}
	return s, nil
}

// CompileProxy compiles a proxy spec against the current snapshot's
// secrets (the admin API uses it to refuse what would not work).
func (c *Catalog) CompileProxy(sp store.Proxy) *Proxy {
	return c.compileProxy(sp, c.Load())
}

func (c *Catalog) compileProxy(sp store.Proxy, s *Snapshot) *Proxy { return c.compile(sp, s, false) }

// compile compiles a proxy spec against the secrets of s. With check, it
// only finds out whether the proxy would compile: it leaves the node's
// state alone (no upstream transport, OAuth token source or rate-limit
// state is created or updated), for values that are not stored yet.
func (c *Catalog) compile(sp store.Proxy, s *Snapshot, check bool) *Proxy {
	p := &Proxy{Name: sp.Name}
	if err := json.Unmarshal(sp.Spec, &p.Spec); err != nil {
		p.Err = fmt.Errorf("stored proxy spec does not parse: %w", err)
		return p
	}
	p.Spec.Normalize()
	ps := &p.Spec
	u, err := spec.ParseUpstream(ps.Upstream)
	if err != nil {
		p.Err = err
		return p
	}
	p.Upstream = u
	if ps.AgentTokenHeader != "" {
		p.TokenHeader = http.CanonicalHeaderKey(ps.AgentTokenHeader)
	}
	limits := c.limits
	if check {
		limits = nil
	}
	p.Rules, err = rules.Compile(ps.Rules, rules.Options{CaseInsensitive: ps.CaseInsensitivePaths, Proxy: ps.Name, Limits: limits})
	if err != nil {
		p.Err = err
		return p
	}
	var mat *inject.Material
	if ps.Auth.Secret != "" {
		sec := s.secrets[ps.Auth.Secret]
		if sec == nil {
			p.Err = fmt.Errorf("secret %q is missing or cannot be opened", ps.Auth.Secret)
			return p
		}
		mat = sec.Material
	}
	switch ps.Auth.Type {
	case "none", "bearer", "header", "query", "basic":
		p.Inject, err = inject.NewStatic(ps.Auth, mat)
	case "oauth2_client_credentials", "oauth2_refresh_token":
		if check {
			// A source of its own, never registered: the settings and
			// the secret's fields are checked, nothing is fetched.
			var set inject.OAuthSettings
			var src *inject.OAuthSource
			if set, err = inject.SettingsOf(ps.Auth); err == nil {
				if mat == nil {
					err = fmt.Errorf("secret %q is missing or cannot be opened", ps.Auth.Secret)
				} else if src, err = inject.NewOAuthSource(set, mat, c.oauthOpt); err == nil {
					p.Inject = inject.NewOAuth(src)
				}
			}
			break
		}
		// The token source outlives this snapshot (dynamic.go).
		p.Inject, err = c.oauthInjector(ps.Auth, mat)
	case "aws_sigv4":
		p.Inject, err = inject.NewSigV4(ps.Auth, mat, nil)
	default:
		err = fmt.Errorf("auth type %s is not available in this build", ps.Auth.Type)
	}
	if err != nil {
		p.Err = err
		return p
	}
	vals := p.Inject.Values()
	bs := make([][]byte, len(vals))
	for i, v := range vals {
		bs[i] = []byte(v)
	}
	p.Scrub = scrub.New(bs, []byte("[REDACTED]"))
	p.InjectedParams = map[string]bool{}
	for _, q := range p.Inject.QueryParams() {
		p.InjectedParams[q] = true
	}
	redactHeaders := append(append([]string{}, ps.Capture.RedactHeaders...), p.Inject.Headers()...)
	if p.TokenHeader != "" {
		redactHeaders = append(redactHeaders, p.TokenHeader)
	}
	p.Redact = audit.NewRedactor(p.Scrub, vals, redactHeaders, ps.Capture.RedactJSON, p.Inject.QueryParams())
	if ps.Capture.RedactMode == "hmac" {
		if c.master == nil {
			p.Err = errors.New("capture.redact_mode hmac needs the master key")
			return p
		}
		p.Redact = p.Redact.WithHMAC(c.master.DeriveKey(audit.HMACKeyPurpose))
	}
	if check {
		return p
	}
	p.Transport = c.transport(*ps)
	c.attachCredView(p)
	return p
}

func transportKey(p spec.Proxy) string {
	return fmt.Sprintf("%s|%s|%s", p.Upstream, time.Duration(p.Timeouts.Connect), time.Duration(p.Timeouts.ResponseHeader))
}

// transport returns the pooled transport for an upstream and its timeouts,
// reusing the one of the previous snapshot so rebuilds keep connections.
func (c *Catalog) transport(p spec.Proxy) *http.Transport {
	key := transportKey(p)
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if t := c.transports[key]; t != nil {
		return t
	}
	t := NewTransport(c.guard, time.Duration(p.Timeouts.Connect), time.Duration(p.Timeouts.ResponseHeader))
	c.transports[key] = t
	return t
}

func (c *Catalog) dropTransports(used map[string]bool) {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	for k, t := range c.transports {
		if !used[k] {
			t.CloseIdleConnections()
			delete(c.transports, k)
		}
	}
}

// CloseIdle closes idle upstream connections (shutdown).
func (c *Catalog) CloseIdle() {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	for _, t := range c.transports {
		t.CloseIdleConnections()
	}
}

// EncodeValue turns a secret value from the API (a JSON string, or an
// object of string fields) into the plaintext that is sealed, its kind and
// its field names. The plaintext is JSON so the kind survives the vault.
func EncodeValue(raw json.RawMessage) (plaintext []byte, kind string, fields []string, err error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if len(s) < inject.MinSecretLen {
			return nil, "", nil, fmt.Errorf("the value is shorter than %d characters: too short to be a credential (and to be scrubbed from responses reliably)", inject.MinSecretLen)
		}
		if strings.TrimSpace(s) != s {
			return nil, "", nil, errors.New("the value starts or ends with whitespace (a trailing newline from a file?); remove it")
		}
		pt, _ := json.Marshal(s)
		return pt, "string", nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", nil, errors.New("value must be a string or an object whose fields are strings")
	}
	if len(m) == 0 {
		return nil, "", nil, errors.New("value is an empty object")
	}
	for k, v := range m {
		if !spec.ValidSecretField(k) {
			return nil, "", nil, fmt.Errorf("field name %q is invalid: use letters, digits, _ and -", clipName(k))
		}
		if v == "" {
			return nil, "", nil, fmt.Errorf("field %q is empty", k)
		}
		fields = append(fields, k)
	}
	sort.Strings(fields)
	pt, _ := json.Marshal(m)
	return pt, "object", fields, nil
}

// DecodeValue is EncodeValue's inverse: the fields of a sealed value (""
// holds a string secret).
func DecodeValue(pt []byte) (map[string]string, error) {
	var s string
	if err := json.Unmarshal(pt, &s); err == nil {
		return map[string]string{"": s}, nil
	}
	var m map[string]string
	if err := json.Unmarshal(pt, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func clipName(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
