package ui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/keyhole-gw/keyhole/internal/admin"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// Sessions are server-side: the cookie holds 256 random bits and nothing
// else. The store keeps their SHA-256 (store.Sessions: every node reads the
// same table, so a session signed in on one node works on all of them, and
// survives a restart) with the admin identity that signed in (an admin
// token's id), the name shown, the session's times and its one-time
// message. The session's CSRF token is not stored at all: it is derived
// from the cookie value (csrfOf), so neither the database nor a copy of it
// holds anything that acts for a session.
//
// Every request reads the session from the store and re-reads its identity
// from the current snapshot, so revoking (or the expiry of) the admin token
// behind a session ends it at once, on every node (the revocation also
// deletes the token's sessions, and a node whose snapshot has the token
// revoked deletes the session it is shown), and a role change applies at
// once. A request writes to the store only to slide the idle deadline, at
// most once a minute per session (touchEvery), and to hand over a one-time
// message. Expired sessions are deleted by each node's sweep (internal/
// server, every minute). A store without store.Sessions keeps them in this
// node's memory (memSessions).

// Session limits.
const (
	// IdleTimeout ends a session that made no request for this long
	// (counted from the last request to within touchEvery).
	IdleTimeout = time.Hour
	// MaxSessionAge ends every session this long after sign-in.
	MaxSessionAge = 12 * time.Hour
	// touchEvery: a session's last-seen time and idle deadline are written
	// at most this often, not on every request.
	touchEvery = time.Minute
	// maxSessions bounds the sessions memSessions keeps (the oldest goes).
	maxSessions = 10_000
)

// CSRFHeader carries the session's CSRF token on the dashboard's API
// calls (fetch); forms carry it in the csrfField form field.
const (
	CSRFHeader = "X-Keyhole-CSRF"
	csrfField  = "csrf"
)

const (
	cookieName       = "keyhole_session"
	secureCookieName = "__Host-keyhole_session" // over TLS: Secure, Path=/, no Domain
)

// errSessionStore: the store could not read or write a session (client-safe).
var errSessionStore = fmt.Errorf("%w: the dashboard's sessions cannot be read right now (the store does not answer); try again shortly", admin.ErrSessionsUnavailable)

// session is one request's view of a stored session.
type session struct {
	key      string // the store's id: SHA-256 of the cookie value, hex
	adminID  string // the admin token this session stands for
	display  string // the user's name, or the admin token's
	via      string // "password" or "token"
	csrf     string // derived from the cookie value (csrfOf)
	created  time.Time
	lastSeen time.Time
	flash    string // the one-time message stored, as read
}

type sessions struct {
	st  store.Sessions
	cat *catalog.Catalog
	log *slog.Logger
	now func() time.Time
}

// newSessions keeps sessions in st when it implements store.Sessions,
// else in this node's memory.
func newSessions(st store.Store, cat *catalog.Catalog, log *slog.Logger) *sessions {
	ss, ok := st.(store.Sessions)
	if !ok {
		ss = newMemSessions()
	}
	return &sessions{st: ss, cat: cat, log: log, now: time.Now}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func keyOf(cookie string) string {
	h := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(h[:])
}

// csrfOf is the CSRF token of the session whose cookie value is cookie:
// HMAC-SHA256 keyed by the cookie value, of a fixed label. It is as
// unguessable as the cookie, a page that shows it does not reveal the
// cookie, and the store's id (SHA-256 of the cookie) does not reveal it.
func csrfOf(cookie string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte("keyhole/dashboard/csrf/v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func cookieNameFor(r *http.Request) string {
	if r.TLS != nil {
		return secureCookieName
	}
	return cookieName
}

// create starts a session for an admin identity and returns its cookie.
func (s *sessions) create(ctx context.Context, r *http.Request, adm *catalog.Admin, display, via string) (*session, *http.Cookie, error) {
	value := randomToken()
	now := s.now().UTC()
	ss := &session{key: keyOf(value), adminID: adm.ID, display: display, via: via, csrf: csrfOf(value), created: now, lastSeen: now}
	err := s.st.CreateSession(ctx, store.Session{ID: ss.key, AdminTokenID: adm.ID, Display: display, Via: via,
		CreatedAt: now, LastSeen: now, ExpiresAt: s.deadline(now, now)})
	if err != nil {
		return nil, nil, err
	}
	return ss, &http.Cookie{Name: cookieNameFor(r), Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(MaxSessionAge / time.Second)}, nil
}

// deadline is when a session created at created and last seen at seen
// ends unless it is seen again.
func (s *sessions) deadline(created, seen time.Time) time.Time {
	idle, abs := seen.Add(IdleTimeout), created.Add(MaxSessionAge)
	if abs.Before(idle) {
		return abs
	}
	return idle
}

// lookup returns r's valid session and its identity as it is now, or nils
// (no cookie, an unknown or expired session, a revoked or expired admin
// token). err is errSessionStore when the store failed.
func (s *sessions) lookup(r *http.Request) (*session, *catalog.Admin, error) {
	c, err := r.Cookie(cookieNameFor(r))
	if err != nil || len(c.Value) != 43 {
		return nil, nil, nil
	}
	ctx := r.Context()
	key := keyOf(c.Value)
	now := s.now().UTC()
	st, err := s.st.GetSession(ctx, key, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil, nil
	case err != nil:
		s.log.Error("a dashboard session could not be read", "err", err)
		return nil, nil, errSessionStore
	}
	if !now.Before(st.ExpiresAt) || now.Sub(st.CreatedAt) >= MaxSessionAge {
		return nil, nil, nil
	}
	adm := s.cat.Load().AdminByID(st.AdminTokenID, now)
	if adm == nil {
		// The admin token was revoked or expired: so is the session.
		if err := s.st.DeleteSession(context.WithoutCancel(ctx), key); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("the session of a revoked admin token could not be deleted (it is refused anyway)", "err", err)
		}
		return nil, nil, nil
	}
	if now.Sub(st.LastSeen) >= touchEvery {
		err := s.st.TouchSession(ctx, key, now, s.deadline(st.CreatedAt, now))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil, nil // ended meanwhile (sign-out elsewhere, revocation)
		case err != nil:
			// The session is valid as read; its idle deadline moves next time.
			s.log.Warn("a dashboard session's idle deadline could not be moved", "err", err)
		default:
			st.LastSeen = now
		}
	}
	return &session{key: key, adminID: st.AdminTokenID, display: st.Display, via: st.Via, csrf: csrfOf(c.Value),
		created: st.CreatedAt, lastSeen: st.LastSeen, flash: st.Flash}, adm, nil
}

