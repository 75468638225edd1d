package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/store"
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
// r, so the audit record of the call does not keep it. An error that wraps
// ErrSessionsUnavailable means the session could not be read (the store
// failed): the call is answered 503, not refused.
//
// Sessions are kept in the store (store.Sessions), so a session signed in
// on one node is valid on every node.
type SessionAuthenticator interface {
	AuthenticateSession(r *http.Request) (*catalog.Admin, error)
}

// ErrSessionsUnavailable: the dashboard's sessions cannot be read right now.
var ErrSessionsUnavailable = errors.New("sessions unavailable")

// endSessions ends every dashboard session of an admin token that was just
// revoked, on every node at once (each request reads its session from the
// store). Each node also refuses such a session as soon as its snapshot
// has the revocation, so a failure here only delays the end to that.
func (a *API) endSessions(ctx context.Context, adminTokenID string) {
	ss, ok := a.Store.(store.Sessions)
	if !ok {
		return
	}
	if _, err := ss.DeleteSessionsOf(context.WithoutCancel(ctx), adminTokenID); err != nil {
		a.Logger.Warn("the dashboard sessions of a revoked admin token could not be deleted (each node refuses them once its snapshot has the revocation)",
			"admin_token_id", adminTokenID, "err", err)
	}
}
