// Package admin is keyhole's admin API (SPEC §7): JSON under /api/v1 on the
// admin listener, authenticated by admin tokens with a role — admin (does
// everything), auditor (reads everything, payloads included, changes
// nothing) or viewer (reads configuration and log metadata, never payload
// bodies or header values, changes nothing). Agent tokens are never
// accepted here.
//
// Every change is written to the store, then the node's snapshot is rebuilt
// before the call returns (so the change is in effect on this node when the
// caller gets its answer), and the change itself is an audit record with
// proxy "-admin".
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/metrics"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// Roles (SPEC §7).
const (
	RoleAdmin   = "admin"
	RoleAuditor = "auditor"
	RoleViewer  = "viewer"
)

// Options configure the API.
type Options struct {
	Store   store.Store
	Catalog *catalog.Catalog
	Audit   *audit.Writer
	Master  *vault.MasterKey
	Node    string
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// ChainHeads returns the chain checkpoints kept outside the audit
	// table, so verify can find a truncated tail.
	ChainHeads func(context.Context) map[string]store.ChainHead
	// Extra handlers mounted on the admin listener (the dashboard).
	Extra map[string]http.Handler
	// Sessions, when set, lets the dashboard's session cookie stand in
	// for a Bearer token (session.go).
	Sessions SessionAuthenticator
}

// API is the admin http.Handler.
type API struct {
	Options
	mux *http.ServeMux
}

// New builds the API.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &API{Options: o, mux: http.NewServeMux()}
	a.routes()
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	a.mux.ServeHTTP(w, r)
}

type handler func(c *call) error

// call is one admin request.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	rid    string
	start  time.Time
	who    *catalog.Admin
	status int
	action string
	// auditBody, when set, is kept as the response body of the call's
	// audit record (an apply's summary: names only, never a value).
	auditBody []byte
}

// apiError is a client-visible error: status, code and message only.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(format string, a ...any) error {
	return &apiError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, a...)}
}

func notFound(what string) error {
	return &apiError{http.StatusNotFound, "not_found", what + " does not exist"}
}

func conflict(format string, a ...any) error {
	return &apiError{http.StatusConflict, "conflict", fmt.Sprintf(format, a...)}
}

var errForbidden = &apiError{http.StatusForbidden, "forbidden", "this admin token's role cannot make this change"}

