package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/keyhole-gw/keyhole/internal/catalog"
)

// Sessions are server-side: the cookie holds 256 random bits and nothing
// else; this node's memory maps their SHA-256 to the admin identity that
// signed in (an admin token's id), the session's CSRF token and its
// times. Every request re-reads the identity from the current snapshot, so
// revoking (or the expiry of) the admin token behind a session ends it at
// once, and a role change applies at once.
//
// Sessions live in one node's memory: a restart signs everyone out, and
// behind a load balancer the dashboard needs sticky sessions (or a
// sign-in per node).

// Session limits.
const (
	// IdleTimeout ends a session that made no request for this long.
	IdleTimeout = time.Hour
	// MaxSessionAge ends every session this long after sign-in.
	MaxSessionAge = 12 * time.Hour
	// maxSessions bounds the sessions a node keeps (the oldest goes).
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

type session struct {
	key      string // SHA-256 of the cookie value, hex
	adminID  string // the admin token this session stands for
	display  string // the user's name, or the admin token's
	via      string // "password" or "token"
	csrf     string
	created  time.Time
	lastSeen time.Time
	flash    string
}

type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	cat *catalog.Catalog
	now func() time.Time
}

func newSessions(cat *catalog.Catalog) *sessions {
	return &sessions{m: map[string]*session{}, cat: cat, now: time.Now}
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

func cookieNameFor(r *http.Request) string {
	if r.TLS != nil {
		return secureCookieName
	}
	return cookieName
}

// create starts a session for an admin identity and returns its cookie.
func (s *sessions) create(r *http.Request, adm *catalog.Admin, display, via string) (*session, *http.Cookie) {
	value := randomToken()
	now := s.now()
	ss := &session{key: keyOf(value), adminID: adm.ID, display: display, via: via, csrf: randomToken(), created: now, lastSeen: now}
	s.mu.Lock()
	if len(s.m) >= maxSessions {
		var oldest *session
		for _, x := range s.m {
			if oldest == nil || x.lastSeen.Before(oldest.lastSeen) {
				oldest = x
			}
		}
		delete(s.m, oldest.key)
	}
	s.m[ss.key] = ss
	s.mu.Unlock()
	return ss, &http.Cookie{Name: cookieNameFor(r), Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(MaxSessionAge / time.Second)}
}

// lookup returns r's valid session and its identity as it is now, or nils.
func (s *sessions) lookup(r *http.Request) (*session, *catalog.Admin) {
	c, err := r.Cookie(cookieNameFor(r))
	if err != nil || len(c.Value) != 43 {
		return nil, nil
	}
	key := keyOf(c.Value)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[key]
	if ss == nil {
		return nil, nil
	}
	if now.Sub(ss.lastSeen) > IdleTimeout || now.Sub(ss.created) > MaxSessionAge {
		delete(s.m, key)
		return nil, nil
	}
	adm := s.cat.Load().AdminByID(ss.adminID, now)
	if adm == nil {
		// The admin token was revoked or expired: so is the session.
		delete(s.m, key)
		return nil, nil
	}
	ss.lastSeen = now
	return ss, adm
}

// end deletes r's session (sign-out).
func (s *sessions) end(ss *session) {
	s.mu.Lock()
	delete(s.m, ss.key)
	s.mu.Unlock()
}

// setFlash keeps a one-time message for the session's next page.
func (s *sessions) setFlash(ss *session, msg string) {
	s.mu.Lock()
	ss.flash = msg
	s.mu.Unlock()
}

func (s *sessions) takeFlash(ss *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := ss.flash
	ss.flash = ""
	return f
}

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
	ss, adm := u.sessions.lookup(r)
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
