package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/ca"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

func setup(t *testing.T) (*sqlite.Store, *vault.Keyring) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, keyring(t)
}

func keyring(t *testing.T) *vault.Keyring {
	t.Helper()
	mk, _, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	w, err := mk.NewDataKey(1)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := mk.OpenKeyring([]vault.WrappedKey{w}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestCreateLoadRotate(t *testing.T) {
	ctx := context.Background()
	st, kr := setup(t)
	if _, err := ca.Current(ctx, st); !errors.Is(err, ca.ErrNoCA) {
		t.Fatalf("Current on an empty store: %v; want ErrNoCA", err)
	}
	if _, err := ca.Load(ctx, st, kr, 0); !errors.Is(err, ca.ErrNoCA) {
		t.Fatalf("Load on an empty store: %v; want ErrNoCA", err)
	}
	now := time.Now()
	a1, err := ca.Create(ctx, st, kr, false, now)
	if err != nil {
		t.Fatal(err)
	}
	c := a1.Cert
	if c.PublicKeyAlgorithm != x509.ECDSA || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("CA key %v; want ECDSA P-256", c.PublicKeyAlgorithm)
	}
	if !c.IsCA || !c.MaxPathLenZero || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v, MaxPathLenZero %v, KeyUsage %v", c.IsCA, c.MaxPathLenZero, c.KeyUsage)
	}
	if life := c.NotAfter.Sub(now); life < 9*365*24*time.Hour || life > 11*365*24*time.Hour {
		t.Errorf("CA validity %v; want 10 years", life)
	}
	if _, err := ca.Create(ctx, st, kr, false, now); !errors.Is(err, ca.ErrExists) {
		t.Errorf("a second Create without rotate: %v; want ErrExists", err)
	}
	got, err := ca.Load(ctx, st, kr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Generation != 1 || !got.Cert.Equal(a1.Cert) || !got.Key.Equal(a1.Key) {
		t.Errorf("Load returned generation %d, another certificate or key", got.Generation)
	}
	if again, err := ca.Load(ctx, st, kr, 1); again != nil || err != nil {
		t.Errorf("Load from the current generation: %v, %v; want nil, nil (nothing newer)", again, err)
	}
	// The stored row holds no private key in the clear.
	raw, _ := st.GetMeta(ctx, "ca.1")
	if strings.Contains(raw, "PRIVATE KEY") {
		t.Error("the stored CA row holds a PEM private key")
	}

	a2, err := ca.Create(ctx, st, kr, true, now)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Generation != 2 || a2.Cert.Equal(a1.Cert) {
		t.Fatalf("rotation made generation %d", a2.Generation)
	}
	cur, err := ca.Current(ctx, st)
	if err != nil || cur.Generation != 2 || cur.Key != nil {
		t.Fatalf("Current after rotation: %+v, %v; want generation 2 without its key", cur, err)
	}
	newer, err := ca.Load(ctx, st, kr, 1)
	if err != nil || newer == nil || newer.Generation != 2 {
		t.Fatalf("Load from generation 1 after rotation: %+v, %v", newer, err)
	}
}

// A sealed key is bound to its generation and certificate: moved onto
// another row, or stored beside another certificate, it does not open.
func TestSealedKeyBinding(t *testing.T) {
	ctx := context.Background()
	st, kr := setup(t)
	if _, err := ca.Create(ctx, st, kr, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	raw1, _ := st.GetMeta(ctx, "ca.1")
	other, _ := setup(t)
	if _, err := ca.Create(ctx, other, kr, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	raw2, _ := other.GetMeta(ctx, "ca.1")
	var r1, r2 map[string]any
	json.Unmarshal([]byte(raw1), &r1)
	json.Unmarshal([]byte(raw2), &r2)
	// Row 2 of st: generation 1's row as is (wrong generation).
	st.SetMetaIfAbsent(ctx, "ca.2", raw1)
	if _, err := ca.Load(ctx, st, kr, 1); err == nil {
		t.Error("a key sealed for generation 1 opened as generation 2")
	}
	// Row 3: st's sealed key beside other's certificate.
	r1["cert"] = r2["cert"]
	forged, _ := json.Marshal(r1)
	st3, _ := setup(t)
	st3.SetMetaIfAbsent(ctx, "ca.1", string(forged))
	if _, err := ca.Load(ctx, st3, kr, 0); err == nil {
		t.Error("a sealed key opened beside another certificate")
	}
	// Another keyring (another master key) does not open it.
	if _, err := ca.Load(ctx, other, keyring(t), 0); err == nil {
		t.Error("the CA key opened with another vault")
	}
}

func TestConcurrentCreate(t *testing.T) {
	ctx := context.Background()
	st, kr := setup(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ca.Create(ctx, st, kr, false, time.Now())
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ca.ErrExists), errors.Is(err, store.ErrConflict):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent Creates succeeded; want exactly 1", ok)
	}
}

func TestMint(t *testing.T) {
	a, err := ca.New(1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Cert)
	now := time.Now()
	for _, host := range []string{"api.stripe.com", "localhost", "127.0.0.1", "::1"} {
		c, err := a.Mint(host, now)
		if err != nil {
			t.Fatal(err)
		}
		leaf := c.Leaf
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("%s: the leaf does not verify against the CA: %v", host, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: roots}); err == nil {
			t.Errorf("%s: the leaf verifies for another host", host)
		}
		if net.ParseIP(host) != nil && len(leaf.IPAddresses) != 1 {
			t.Errorf("%s: IP SANs %v", host, leaf.IPAddresses)
		}
		if leaf.IsCA || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
			t.Errorf("%s: leaf IsCA %v or not P-256", host, leaf.IsCA)
		}
		if life := leaf.NotAfter.Sub(now); life > ca.LeafValidity+time.Minute || life < ca.LeafValidity-time.Minute {
			t.Errorf("%s: leaf lifetime %v; want %v", host, life, ca.LeafValidity)
		}
		if len(c.Certificate) != 2 {
			t.Errorf("%s: the chain has %d certificates; want the leaf and the CA", host, len(c.Certificate))
		}
	}
	// A leaf never outlives its CA.
	c, err := a.Mint("late.example", a.Cert.NotAfter.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.NotAfter.After(a.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %v is after the CA's %v", c.Leaf.NotAfter, a.Cert.NotAfter)
	}
	// A CA read for export cannot mint.
	if _, err := (&ca.Authority{Cert: a.Cert}).Mint("x.example", now); err == nil {
		t.Error("a CA without its key minted a leaf")
	}
}

func TestLeavesCache(t *testing.T) {
	a1, _ := ca.New(1, time.Now())
	a2, _ := ca.New(2, time.Now())
	var l ca.Leaves
	now := time.Now()
	c1, _ := l.Get(a1, "api.example", now)
	c2, _ := l.Get(a1, "api.example", now.Add(time.Hour))
	if c1 != c2 {
		t.Error("a fresh leaf was minted again")
	}
	c3, _ := l.Get(a1, "api.example", now.Add(ca.LeafValidity*4/5))
	if c3 == c1 {
		t.Error("a leaf with less than a quarter of its life left was reused")
	}
	c4, _ := l.Get(a2, "api.example", now)
	if c4 == c1 || c4 == c3 {
		t.Error("a leaf of another CA generation was reused")
	}
	l.Max = 3
	for _, h := range []string{"a", "b", "c", "d", "e"} {
		l.Get(a1, h+".example", now)
	}
	if l.Len() > 3 {
		t.Errorf("the cache holds %d leaves; want at most Max (3)", l.Len())
	}
	l.Reset()
	if l.Len() != 0 {
		t.Errorf("Reset left %d leaves", l.Len())
	}
}