func (a *API) routes() {
	m := a.mux
	read := func(pattern string, h handler) { m.Handle(pattern, a.wrap(h, false, "")) }
	write := func(pattern, action string, h handler) { m.Handle(pattern, a.wrap(h, true, action)) }

	write("POST /api/v1/secrets", "secret.create", a.createSecret)
	read("GET /api/v1/secrets", a.listSecrets)
	read("GET /api/v1/secrets/{name}", a.getSecret)
	write("PUT /api/v1/secrets/{name}", "secret.rotate", a.rotateSecret)
	write("DELETE /api/v1/secrets/{name}", "secret.delete", a.deleteSecret)

	write("POST /api/v1/proxies", "proxy.create", a.createProxy)
	read("GET /api/v1/proxies", a.listProxies)
	read("GET /api/v1/proxies/{name}", a.getProxy)
	write("PUT /api/v1/proxies/{name}", "proxy.replace", a.replaceProxy)
	write("DELETE /api/v1/proxies/{name}", "proxy.delete", a.deleteProxy)
	write("POST /api/v1/proxies/{name}/rules", "rule.add", a.addRule)
	write("DELETE /api/v1/proxies/{name}/rules/{rule}", "rule.remove", a.removeRule)
	read("POST /api/v1/proxies/{name}/rules/test", a.testRules)

	// A whole declarative configuration in one transaction (apply.go).
	write("POST /api/v1/apply", "apply", a.apply)

	write("POST /api/v1/agents", "agent.create", a.createAgent)
	read("GET /api/v1/agents", a.listAgents)
	read("GET /api/v1/agents/{name}", a.getAgent)
	write("DELETE /api/v1/agents/{name}", "agent.delete", a.deleteAgent)
	write("POST /api/v1/agents/{name}/tokens", "token.issue", a.issueToken)
	read("GET /api/v1/agents/{name}/tokens", a.listTokens)
	write("DELETE /api/v1/tokens/{id}", "token.revoke", a.revokeToken)

	write("POST /api/v1/admin-tokens", "admin_token.issue", a.issueAdminToken)
	read("GET /api/v1/admin-tokens", a.listAdminTokens)
	write("DELETE /api/v1/admin-tokens/{id}", "admin_token.revoke", a.revokeAdminToken)

	read("GET /api/v1/logs", a.listLogs)
	read("GET /api/v1/logs/{id}", a.getLog)
	a.streamRoutes(read) // GET /logs/stream, GET /logs/search, POST /audit/hash (stream.go, search.go)
	// Users, stats, validation and whoami, for the dashboard (dashboard.go).
	a.dashboardRoutes(read, write)
	m.Handle("POST /api/v1/audit/verify", a.wrap(a.verify, false, ""))

	// Upstream auth: the template catalog, OAuth 2.0 connect (templates.go,
	// oauth.go). The callback has no admin token: its state authenticates it.
	read("GET /api/v1/templates", a.listTemplates)
	read("GET /api/v1/templates/{name}", a.getTemplate)
	write("POST /api/v1/secrets/{name}/oauth/start", "secret.oauth_start", a.oauthStart)
	m.Handle("GET "+CallbackPath, http.HandlerFunc(a.oauthCallback))

	// Forward-proxy mode's CA (ca.go).
	read("GET /api/v1/ca", a.getCA)
	read("GET /api/v1/ca.pem", a.getCAPEM)
	write("POST /api/v1/ca", "ca.init", a.initCA)

	m.Handle("/api/", a.wrap(func(c *call) error {
		// A known path with another method: 405 with Allow, not 404.
		var allow []string
		for _, method := range []string{"GET", "POST", "PUT", "DELETE"} {
			probe := c.r.Clone(c.r.Context())
			probe.Method = method
			if _, pat := m.Handler(probe); pat != "" && pat != "/api/" {
				allow = append(allow, method)
			}
		}
		if len(allow) > 0 {
			c.w.Header().Set("Allow", strings.Join(allow, ", "))
			return &apiError{http.StatusMethodNotAllowed, "method_not_allowed", "this endpoint takes " + strings.Join(allow, ", ")}
		}
		return &apiError{http.StatusNotFound, "not_found", "no such admin API endpoint (see docs/api.md)"}
	}, false, ""))
	if a.Metrics != nil {
		m.Handle("GET /metrics", promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	// Go's profiler, for operators chasing latency: admin role only (a
	// heap profile holds memory contents, secrets included).
	m.Handle("/debug/pprof/", a.adminOnly(http.HandlerFunc(pprof.Index)))
	m.Handle("/debug/pprof/profile", a.adminOnly(http.HandlerFunc(pprof.Profile)))
	m.Handle("/debug/pprof/trace", a.adminOnly(http.HandlerFunc(pprof.Trace)))
	for p, h := range a.Extra {
		m.Handle(p, h)
	}
}

// wrap authenticates, checks the role, runs h, writes errors in the SPEC
// §3.3 envelope and records changes (and refused changes) in the audit log.
func (a *API) wrap(h handler, change bool, action string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, rid: newID(), start: time.Now(), action: action}
		w.Header().Set("X-Keyhole-Request-Id", c.rid)
		w.Header().Set("Cache-Control", "no-store")
		err := a.authorize(c, change)
		begun := false
		if err == nil && change {
			// A change is recorded before it is made (fail closed, as for
			// agents' requests): no record, no change.
			if berr := a.Audit.Begin(r.Context(), a.start(c)); berr != nil {
				a.Logger.Warn("admin change refused: its audit record cannot be committed", "request_id", c.rid, "err", berr)
				err = &apiError{http.StatusServiceUnavailable, "audit_unavailable", "the audit log cannot record this change right now, so it was not made; retry shortly"}
			} else {
				begun = true
			}
		}
		if err == nil {
			err = h(c)
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				a.Logger.Error("admin API error", "method", r.Method, "path", r.URL.Path, "request_id", c.rid, "err", err)
				ae = &apiError{http.StatusInternalServerError, "internal", "internal error; see the keyhole logs (request id " + c.rid + ")"}
			}
			c.status = ae.status
			writeErr(w, ae.status, ae.code, ae.message, c.rid)
		}
		switch {
		case begun:
			a.finish(c)
		case c.status == http.StatusUnauthorized || c.status == http.StatusForbidden:
			a.refused(c)
		}
	})
}

// start is the audit start of an admin call.
func (a *API) start(c *call) *audit.Start {
	s := &audit.Start{ID: c.rid, Time: c.start, Node: a.Node, Proxy: audit.AdminProxy, Method: c.r.Method,
		Path: c.r.URL.Path, Decision: audit.Allow, Reason: c.action}
	if c.who != nil {
		s.Agent, s.TokenID = c.who.Name, c.who.ID
	}
	s.RequestHeaders = (*audit.Redactor)(nil).Headers(c.r.Header)
	return s
}

func (c *call) end() *audit.End {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	e := &audit.End{Status: c.status, Decision: audit.Allow, Reason: c.action,
		LatencyMS: float64(time.Since(c.start).Microseconds()) / 1000}
	if c.status >= 400 {
		e.Decision = audit.Error
	}
	if c.auditBody != nil {
		e.ResponseBody = &audit.Body{Data: c.auditBody}
		e.ResponseBytes = int64(len(c.auditBody))
	}
	return e
}

