package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/token"
)

// MaxChildDepth is how deep down-scoped tokens go (SPEC §3.5).
const MaxChildDepth = 3

// serveKeyhole answers keyhole's own endpoints under /-/ (SPEC §3.1).
func (g *Gateway) serveKeyhole(w http.ResponseWriter, r *http.Request, x *exchange, path string) {
	x.rec.Proxy, x.rec.Path = KeyholeProxy, clipTarget(path)
	switch path {
	case "/-/health":
		// Liveness: no auth, no record.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			break
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
		return
	case "/-/ready":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			break
		}
		if g.Ready != nil {
			if err := g.Ready(r.Context()); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
		return
	case "/-/whoami":
		if f := g.authenticate(r, x, nil); f != nil {
			g.refuse(w, r, x, f)
			return
		}
		g.whoami(w, r, x)
		return
	case "/-/tokens":
		if f := g.authenticate(r, x, nil); f != nil {
			g.refuse(w, r, x, f)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			g.refuse(w, r, x, &refusal{status: http.StatusMethodNotAllowed, reason: "method_not_allowed", message: "use POST to mint a child token"})
			return
		}
		g.mint(w, r, x)
		return
	case "/-/mcp": // MCP server for the calling agent (SPEC §8; mcp.go)
		g.serveMCP(w, r, x)
		return
	}
	g.refuse(w, r, x, &refusal{status: http.StatusNotFound, reason: "not_found", message: msgNotFound})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	js, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(js)
	w.Write([]byte("\n"))
}

func fmtTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// expiry is a token's effective expiry: its own or an ancestor's, earliest.
func expiry(t *catalog.Token) *time.Time {
	var e *time.Time
	for a := t; a != nil; a = a.Parent {
		if a.ExpiresAt != nil && (e == nil || a.ExpiresAt.Before(*e)) {
			e = a.ExpiresAt
		}
	}
	return e
}

func (g *Gateway) okRecord(w http.ResponseWriter, r *http.Request, x *exchange, status int) bool {
	x.rec.Decision, x.rec.Reason = audit.Allow, "ok"
	x.rec.RequestHeaders = (*audit.Redactor)(nil).Headers(r.Header)
	end := audit.End{Status: status, LatencyMS: msSince(x.start)}
	if err := g.Audit.Record(r.Context(), &x.rec, &end); err != nil {
		g.auditFailed(w, r, x, err)
		return false
	}
	g.observe(x, status, audit.Allow)
	return true
}

func (g *Gateway) whoami(w http.ResponseWriter, r *http.Request, x *exchange) {
	t := x.tok
	labels := map[string]string{}
	if x.agent != nil {
		labels = x.agent.Labels
	}
	proxies := append([]string{}, t.Proxies...)
	sort.Strings(proxies)
	if !g.okRecord(w, r, x, http.StatusOK) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"agent": t.Agent, "labels": labels, "token_id": t.ID, "name": t.Name, "proxies": proxies,
		"expires_at": fmtTime(expiry(t)), "parent_id": nullable(t.ParentID), "depth": t.Depth,
	})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

type mintRequest struct {
	Proxies []string    `json:"proxies"`
	Rules   []spec.Rule `json:"rules"`
	TTL     string      `json:"ttl"`
	Name    string      `json:"name"`
}

