package admin

import (
	"net/http"

	"github.com/keyhole-gw/keyhole/internal/catalog"
)

// SessionAuthenticator authenticates the dashboard's sessions
// (internal/ui implements it): a request that carries no Bearer token but
// a session cookie is the admin identity that signed in, with that
// identity's role.
//
// AuthenticateSession returns (nil, nil) when r has no valid session
// (no cookie, an unknown or expired session, or an identity whose admin
// token was revoked or has expired since): the call is then
// unauthenticated, as without a token. For every method but GET and HEAD
// it also checks cross-site request forgery — the session's CSRF token in
// the X-Keyhole-CSRF header, compared in constant time, and an Origin (or
// Referer) of this listener — and returns an error with a client-safe
// message when that fails (answered 403). It removes the CSRF header from
// r, so the audit record of the call does not keep it.
type SessionAuthenticator interface {
	AuthenticateSession(r *http.Request) (*catalog.Admin, error)
}