// end deletes a session (sign-out).
func (s *sessions) end(ctx context.Context, ss *session) error {
	if err := s.st.DeleteSession(ctx, ss.key); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// setFlash keeps a one-time message for the session's next page (on
// whichever node serves it).
func (s *sessions) setFlash(ctx context.Context, ss *session, msg string) {
	if err := s.st.SetFlash(ctx, ss.key, msg); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("a dashboard message could not be kept for the next page", "err", err)
	}
}

// takeFlash returns the session's one-time message and clears it; it
// writes only when the session was read with one.
func (s *sessions) takeFlash(ctx context.Context, ss *session) string {
	if ss.flash == "" {
		return ""
	}
	msg, err := s.st.TakeFlash(ctx, ss.key)
	if err != nil {
		s.log.Warn("a dashboard message could not be read", "err", err)
		return ""
	}
	return msg
}

// pageSession carries a page request's session to the admin API calls it
// makes in-process (apicall.go), so that they do not read it again.
type pageSession struct {
	ss  *session
	adm *catalog.Admin
}

type pageSessionKey struct{}

// Errors of the CSRF checks (client-safe).
var (
	errCSRFToken   = errors.New("this request carries no valid CSRF token for the dashboard session; reload the page and try again")
	errCrossOrigin = errors.New("this request does not come from the dashboard's own origin (Origin or Referer); it was refused")
)

// checkCSRF is the defence against cross-site request forgery on every
// request that is not GET or HEAD, on top of SameSite=Strict: the token
// must equal the session's (constant-time compare), and the request must
// come from this listener's own origin.
func checkCSRF(r *http.Request, ss *session, token string) error {
	if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(ss.csrf)) != 1 {
		return errCSRFToken
	}
	if !sameOrigin(r) {
		return errCrossOrigin
	}
	return nil
}

// origin is this listener's origin as the browser sees it.
func origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// sameOrigin: Sec-Fetch-Site, when sent, must not be cross-site or
// same-site; the Origin header, else the Referer, must be this origin.
// A request with neither is refused (browsers send Origin on every POST).
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		return o == origin(r)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && u.Scheme+"://"+u.Host == origin(r)
	}
	return false
}

// AuthenticateSession implements admin.SessionAuthenticator: the admin
// API accepts the dashboard's session cookie in place of a Bearer token.
func (u *UI) AuthenticateSession(r *http.Request) (*catalog.Admin, error) {
	var ss *session
	var adm *catalog.Admin
	if ps, ok := r.Context().Value(pageSessionKey{}).(*pageSession); ok {
		// A page's own call: its session was read for this request.
		ss, adm = ps.ss, ps.adm
	} else {
		var err error
		if ss, adm, err = u.sessions.lookup(r); err != nil {
			return nil, err
		}
	}
	if ss == nil {
		return nil, nil
	}
	tok := r.Header.Get(CSRFHeader)
	r.Header.Del(CSRFHeader) // not kept in the call's audit record
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := checkCSRF(r, ss, tok); err != nil {
			return nil, err
		}
	}
	return adm, nil
}
