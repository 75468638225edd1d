package ui

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/ui/password"
)

// Sign-in. The form is protected against login CSRF by a double-submit
// token (a random cookie, scoped to /login, that the form repeats) and the
// same-origin check. Every attempt is an audit record (proxy "-admin",
// path /login): reason "login", or "login_failed:<why>" with decision deny.
// Failed attempts are limited per client address and per user name.

const loginCookie = "keyhole_login"

// Sign-in limits: after maxFailures failed attempts within failureWindow
// from one address (or for one user name), further attempts are refused
// until the window has passed. Password checks run at most
// maxConcurrentChecks at a time (each is 600,000 PBKDF2 rounds).
const (
	maxFailures         = 10
	failureWindow       = 15 * time.Minute
	maxConcurrentChecks = 2
)

type loginLimiter struct {
	mu     sync.Mutex
	fails  map[string]*failures
	checks chan struct{}
}

type failures struct {
	n     int
	since time.Time
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{fails: map[string]*failures{}, checks: make(chan struct{}, maxConcurrentChecks)}
}

func (l *loginLimiter) blocked(keys []string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if f := l.fails[k]; f != nil {
			if now.Sub(f.since) > failureWindow {
				delete(l.fails, k)
			} else if f.n >= maxFailures {
				return true
			}
		}
	}
	return false
}

func (l *loginLimiter) fail(keys []string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 100_000 {
		for k, f := range l.fails {
			if now.Sub(f.since) > failureWindow {
				delete(l.fails, k)
			}
		}
	}
	for _, k := range keys {
		f := l.fails[k]
		if f == nil || now.Sub(f.since) > failureWindow {
			f = &failures{since: now}
			l.fails[k] = f
		}
		f.n++
	}
}

