package admin

import (
	"errors"
	"net/http"

	"github.com/keyhole-gw/keyhole/internal/ca"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// The CA of forward-proxy mode (SPEC §3.7, internal/ca):
//
//	GET  /api/v1/ca      any role: the current CA certificate and its metadata
//	GET  /api/v1/ca.pem  any role: the certificate alone, PEM (for curl -o)
//	POST /api/v1/ca      admin: create the CA, or {"rotate":true} a new one
//
// The private key never leaves the vault through any endpoint.

// caView is a CA as the API shows it.
func caView(a *ca.Authority) map[string]any {
	return map[string]any{
		"generation":         a.Generation,
		"certificate":        string(a.CertPEM),
		"fingerprint_sha256": a.Fingerprint(),
		"subject":            a.Cert.Subject.String(),
		"not_before":         fmtTime(a.Cert.NotBefore),
		"not_after":          fmtTime(a.Cert.NotAfter),
		"created_at":         fmtTime(a.CreatedAt),
	}
}

func (a *API) currentCA(c *call) (*ca.Authority, error) {
	cur, err := ca.Current(c.r.Context(), a.Store)
	if errors.Is(err, ca.ErrNoCA) {
		return nil, &apiError{http.StatusNotFound, "not_found", "keyhole has no CA yet; create it with `keyhole ca init` (POST /api/v1/ca)"}
	}
	return cur, err
}

func (a *API) getCA(c *call) error {
	cur, err := a.currentCA(c)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, caView(cur))
}

func (a *API) getCAPEM(c *call) error {
	cur, err := a.currentCA(c)
	if err != nil {
		return err
	}
	c.status = http.StatusOK
	c.w.Header().Set("Content-Type", "application/x-pem-file")
	c.w.WriteHeader(http.StatusOK)
	_, err = c.w.Write(cur.CertPEM)
	return err
}

func (a *API) initCA(c *call) error {
	var req struct {
		Rotate bool `json:"rotate"`
	}
	b, err := c.body()
	if err != nil {
		return err
	}
	if len(b) > 0 {
		if err := spec.DecodeStrict(b, &req, "the request"); err != nil {
			return badRequest("%v", err)
		}
	}
	if req.Rotate {
		c.action = "ca.rotate"
	}
	kr, err := a.keyring(c)
	if err != nil {
		return err
	}
	created, err := ca.Create(c.r.Context(), a.Store, kr, req.Rotate, now())
	switch {
	case errors.Is(err, ca.ErrExists):
		return conflict("keyhole already has a CA: `keyhole ca export` prints it; `keyhole ca init --rotate` replaces it (agents must then trust the new one)")
	case errors.Is(err, store.ErrConflict):
		return conflict("another node created a CA at the same moment; `keyhole ca export` prints the current one")
	case err != nil:
		return err
	}
	a.Logger.Info("forward proxy: CA created", "generation", created.Generation, "fingerprint_sha256", created.Fingerprint())
	return c.json(http.StatusCreated, caView(created))
}
