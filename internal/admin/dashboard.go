package admin

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/token"
	"github.com/keyhole-gw/keyhole/internal/ui/password"
)

// The endpoints the dashboard (internal/ui) needs beyond SPEC §7, usable
// by any client:
//
//	GET    /api/v1/whoami              the caller's identity and role
//	GET    /api/v1/stats               aggregates of the audit index (the overview)
//	POST   /api/v1/validate/proxy      check a proxy spec without saving it (admin)
//	POST   /api/v1/validate/rule       check one rule without saving it (admin)
//	POST   /api/v1/users               create a dashboard user (admin)
//	GET    /api/v1/users               list them
//	DELETE /api/v1/users/{name}        delete one (admin)
func (a *API) dashboardRoutes(read func(string, handler), write func(string, string, handler)) {
	read("GET /api/v1/whoami", a.whoami)
	read("GET /api/v1/stats", a.stats)
	read("POST /api/v1/validate/proxy", a.validateProxySpec)
	read("POST /api/v1/validate/rule", a.validateRule)
	write("POST /api/v1/users", "user.create", a.createUser)
	read("GET /api/v1/users", a.listUsers)
	write("DELETE /api/v1/users/{name}", "user.delete", a.deleteUser)
}

func (a *API) whoami(c *call) error {
	return c.json(http.StatusOK, map[string]any{"id": c.who.ID, "name": c.who.Name, "role": c.who.Role,
		"expires_at": fmtTimePtr(c.who.ExpiresAt)})
}

// ---- validation (changes nothing; admin role, as only admins can save) ----

func (a *API) validateProxySpec(c *call) error {
	if c.who.Role != RoleAdmin {
		return errForbidden
	}
	ps, err := a.decodeProxy(c)
	if err != nil {
		return err
	}
	if _, err := a.validateProxy(c, ps); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"ok": true, "proxy": ps})
}

// validateRule checks one rule; with ?proxy=NAME, as a new rule of that
// proxy (its name must be free, and its paths fold as the proxy's do).
func (a *API) validateRule(c *call) error {
	if c.who.Role != RoleAdmin {
		return errForbidden
	}
	b, err := c.body()
	if err != nil {
		return err
	}
	rule, err := spec.DecodeRule(bytes.NewReader(b))
	if err != nil {
		return badRequest("%v", err)
	}
	opt := rules.Options{}
	if name := c.r.URL.Query().Get("proxy"); name != "" {
		p := a.Catalog.Load().Proxy(name)
		if p == nil {
			return notFound("proxy " + clip(name))
		}
		for _, r := range p.Spec.Rules {
			if r.Name == rule.Name {
				return conflict("proxy %s already has a rule named %s", name, rule.Name)
			}
		}
		opt.CaseInsensitive = p.Spec.CaseInsensitivePaths
	}
	if err := rules.CompileRule(rule, opt); err != nil {
		return badRequest("%v", err)
	}
	return c.json(http.StatusOK, map[string]any{"ok": true, "rule": rule})
}

// ---- dashboard users ----

var userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

var errNoUsers = &apiError{http.StatusNotImplemented, "not_implemented", "this store keeps no dashboard users; sign in with an admin token"}

// UserTokenPrefix starts the name of the admin token that stands for a
// dashboard user ("user:alice").
const UserTokenPrefix = "user:"

func (a *API) users() (store.Users, error) {
	us, ok := a.Store.(store.Users)
	if !ok {
		return nil, errNoUsers
	}
	return us, nil
}

