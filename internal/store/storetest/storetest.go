// Package storetest is the conformance suite of store.Store: every backing
// database (SQLite, PostgreSQL) runs the same Run from its own tests, so
// that the rest of keyhole can rely on the documented behaviour of the
// interface and never on one implementation's accidents.
//
// The suite only uses the store.Store interface. It writes nothing that is
// specific to one database (no SQL, no file paths).
package storetest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// Run runs the conformance suite. open returns a new, empty, migrated
// store for t each time it is called; Run closes it when t ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Meta", testMeta},
		{"Keys", testKeys},
		{"Version", testVersion},
		{"Secrets", testSecrets},
		{"Proxies", testProxies},
		{"UpdateProxyLosesNoConcurrentChange", testUpdateProxyConcurrent},
		{"Agents", testAgents},
		{"Tokens", testTokens},
		{"RevokeTokenRevokesTheSubtreeOnly", testRevokeTree},
		{"AdminTokens", testAdminTokens},
		{"Load", testLoad},
		{"AuditAppendAndIndex", testAuditAppend},
		{"AuditBatchIsAllOrNothing", testAuditBatchAtomic},
		{"AuditChain", testAuditChain},
		{"AuditHeadsWrittenWithTheirBatch", testAuditHeads},
		{"ChainLink", testChainLink},
		{"DeleteAuditPrefix", testDeleteAuditPrefix},
		{"QueryLogsFilters", testQueryLogsFilters},
		{"QueryLogsPaging", testQueryLogsPaging},
		{"QueryLogsWithData", testQueryLogsWithData},
		{"GetLog", testGetLog},
		{"LastUsed", testLastUsed},
		{"Ping", testPing},
	}
	tests = append(tests, sharedTests...) // shared.go: several nodes on one store
	tests = append(tests, applyTests...)  // apply.go: a whole configuration in one transaction
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// t0 has a non-zero microsecond fraction: stores keep microseconds.
var t0 = time.Date(2026, 11, 26, 7, 20, 5, 123456000, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// rec is the id of the fixture's record n: a UUIDv7 string of the time
// at(n), as keyhole makes them (store.IDFloor), so that time windows work
// as id ranges the way they do for real records.
func rec(n int) string {
	floor := store.IDFloor(at(float64(n)))
	return floor[:14] + fmt.Sprintf("7%03x-8000-%012x", n, n)
}

func ptr[T any](v T) *T { return &v }

// opts compares times as instants (an implementation may return them in
// another location) and treats nil and empty slices and maps alike.
var opts = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmpopts.EquateEmpty(),
}

// sorted compares lists whatever order the implementation returns them in.
var sorted = cmp.Options{
	cmpopts.SortSlices(func(a, b store.Secret) bool { return a.Name < b.Name }),
	cmpopts.SortSlices(func(a, b store.Proxy) bool { return a.Name < b.Name }),
	cmpopts.SortSlices(func(a, b store.Agent) bool { return a.Name < b.Name }),
	cmpopts.SortSlices(func(a, b store.Token) bool { return a.ID < b.ID }),
	cmpopts.SortSlices(func(a, b store.AdminToken) bool { return a.ID < b.ID }),
	cmpopts.SortSlices(func(a, b store.Key) bool { return a.ID < b.ID }),
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func version(t *testing.T, s store.Store) int64 {
	t.Helper()
	v, err := s.Version(t.Context())
	must(t, "Version", err)
	return v
}

func secret(name string, sec float64) (store.Secret, store.SecretVersion) {
	return store.Secret{Name: name, Kind: "string", CreatedAt: at(sec)},
		store.SecretVersion{Name: name, Version: 1, Ciphertext: []byte("ct:" + name + ":1"), CreatedAt: at(sec)}
}

func proxy(name, secret string, sec float64) store.Proxy {
	return store.Proxy{Name: name, Secret: secret, Spec: []byte(`{"name":"` + name + `"}`), CreatedAt: at(sec), UpdatedAt: at(sec)}
}

func agentToken(id, agent, parent string, depth int, sec float64) store.Token {
	return store.Token{ID: id, Hash: "hash-" + id, Agent: agent, Name: "n-" + id, Proxies: []string{"gh"},
		ParentID: parent, Depth: depth, CreatedAt: at(sec)}
}

// ---- configuration ----

func testMeta(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetMeta(ctx, "master_key_fingerprint")
	wantErr(t, "GetMeta of an absent key", err, store.ErrNotFound)

	v, err := s.SetMetaIfAbsent(ctx, "master_key_fingerprint", "fp-1")
	must(t, "SetMetaIfAbsent", err)
	if v != "fp-1" {
		t.Errorf("first SetMetaIfAbsent = %q, want fp-1", v)
	}
	// A second node starting with another master key must learn the
	// stored fingerprint, not overwrite it.
	v, err = s.SetMetaIfAbsent(ctx, "master_key_fingerprint", "fp-2")
	must(t, "SetMetaIfAbsent", err)
	if v != "fp-1" {
		t.Errorf("second SetMetaIfAbsent = %q, want the stored fp-1", v)
	}
	v, err = s.GetMeta(ctx, "master_key_fingerprint")
	must(t, "GetMeta", err)
	if v != "fp-1" {
		t.Errorf("GetMeta = %q, want fp-1", v)
	}
}

func testKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	keys := func() []store.Key {
		t.Helper()
		ks, err := s.Keys(ctx)
		must(t, "Keys", err)
		return ks
	}
	if ks := keys(); len(ks) != 0 {
		t.Fatalf("Keys of an empty store = %v", ks)
	}
	must(t, "AddKey 1", s.AddKey(ctx, store.Key{ID: 1, Wrapped: []byte("w1"), CreatedAt: at(0), Active: true}))
	must(t, "AddKey 2", s.AddKey(ctx, store.Key{ID: 2, Wrapped: []byte("w2"), CreatedAt: at(1), Active: true}))
	must(t, "AddKey 3", s.AddKey(ctx, store.Key{ID: 3, Wrapped: []byte("w3"), CreatedAt: at(2), Active: false}))
	want := []store.Key{
		{ID: 1, Wrapped: []byte("w1"), CreatedAt: at(0), Active: false},
		{ID: 2, Wrapped: []byte("w2"), CreatedAt: at(1), Active: true},
		{ID: 3, Wrapped: []byte("w3"), CreatedAt: at(2), Active: false},
	}
	if d := cmp.Diff(want, keys(), opts, sorted); d != "" {
		t.Errorf("the active flag did not move to the new active key (-want +got):\n%s", d)
	}
	// A duplicate active key fails as a whole: it must not deactivate the
	// current key on its way to the conflict.
	err := s.AddKey(ctx, store.Key{ID: 2, Wrapped: []byte("other"), CreatedAt: at(3), Active: true})
	wantErr(t, "AddKey with a duplicate id", err, store.ErrConflict)
	if d := cmp.Diff(want, keys(), opts, sorted); d != "" {
		t.Errorf("a failed AddKey changed the keyring (-want +got):\n%s", d)
	}
}