func (l *loginLimiter) succeed(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys[1:] { // the user's count; the address keeps its own
		delete(l.fails, k)
	}
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type loginData struct {
	Next      string
	Method    string // "token" or "password"
	UserName  string
	Users     bool // the store keeps dashboard users
	LoginCSRF string
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	next := localPath(r.URL.Query().Get("next"))
	if ss, _, _ := u.sessions.lookup(r); ss != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	u.showLogin(w, r, http.StatusOK, loginData{Next: next, Method: r.URL.Query().Get("method")}, "")
}

func (u *UI) showLogin(w http.ResponseWriter, r *http.Request, status int, d loginData, msg string) {
	tok := ""
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == 43 {
		tok = c.Value
	} else {
		tok = randomToken()
		http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", HttpOnly: true, Secure: r.TLS != nil,
			SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	}
	_, d.Users = u.Store.(store.Users)
	if d.Method != "password" || !d.Users {
		d.Method = "token"
	}
	d.LoginCSRF = tok
	if err := u.write(w, status, "login", &view{Title: "Sign in", Layout: "bare", Error: msg, Data: d}); err != nil {
		u.Logger.Error("dashboard sign-in page failed", "err", err)
	}
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		u.renderStatus(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	f := r.PostForm
	d := loginData{Next: localPath(f.Get("next")), Method: f.Get("method"), UserName: clipName(f.Get("user"))}
	c, err := r.Cookie(loginCookie)
	if err != nil || f.Get(csrfField) == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(f.Get(csrfField))) != 1 || !sameOrigin(r) {
		u.showLogin(w, r, http.StatusForbidden, d, "The sign-in form expired or did not come from this page. Try again.")
		return
	}
	now := time.Now()
	keys := []string{"addr:" + clientAddr(r)}
	if d.Method == "password" {
		keys = append(keys, "user:"+d.UserName)
	}
	rec := &audit.Start{ID: newID(), Time: now, Node: u.Node, Proxy: audit.AdminProxy, Method: r.Method, Path: "/login",
		Agent: d.UserName, Decision: audit.Deny, RequestHeaders: (*audit.Redactor)(nil).Headers(r.Header)}
	fail := func(status int, why, msg string) {
		rec.Reason = "login_failed:" + why
		u.record(r, rec, status)
		u.showLogin(w, r, status, d, msg)
	}
	if u.logins.blocked(keys, now) {
		fail(http.StatusTooManyRequests, "rate_limited", "Too many failed sign-ins. Wait 15 minutes and try again.")
		return
	}
	var adm *catalog.Admin
	display, via := "", d.Method
	switch d.Method {
	case "password":
		adm, display = u.checkPassword(r.Context(), d.UserName, f.Get("password"))
		if adm == nil {
			u.logins.fail(keys, now)
			fail(http.StatusUnauthorized, "bad_password", "Wrong user name or password.")
			return
		}
	default:
		via = "token"
		raw := strings.TrimSpace(f.Get("token"))
		if strings.HasPrefix(raw, "kh_") {
			u.logins.fail(keys, now)
			fail(http.StatusUnauthorized, "agent_token", "That is an agent token (kh_…). Sign in with an admin token (kha_…).")
			return
		}
		adm = u.Catalog.Load().AuthenticateAdmin(raw, now)
		if adm == nil {
			u.logins.fail(keys, now)
			fail(http.StatusUnauthorized, "bad_token", "That admin token is unknown, expired or revoked.")
			return
		}
		display = adm.Name
	}
	u.logins.succeed(keys)
	rec.Agent, rec.TokenID, rec.Decision, rec.Reason = display, adm.ID, audit.Allow, "login:"+via
	// Fail closed: no record of the sign-in, no session.
	if err := u.record(r, rec, http.StatusSeeOther); err != nil {
		u.showLogin(w, r, http.StatusServiceUnavailable, d, "The audit log cannot record the sign-in right now, so it was refused. Try again shortly.")
		return
	}
	_, cookie, err := u.sessions.create(r.Context(), r, adm, display, via)
	if err != nil {
		u.Logger.Error("a dashboard session could not be stored", "err", err)
		u.showLogin(w, r, http.StatusServiceUnavailable, d, "The session could not be stored right now, so you are not signed in. Try again shortly.")
		return
	}
	http.SetCookie(w, cookie)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// checkPassword returns the admin identity of a user whose password
// matches, or nil; it takes as long for an unknown user as for a known one.
func (u *UI) checkPassword(ctx context.Context, name, pw string) (*catalog.Admin, string) {
	us, ok := u.Store.(store.Users)
	if !ok || name == "" || pw == "" {
		return nil, ""
	}
	select {
	case u.logins.checks <- struct{}{}:
		defer func() { <-u.logins.checks }()
	case <-ctx.Done():
		return nil, ""
	}
	usr, err := us.GetUser(ctx, name)
	if err != nil {
		password.CheckNone(pw)
		return nil, ""
	}
	if !password.Check(usr.PasswordHash, pw) {
		return nil, ""
	}
	adm := u.Catalog.Load().AdminByID(usr.AdminTokenID, time.Now())
	if adm == nil {
		return nil, ""
	}
	return adm, usr.Name
}

func (u *UI) logout(q *req) error {
	rec := &audit.Start{ID: newID(), Time: time.Now(), Node: u.Node, Proxy: audit.AdminProxy, Method: q.r.Method, Path: "/logout",
		Agent: q.sess.display, TokenID: q.who.ID, Decision: audit.Allow, Reason: "logout",
		RequestHeaders: (*audit.Redactor)(nil).Headers(q.r.Header)}
	u.record(q.r, rec, http.StatusSeeOther)
	if err := u.sessions.end(q.r.Context(), q.sess); err != nil {
		u.Logger.Error("a dashboard session could not be ended", "err", err)
		u.renderStatus(q.w, q.r, http.StatusServiceUnavailable, "Not signed out", "The session could not be ended right now (the store does not answer). Try again shortly.")
		return nil
	}
	http.SetCookie(q.w, &http.Cookie{Name: cookieNameFor(q.r), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: q.r.TLS != nil,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(q.w, q.r, "/login", http.StatusSeeOther)
	return nil
}

// record writes a sign-in or sign-out audit record.
func (u *UI) record(r *http.Request, s *audit.Start, status int) error {
	e := &audit.End{Status: status, LatencyMS: float64(time.Since(s.Time).Microseconds()) / 1000}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	err := u.Audit.Record(ctx, s, e)
	if err != nil {
		u.Logger.Error("a dashboard sign-in could not be recorded in the audit log", "request_id", s.ID, "err", err)
	}
	return err
}

func clipName(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 128 {
		s = s[:128]
	}
	return strings.ToValidUTF8(s, "")
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
