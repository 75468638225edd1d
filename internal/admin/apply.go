package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// ---- POST /api/v1/apply: a whole declarative configuration (SPEC §7, §9) ----
//
// The body (spec.ApplyRequest) holds secrets with their values, whole
// proxies and agents. Everything is validated first, each proxy as POST
// /proxies validates one (its spec, CEL conditions, the SSRF guard, its
// secret and whether its injector can be built from that secret), against
// the secrets as they will be once the apply is made: a proxy may use a
// secret this apply creates, and a proxy the apply leaves alone must still
// fit a secret it rotates. Then the store applies it all in one
// transaction (store.Config.Apply), which compares each secret with its
// decrypted current value and rotates it only when it differs, and the
// snapshot is rebuilt once. The call is one audit record (reason "apply",
// begun before the change like every admin change) whose response body is
// the answer below: names, never a value.

// applyChanges is one section of the answer.
type applyChanges map[string][]string

func changes(c store.ApplyChanges, updated string, deleted bool) applyChanges {
	m := applyChanges{"created": nonNil(c.Created), updated: nonNil(c.Updated), "unchanged": nonNil(c.Unchanged)}
	if deleted {
		m["deleted"] = nonNil(c.Deleted)
	}
	return m
}

func (a *API) apply(c *call) error {
	b, err := c.body()
	if err != nil {
		return err
	}
	req, err := spec.DecodeApply(b)
	if err != nil {
		return badRequest("%v", err)
	}
	if req.DryRun {
		c.action = "apply.dry_run"
	}
	ctx := c.r.Context()
	kr, err := a.keyring(c)
	if err != nil {
		return err
	}

	// Secrets: the values as they will be sealed, and as proxies will see
	// them (the overlay every proxy below is compiled against).
	type value struct {
		pt     []byte
		kind   string
		fields []string
	}
	values := make(map[string]value, len(req.Secrets))
	overlay := make(map[string]*inject.Material, len(req.Secrets))
	index := make(map[string]int, len(req.Secrets))
	for i, s := range req.Secrets {
		pt, kind, fields, err := catalog.EncodeValue(s.Value)
		if err != nil {
			// EncodeValue's messages name fields and limits, never the value.
			return badRequest("secrets[%d] (%s): %v", i, s.Name, err)
		}
		m, err := catalog.DecodeValue(pt)
		if err != nil {
			return err
		}
		values[s.Name], index[s.Name] = value{pt, kind, fields}, i
		overlay[s.Name] = &inject.Material{Name: s.Name, Fields: m}
	}

	plan := store.ApplyPlan{At: now(), DryRun: req.DryRun,
		PruneProxies: req.Prune && req.HasProxies, PruneAgents: req.Prune && req.HasAgents}
	listed := make(map[string]bool, len(req.Proxies))
	hosts := map[string]error{}
	for i, ps := range req.Proxies {
		listed[ps.Name] = true
		sp, err := a.checkApplied(c, ps, overlay, hosts)
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.status == http.StatusBadRequest {
				return badRequest("proxies[%d] (%s): %s", i, ps.Name, ae.message)
			}
			return err
		}
		plan.Proxies = append(plan.Proxies, sp)
	}
	// A proxy the apply leaves in place must still work with the secrets
	// it rotates (as PUT /secrets/{name} checks every proxy using one).
	if !plan.PruneProxies && len(overlay) > 0 {
		snap := a.Catalog.Load()
		for _, pn := range snap.ProxyNames() {
			p := snap.Proxy(pn)
			if listed[pn] || p == nil || p.Err != nil || overlay[p.Spec.Auth.Secret] == nil {
				continue
			}
			js, err := json.Marshal(p.Spec)
			if err != nil {
				return err
			}
			name := p.Spec.Auth.Secret
			if err := a.Catalog.CheckProxy(store.Proxy{Name: pn, Secret: name, Spec: js}, overlay); err != nil {
				return badRequest("secrets[%d] (%s): the new value does not fit proxy %s, which uses it and is not in this apply: %v",
					index[name], name, pn, err)
			}
		}
	}
	for _, ag := range req.Agents {
		plan.Agents = append(plan.Agents, store.Agent{Name: ag.Name, Labels: ag.Labels})
	}
	for _, s := range req.Secrets {
		name, v := s.Name, values[s.Name]
		plan.Secrets = append(plan.Secrets, store.ApplySecret{Name: name, Seal: func(cur int, old []byte) ([]byte, string, []string, error) {
			pt := v.pt
			if cur > 0 {
				// Compared with the decrypted current value, inside the
				// transaction: a rotation made meanwhile is seen.
				var curPT []byte
				if old != nil {
					if p, err := kr.Open(vault.SecretAAD(name, cur), old); err == nil {
						curPT = p
					}
				}
				out, changed := catalog.ApplyValue(curPT, pt)
				if !changed {
					return nil, "", nil, nil
				}
				pt = out
			}
			ct, err := kr.Seal(vault.SecretAAD(name, cur+1), pt)
			return ct, v.kind, v.fields, err
		}})
	}

	res, err := a.Store.Apply(ctx, plan)
	if err != nil {
		var ae *store.ApplyError
		if errors.As(err, &ae) {
			// Validation passed against this node's snapshot; the store
			// changed in between (a secret deleted meanwhile).
			if errors.Is(err, store.ErrMissingRef) {
				return badRequest("%v; nothing was changed", ae)
			}
			return conflict("%v; nothing was changed", ae)
		}
		return err
	}
	if res.Changed() && !req.DryRun {
		if err := a.reload(ctx); err != nil {
			return err
		}
	}
	out := map[string]any{
		"changed": res.Changed(),
		"dry_run": req.DryRun,
		"secrets": changes(res.Secrets, "rotated", false),
		"proxies": changes(res.Proxies, "replaced", true),
		"agents":  changes(res.Agents, "updated", true),
	}
	if c.auditBody, err = json.Marshal(out); err != nil {
		return err
	}
	return c.json(http.StatusOK, out)
}

// checkApplied validates one proxy of an apply as validateProxy validates
// one for POST /proxies, with the apply's secrets overlaid on the node's.
// hosts caches the SSRF guard's answers by host for this apply.
func (a *API) checkApplied(c *call, ps spec.Proxy, overlay map[string]*inject.Material, hosts map[string]error) (store.Proxy, error) {
	if _, err := rules.Compile(ps.Rules, rules.Options{CaseInsensitive: ps.CaseInsensitivePaths}); err != nil {
		return store.Proxy{}, badRequest("%v", err)
	}
	u, _ := url.Parse(ps.Upstream)
	host := u.Hostname()
	herr, seen := hosts[host]
	if !seen {
		herr = a.Catalog.Guard().CheckHost(c.r.Context(), host)
		hosts[host] = herr
	}
	if herr != nil {
		return store.Proxy{}, badRequest("%v", herr)
	}
	if name := ps.Auth.Secret; name != "" && overlay[name] == nil {
		if _, err := a.Store.GetSecret(c.r.Context(), name); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return store.Proxy{}, badRequest("secret %q does not exist; list it under secrets in the config, or create it first (keyhole secret set %s)", name, name)
			}
			return store.Proxy{}, err
		}
	}
	js, err := json.Marshal(ps)
	if err != nil {
		return store.Proxy{}, err
	}
	sp := store.Proxy{Name: ps.Name, Secret: ps.Auth.Secret, Spec: js}
	if err := a.Catalog.CheckProxy(sp, overlay); err != nil {
		return store.Proxy{}, badRequest("%v", err)
	}
	return sp, nil
}