// testVersion pins that every configuration write bumps the version (other
// nodes rebuild their snapshot from it) and that reads and audit appends do
// not (they would make every node reload on every request).
func testVersion(t *testing.T, s store.Store) {
	ctx := t.Context()
	steps := []struct {
		name  string
		write func() error
	}{
		{"AddKey", func() error {
			return s.AddKey(ctx, store.Key{ID: 1, Wrapped: []byte("w"), CreatedAt: at(0), Active: true})
		}},
		{"CreateSecret", func() error { sec, v := secret("s1", 0); return s.CreateSecret(ctx, sec, v) }},
		{"RotateSecret", func() error {
			_, err := s.RotateSecret(ctx, "s1", at(1), func(int) ([]byte, string, []string, error) { return []byte("ct2"), "string", nil, nil })
			return err
		}},
		{"PutProxy create", func() error { return s.PutProxy(ctx, proxy("p1", "s1", 1), true) }},
		{"PutProxy replace", func() error { return s.PutProxy(ctx, proxy("p1", "s1", 2), false) }},
		{"UpdateProxy", func() error {
			_, err := s.UpdateProxy(ctx, "p1", at(3), func(p *store.Proxy) error { p.Spec = []byte(`{"x":1}`); return nil })
			return err
		}},
		{"CreateAgent", func() error { return s.CreateAgent(ctx, store.Agent{Name: "a1", CreatedAt: at(0)}) }},
		{"CreateToken", func() error { return s.CreateToken(ctx, agentToken("t1", "a1", "", 0, 1)) }},
		{"RevokeToken", func() error { _, err := s.RevokeToken(ctx, "t1", at(2)); return err }},
		{"DeleteAgent", func() error { return s.DeleteAgent(ctx, "a1", at(3)) }},
		{"CreateAdminToken", func() error {
			return s.CreateAdminToken(ctx, store.AdminToken{ID: "adm1", Hash: "h-adm1", Name: "ops", Role: "admin", CreatedAt: at(0)})
		}},
		{"RevokeAdminToken", func() error { return s.RevokeAdminToken(ctx, "adm1", at(1)) }},
		{"DeleteProxy", func() error { return s.DeleteProxy(ctx, "p1") }},
		{"DeleteSecret", func() error { return s.DeleteSecret(ctx, "s1") }},
	}
	for _, st := range steps {
		before := version(t, s)
		must(t, st.name, st.write())
		if after := version(t, s); after <= before {
			t.Errorf("%s: version %d → %d, want a bump", st.name, before, after)
		}
	}

	// Recreate a little of everything, then read it all and append audit
	// events: none of that is a configuration write.
	sec, sv := secret("s2", 0)
	must(t, "CreateSecret", s.CreateSecret(ctx, sec, sv))
	must(t, "PutProxy", s.PutProxy(ctx, proxy("p2", "s2", 0), true))
	must(t, "CreateAgent", s.CreateAgent(ctx, store.Agent{Name: "a2", CreatedAt: at(0)}))
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("t2", "a2", "", 0, 0)))
	before := version(t, s)
	reads := []struct {
		name string
		read func() error
	}{
		{"GetMeta", func() error { _, err := s.GetMeta(ctx, "nothing"); return ignore(err, store.ErrNotFound) }},
		{"Keys", func() error { _, err := s.Keys(ctx); return err }},
		{"Load", func() error { _, err := s.Load(ctx); return err }},
		{"GetSecret", func() error { _, err := s.GetSecret(ctx, "s2"); return err }},
		{"ListSecrets", func() error { _, err := s.ListSecrets(ctx); return err }},
		{"GetProxy", func() error { _, err := s.GetProxy(ctx, "p2"); return err }},
		{"ListProxies", func() error { _, err := s.ListProxies(ctx); return err }},
		{"GetAgent", func() error { _, err := s.GetAgent(ctx, "a2"); return err }},
		{"ListAgents", func() error { _, err := s.ListAgents(ctx); return err }},
		{"GetToken", func() error { _, err := s.GetToken(ctx, "t2"); return err }},
		{"ListTokens", func() error { _, err := s.ListTokens(ctx, "a2"); return err }},
		{"ListAdminTokens", func() error { _, err := s.ListAdminTokens(ctx); return err }},
		{"AppendAudit", func() error {
			var c chainer
			return s.AppendAudit(ctx, []store.AuditEvent{c.record(store.LogIndex{ID: "rec-1", Time: at(0), Node: "n1", Decision: "allow", Status: 200})})
		}},
		{"QueryLogs", func() error { _, err := s.QueryLogs(ctx, store.LogQuery{}); return err }},
		{"GetLog", func() error { _, err := s.GetLog(ctx, "rec-1"); return err }},
		{"ChainHead", func() error { _, err := s.ChainHead(ctx, "n1"); return err }},
		{"Chain", func() error { return s.Chain(ctx, "n1", func(store.AuditEvent) error { return nil }) }},
		{"ChainNodes", func() error { _, err := s.ChainNodes(ctx); return err }},
		{"LastUsed", func() error { _, err := s.LastUsed(ctx, []string{"t2"}); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, r := range reads {
		must(t, r.name, r.read())
		if after := version(t, s); after != before {
			t.Errorf("%s changed the configuration version %d → %d", r.name, before, after)
		}
	}
}

func ignore(err, want error) error {
	if errors.Is(err, want) {
		return nil
	}
	return err
}

func testSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	sec, sv := secret("stripe", 0)
	must(t, "CreateSecret", s.CreateSecret(ctx, sec, sv))
	got, err := s.GetSecret(ctx, "stripe")
	must(t, "GetSecret", err)
	want := store.Secret{Name: "stripe", Version: 1, Kind: "string", CreatedAt: at(0)}
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("created secret (-want +got):\n%s", d)
	}
	err = s.CreateSecret(ctx, store.Secret{Name: "stripe", Kind: "string", CreatedAt: at(1)}, store.SecretVersion{Ciphertext: []byte("other")})
	wantErr(t, "CreateSecret of an existing name", err, store.ErrConflict)
	_, err = s.GetSecret(ctx, "nope")
	wantErr(t, "GetSecret of an unknown name", err, store.ErrNotFound)

	// Rotation: seal sees the new version number (the vault binds the
	// ciphertext to it), and the new kind and fields are stored.
	var sealed []int
	seal := func(kind string, fields ...string) func(int) ([]byte, string, []string, error) {
		return func(v int) ([]byte, string, []string, error) {
			sealed = append(sealed, v)
			return []byte(fmt.Sprintf("ct:stripe:%d", v)), kind, fields, nil
		}
	}
	got, err = s.RotateSecret(ctx, "stripe", at(10), seal("object", "client_id", "client_secret"))
	must(t, "RotateSecret", err)
	want = store.Secret{Name: "stripe", Version: 2, Kind: "object", Fields: []string{"client_id", "client_secret"},
		CreatedAt: at(0), RotatedAt: ptr(at(10))}
	if d := cmp.Diff(want, got, opts, cmpopts.IgnoreFields(store.Secret{}, "UsedBy")); d != "" {
		t.Errorf("RotateSecret result (-want +got):\n%s", d)
	}
	got, err = s.RotateSecret(ctx, "stripe", at(20), seal("string"))
	must(t, "RotateSecret", err)
	if got.Version != 3 || got.Kind != "string" || len(got.Fields) != 0 || got.RotatedAt == nil || !got.RotatedAt.Equal(at(20)) {
		t.Errorf("second rotation = %+v, want version 3, kind string, no fields, rotated at %v", got, at(20))
	}
	if d := cmp.Diff([]int{2, 3}, sealed); d != "" {
		t.Errorf("seal was called with versions (-want +got):\n%s", d)
	}
	stored, err := s.GetSecret(ctx, "stripe")
	must(t, "GetSecret", err)
	if d := cmp.Diff(got, stored, opts); d != "" {
		t.Errorf("GetSecret after rotation differs from RotateSecret's answer (-rotate +get):\n%s", d)
	}
	sealedCT := func() store.SecretVersion {
		t.Helper()
		st, err := s.Load(ctx)
		must(t, "Load", err)
		return st.Sealed["stripe"]
	}
	if d := cmp.Diff(store.SecretVersion{Name: "stripe", Version: 3, Ciphertext: []byte("ct:stripe:3"), CreatedAt: at(20)}, sealedCT(), opts); d != "" {
		t.Errorf("Load's Sealed is not the latest version (-want +got):\n%s", d)
	}

	called := false
	_, err = s.RotateSecret(ctx, "nope", at(30), func(int) ([]byte, string, []string, error) { called = true; return nil, "", nil, nil })
	wantErr(t, "RotateSecret of an unknown name", err, store.ErrNotFound)
	if called {
		t.Error("RotateSecret called seal for an unknown secret")
	}

	// A failing seal (the vault cannot encrypt) leaves everything as it was.
	v0 := version(t, s)
	errSeal := errors.New("vault sealed")
	_, err = s.RotateSecret(ctx, "stripe", at(40), func(int) ([]byte, string, []string, error) { return nil, "", nil, errSeal })
	wantErr(t, "RotateSecret with a failing seal", err, errSeal)
	after, err := s.GetSecret(ctx, "stripe")
	must(t, "GetSecret", err)
	if d := cmp.Diff(stored, after, opts); d != "" {
		t.Errorf("a failed rotation changed the secret (-before +after):\n%s", d)
	}
	if sv := sealedCT(); sv.Version != 3 || string(sv.Ciphertext) != "ct:stripe:3" {
		t.Errorf("a failed rotation changed the sealed value: %+v", sv)
	}
	if v := version(t, s); v != v0 {
		t.Errorf("a failed rotation bumped the version %d → %d", v0, v)
	}

	// UsedBy lists the referencing proxies, sorted; deleting a secret in
	// use is refused.
	must(t, "PutProxy", s.PutProxy(ctx, proxy("zeta", "stripe", 1), true))
	must(t, "PutProxy", s.PutProxy(ctx, proxy("alpha", "stripe", 1), true))
	must(t, "PutProxy", s.PutProxy(ctx, proxy("mid", "stripe", 1), true))
	must(t, "PutProxy", s.PutProxy(ctx, proxy("plain", "", 1), true))
	got, err = s.GetSecret(ctx, "stripe")
	must(t, "GetSecret", err)
	if d := cmp.Diff([]string{"alpha", "mid", "zeta"}, got.UsedBy); d != "" {
		t.Errorf("GetSecret UsedBy (-want +got):\n%s", d)
	}
	sec2, sv2 := secret("unused", 2)
	must(t, "CreateSecret", s.CreateSecret(ctx, sec2, sv2))
	list, err := s.ListSecrets(ctx)
	must(t, "ListSecrets", err)
	wantList := []store.Secret{
		{Name: "stripe", Version: 3, Kind: "string", CreatedAt: at(0), RotatedAt: ptr(at(20)), UsedBy: []string{"alpha", "mid", "zeta"}},
		{Name: "unused", Version: 1, Kind: "string", CreatedAt: at(2)},
	}
	if d := cmp.Diff(wantList, list, opts, sorted); d != "" {
		t.Errorf("ListSecrets (-want +got):\n%s", d)
	}

	wantErr(t, "DeleteSecret while proxies use it", s.DeleteSecret(ctx, "stripe"), store.ErrInUse)
	if _, err := s.GetSecret(ctx, "stripe"); err != nil {
		t.Errorf("the refused delete removed the secret: %v", err)
	}
	wantErr(t, "DeleteSecret of an unknown name", s.DeleteSecret(ctx, "nope"), store.ErrNotFound)
	for _, p := range []string{"alpha", "mid", "zeta"} {
		must(t, "DeleteProxy", s.DeleteProxy(ctx, p))
	}
	must(t, "DeleteSecret", s.DeleteSecret(ctx, "stripe"))
	_, err = s.GetSecret(ctx, "stripe")
	wantErr(t, "GetSecret after delete", err, store.ErrNotFound)
	if _, ok := func() (store.SecretVersion, bool) { st, _ := s.Load(ctx); v, ok := st.Sealed["stripe"]; return v, ok }(); ok {
		t.Error("Load still holds a sealed value of the deleted secret")
	}

	// Its versions went with it: a new secret of the same name starts
	// over at version 1, with its own ciphertext.
	sec, sv = secret("stripe", 50)
	sv.Ciphertext = []byte("ct:new")
	must(t, "CreateSecret after delete", s.CreateSecret(ctx, sec, sv))
	if d := cmp.Diff(store.SecretVersion{Name: "stripe", Version: 1, Ciphertext: []byte("ct:new"), CreatedAt: at(50)}, sealedCT(), opts); d != "" {
		t.Errorf("a recreated secret (-want +got):\n%s", d)
	}
}

