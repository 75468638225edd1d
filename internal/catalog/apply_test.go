package catalog

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
)

func plaintext(t *testing.T, v any) []byte {
	t.Helper()
	pt, _, _, err := EncodeValue(mustJSON(v))
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// marked is a value as persistRotation stores it after the provider
// rotated the refresh token.
func marked(fields map[string]string) []byte {
	m := map[string]string{rotationMark: "1"}
	for k, v := range fields {
		m[k] = v
	}
	return mustJSON(m)
}

func TestApplyValue(t *testing.T) {
	oauth := func(id, secret, rt string) map[string]string {
		return map[string]string{"client_id": id, "client_secret": secret, "refresh_token": rt}
	}
	tests := []struct {
		name        string
		cur         []byte
		applied     any
		wantChanged bool
		want        map[string]string // the stored fields, when changed
	}{
		{name: "new secret", cur: nil, applied: "sk_live_aaaaaaaa", wantChanged: true, want: map[string]string{"": "sk_live_aaaaaaaa"}},
		{name: "same string", cur: plaintext(t, "sk_live_aaaaaaaa"), applied: "sk_live_aaaaaaaa"},
		{name: "other string", cur: plaintext(t, "sk_live_aaaaaaaa"), applied: "sk_live_bbbbbbbb", wantChanged: true,
			want: map[string]string{"": "sk_live_bbbbbbbb"}},
		{name: "string to object", cur: plaintext(t, "sk_live_aaaaaaaa"), applied: map[string]string{"token": "sk_live_aaaaaaaa"},
			wantChanged: true, want: map[string]string{"token": "sk_live_aaaaaaaa"}},
		{name: "same object", cur: plaintext(t, map[string]string{"username": "svc", "password": "p4ssw0rd-long"}),
			applied: map[string]string{"password": "p4ssw0rd-long", "username": "svc"}},
		{name: "object with one more field", cur: plaintext(t, map[string]string{"username": "svc", "password": "p4ssw0rd-long"}),
			applied: map[string]string{"password": "p4ssw0rd-long", "username": "svc", "x": "y"}, wantChanged: true,
			want: map[string]string{"password": "p4ssw0rd-long", "username": "svc", "x": "y"}},
		{name: "a current value that does not decode is replaced", cur: []byte("not json"), applied: "sk_live_aaaaaaaa",
			wantChanged: true, want: map[string]string{"": "sk_live_aaaaaaaa"}},
		{name: "refresh token an admin stored differs: rotated", cur: plaintext(t, oauth("id", "secret", "rt-2")),
			applied: oauth("id", "secret", "rt-1"), wantChanged: true, want: oauth("id", "secret", "rt-1")},
		{name: "provider rotated the refresh token: the stale one applied is no change", cur: marked(oauth("id", "secret", "rt-2")),
			applied: oauth("id", "secret", "rt-1")},
		{name: "provider rotated, new client secret: rotated, the current refresh token kept", cur: marked(oauth("id", "secret", "rt-2")),
			applied: oauth("id", "secret-2", "rt-1"), wantChanged: true, want: oauth("id", "secret-2", "rt-2")},
		{name: "provider rotated, another client: the applied refresh token", cur: marked(oauth("id", "secret", "rt-2")),
			applied: oauth("id-2", "secret", "rt-9"), wantChanged: true, want: oauth("id-2", "secret", "rt-9")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := ApplyValue(tc.cur, plaintext(t, tc.applied))
			if changed != tc.wantChanged {
				t.Fatalf("changed = %v, want %v", changed, tc.wantChanged)
			}
			if !changed {
				if out != nil {
					t.Errorf("unchanged, but a value to store was returned")
				}
				return
			}
			got, err := DecodeValue(out)
			if err != nil {
				t.Fatalf("the value to store does not decode: %v", err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("stored value (-want +got):\n%s", d)
			}
			// What is stored must be what EncodeValue would make of it, so
			// that the next apply compares equal.
			if _, ok := got[""]; !ok {
				if again := plaintext(t, got); string(again) != string(out) {
					t.Errorf("stored %s, EncodeValue makes %s", out, again)
				}
			}
		})
	}
}

// TestCheckProxyChangesNothing: checking a proxy against values that are
// not stored yet compiles it (and finds what would fail) without touching
// the OAuth token source that live requests use, nor fetching a token.
func TestCheckProxyChangesNothing(t *testing.T) {
	e := newEnv(t)
	p := newProvider(t)
	e.secret("gh", map[string]string{"client_id": "id-1", "client_secret": "secret-1"})
	e.proxy(oauthProxy("gh", "gh", p.URL, "oauth2_client_credentials"))
	live := e.cat.Load().Proxy("gh")
	if live.Err != nil {
		t.Fatal(live.Err)
	}
	src := live.Inject.(*inject.OAuth).Source()
	tok := apply(t, live).Header.Get("Authorization")
	fetches := p.count()

	js := mustJSON(live.Spec)
	sp := store.Proxy{Name: "gh", Secret: "gh", Spec: js}
	overlay := func(fields map[string]string) map[string]*inject.Material {
		return map[string]*inject.Material{"gh": {Name: "gh", Fields: fields}}
	}
	if err := e.cat.CheckProxy(sp, overlay(map[string]string{"client_id": "id-2", "client_secret": "secret-2"})); err != nil {
		t.Errorf("a proxy that fits the new value: %v", err)
	}
	if err := e.cat.CheckProxy(sp, overlay(map[string]string{"client_id": "id-2"})); err == nil {
		t.Error("a value without client_secret passed the check of an OAuth proxy")
	}
	if err := e.cat.CheckProxy(sp, overlay(map[string]string{"": "a-string-value"})); err == nil {
		t.Error("a string value passed the check of an OAuth proxy")
	}
	// A proxy over a secret that exists only in the overlay.
	other := oauthProxy("other", "new-secret", p.URL, "oauth2_client_credentials")
	other.Normalize()
	osp := store.Proxy{Name: "other", Secret: "new-secret", Spec: mustJSON(other)}
	if err := e.cat.CheckProxy(osp, nil); err == nil {
		t.Error("a proxy whose secret exists nowhere passed the check")
	}
	if err := e.cat.CheckProxy(osp, map[string]*inject.Material{"new-secret": {Name: "new-secret",
		Fields: map[string]string{"client_id": "a", "client_secret": "b"}}}); err != nil {
		t.Errorf("a proxy whose secret is in the overlay: %v", err)
	}

	if p.count() != fetches {
		t.Errorf("checks fetched %d tokens", p.count()-fetches)
	}
	if v := src.Version(); v != 1 {
		t.Errorf("the live token source moved to version %d", v)
	}
	if got := apply(t, e.cat.Load().Proxy("gh")).Header.Get("Authorization"); got != tok {
		t.Errorf("the live proxy's token changed after checks: %q, want %q", got, tok)
	}
	e.cat.dyn.mu.Lock()
	n := len(e.cat.dyn.sources)
	e.cat.dyn.mu.Unlock()
	if n != 1 {
		t.Errorf("%d OAuth sources registered after checks, want the live one only", n)
	}

	// A static proxy: a bearer secret turned into an object without
	// "token" does not fit.
	e.secret("stripe-key", map[string]string{"": "sk_test_aaaaaaaaaaaa"})
	sp2 := spec.NewProxy()
	sp2.Name, sp2.Upstream, sp2.Auth = "stripe", "http://127.0.0.1:9", spec.Auth{Type: "bearer", Secret: "stripe-key"}
	e.proxy(sp2)
	b, _ := json.Marshal(sp2)
	if err := e.cat.CheckProxy(store.Proxy{Name: "stripe", Secret: "stripe-key", Spec: b},
		map[string]*inject.Material{"stripe-key": {Name: "stripe-key", Fields: map[string]string{"user": "x"}}}); err == nil {
		t.Error("a bearer proxy passed with an object secret that has no token field")
	}
}
