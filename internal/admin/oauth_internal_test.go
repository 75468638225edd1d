package admin

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
	"github.com/keyhole-gw/keyhole/internal/store/storetest"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// TestMemFlowsConformance: the in-memory fallback behaves as the stores do.
func TestMemFlowsConformance(t *testing.T) {
	storetest.OAuthFlows(t, &memFlows{m: map[string]store.OAuthFlow{}})
}

// recordingStore remembers the flows it was given.
type recordingStore struct {
	*sqlite.Store
	mu   sync.Mutex
	rows []store.OAuthFlow
}

func (r *recordingStore) PutFlow(ctx context.Context, f store.OAuthFlow) error {
	r.mu.Lock()
	r.rows = append(r.rows, f)
	r.mu.Unlock()
	return r.Store.PutFlow(ctx, f)
}

func flowAPI(t *testing.T) (*API, *recordingStore) {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir()+"/k.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk, _, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	wk, _ := mk.NewDataKey(1)
	at := time.Now().UTC()
	if err := st.AddKey(ctx, store.Key{ID: wk.ID, Wrapped: wk.Wrapped, CreatedAt: at, Active: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateAdminToken(ctx, store.AdminToken{ID: "adm_ops", Hash: "h-ops", Name: "ops", Role: "admin", CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	rs := &recordingStore{Store: st}
	return New(Options{Store: rs, Master: mk, Node: "test"}), rs
}

func testFlow(secret string, now time.Time) *oauthFlow {
	return &oauthFlow{secret: secret, adminID: "adm_ops", adminName: "ops", verifier: oauth2.GenerateVerifier(), expires: now.Add(FlowTTL),
		conf: oauth2.Config{ClientID: "client-id-canary", ClientSecret: "client_secret_canary_8Qz", RedirectURL: "https://k.example/cb",
			Scopes: []string{"a", "b"}, Endpoint: oauth2.Endpoint{AuthURL: "https://p.example/auth", TokenURL: "https://p.example/token", AuthStyle: oauth2.AuthStyleInParams}}}
}

// TestFlowSealedInTheStore: the store gets the state's hash and a sealed
// blob, never the state, the PKCE verifier or the client secret; the flow
// comes back whole, once; a sealed part moved onto another row does not
// open.
func TestFlowSealedInTheStore(t *testing.T) {
	a, rs := flowAPI(t)
	ctx := t.Context()
	now := time.Now()
	fl := testFlow("drive", now)
	state, err := a.addFlow(ctx, fl, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.rows) != 1 {
		t.Fatalf("%d flows stored, want 1", len(rs.rows))
	}
	row := rs.rows[0]
	if row.ID != stateKey(state) || row.Secret != "drive" || row.AdminTokenID != "adm_ops" || !row.ExpiresAt.Equal(fl.expires) {
		t.Errorf("stored row %+v", row)
	}
	for _, clear := range []string{state, fl.verifier, fl.conf.ClientSecret, fl.conf.ClientID, "p.example"} {
		if bytes.Contains(row.Sealed, []byte(clear)) {
			t.Errorf("the stored flow holds %q in clear", clear)
		}
	}
	got, err := a.takeFlow(ctx, state, now.Add(time.Minute))
	if err != nil || got == nil {
		t.Fatalf("takeFlow = %v, %v", got, err)
	}
	if got.verifier != fl.verifier || got.adminName != "ops" || got.secret != "drive" ||
		got.conf.ClientSecret != fl.conf.ClientSecret || got.conf.Endpoint != fl.conf.Endpoint || got.conf.RedirectURL != fl.conf.RedirectURL ||
		len(got.conf.Scopes) != 2 {
		t.Errorf("takeFlow returned %+v, want the flow stored", got)
	}
	if again, err := a.takeFlow(ctx, state, now.Add(time.Minute)); again != nil || err != nil {
		t.Errorf("a second takeFlow = %v, %v; want nil, nil (single use)", again, err)
	}
	if got, err := a.takeFlow(ctx, "forged", now); got != nil || err != nil {
		t.Errorf("takeFlow of a forged state = %v, %v", got, err)
	}

	// The sealed part of a flow for secret "drive", copied onto a row that
	// would store into secret "prod-key": it does not open.
	state2, _ := a.addFlow(ctx, testFlow("drive", now), now)
	sealed := rs.rows[1].Sealed
	if _, err := rs.Store.TakeFlow(ctx, stateKey(state2), now); err != nil {
		t.Fatal(err)
	}
	moved := store.OAuthFlow{ID: stateKey(state2), Secret: "prod-key", AdminTokenID: "adm_ops", Sealed: sealed, CreatedAt: now, ExpiresAt: now.Add(FlowTTL)}
	if err := rs.Store.PutFlow(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if got, err := a.takeFlow(ctx, state2, now); got != nil || err == nil {
		t.Errorf("a sealed part moved onto another secret's row opened: %v, %v", got, err)
	}
}

// TestFlowsFallBackToMemory: a store without store.OAuthFlows keeps flows
// in this API's memory, bounded.
func TestFlowsFallBackToMemory(t *testing.T) {
	a, rs := flowAPI(t)
	a.Store = struct{ store.Store }{rs.Store}
	if _, ok := a.flowStore().(*memFlows); !ok {
		t.Fatalf("flows kept in %T, want memory", a.flowStore())
	}
	now := time.Now()
	state, err := a.addFlow(t.Context(), testFlow("x", now), now)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.takeFlow(t.Context(), state, now); got == nil || err != nil {
		t.Fatalf("takeFlow from memory = %v, %v", got, err)
	}
	for range maxFlows {
		if _, err := a.addFlow(t.Context(), testFlow("x", now), now); err != nil {
			t.Fatal(err)
		}
	}
	_, err = a.addFlow(t.Context(), testFlow("x", now), now)
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != 429 {
		t.Errorf("flow %d in memory: %v, want 429 too_many_flows", maxFlows+1, err)
	}
	if len(rs.rows) != 0 {
		t.Errorf("%d flows reached the store", len(rs.rows))
	}
}