func testProxies(t *testing.T, s store.Store) {
	ctx := t.Context()
	sec, sv := secret("gh-token", 0)
	must(t, "CreateSecret", s.CreateSecret(ctx, sec, sv))

	wantErr(t, "PutProxy naming an unknown secret", s.PutProxy(ctx, proxy("gh", "nope", 1), true), store.ErrMissingRef)
	_, err := s.GetProxy(ctx, "gh")
	wantErr(t, "GetProxy after a refused create", err, store.ErrNotFound)

	must(t, "PutProxy create", s.PutProxy(ctx, proxy("gh", "gh-token", 1), true))
	must(t, "PutProxy create without secret", s.PutProxy(ctx, proxy("open", "", 1), true))
	wantErr(t, "PutProxy create of an existing name", s.PutProxy(ctx, proxy("gh", "", 2), true), store.ErrConflict)
	wantErr(t, "PutProxy replace of an unknown name", s.PutProxy(ctx, proxy("nope", "", 2), false), store.ErrNotFound)
	wantErr(t, "PutProxy replace naming an unknown secret", s.PutProxy(ctx, proxy("gh", "nope", 2), false), store.ErrMissingRef)

	repl := store.Proxy{Name: "gh", Secret: "gh-token", Spec: []byte(`{"name":"gh","v":2}`), CreatedAt: at(99), UpdatedAt: at(3)}
	must(t, "PutProxy replace", s.PutProxy(ctx, repl, false))
	got, err := s.GetProxy(ctx, "gh")
	must(t, "GetProxy", err)
	// A replace keeps the creation time.
	want := store.Proxy{Name: "gh", Secret: "gh-token", Spec: []byte(`{"name":"gh","v":2}`), CreatedAt: at(1), UpdatedAt: at(3)}
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("replaced proxy (-want +got):\n%s", d)
	}

	// UpdateProxy: read-modify-write; a failing change writes nothing.
	errChange := errors.New("rule exists")
	_, err = s.UpdateProxy(ctx, "gh", at(4), func(p *store.Proxy) error { p.Spec = []byte(`{"lost":true}`); return errChange })
	wantErr(t, "UpdateProxy with a failing change", err, errChange)
	_, err = s.UpdateProxy(ctx, "nope", at(4), func(*store.Proxy) error { return nil })
	wantErr(t, "UpdateProxy of an unknown proxy", err, store.ErrNotFound)
	_, err = s.UpdateProxy(ctx, "gh", at(4), func(p *store.Proxy) error { p.Secret = "nope"; return nil })
	wantErr(t, "UpdateProxy to an unknown secret", err, store.ErrMissingRef)
	got, err = s.GetProxy(ctx, "gh")
	must(t, "GetProxy", err)
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("failed updates changed the proxy (-want +got):\n%s", d)
	}
	up, err := s.UpdateProxy(ctx, "gh", at(5), func(p *store.Proxy) error {
		if string(p.Spec) != `{"name":"gh","v":2}` {
			t.Errorf("UpdateProxy's change saw spec %s", p.Spec)
		}
		p.Spec = []byte(`{"name":"gh","v":3}`)
		p.Secret = ""
		return nil
	})
	must(t, "UpdateProxy", err)
	want = store.Proxy{Name: "gh", Spec: []byte(`{"name":"gh","v":3}`), CreatedAt: at(1), UpdatedAt: at(5)}
	if d := cmp.Diff(want, up, opts); d != "" {
		t.Errorf("UpdateProxy result (-want +got):\n%s", d)
	}
	got, err = s.GetProxy(ctx, "gh")
	must(t, "GetProxy", err)
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("updated proxy (-want +got):\n%s", d)
	}

	list, err := s.ListProxies(ctx)
	must(t, "ListProxies", err)
	if d := cmp.Diff([]store.Proxy{want, proxy("open", "", 1)}, list, opts, sorted); d != "" {
		t.Errorf("ListProxies (-want +got):\n%s", d)
	}
	must(t, "DeleteProxy", s.DeleteProxy(ctx, "gh"))
	_, err = s.GetProxy(ctx, "gh")
	wantErr(t, "GetProxy after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteProxy of an unknown name", s.DeleteProxy(ctx, "gh"), store.ErrNotFound)
	// The secret is free again.
	must(t, "DeleteSecret after its proxy went", s.DeleteSecret(ctx, "gh-token"))
}

// testUpdateProxyConcurrent pins the lost-update race: two admins adding a
// rule at the same time must both see their rule stored (SPEC §7, POST
// /proxies/{name}/rules).
func testUpdateProxyConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	p := proxy("gh", "", 0)
	p.Spec = []byte(`{"rules":[]}`)
	must(t, "PutProxy", s.PutProxy(ctx, p, true))
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateProxy(ctx, "gh", at(float64(i)), func(p *store.Proxy) error {
				var spec struct {
					Rules []string `json:"rules"`
				}
				if err := json.Unmarshal(p.Spec, &spec); err != nil {
					return err
				}
				spec.Rules = append(spec.Rules, fmt.Sprintf("rule-%02d", i))
				b, err := json.Marshal(spec)
				p.Spec = b
				return err
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("UpdateProxy: %v", err)
		}
	}
	got, err := s.GetProxy(ctx, "gh")
	must(t, "GetProxy", err)
	var spec struct {
		Rules []string `json:"rules"`
	}
	if err := json.Unmarshal(got.Spec, &spec); err != nil {
		t.Fatalf("stored spec %s: %v", got.Spec, err)
	}
	sort.Strings(spec.Rules)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("rule-%02d", i))
	}
	if d := cmp.Diff(want, spec.Rules); d != "" {
		t.Errorf("concurrent UpdateProxy calls lost changes (-want +got):\n%s", d)
	}
}

