// Package ui is keyhole's dashboard: server-rendered pages on the admin
// listener (SPEC §2, §7) for the people who watch and run a gateway —
// an overview of the traffic, the request log with a live tail and each
// request's detail, and the configuration (proxies and rules, agents and
// tokens, secrets) — embedded in the binary, with no network at run time.
//
// The dashboard is a client of the admin API: each page calls the API
// in-process as the signed-in identity (so roles, the viewer's view of
// payloads and the audit records of changes are the API's own), and the
// browser's scripts call the same API with the session cookie. Sign-in is
// with an admin token or a dashboard user's password (store.Users); see
// session.go for sessions and CSRF, and docs/dashboard.md.
//
// Hostile data stays inert: every value is written by html/template (or by
// textContent in the scripts), pages carry a strict Content-Security-Policy
// (scripts and styles from 'self' only, no inline code, Trusted Types with
// no policy, so no script can write HTML from a string), and no page ever
// shows a secret; a new token is shown once, on a page that is not cached.
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CSP is the dashboard's Content-Security-Policy: nothing inline, nothing
// from another origin, no plugins, no framing, no <base>, forms post only
// here, and Trusted Types with no policy (so innerHTML and friends throw on
// strings: the scripts build every element with textContent).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"font-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// Options configure the dashboard.
type Options struct {
	Store   store.Store
	Catalog *catalog.Catalog
	Audit   *audit.Writer
	Node    string
	Logger  *slog.Logger
}

// UI is the dashboard's http.Handler.
type UI struct {
	Options
	api      http.Handler
	sessions *sessions
	logins   *loginLimiter
	mux      *http.ServeMux
	pages    map[string]*template.Template
}

// New builds the dashboard. SetAPI must be called before it serves.
func New(o Options) (*UI, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	u := &UI{Options: o, sessions: newSessions(o.Store, o.Catalog, o.Logger), logins: newLoginLimiter(), mux: http.NewServeMux()}
	if err := u.parseTemplates(); err != nil {
		return nil, err
	}
	u.routes()
	return u, nil
}

// SetAPI gives the dashboard the admin API it calls in-process (the API
// is built after the dashboard, since it mounts it).
func (u *UI) SetAPI(h http.Handler) { u.api = h }

// ServeHTTP implements http.Handler.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer, browsers send
	// "Origin: null" on form posts, which the CSRF check refuses.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	u.mux.ServeHTTP(w, r)
}

func (u *UI) routes() {
	m := u.mux
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	m.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Assets change with the binary: revalidate, never serve stale.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})

	m.HandleFunc("GET /login", u.loginPage)
	m.HandleFunc("POST /login", u.login)
	m.Handle("POST /logout", u.page(u.logout))

	m.Handle("GET /{$}", u.page(u.overview))
	m.Handle("GET /logs", u.page(u.logs))
	m.Handle("GET /logs/{id}", u.page(u.logDetail))

	m.Handle("GET /proxies", u.page(u.proxies))
	m.Handle("GET /proxies/new", u.page(u.proxyNew))
	m.Handle("POST /proxies/new", u.page(u.proxyCreate))
	m.Handle("POST /proxies/validate", u.page(u.proxyValidate))
	m.Handle("GET /proxies/{name}", u.page(u.proxyDetail))
	m.Handle("GET /proxies/{name}/edit", u.page(u.proxyEdit))
	m.Handle("POST /proxies/{name}/edit", u.page(u.proxyUpdate))
	m.Handle("POST /proxies/{name}/delete", u.page(u.proxyDelete))
	m.Handle("POST /proxies/{name}/rules", u.page(u.ruleAdd))
	m.Handle("POST /proxies/{name}/rules/{rule}/delete", u.page(u.ruleDelete))

	m.Handle("GET /agents", u.page(u.agents))
	m.Handle("POST /agents", u.page(u.agentCreate))
	m.Handle("GET /agents/{name}", u.page(u.agentDetail))
	m.Handle("POST /agents/{name}/delete", u.page(u.agentDelete))
	m.Handle("POST /agents/{name}/tokens", u.page(u.tokenIssue))
	m.Handle("POST /tokens/{id}/revoke", u.page(u.tokenRevoke))

	m.Handle("GET /secrets", u.page(u.secrets))
	m.Handle("POST /secrets", u.page(u.secretCreate))
	m.Handle("GET /secrets/{name}", u.page(u.secretDetail))
	m.Handle("POST /secrets/{name}/rotate", u.page(u.secretRotate))
	m.Handle("POST /secrets/{name}/delete", u.page(u.secretDelete))
	m.Handle("POST /secrets/{name}/connect", u.page(u.secretConnect))

	m.Handle("GET /audit", u.page(u.auditPage))
	m.Handle("POST /audit/verify", u.page(u.auditVerify))

	m.Handle("GET /access", u.page(u.access))

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.renderStatus(w, r, http.StatusNotFound, "Not found", "There is no dashboard page at this address.")
	})
}