// mint creates a down-scoped child of the calling token (SPEC §3.5).
func (g *Gateway) mint(w http.ResponseWriter, r *http.Request, x *exchange) {
	bad := func(msg string) {
		g.refuse(w, r, x, &refusal{status: http.StatusBadRequest, reason: "invalid_request", message: msg})
	}
	parent := x.tok
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil || len(body) > 64<<10 {
		bad("the request body must be a JSON object of at most 64 KiB")
		return
	}
	var req mintRequest
	// Strict, as every configuration body: repeated keys and case variants
	// of field names are refused (a rule's "effect" must mean one thing).
	if err := spec.DecodeStrict(body, &req, "the request"); err != nil {
		bad("the body must be a JSON object {\"proxies\":[…],\"rules\":[…],\"ttl\":\"15m\",\"name\":\"…\"}: " + err.Error())
		return
	}
	if parent.Depth+1 > MaxChildDepth {
		bad("this token is a child of depth 3, the deepest allowed; it cannot mint children")
		return
	}
	if len(req.Proxies) == 0 {
		req.Proxies = append([]string{}, parent.Proxies...)
	}
	seen := map[string]bool{}
	for _, p := range req.Proxies {
		if !parent.Scope[p] {
			bad("a child token's proxies must be a subset of its parent's; \"" + clipName(p) + "\" is not in this token's scope")
			return
		}
		seen[p] = true
	}
	proxies := make([]string, 0, len(seen))
	for p := range seen {
		proxies = append(proxies, p)
	}
	sort.Strings(proxies)
	now := time.Now().UTC()
	ttl := 15 * time.Minute
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < 0 {
			bad("ttl must be a Go duration such as \"15m\" or \"1h\"")
			return
		}
		ttl = d
	}
	var exp *time.Time
	if ttl > 0 {
		e := now.Add(ttl)
		exp = &e
	}
	if pe := expiry(parent); pe != nil && (exp == nil || pe.Before(*exp)) {
		e := *pe
		exp = &e
	}
	var rulesJSON []byte
	if len(req.Rules) > 0 {
		for i := range req.Rules {
			req.Rules[i].Normalize()
		}
		if _, err := rules.Compile(req.Rules, rules.Options{AllowOnly: true}); err != nil {
			bad(err.Error())
			return
		}
		rulesJSON, _ = json.Marshal(req.Rules)
	}
	name := req.Name
	if len(name) > 128 {
		bad("name is longer than 128 characters")
		return
	}
	raw, err := token.Generate(token.Agent)
	if err != nil {
		g.refuse(w, r, x, &refusal{status: http.StatusInternalServerError, reason: "internal", message: "cannot generate a token"})
		return
	}
	child := store.Token{ID: token.NewID("tok_"), Hash: token.Hash(raw), Agent: parent.Agent, Name: name, Proxies: proxies,
		Rules: rulesJSON, ParentID: parent.ID, Depth: parent.Depth + 1, CreatedAt: now, ExpiresAt: exp}
	// Recorded before it exists (like every change): no record, no token.
	x.rec.Decision, x.rec.Reason = audit.Allow, "token.mint"
	x.rec.RequestHeaders = (*audit.Redactor)(nil).Headers(r.Header)
	if err := g.Audit.Begin(r.Context(), &x.rec); err != nil {
		g.auditFailed(w, r, x, err)
		return
	}
	status := http.StatusCreated
	if err := g.Store.CreateToken(r.Context(), child); err != nil {
		g.Logger.Error("cannot store a child token", "err", err)
		status = http.StatusInternalServerError
	} else if err := g.Catalog.Reload(r.Context()); err != nil {
		// Stored, so other nodes and this one's next rebuild know it; but
		// it would not work here yet: say so rather than hand it out.
		g.Logger.Error("snapshot rebuild after minting failed", "err", err)
		status = http.StatusServiceUnavailable
	}
	end := &audit.End{Status: status, LatencyMS: msSince(x.start)}
	if status != http.StatusCreated {
		end.Decision, end.Reason = audit.Error, "token.mint_failed"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := g.Audit.Finish(ctx, x.rid, end); err != nil {
		// The token is stored but never handed out: harmless, and the
		// agent sees a failed call rather than an unrecorded token.
		g.Logger.Warn("the end of a mint's audit record cannot be committed; aborting", "request_id", x.rid, "err", err)
		panic(http.ErrAbortHandler)
	}
	g.observe(x, status, end.Decision)
	if status != http.StatusCreated {
		writeError(w, status, "internal", "the token could not be issued; retry", x.rid)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": child.ID, "token": raw, "agent": child.Agent, "proxies": proxies,
		"expires_at": fmtTime(exp), "parent_id": parent.ID, "depth": child.Depth, "name": name})
}

func clipName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