func testAgents(t *testing.T, s store.Store) {
	ctx := t.Context()
	a1 := store.Agent{Name: "builder", Labels: map[string]string{"team": "infra", "env": "prod"}, CreatedAt: at(0)}
	a2 := store.Agent{Name: "reviewer", CreatedAt: at(1)}
	must(t, "CreateAgent", s.CreateAgent(ctx, a1))
	must(t, "CreateAgent", s.CreateAgent(ctx, a2))
	wantErr(t, "CreateAgent of an existing name", s.CreateAgent(ctx, store.Agent{Name: "builder", CreatedAt: at(2)}), store.ErrConflict)
	got, err := s.GetAgent(ctx, "builder")
	must(t, "GetAgent", err)
	if d := cmp.Diff(a1, got, opts); d != "" {
		t.Errorf("GetAgent (-want +got):\n%s", d)
	}
	_, err = s.GetAgent(ctx, "nope")
	wantErr(t, "GetAgent of an unknown name", err, store.ErrNotFound)
	list, err := s.ListAgents(ctx)
	must(t, "ListAgents", err)
	if d := cmp.Diff([]store.Agent{a1, a2}, list, opts, sorted); d != "" {
		t.Errorf("ListAgents (-want +got):\n%s", d)
	}

	// Deleting an agent revokes its tokens; they stay listed (revoked) so
	// that their requests answer token_revoked and old audit records keep
	// naming a known token.
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-1", "builder", "", 0, 2)))
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-2", "builder", "", 0, 3)))
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-3", "reviewer", "", 0, 4)))
	_, err = s.RevokeToken(ctx, "tok-2", at(5))
	must(t, "RevokeToken", err)
	must(t, "DeleteAgent", s.DeleteAgent(ctx, "builder", at(10)))
	_, err = s.GetAgent(ctx, "builder")
	wantErr(t, "GetAgent after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteAgent of an unknown name", s.DeleteAgent(ctx, "builder", at(11)), store.ErrNotFound)
	toks, err := s.ListTokens(ctx, "builder")
	must(t, "ListTokens", err)
	revoked := map[string]*time.Time{}
	for _, tk := range toks {
		revoked[tk.ID] = tk.RevokedAt
	}
	want := map[string]*time.Time{"tok-1": ptr(at(10)), "tok-2": ptr(at(5))}
	if d := cmp.Diff(want, revoked, opts); d != "" {
		t.Errorf("tokens of the deleted agent: revoked at (-want +got):\n%s\n(an earlier revocation keeps its time)", d)
	}
	tk, err := s.GetToken(ctx, "tok-3")
	must(t, "GetToken", err)
	if tk.RevokedAt != nil {
		t.Errorf("deleting builder revoked reviewer's token at %v", tk.RevokedAt)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateAgent", s.CreateAgent(ctx, store.Agent{Name: "builder", CreatedAt: at(0)}))
	must(t, "CreateAgent", s.CreateAgent(ctx, store.Agent{Name: "reviewer", CreatedAt: at(0)}))

	wantErr(t, "CreateToken for an unknown agent", s.CreateToken(ctx, agentToken("tok-x", "ghost", "", 0, 1)), store.ErrMissingRef)
	wantErr(t, "CreateToken with an unknown parent", s.CreateToken(ctx, agentToken("tok-x", "builder", "tok-missing", 1, 1)), store.ErrMissingRef)

	full := store.Token{ID: "tok-1", Hash: "hash-1", Agent: "builder", Name: "ci", Proxies: []string{"gh", "slack"},
		Rules: []byte(`[{"name":"ro","effect":"allow","methods":["GET"]}]`), CreatedAt: at(1), ExpiresAt: ptr(at(3600))}
	must(t, "CreateToken", s.CreateToken(ctx, full))
	child := store.Token{ID: "tok-2", Hash: "hash-2", Agent: "builder", Name: "sub", Proxies: []string{"gh"},
		ParentID: "tok-1", Depth: 1, CreatedAt: at(2)}
	must(t, "CreateToken child", s.CreateToken(ctx, child))
	other := agentToken("tok-3", "reviewer", "", 0, 3)
	must(t, "CreateToken", s.CreateToken(ctx, other))

	dupHash := agentToken("tok-4", "builder", "", 0, 4)
	dupHash.Hash = "hash-1"
	wantErr(t, "CreateToken with an existing hash", s.CreateToken(ctx, dupHash), store.ErrConflict)
	dupID := agentToken("tok-1", "builder", "", 0, 4)
	wantErr(t, "CreateToken with an existing id", s.CreateToken(ctx, dupID), store.ErrConflict)

	got, err := s.GetToken(ctx, "tok-1")
	must(t, "GetToken", err)
	if d := cmp.Diff(full, got, opts); d != "" {
		t.Errorf("GetToken (-want +got):\n%s", d)
	}
	_, err = s.GetToken(ctx, "nope")
	wantErr(t, "GetToken of an unknown id", err, store.ErrNotFound)

	list, err := s.ListTokens(ctx, "builder")
	must(t, "ListTokens", err)
	if d := cmp.Diff([]store.Token{full, child}, list, opts, sorted); d != "" {
		t.Errorf("ListTokens(builder) (-want +got):\n%s", d)
	}
	list, err = s.ListTokens(ctx, "reviewer")
	must(t, "ListTokens", err)
	if d := cmp.Diff([]store.Token{other}, list, opts, sorted); d != "" {
		t.Errorf("ListTokens(reviewer) (-want +got):\n%s", d)
	}
	list, err = s.ListTokens(ctx, "nobody")
	must(t, "ListTokens", err)
	if len(list) != 0 {
		t.Errorf("ListTokens(nobody) = %v", list)
	}

	n, err := s.RevokeToken(ctx, "tok-3", at(10))
	must(t, "RevokeToken", err)
	if n != 1 {
		t.Errorf("RevokeToken of a leaf = %d, want 1", n)
	}
	n, err = s.RevokeToken(ctx, "tok-3", at(11))
	must(t, "RevokeToken again", err)
	if n != 0 {
		t.Errorf("revoking an already revoked token = %d, want 0", n)
	}
	if tk, _ := s.GetToken(ctx, "tok-3"); tk.RevokedAt == nil || !tk.RevokedAt.Equal(at(10)) {
		t.Errorf("a second revocation moved RevokedAt to %v, want %v", tk.RevokedAt, at(10))
	}
	_, err = s.RevokeToken(ctx, "nope", at(12))
	wantErr(t, "RevokeToken of an unknown id", err, store.ErrNotFound)
}

// testRevokeTree pins that revoking a token revokes every token derived
// from it (a leaked parent must not leave working children), and nothing
// else (revoking one branch must not cut off its siblings).
func testRevokeTree(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateAgent", s.CreateAgent(ctx, store.Agent{Name: "builder", CreatedAt: at(0)}))
	// root
	// ├── a
	// │   ├── a1
	// │   │   └── a1x
	// │   └── a2
	// └── b
	//     └── b1
	tree := []struct{ id, parent string }{
		{"root", ""}, {"a", "root"}, {"b", "root"}, {"a1", "a"}, {"a2", "a"}, {"b1", "b"}, {"a1x", "a1"},
	}
	depth := map[string]int{"": -1}
	for i, n := range tree {
		depth[n.id] = depth[n.parent] + 1
		must(t, "CreateToken "+n.id, s.CreateToken(ctx, agentToken(n.id, "builder", n.parent, depth[n.id], float64(i))))
	}
	revokedSet := func() []string {
		t.Helper()
		list, err := s.ListTokens(ctx, "builder")
		must(t, "ListTokens", err)
		var out []string
		for _, tk := range list {
			if tk.RevokedAt != nil {
				out = append(out, tk.ID)
			}
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		name        string
		revoke      string
		wantN       int
		wantRevoked []string
	}{
		{"a middle node revokes its subtree only", "a", 4, []string{"a", "a1", "a1x", "a2"}},
		{"again: nothing left to revoke", "a", 0, []string{"a", "a1", "a1x", "a2"}},
		{"a leaf inside a revoked subtree", "a1x", 0, []string{"a", "a1", "a1x", "a2"}},
		{"the root revokes the rest", "root", 3, []string{"a", "a1", "a1x", "a2", "b", "b1", "root"}},
	}
	for i, tc := range tests {
		n, err := s.RevokeToken(ctx, tc.revoke, at(float64(100+i)))
		must(t, tc.name, err)
		if n != tc.wantN {
			t.Errorf("%s: RevokeToken(%s) = %d, want %d", tc.name, tc.revoke, n, tc.wantN)
		}
		if d := cmp.Diff(tc.wantRevoked, revokedSet()); d != "" {
			t.Errorf("%s: revoked tokens (-want +got):\n%s", tc.name, d)
		}
	}
	// The subtree kept the time of its own revocation.
	tk, err := s.GetToken(ctx, "a1x")
	must(t, "GetToken", err)
	if tk.RevokedAt == nil || !tk.RevokedAt.Equal(at(100)) {
		t.Errorf("a1x revoked at %v, want %v", tk.RevokedAt, at(100))
	}
}

func testAdminTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := store.AdminToken{ID: "adm-1", Hash: "h-1", Name: "ops", Role: "admin", CreatedAt: at(0), ExpiresAt: ptr(at(86400))}
	b := store.AdminToken{ID: "adm-2", Hash: "h-2", Name: "audit", Role: "auditor", CreatedAt: at(1)}
	must(t, "CreateAdminToken", s.CreateAdminToken(ctx, a))
	must(t, "CreateAdminToken", s.CreateAdminToken(ctx, b))
	wantErr(t, "CreateAdminToken with an existing id", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-1", Hash: "h-3", Role: "viewer", CreatedAt: at(2)}), store.ErrConflict)
	wantErr(t, "CreateAdminToken with an existing hash", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-3", Hash: "h-1", Role: "viewer", CreatedAt: at(2)}), store.ErrConflict)
	list, err := s.ListAdminTokens(ctx)
	must(t, "ListAdminTokens", err)
	if d := cmp.Diff([]store.AdminToken{a, b}, list, opts, sorted); d != "" {
		t.Errorf("ListAdminTokens (-want +got):\n%s", d)
	}
	must(t, "RevokeAdminToken", s.RevokeAdminToken(ctx, "adm-1", at(5)))
	must(t, "RevokeAdminToken again", s.RevokeAdminToken(ctx, "adm-1", at(6)))
	wantErr(t, "RevokeAdminToken of an unknown id", s.RevokeAdminToken(ctx, "nope", at(5)), store.ErrNotFound)
	a.RevokedAt = ptr(at(5)) // the first revocation's time stays
	list, err = s.ListAdminTokens(ctx)
	must(t, "ListAdminTokens", err)
	if d := cmp.Diff([]store.AdminToken{a, b}, list, opts, sorted); d != "" {
		t.Errorf("ListAdminTokens after revoke (-want +got):\n%s", d)
	}
}

func testLoad(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "AddKey", s.AddKey(ctx, store.Key{ID: 7, Wrapped: []byte("w7"), CreatedAt: at(0), Active: true}))
	sec, sv := secret("gh-token", 1)
	must(t, "CreateSecret", s.CreateSecret(ctx, sec, sv))
	_, err := s.RotateSecret(ctx, "gh-token", at(2), func(v int) ([]byte, string, []string, error) {
		return []byte("ct:gh-token:2"), "object", []string{"token"}, nil
	})
	must(t, "RotateSecret", err)
	sec2, sv2 := secret("slack-token", 3)
	must(t, "CreateSecret", s.CreateSecret(ctx, sec2, sv2))
	must(t, "PutProxy", s.PutProxy(ctx, proxy("gh", "gh-token", 4), true))
	must(t, "CreateAgent", s.CreateAgent(ctx, store.Agent{Name: "builder", Labels: map[string]string{"team": "infra"}, CreatedAt: at(5)}))
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-1", "builder", "", 0, 6)))
	must(t, "CreateAdminToken", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-1", Hash: "h", Name: "ops", Role: "admin", CreatedAt: at(7)}))

	st, err := s.Load(ctx)
	must(t, "Load", err)
	want := &store.State{
		Version: version(t, s),
		Keys:    []store.Key{{ID: 7, Wrapped: []byte("w7"), CreatedAt: at(0), Active: true}},
		Secrets: []store.Secret{
			{Name: "gh-token", Version: 2, Kind: "object", Fields: []string{"token"}, CreatedAt: at(1), RotatedAt: ptr(at(2)), UsedBy: []string{"gh"}},
			{Name: "slack-token", Version: 1, Kind: "string", CreatedAt: at(3)},
		},
		Sealed: map[string]store.SecretVersion{
			"gh-token":    {Name: "gh-token", Version: 2, Ciphertext: []byte("ct:gh-token:2"), CreatedAt: at(2)},
			"slack-token": {Name: "slack-token", Version: 1, Ciphertext: []byte("ct:slack-token:1"), CreatedAt: at(3)},
		},
		Proxies:     []store.Proxy{proxy("gh", "gh-token", 4)},
		Agents:      []store.Agent{{Name: "builder", Labels: map[string]string{"team": "infra"}, CreatedAt: at(5)}},
		Tokens:      []store.Token{agentToken("tok-1", "builder", "", 0, 6)},
		AdminTokens: []store.AdminToken{{ID: "adm-1", Hash: "h", Name: "ops", Role: "admin", CreatedAt: at(7)}},
	}
	if d := cmp.Diff(want, st, opts, sorted); d != "" {
		t.Errorf("Load (-want +got):\n%s", d)
	}
}

// ---- audit ----

// chainer builds well-formed chains: each node's events get consecutive
// seqs and real links, as the audit writer makes them.
type chainer struct {
	seq  map[string]int64
	head map[string][]byte
}

func (c *chainer) link(node, id, kind string, data []byte, x store.LogIndex) store.AuditEvent {
	if c.seq == nil {
		c.seq, c.head = map[string]int64{}, map[string][]byte{}
	}
	prev := c.head[node]
	if prev == nil {
		prev = make([]byte, sha256.Size)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(data)
	c.seq[node]++
	c.head[node] = h.Sum(nil)
	return store.AuditEvent{Node: node, Seq: c.seq[node], RecordID: id, Kind: kind, Data: data, PrevHash: prev, Hash: c.head[node], Index: x}
}

func (c *chainer) record(x store.LogIndex) store.AuditEvent {
	x.Complete = true
	data, _ := json.Marshal(map[string]any{"id": x.ID, "kind": "record", "status": x.Status})
	return c.link(x.Node, x.ID, "record", data, x)
}

func (c *chainer) start(x store.LogIndex) store.AuditEvent {
	x.Complete, x.Status, x.LatencyMS = false, 0, 0
	data, _ := json.Marshal(map[string]any{"id": x.ID, "kind": "start"})
	return c.link(x.Node, x.ID, "start", data, x)
}

// end is the end of record id on node: x holds what the end applies
// (status, latency, and decision, reason, rule when they change).
func (c *chainer) end(node, id string, x store.LogIndex) store.AuditEvent {
	x.ID, x.Complete = id, true
	data, _ := json.Marshal(map[string]any{"status": x.Status, "latency_ms": x.LatencyMS})
	return c.link(node, id, "end", data, x)
}

// The audit fixture: eight records on two nodes, ids in time order.
//
//	id      node proxy  agent  token  decision reason                      status path
//	rec-01  n1   gh     alice  tok-a  allow    -                           200    /repos/acme/issues
//	rec-02  n1   gh     bob    tok-b  deny     denied_by_rule:no-delete    403    /repos/acme
//	rec-03  n2   slack  alice  tok-a  deny     denied_by_rule              403    /chat.postMessage
//	rec-04  n2   slack  bob    tok-c  deny     denied-by-rule:z            403    /chat_update
//	rec-05  n1   gh     alice  tok-a  error    upstream_unreachable (end)  502    /repos/acme/pulls   start, then end in another batch
//	rec-06  n1   gh     bob    tok-b  allow    -                           200    /user               start and end in one batch
//	rec-07  n2   slack  alice  tok-a  allow    -                           -      /files/50%_off      start only (incomplete)
//	rec-08  n1   -admin admin  -      allow    -                           201    /api/v1/proxies
type fixture struct {
	events map[string][]store.AuditEvent // by record id, in seq order
	chains map[string][]store.AuditEvent // by node
	all    []string                      // record ids, oldest first
}

func idx(id string, sec float64, node, proxy, agent, tok, method, path, decision, reason, rule string, status int, lat float64) store.LogIndex {
	return store.LogIndex{ID: id, Time: at(sec), Node: node, Proxy: proxy, Agent: agent, TokenID: tok, Method: method, Path: path,
		Decision: decision, Reason: reason, Rule: rule, Status: status, LatencyMS: lat}
}

func loadFixture(t *testing.T, s store.Store) *fixture {
	t.Helper()
	ctx := t.Context()
	var c chainer
	batches := [][]store.AuditEvent{
		{
			c.record(idx(rec(1), 1, "n1", "gh", "alice", "tok-a", "GET", "/repos/acme/issues", "allow", "", "read", 200, 12.5)),
			c.record(idx(rec(2), 2, "n1", "gh", "bob", "tok-b", "DELETE", "/repos/acme", "deny", "denied_by_rule:no-delete", "no-delete", 403, 0.25)),
		},
		{
			c.record(idx(rec(3), 3, "n2", "slack", "alice", "tok-a", "POST", "/chat.postMessage", "deny", "denied_by_rule", "", 403, 1)),
			c.record(idx(rec(4), 4, "n2", "slack", "bob", "tok-c", "POST", "/chat_update", "deny", "denied-by-rule:z", "", 403, 1)),
			c.start(idx(rec(5), 5, "n1", "gh", "alice", "tok-a", "GET", "/repos/acme/pulls", "allow", "", "read", 0, 0)),
		},
		{
			c.start(idx(rec(6), 6, "n1", "gh", "bob", "tok-b", "GET", "/user", "allow", "", "read", 0, 0)),
			c.end("n1", rec(5), store.LogIndex{Decision: "error", Reason: "upstream_unreachable", Rule: "read", Status: 502, LatencyMS: 30.25}),
			c.end("n1", rec(6), store.LogIndex{Decision: "allow", Rule: "read", Status: 200, LatencyMS: 8.5}),
		},
		{
			c.start(idx(rec(7), 7, "n2", "slack", "alice", "tok-a", "GET", "/files/50%_off", "allow", "", "", 0, 0)),
			c.record(idx(rec(8), 8, "n1", "-admin", "admin", "", "POST", "/api/v1/proxies", "allow", "", "", 201, 3)),
		},
	}
	f := &fixture{events: map[string][]store.AuditEvent{}, chains: map[string][]store.AuditEvent{}}
	for i, b := range batches {
		must(t, fmt.Sprintf("AppendAudit batch %d", i), s.AppendAudit(ctx, b))
		for _, e := range b {
			f.events[e.RecordID] = append(f.events[e.RecordID], e)
			f.chains[e.Node] = append(f.chains[e.Node], e)
			if e.Kind != "end" {
				f.all = append(f.all, e.RecordID)
			}
		}
	}
	return f
}

// wantIndex is each fixture record's index as stored, ends applied.
func wantIndex() map[string]store.LogIndex {
	m := map[string]store.LogIndex{}
	for _, x := range []store.LogIndex{
		idx(rec(1), 1, "n1", "gh", "alice", "tok-a", "GET", "/repos/acme/issues", "allow", "", "read", 200, 12.5),
		idx(rec(2), 2, "n1", "gh", "bob", "tok-b", "DELETE", "/repos/acme", "deny", "denied_by_rule:no-delete", "no-delete", 403, 0.25),
		idx(rec(3), 3, "n2", "slack", "alice", "tok-a", "POST", "/chat.postMessage", "deny", "denied_by_rule", "", 403, 1),
		idx(rec(4), 4, "n2", "slack", "bob", "tok-c", "POST", "/chat_update", "deny", "denied-by-rule:z", "", 403, 1),
		idx(rec(5), 5, "n1", "gh", "alice", "tok-a", "GET", "/repos/acme/pulls", "error", "upstream_unreachable", "read", 502, 30.25),
		idx(rec(6), 6, "n1", "gh", "bob", "tok-b", "GET", "/user", "allow", "", "read", 200, 8.5),
		idx(rec(7), 7, "n2", "slack", "alice", "tok-a", "GET", "/files/50%_off", "allow", "", "", 0, 0),
		idx(rec(8), 8, "n1", "-admin", "admin", "", "POST", "/api/v1/proxies", "allow", "", "", 201, 3),
	} {
		x.Complete = x.ID != rec(7)
		m[x.ID] = x
	}
	return m
}

func ids(rows []store.LogRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.Index.ID)
	}
	return out
}

func testAuditAppend(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := loadFixture(t, s)
	want := wantIndex()
	for _, id := range f.all {
		row, err := s.GetLog(ctx, id)
		must(t, "GetLog "+id, err)
		if d := cmp.Diff(want[id], row.Index, opts); d != "" {
			t.Errorf("index of %s (-want +got):\n%s", id, d)
		}
		if d := cmp.Diff(f.events[id], row.Events, opts, cmpopts.IgnoreFields(store.AuditEvent{}, "Index")); d != "" {
			t.Errorf("events of %s (-want +got):\n%s", id, d)
		}
	}

	// An end that does not change the decision, reason or rule (the
	// audit writer leaves them empty then) keeps the start's: the index
	// must agree with the merged record the API shows.
	var c chainer
	c.seq, c.head = map[string]int64{"n3": 0}, map[string][]byte{}
	start := c.start(idx(rec(9), 9, "n3", "gh", "alice", "tok-a", "GET", "/x", "allow", "report_only:r", "r", 0, 0))
	must(t, "AppendAudit", s.AppendAudit(ctx, []store.AuditEvent{start}))
	must(t, "AppendAudit", s.AppendAudit(ctx, []store.AuditEvent{c.end("n3", rec(9), store.LogIndex{Status: 204, LatencyMS: 2})}))
	row, err := s.GetLog(ctx, rec(9))
	must(t, "GetLog", err)
	wantX := idx(rec(9), 9, "n3", "gh", "alice", "tok-a", "GET", "/x", "allow", "report_only:r", "r", 204, 2)
	wantX.Complete = true
	if d := cmp.Diff(wantX, row.Index, opts); d != "" {
		t.Errorf("an end without decision, reason or rule wiped the start's (-want +got):\n%s", d)
	}
}

// testAuditBatchAtomic pins that a batch is one transaction: the writer
// releases every waiter of a batch as committed when AppendAudit returns
// nil, and reports every one as failed otherwise, so a half-written batch
// would be records that the gateway believes were refused.
func testAuditBatchAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := loadFixture(t, s)
	head, err := s.ChainHead(ctx, "n1")
	must(t, "ChainHead", err)
	var c chainer
	c.seq, c.head = map[string]int64{"n1": head.Seq}, map[string][]byte{"n1": head.Hash}
	good := c.record(idx("rec-20", 20, "n1", "gh", "alice", "tok-a", "GET", "/new", "allow", "", "", 200, 1))
	start := c.start(idx("rec-21", 21, "n1", "gh", "alice", "tok-a", "GET", "/new", "allow", "", "", 0, 0))
	endOld := c.end("n1", rec(7), store.LogIndex{Decision: "allow", Status: 200, LatencyMS: 1})
	dup := c.record(idx("rec-22", 22, "n1", "gh", "alice", "tok-a", "GET", "/dup", "allow", "", "", 200, 1))
	dup.Seq = 1 // already taken on n1
	err = s.AppendAudit(ctx, []store.AuditEvent{good, start, endOld, dup})
	if err == nil {
		t.Fatal("AppendAudit of a batch reusing a (node, seq) succeeded")
	}
	for _, id := range []string{"rec-20", "rec-21", "rec-22"} {
		_, err := s.GetLog(ctx, id)
		wantErr(t, "GetLog of "+id+" from the failed batch", err, store.ErrNotFound)
	}
	row, err := s.GetLog(ctx, rec(7))
	must(t, "GetLog", err)
	if row.Index.Complete || len(row.Events) != 1 {
		t.Errorf("the failed batch's end was applied to rec-07: %+v, %d events", row.Index, len(row.Events))
	}
	after, err := s.ChainHead(ctx, "n1")
	must(t, "ChainHead", err)
	if d := cmp.Diff(head, after); d != "" {
		t.Errorf("the failed batch moved the chain head (-before +after):\n%s", d)
	}
	rows, err := s.QueryLogs(ctx, store.LogQuery{Limit: 1000})
	must(t, "QueryLogs", err)
	if len(rows) != len(f.all) {
		t.Errorf("QueryLogs lists %d records after the failed batch, want %d", len(rows), len(f.all))
	}
	n := 0
	must(t, "Chain", s.Chain(ctx, "n1", func(store.AuditEvent) error { n++; return nil }))
	if n != len(f.chains["n1"]) {
		t.Errorf("n1's chain has %d events after the failed batch, want %d", n, len(f.chains["n1"]))
	}
}

func testAuditChain(t *testing.T, s store.Store) {
	ctx := t.Context()
	h, err := s.ChainHead(ctx, "n1")
	must(t, "ChainHead of an empty store", err)
	if h.Seq != 0 || len(h.Hash) != 0 {
		t.Errorf("ChainHead of an empty store = %+v, want zero", h)
	}
	nodes, err := s.ChainNodes(ctx)
	must(t, "ChainNodes", err)
	if len(nodes) != 0 {
		t.Errorf("ChainNodes of an empty store = %v", nodes)
	}

	f := loadFixture(t, s)
	for _, node := range []string{"n1", "n2"} {
		chain := f.chains[node]
		h, err := s.ChainHead(ctx, node)
		must(t, "ChainHead", err)
		last := chain[len(chain)-1]
		if d := cmp.Diff(store.ChainHead{Seq: last.Seq, Hash: last.Hash}, h); d != "" {
			t.Errorf("ChainHead(%s) (-want +got):\n%s", node, d)
		}
		var got []store.AuditEvent
		must(t, "Chain", s.Chain(ctx, node, func(e store.AuditEvent) error { got = append(got, e); return nil }))
		if d := cmp.Diff(chain, got, opts, cmpopts.IgnoreFields(store.AuditEvent{}, "Index")); d != "" {
			t.Errorf("Chain(%s) (-want +got):\n%s", node, d)
		}
	}
	h, err = s.ChainHead(ctx, "n9")
	must(t, "ChainHead of an unknown node", err)
	if h.Seq != 0 || len(h.Hash) != 0 {
		t.Errorf("ChainHead of an unknown node = %+v, want zero", h)
	}

	// Chain follows seq, not the order rows were written in.
	var c chainer
	e1 := c.record(idx("rec-31", 31, "n3", "gh", "alice", "tok-a", "GET", "/a", "allow", "", "", 200, 1))
	e2 := c.record(idx("rec-32", 32, "n3", "gh", "alice", "tok-a", "GET", "/b", "allow", "", "", 200, 1))
	e3 := c.record(idx("rec-33", 33, "n3", "gh", "alice", "tok-a", "GET", "/c", "allow", "", "", 200, 1))
	must(t, "AppendAudit", s.AppendAudit(ctx, []store.AuditEvent{e3, e1}))
	must(t, "AppendAudit", s.AppendAudit(ctx, []store.AuditEvent{e2}))
	var seqs []int64
	must(t, "Chain", s.Chain(ctx, "n3", func(e store.AuditEvent) error { seqs = append(seqs, e.Seq); return nil }))
	if d := cmp.Diff([]int64{1, 2, 3}, seqs); d != "" {
		t.Errorf("Chain(n3) seqs (-want +got):\n%s", d)
	}
	h, err = s.ChainHead(ctx, "n3")
	must(t, "ChainHead", err)
	if h.Seq != 3 || string(h.Hash) != string(e3.Hash) {
		t.Errorf("ChainHead(n3) = seq %d, want the highest seq 3", h.Seq)
	}

	// An error from fn stops the walk and is returned.
	stop := errors.New("stop")
	n := 0
	err = s.Chain(ctx, "n1", func(store.AuditEvent) error { n++; return stop })
	wantErr(t, "Chain with fn failing", err, stop)
	if n != 1 {
		t.Errorf("Chain called fn %d times after it failed, want 1", n)
	}

	nodes, err = s.ChainNodes(ctx)
	must(t, "ChainNodes", err)
	sort.Strings(nodes)
	if d := cmp.Diff([]string{"n1", "n2", "n3"}, nodes); d != "" {
		t.Errorf("ChainNodes (-want +got):\n%s", d)
	}
}

func testQueryLogsFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	loadFixture(t, s)
	tests := []struct {
		name string
		q    store.LogQuery
		want []string
	}{
		{"no filter, newest first", store.LogQuery{}, []string{rec(8), rec(7), rec(6), rec(5), rec(4), rec(3), rec(2), rec(1)}},
		{"proxy", store.LogQuery{Proxy: "gh"}, []string{rec(6), rec(5), rec(2), rec(1)}},
		{"agent", store.LogQuery{Agent: "alice"}, []string{rec(7), rec(5), rec(3), rec(1)}},
		{"token id", store.LogQuery{TokenID: "tok-b"}, []string{rec(6), rec(2)}},
		{"decision", store.LogQuery{Decision: "deny"}, []string{rec(4), rec(3), rec(2)}},
		{"decision set by an end", store.LogQuery{Decision: "error"}, []string{rec(5)}},
		{"decision a start had before its end", store.LogQuery{Decision: "allow", Proxy: "gh"}, []string{rec(6), rec(1)}},
		{"reason: a code matches itself and code:detail", store.LogQuery{Reason: "denied_by_rule"}, []string{rec(3), rec(2)}},
		{"reason: full reason", store.LogQuery{Reason: "denied_by_rule:no-delete"}, []string{rec(2)}},
		{"reason: no prefix match without the colon", store.LogQuery{Reason: "denied"}, []string{}},
		{"reason: _ is no wildcard", store.LogQuery{Reason: "denied_by_rule:z"}, []string{}},
		{"reason set by an end", store.LogQuery{Reason: "upstream_unreachable"}, []string{rec(5)}},
		{"status", store.LogQuery{Status: 403}, []string{rec(4), rec(3), rec(2)}},
		{"status set by an end", store.LogQuery{Status: 502}, []string{rec(5)}},
		{"node", store.LogQuery{Node: "n2"}, []string{rec(7), rec(4), rec(3)}},
		{"path contains", store.LogQuery{PathContains: "acme"}, []string{rec(5), rec(2), rec(1)}},
		{"path contains is literal: _", store.LogQuery{PathContains: "_"}, []string{rec(7), rec(4)}},
		{"path contains is literal: %", store.LogQuery{PathContains: "0%_o"}, []string{rec(7)}},
		{"path contains is case-sensitive", store.LogQuery{PathContains: "ACME"}, []string{}},
		{"since and until", store.LogQuery{Since: at(2.5), Until: at(5.5)}, []string{rec(5), rec(4), rec(3)}},
		{"since", store.LogQuery{Since: at(6.5)}, []string{rec(8), rec(7)}},
		{"until", store.LogQuery{Until: at(1.5)}, []string{rec(1)}},
		{"filters combine", store.LogQuery{Agent: "alice", Node: "n1", Status: 200}, []string{rec(1)}},
		{"limit", store.LogQuery{Limit: 3}, []string{rec(8), rec(7), rec(6)}},
		{"before", store.LogQuery{Before: rec(3)}, []string{rec(2), rec(1)}},
		{"ascending", store.LogQuery{Ascending: true}, []string{rec(1), rec(2), rec(3), rec(4), rec(5), rec(6), rec(7), rec(8)}},
		{"after, ascending (follow mode)", store.LogQuery{After: rec(5), Ascending: true}, []string{rec(6), rec(7), rec(8)}},
		{"ascending with a limit takes the oldest", store.LogQuery{Ascending: true, Limit: 2}, []string{rec(1), rec(2)}},
		{"nothing matches", store.LogQuery{Proxy: "nope"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := s.QueryLogs(ctx, tc.q)
			must(t, "QueryLogs", err)
			if d := cmp.Diff(tc.want, ids(rows)); d != "" {
				t.Errorf("QueryLogs(%+v) (-want +got):\n%s", tc.q, d)
			}
			want := wantIndex()
			for _, r := range rows {
				if d := cmp.Diff(want[r.Index.ID], r.Index, opts); d != "" {
					t.Errorf("index of %s (-want +got):\n%s", r.Index.ID, d)
				}
				if len(r.Events) != 0 {
					t.Errorf("%s: events read without WithData", r.Index.ID)
				}
			}
		})
	}
}