// finish completes the record of an admin change.
func (a *API) finish(c *call) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), 10*time.Second)
	defer cancel()
	if err := a.Audit.Finish(ctx, c.rid, c.end()); err != nil {
		a.Logger.Warn("the end of an admin change's audit record is not committed yet (it is retried)", "request_id", c.rid, "err", err)
	}
}

// refused records a refused admin call (401, 403).
func (a *API) refused(c *call) {
	s := a.start(c)
	s.Decision, s.Reason = audit.Deny, "forbidden"
	if c.status == http.StatusUnauthorized {
		s.Reason = "unauthenticated"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), 10*time.Second)
	defer cancel()
	if err := a.Audit.Record(ctx, s, c.end()); err != nil {
		a.Logger.Error("a refused admin call could not be recorded in the audit log", "request_id", c.rid, "err", err)
	}
}

// adminOnly lets through requests with an admin-role token.
func (a *API) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, rid: newID(), start: time.Now()}
		if err := a.authorize(c, true); err != nil {
			ae := err.(*apiError)
			c.status = ae.status
			writeErr(w, ae.status, ae.code, ae.message, c.rid)
			a.refused(c)
			return
		}
		// A profile holds memory contents (secrets included): taking one
		// is recorded first, like a change.
		c.action, c.status = "debug.pprof", http.StatusOK
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if err := a.Audit.Record(ctx, a.start(c), c.end()); err != nil {
			writeErr(w, http.StatusServiceUnavailable, "audit_unavailable", "the audit log cannot record this right now; retry shortly", c.rid)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

func (a *API) authorize(c *call, change bool) error {
	raw := ""
	if v := c.r.Header.Get("Authorization"); v != "" {
		if scheme, val, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			raw = strings.TrimSpace(val)
		}
	}
	if raw == "" && a.Sessions != nil {
		// No Bearer token: a dashboard session cookie may stand for the
		// admin identity that signed in (session.go). The session checks
		// CSRF on every method but GET and HEAD and fails with a
		// client-safe reason; its identity's role applies as a token's.
		who, err := a.Sessions.AuthenticateSession(c.r)
		if errors.Is(err, ErrSessionsUnavailable) {
			return &apiError{http.StatusServiceUnavailable, "unavailable", err.Error()}
		}
		if err != nil {
			return &apiError{http.StatusForbidden, "forbidden", err.Error()}
		}
		if who != nil {
			c.who = who
			if change && who.Role != RoleAdmin {
				return errForbidden
			}
			return nil
		}
	}
	if raw == "" || strings.HasPrefix(raw, "kh_") {
		return &apiError{http.StatusUnauthorized, "unauthenticated", "send an admin token as Authorization: Bearer kha_… (agent tokens are not accepted here)"}
	}
	c.who = a.Catalog.Load().AuthenticateAdmin(raw, time.Now())
	if c.who == nil {
		return &apiError{http.StatusUnauthorized, "unauthenticated", "the admin token is unknown, expired or revoked"}
	}
	if change && c.who.Role != RoleAdmin {
		return errForbidden
	}
	return nil
}

func writeErr(w http.ResponseWriter, status int, code, message, rid string) {
	var b struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	b.Error.Code, b.Error.Message, b.Error.RequestID = code, message, rid
	js, _ := json.Marshal(b)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(js)
	w.Write([]byte("\n"))
}

func (c *call) json(status int, v any) error {
	c.status = status
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	c.w.Write(js)
	c.w.Write([]byte("\n"))
	return nil
}

// maxBody bounds admin request bodies.
const maxBody = 4 << 20

func (c *call) body() ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(c.r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("the request body could not be read")
	}
	if len(b) > maxBody {
		return nil, badRequest("the request body is larger than %d bytes", maxBody)
	}
	return b, nil
}

// decode reads a JSON object strictly: unknown fields, case variants of
// known ones and repeated keys are refused ({"role":"viewer","role":"admin"}
// must not quietly mean admin).
func (c *call) decode(v any) error {
	b, err := c.body()
	if err != nil {
		return err
	}
	if err := spec.DecodeStrict(b, v, "the request"); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

func describeJSON(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty; send a JSON object"
	case errors.As(err, &se):
		return fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q has the wrong type", te.Field)
		}
		return "the body must be a JSON object"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + clip(strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return "the body is not valid JSON"
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// reload rebuilds the node's snapshot after a change.
func (a *API) reload(ctx context.Context) error {
	if err := a.Catalog.Reload(ctx); err != nil {
		return fmt.Errorf("the change is stored but this node could not rebuild its configuration: %w", err)
	}
	return nil
}

// storeErr maps store sentinels to API errors.
func storeErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(what)
	case errors.Is(err, store.ErrConflict):
		return conflict("%s already exists", what)
	}
	return err
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func fmtTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return fmtTime(*t)
}
