package catalog

import (
	"encoding/json"
	"maps"

	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// What POST /api/v1/apply needs from the catalog: compiling proxies
// against secret values that are not stored yet, and deciding whether an
// applied secret value is a change.

// CheckProxy compiles a proxy spec as a rebuild would, against the current
// snapshot's secrets overlaid with secrets (the values an apply is about to
// store, by name; nil for none), and returns what would make the proxy fail
// (nil if nothing). It changes nothing on the node: no upstream transport,
// OAuth token source or rate-limit state is created or updated.
func (c *Catalog) CheckProxy(sp store.Proxy, secrets map[string]*inject.Material) error {
	cur := c.Load()
	s := &Snapshot{secrets: cur.secrets}
	if len(secrets) > 0 {
		s.secrets = maps.Clone(cur.secrets)
		for name, m := range secrets {
			s.secrets[name] = &Secret{Material: m}
		}
	}
	return c.compile(sp, s, true).Err
}

// ApplyValue decides what an apply stores for a secret, which is rotated
// only when its value differs (SPEC §9). cur is the plaintext of the
// current version (nil when there is none, or when it does not open: the
// apply then replaces it), pt the applied value as EncodeValue made it. It
// returns the plaintext to store, or changed false when the value is the
// one stored.
//
// One exception keeps a declarative loop from breaking an OAuth 2.0
// integration. When the current version holds a refresh token that keyhole
// stored because the provider rotated it (persistRotation marks such a
// version), the refresh_token of the applied value is the one the config
// was written with, which the provider has replaced and may refuse (or
// treat as a stolen token's reuse and revoke the grant). So, as long as the
// client_id is the same, the current refresh token is kept: it takes no
// part in the comparison, and a rotation of the other fields (a new
// client_secret) stores it with them.
func ApplyValue(cur, pt []byte) (out []byte, changed bool) {
	if cur == nil {
		return pt, true
	}
	old, err1 := DecodeValue(cur)
	next, err2 := DecodeValue(pt)
	if err1 != nil || err2 != nil {
		return pt, true
	}
	if takeRotationMark(old) {
		if rt := old["refresh_token"]; rt != "" && next["refresh_token"] != "" && old["client_id"] == next["client_id"] {
			next["refresh_token"] = rt
		}
	}
	if maps.Equal(old, next) {
		return nil, false
	}
	if _, str := next[""]; str {
		return pt, true
	}
	b, err := json.Marshal(next)
	if err != nil {
		return pt, true
	}
	return b, true
}