// testQueryLogsPaging pins that following next_cursor visits every record
// exactly once, in both directions, with and without filters.
func testQueryLogsPaging(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := loadFixture(t, s)
	// More records than the fixture, some sharing a timestamp.
	var c chainer
	var batch []store.AuditEvent
	for i := range 25 {
		batch = append(batch, c.record(idx(fmt.Sprintf("rec-5%02d", i), 50+float64(i/3), "n4", "gh", "carol", "tok-d", "GET", "/p", "allow", "", "", 200, 1)))
	}
	must(t, "AppendAudit", s.AppendAudit(ctx, batch))
	all := slices.Clone(f.all)
	for _, e := range batch {
		all = append(all, e.RecordID)
	}

	tests := []struct {
		name string
		q    store.LogQuery
		want []string // oldest first
	}{
		{"everything", store.LogQuery{}, all},
		{"filtered", store.LogQuery{Proxy: "gh"}, append([]string{rec(1), rec(2), rec(5), rec(6)}, all[len(f.all):]...)},
		{"two matches", store.LogQuery{Agent: "bob", Status: 403}, []string{rec(2), rec(4)}},
	}
	for _, tc := range tests {
		for _, limit := range []int{1, 2, 3, 7, 100} {
			t.Run(fmt.Sprintf("%s/limit %d", tc.name, limit), func(t *testing.T) {
				// Newest first, following Before.
				var got []string
				q := tc.q
				q.Limit = limit
				for range 100 {
					rows, err := s.QueryLogs(ctx, q)
					must(t, "QueryLogs", err)
					if len(rows) > limit {
						t.Fatalf("page of %d rows, limit %d", len(rows), limit)
					}
					if len(rows) == 0 {
						break
					}
					got = append(got, ids(rows)...)
					q.Before = rows[len(rows)-1].Index.ID
				}
				want := slices.Clone(tc.want)
				slices.Reverse(want)
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("pages newest first (-want +got):\n%s", d)
				}

				// Oldest first, following After.
				got = nil
				q = tc.q
				q.Limit, q.Ascending = limit, true
				for range 100 {
					rows, err := s.QueryLogs(ctx, q)
					must(t, "QueryLogs", err)
					if len(rows) == 0 {
						break
					}
					got = append(got, ids(rows)...)
					q.After = rows[len(rows)-1].Index.ID
				}
				if d := cmp.Diff(tc.want, got); d != "" {
					t.Errorf("pages oldest first (-want +got):\n%s", d)
				}
			})
		}
	}
}