// req is one page request of a signed-in session.
type req struct {
	w    http.ResponseWriter
	r    *http.Request
	sess *session
	who  *catalog.Admin
}

func (q *req) canChange() bool { return q.who.Role == "admin" }

type pageFunc func(q *req) error

// maxForm bounds a form post.
const maxForm = 1 << 20

// page authenticates a page request (else: to the sign-in page) and, for
// a form post, checks its CSRF token and origin.
func (u *UI) page(h pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		ss, adm, err := u.sessions.lookup(r)
		if err != nil {
			u.renderStatus(w, r, http.StatusServiceUnavailable, "Unavailable", "The dashboard cannot read its sessions right now (the store does not answer). Try again shortly.")
			return
		}
		if ss == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			u.renderStatus(w, r, http.StatusUnauthorized, "Signed out", "Your session has ended. Sign in again.")
			return
		}
		// The page's in-process API calls (apicall.go) reuse this session.
		r = r.WithContext(context.WithValue(r.Context(), pageSessionKey{}, &pageSession{ss: ss, adm: adm}))
		q := &req{w: w, r: r, sess: ss, who: adm}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				u.renderStatus(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
				return
			}
			if err := checkCSRF(r, ss, r.PostForm.Get(csrfField)); err != nil {
				u.renderStatus(w, r, http.StatusForbidden, "Refused", err.Error())
				return
			}
		}
		if err := h(q); err != nil {
			var ae *apiErr
			if errors.As(err, &ae) {
				u.renderStatus(w, r, ae.Status, statusTitle(ae.Status), ae.Message)
				return
			}
			u.Logger.Error("dashboard page failed", "path", r.URL.Path, "err", err)
			u.renderStatus(w, r, http.StatusInternalServerError, "Something went wrong", "The page could not be built; the keyhole log says why.")
		}
	})
}

func statusTitle(code int) string {
	switch code {
	case http.StatusNotFound:
		return "Not found"
	case http.StatusForbidden:
		return "Not allowed"
	case http.StatusUnauthorized:
		return "Signed out"
	}
	return http.StatusText(code)
}

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string
	User   *viewUser
	CSRF   string
	Flash  string
	Error  string
	Data   any
	Layout string // "app" or "bare"
}

type viewUser struct {
	Name      string
	Role      string
	Via       string
	CanChange bool
}

func (u *UI) parseTemplates() error {
	u.pages = map[string]*template.Template{}
	entries, err := fs.ReadDir(templateFS, "templates")
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if name == "layout.html" || !strings.HasSuffix(name, ".html") {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name)
		if err != nil {
			return fmt.Errorf("dashboard template %s: %w", name, err)
		}
		u.pages[strings.TrimSuffix(name, ".html")] = t
	}
	return nil
}

// render writes a page (status 200 unless set).
func (q *req) view(title, nav string, data any) *view {
	return &view{Title: title, Nav: nav, Data: data, CSRF: q.sess.csrf, Layout: "app",
		User: &viewUser{Name: q.sess.display, Role: q.who.Role, Via: q.sess.via, CanChange: q.canChange()}}
}

func (u *UI) render(q *req, status int, page string, v *view) error {
	if v.Flash == "" {
		v.Flash = u.sessions.takeFlash(q.r.Context(), q.sess)
	}
	return u.write(q.w, status, page, v)
}

func (u *UI) write(w http.ResponseWriter, status int, page string, v *view) error {
	t := u.pages[page]
	if t == nil {
		return fmt.Errorf("no template %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// renderStatus writes an error page, with the navigation when signed in.
func (u *UI) renderStatus(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	v := &view{Title: title, Error: msg, Layout: "bare"}
	if ps, ok := r.Context().Value(pageSessionKey{}).(*pageSession); ok {
		ss, adm := ps.ss, ps.adm
		v.Layout, v.CSRF = "app", ss.csrf
		v.User = &viewUser{Name: ss.display, Role: adm.Role, Via: ss.via, CanChange: adm.Role == "admin"}
	} else if ss, adm, _ := u.sessions.lookup(r); ss != nil {
		v.Layout, v.CSRF = "app", ss.csrf
		v.User = &viewUser{Name: ss.display, Role: adm.Role, Via: ss.via, CanChange: adm.Role == "admin"}
	}
	if err := u.write(w, status, "status", v); err != nil {
		u.Logger.Error("dashboard error page failed", "err", err)
	}
}

// redirect answers a form post with 303 to a page of this dashboard, with
// a one-time message.
func (u *UI) redirect(q *req, to, flash string) error {
	if flash != "" {
		u.sessions.setFlash(q.r.Context(), q.sess, flash)
	}
	http.Redirect(q.w, q.r, to, http.StatusSeeOther)
	return nil
}

// localPath keeps a ?next= target on this dashboard: an absolute path
// without a scheme, host or backslash, else "/".
func localPath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n\t") {
		return "/"
	}
	if c := path.Clean(strings.SplitN(p, "?", 2)[0]); strings.HasPrefix(c, "/api/") {
		return "/"
	}
	return p
}
