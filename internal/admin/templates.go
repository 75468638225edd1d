package admin

import (
	"net/http"

	"github.com/keyhole-gw/keyhole/internal/templates"
)

// ---- templates (the catalog of well-known APIs; any role reads it) ----
//
// The API takes full proxy specs only (SPEC §7.1: unknown fields → 400),
// so there is no "template" field on POST /proxies: a client (the CLI's
// `proxy create --template`) reads a template here and sends the merged
// spec.

func (a *API) listTemplates(c *call) error {
	return c.json(http.StatusOK, map[string]any{"templates": templates.All()})
}

func (a *API) getTemplate(c *call) error {
	t, ok := templates.Get(c.r.PathValue("name"))
	if !ok {
		return notFound("template " + clip(c.r.PathValue("name")))
	}
	return c.json(http.StatusOK, t)
}