func testQueryLogsWithData(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := loadFixture(t, s)
	rows, err := s.QueryLogs(ctx, store.LogQuery{Proxy: "gh", WithData: true})
	must(t, "QueryLogs", err)
	if d := cmp.Diff([]string{rec(6), rec(5), rec(2), rec(1)}, ids(rows)); d != "" {
		t.Fatalf("QueryLogs (-want +got):\n%s", d)
	}
	for _, r := range rows {
		// Events: the start (or whole record), then the end, with their
		// data and links exactly as appended.
		if d := cmp.Diff(f.events[r.Index.ID], r.Events, opts, cmpopts.IgnoreFields(store.AuditEvent{}, "Index")); d != "" {
			t.Errorf("events of %s (-want +got):\n%s", r.Index.ID, d)
		}
	}
}

func testGetLog(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetLog(ctx, rec(1))
	wantErr(t, "GetLog on an empty store", err, store.ErrNotFound)
	f := loadFixture(t, s)
	_, err = s.GetLog(ctx, "rec-99")
	wantErr(t, "GetLog of an unknown id", err, store.ErrNotFound)
	row, err := s.GetLog(ctx, rec(7))
	must(t, "GetLog", err)
	if d := cmp.Diff(wantIndex()[rec(7)], row.Index, opts); d != "" {
		t.Errorf("incomplete record's index (-want +got):\n%s", d)
	}
	if d := cmp.Diff(f.events[rec(7)], row.Events, opts, cmpopts.IgnoreFields(store.AuditEvent{}, "Index")); d != "" {
		t.Errorf("incomplete record's events (-want +got):\n%s", d)
	}
}