// createUser: POST /api/v1/users {"name","role","password","ttl"}. The user
// is an admin token whose value nobody ever sees (its hash is of 40 random
// characters that are dropped at once), named "user:NAME", plus the
// password's PBKDF2 hash. The password is never stored, logged or
// answered (and -admin records keep no bodies).
func (a *API) createUser(c *call) error {
	us, err := a.users()
	if err != nil {
		return err
	}
	var req struct {
		Name     string `json:"name"`
		Role     string `json:"role"`
		Password string `json:"password"`
		TTL      string `json:"ttl"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if !userName.MatchString(req.Name) {
		return badRequest("user name %q is invalid: 1–64 characters A-Z a-z 0-9 . _ @ -, starting with a letter or digit", clip(req.Name))
	}
	switch req.Role {
	case RoleAdmin, RoleAuditor, RoleViewer:
	default:
		return badRequest("role must be admin, auditor or viewer")
	}
	if err := password.Validate(req.Password); err != nil {
		return badRequest("%v", err)
	}
	exp, err := parseTTL(req.TTL, 0)
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	if _, err := us.GetUser(ctx, req.Name); err == nil {
		return conflict("user %s already exists; delete it first to set a new password", req.Name)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	hash, err := password.Hash(req.Password)
	if err != nil {
		return err
	}
	raw, err := token.Generate(token.Admin)
	if err != nil {
		return err
	}
	at := now()
	t := store.AdminToken{ID: token.NewID("adm_"), Hash: token.Hash(raw), Name: UserTokenPrefix + req.Name, Role: req.Role,
		CreatedAt: at, ExpiresAt: exp}
	if err := a.Store.CreateAdminToken(ctx, t); err != nil {
		return err
	}
	if err := us.CreateUser(ctx, store.User{Name: req.Name, PasswordHash: hash, AdminTokenID: t.ID, CreatedAt: at}); err != nil {
		// Leave no identity behind that no one can sign in as.
		if rerr := a.Store.RevokeAdminToken(context.WithoutCancel(ctx), t.ID, now()); rerr != nil {
			a.Logger.Error("a user's admin identity could not be revoked after the user failed to be created", "admin_token_id", t.ID, "err", rerr)
		}
		if errors.Is(err, store.ErrConflict) {
			return conflict("user %s already exists", req.Name)
		}
		return err
	}
	if err := a.reload(ctx); err != nil {
		return err
	}
	return c.json(http.StatusCreated, map[string]any{"name": req.Name, "role": req.Role, "admin_token_id": t.ID,
		"created_at": fmtTime(at), "expires_at": fmtTimePtr(exp)})
}

func (a *API) listUsers(c *call) error {
	us, err := a.users()
	if err != nil {
		return err
	}
	list, err := us.ListUsers(c.r.Context())
	if err != nil {
		return err
	}
	toks, err := a.Store.ListAdminTokens(c.r.Context())
	if err != nil {
		return err
	}
	byID := map[string]store.AdminToken{}
	for _, t := range toks {
		byID[t.ID] = t
	}
	now := time.Now()
	out := make([]any, 0, len(list))
	for _, u := range list {
		t, ok := byID[u.AdminTokenID]
		state := "active"
		switch {
		case !ok || t.RevokedAt != nil:
			state = "revoked"
		case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
			state = "expired"
		}
		out = append(out, map[string]any{"name": u.Name, "role": t.Role, "admin_token_id": u.AdminTokenID,
			"created_at": fmtTime(u.CreatedAt), "expires_at": fmtTimePtr(t.ExpiresAt), "state": state})
	}
	return c.json(http.StatusOK, map[string]any{"users": out})
}

// deleteUser revokes the user's admin identity (which ends their
// sessions) and removes the user.
func (a *API) deleteUser(c *call) error {
	us, err := a.users()
	if err != nil {
		return err
	}
	name := c.r.PathValue("name")
	u, err := us.GetUser(c.r.Context(), name)
	if err != nil {
		return storeErr(err, "user "+clip(name))
	}
	if err := a.Store.RevokeAdminToken(c.r.Context(), u.AdminTokenID, now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	a.endSessions(c.r.Context(), u.AdminTokenID)
	if err := us.DeleteUser(c.r.Context(), name); err != nil {
		return storeErr(err, "user "+clip(name))
	}
	if err := a.reload(c.r.Context()); err != nil {
		return err
	}
	c.status = http.StatusNoContent
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