func testLastUsed(t *testing.T, s store.Store) {
	ctx := t.Context()
	got, err := s.LastUsed(ctx, []string{"tok-a"})
	must(t, "LastUsed on an empty store", err)
	if len(got) != 0 {
		t.Errorf("LastUsed on an empty store = %v", got)
	}
	loadFixture(t, s)
	got, err = s.LastUsed(ctx, []string{"tok-a", "tok-b", "tok-c", "tok-unused"})
	must(t, "LastUsed", err)
	want := map[string]time.Time{"tok-a": at(7), "tok-b": at(6), "tok-c": at(4)}
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("LastUsed (-want +got):\n%s", d)
	}
	got, err = s.LastUsed(ctx, nil)
	must(t, "LastUsed of no ids", err)
	if len(got) != 0 {
		t.Errorf("LastUsed(nil) = %v", got)
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// testAuditHeads pins that a node's head is written by the batch that
// carries it (the event with a HeadMAC), in its transaction: a failed
// batch leaves the previous head, a batch without a HeadMAC leaves it, and
// each node has its own.
func testAuditHeads(t *testing.T, s store.Store) {
	ctx := t.Context()
	heads, err := s.Heads(ctx)
	must(t, "Heads of an empty store", err)
	if len(heads) != 0 {
		t.Errorf("Heads of an empty store = %v, want none", heads)
	}
	var c chainer
	mac := func(e store.AuditEvent, tag string) store.AuditEvent {
		e.HeadMAC = []byte("mac-" + tag)
		return e
	}
	e1 := c.record(idx("rec-41", 41, "n1", "gh", "alice", "tok-a", "GET", "/a", "allow", "", "", 200, 1))
	e2 := c.record(idx("rec-42", 42, "n1", "gh", "alice", "tok-a", "GET", "/b", "allow", "", "", 200, 1))
	f1 := c.record(idx("rec-43", 43, "n2", "gh", "alice", "tok-a", "GET", "/c", "allow", "", "", 200, 1))
	before := time.Now().Add(-time.Minute)
	must(t, "AppendAudit", s.AppendAudit(ctx, []store.AuditEvent{e1, mac(e2, "n1-2")}))
	must(t, "AppendAudit", s.AppendAudit(ctx, []store.AuditEvent{mac(f1, "n2-1")}))
	e3 := c.record(idx("rec-44", 44, "n1", "gh", "alice", "tok-a", "GET", "/d", "allow", "", "", 200, 1))
	must(t, "AppendAudit without a head", s.AppendAudit(ctx, []store.AuditEvent{e3}))

	// A failed batch (its second event reuses a seq) moves no head.
	e4 := c.record(idx("rec-45", 45, "n1", "gh", "alice", "tok-a", "GET", "/e", "allow", "", "", 200, 1))
	dup := c.record(idx("rec-46", 46, "n1", "gh", "alice", "tok-a", "GET", "/f", "allow", "", "", 200, 1))
	dup.Seq = 1
	if err := s.AppendAudit(ctx, []store.AuditEvent{mac(e4, "n1-4"), mac(dup, "n1-dup")}); err == nil {
		t.Fatal("AppendAudit of a batch reusing a (node, seq) succeeded")
	}

	heads, err = s.Heads(ctx)
	must(t, "Heads", err)
	want := map[string]store.ChainHead{
		"n1": {Seq: e2.Seq, Hash: e2.Hash, MAC: []byte("mac-n1-2")},
		"n2": {Seq: f1.Seq, Hash: f1.Hash, MAC: []byte("mac-n2-1")},
	}
	if d := cmp.Diff(want, heads, cmpopts.IgnoreFields(store.ChainHead{}, "UpdatedAt")); d != "" {
		t.Errorf("Heads (-want +got):\n%s", d)
	}
	for n, h := range heads {
		if h.UpdatedAt.Before(before) || h.UpdatedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("head of %s updated at %v, want about now", n, h.UpdatedAt)
		}
	}

	// The next head replaces the node's row.
	e5 := c.record(idx("rec-47", 47, "n1", "gh", "alice", "tok-a", "GET", "/g", "allow", "", "", 200, 1))
	e5.Seq, e5.PrevHash = e3.Seq+1, e3.Hash // after the failed batch, the chain goes on from e3
	must(t, "AppendAudit", s.AppendAudit(ctx, []store.AuditEvent{mac(e5, "n1-5")}))
	heads, err = s.Heads(ctx)
	must(t, "Heads", err)
	if h := heads["n1"]; h.Seq != e5.Seq || string(h.Hash) != string(e5.Hash) || string(h.MAC) != "mac-n1-5" {
		t.Errorf("head of n1 after another batch = seq %d mac %q, want seq %d mac %q", h.Seq, h.MAC, e5.Seq, "mac-n1-5")
	}
}

func testChainLink(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := loadFixture(t, s)
	for _, node := range []string{"n1", "n2"} {
		for _, want := range f.chains[node] {
			got, err := s.ChainLink(ctx, node, want.Seq)
			must(t, fmt.Sprintf("ChainLink(%s, %d)", node, want.Seq), err)
			if d := cmp.Diff(want, got, opts, cmpopts.IgnoreFields(store.AuditEvent{}, "Index")); d != "" {
				t.Errorf("ChainLink(%s, %d) (-want +got):\n%s", node, want.Seq, d)
			}
		}
	}
	for _, tc := range []struct {
		node string
		seq  int64
	}{{"n1", 0}, {"n1", 99}, {"n9", 1}} {
		_, err := s.ChainLink(ctx, tc.node, tc.seq)
		wantErr(t, fmt.Sprintf("ChainLink(%s, %d)", tc.node, tc.seq), err, store.ErrNotFound)
	}
}

// testDeleteAuditPrefix pins what audit retention relies on: a prefix of
// one node's chain goes, lowest seq first and at most limit links a call,
// with the index rows of the records whose first event goes; a later end
// event and the other nodes stay.
func testDeleteAuditPrefix(t *testing.T, s store.Store) {
	ctx := t.Context()
	loadFixture(t, s)
	// n1: 1 rec-01, 2 rec-02, 3 rec-05 start, 4 rec-06 start, 5 rec-05 end, 6 rec-06 end, 7 rec-08.
	chain := func(node string) []int64 {
		var seqs []int64
		must(t, "Chain", s.Chain(ctx, node, func(e store.AuditEvent) error { seqs = append(seqs, e.Seq); return nil }))
		return seqs
	}
	listed := func() []string {
		rows, err := s.QueryLogs(ctx, store.LogQuery{Limit: 1000, Ascending: true})
		must(t, "QueryLogs", err)
		return ids(rows)
	}
	steps := []struct {
		name               string
		before             int64
		limit              int
		wantEvents, wantRx int64
		wantChain          []int64
		wantListed         []string
	}{
		{name: "nothing below the first link", before: 1, limit: 10, wantChain: []int64{1, 2, 3, 4, 5, 6, 7},
			wantListed: []string{rec(1), rec(2), rec(3), rec(4), rec(5), rec(6), rec(7), rec(8)}},
		{name: "limited to 2 links", before: 5, limit: 2, wantEvents: 2, wantRx: 2, wantChain: []int64{3, 4, 5, 6, 7},
			wantListed: []string{rec(3), rec(4), rec(5), rec(6), rec(7), rec(8)}},
		{name: "the rest below 5: two starts whose ends stay", before: 5, limit: 10, wantEvents: 2, wantRx: 2, wantChain: []int64{5, 6, 7},
			wantListed: []string{rec(3), rec(4), rec(7), rec(8)}},
		{name: "done", before: 5, limit: 10, wantChain: []int64{5, 6, 7},
			wantListed: []string{rec(3), rec(4), rec(7), rec(8)}},
		{name: "ends without their record, and a record", before: 8, limit: 10, wantEvents: 3, wantRx: 1, wantChain: nil,
			wantListed: []string{rec(3), rec(4), rec(7)}},
	}
	for _, st := range steps {
		ev, rx, err := s.DeleteAuditPrefix(ctx, "n1", st.before, st.limit)
		must(t, st.name, err)
		if ev != st.wantEvents || rx != st.wantRx {
			t.Errorf("%s: DeleteAuditPrefix = %d events, %d records; want %d, %d", st.name, ev, rx, st.wantEvents, st.wantRx)
		}
		if d := cmp.Diff(st.wantChain, chain("n1"), cmpopts.EquateEmpty()); d != "" {
			t.Errorf("%s: n1's chain (-want +got):\n%s", st.name, d)
		}
		if d := cmp.Diff(st.wantListed, listed()); d != "" {
			t.Errorf("%s: listed records (-want +got):\n%s", st.name, d)
		}
	}
	if d := cmp.Diff([]int64{1, 2, 3}, chain("n2")); d != "" {
		t.Errorf("n2's chain after cutting n1's (-want +got):\n%s", d)
	}
	for _, id := range []string{rec(1), rec(5)} {
		_, err := s.GetLog(ctx, id)
		wantErr(t, "GetLog of a deleted record "+id, err, store.ErrNotFound)
	}
}
