// Package ca is keyhole's certificate authority for forward-proxy mode
// (SPEC §3.7): an ECDSA P-256 key and a self-signed CA certificate (10
// years) that agents trust, and the short-lived leaf certificates minted
// from it, one per upstream host, with which keyhole terminates the TLS of
// a CONNECT tunnel.
//
// Storage: each generation of the CA is one row of the store's meta table,
// key "ca.<generation>" (ca.1, then ca.2 after a rotation…), holding the
// certificate and the private key sealed by the vault's keyring like a
// secret, under an AAD that binds the ciphertext to its generation and to
// the certificate's SHA-256. Rows are only ever added (SetMetaIfAbsent), so
// two nodes that create the same generation at once cannot both win, and
// no store method beyond the meta table's is needed. The current CA is the
// highest generation; older rows stay (an audit trail of what agents were
// told to trust), never used again.
package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// Lifetimes.
const (
	// Validity of a CA certificate.
	Validity = 10 * 365 * 24 * time.Hour
	// LeafValidity of a leaf certificate; leaves are re-minted well
	// before they expire (Leaves).
	LeafValidity = 24 * time.Hour
	// skew backdates NotBefore, for agents whose clock is a little behind.
	skew = time.Hour
)

// MetaPrefix prefixes the meta keys of the CA's generations.
const MetaPrefix = "ca."

var (
	// ErrNoCA: no CA has been created yet (keyhole ca init).
	ErrNoCA = errors.New("keyhole has no CA yet; create one with `keyhole ca init`")
	// ErrExists: Create without rotate while a CA exists.
	ErrExists = errors.New("keyhole already has a CA")
)

// Meta is the part of the store the CA lives in.
type Meta interface {
	GetMeta(ctx context.Context, key string) (string, error)
	SetMetaIfAbsent(ctx context.Context, key, value string) (string, error)
}

// Authority is one generation of the CA.
type Authority struct {
	Generation int
	Cert       *x509.Certificate
	CertPEM    []byte
	CreatedAt  time.Time
	// Key is nil when the authority was read without the keyring
	// (Current: for export).
	Key *ecdsa.PrivateKey
}

// row is a generation as stored (JSON in the meta table).
type row struct {
	Cert      string    `json:"cert"`       // PEM
	KeySealed []byte    `json:"key_sealed"` // vault-sealed PKCS #8 DER
	CreatedAt time.Time `json:"created_at"`
}

func metaKey(gen int) string { return MetaPrefix + strconv.Itoa(gen) }

// AAD binds a sealed CA key to its generation and certificate.
func AAD(gen int, certDER []byte) []byte {
	sum := sha256.Sum256(certDER)
	return []byte("keyhole/ca/v1/" + strconv.Itoa(gen) + "/" + hex.EncodeToString(sum[:]))
}

// Latest returns the highest generation after from (0: none) and its raw
// row; gen == from when there is none newer.
func Latest(ctx context.Context, st Meta, from int) (gen int, raw string, err error) {
	gen = from
	for {
		v, err := st.GetMeta(ctx, metaKey(gen+1))
		if errors.Is(err, store.ErrNotFound) {
			return gen, raw, nil
		}
		if err != nil {
			return 0, "", err
		}
		gen, raw = gen+1, v
	}
}

// Current reads the current CA's certificate (not its key).
func Current(ctx context.Context, st Meta) (*Authority, error) {
	gen, raw, err := Latest(ctx, st, 0)
	if err != nil {
		return nil, err
	}
	if gen == 0 {
		return nil, ErrNoCA
	}
	a, _, err := decode(gen, raw)
	return a, err
}

// Load reads the current CA with its key, opened by kr. from is the
// generation the caller already has (0: none): when nothing is newer,
// Load returns (nil, nil).
func Load(ctx context.Context, st Meta, kr *vault.Keyring, from int) (*Authority, error) {
	gen, raw, err := Latest(ctx, st, from)
	if err != nil {
		return nil, err
	}
	if gen == from {
		if from == 0 {
			return nil, ErrNoCA
		}
		return nil, nil
	}
	a, r, err := decode(gen, raw)
	if err != nil {
		return nil, err
	}
	der, err := kr.Open(AAD(gen, a.Cert.Raw), r.KeySealed)
	if err != nil {
		return nil, fmt.Errorf("the CA key of generation %d does not open with the vault keys: %w", gen, err)
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("the CA key of generation %d does not parse: %w", gen, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || !ek.PublicKey.Equal(a.Cert.PublicKey) {
		return nil, fmt.Errorf("the CA key of generation %d does not match its certificate", gen)
	}
	a.Key = ek
	return a, nil
}

func decode(gen int, raw string) (*Authority, *row, error) {
	var r row
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, nil, fmt.Errorf("the CA of generation %d is not stored in a known format", gen)
	}
	b, _ := pem.Decode([]byte(r.Cert))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("the CA certificate of generation %d is not PEM", gen)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA certificate of generation %d does not parse: %w", gen, err)
	}
	return &Authority{Generation: gen, Cert: c, CertPEM: []byte(r.Cert), CreatedAt: r.CreatedAt}, &r, nil
}

// Create makes a new CA: the first one, or with rotate the next
// generation, which takes over from the current one. It fails with
// ErrExists when a CA exists and rotate is false, and with an error
// wrapping store.ErrConflict when another node created the same
// generation at the same moment.
func Create(ctx context.Context, st Meta, kr *vault.Keyring, rotate bool, now time.Time) (*Authority, error) {
	gen, _, err := Latest(ctx, st, 0)
	if err != nil {
		return nil, err
	}
	if gen > 0 && !rotate {
		return nil, ErrExists
	}
	gen++
	a, err := New(gen, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		return nil, err
	}
	sealed, err := kr.Seal(AAD(gen, a.Cert.Raw), der)
	clear(der)
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(row{Cert: string(a.CertPEM), KeySealed: sealed, CreatedAt: a.CreatedAt})
	if err != nil {
		return nil, err
	}
	got, err := st.SetMetaIfAbsent(ctx, metaKey(gen), string(js))
	if err != nil {
		return nil, err
	}
	if got != string(js) {
		return nil, fmt.Errorf("%w: another node created CA generation %d at the same moment", store.ErrConflict, gen)
	}
	return a, nil
}

// New generates a CA of generation gen in memory.
func New(gen int, now time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now = now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject: pkix.Name{
			Organization: []string{"keyhole"},
			CommonName:   fmt.Sprintf("keyhole forward-proxy CA %d (%s)", gen, now.Format("2006-01-02")),
		},
		NotBefore:             now.Add(-skew),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Leaves only: this CA never signs another CA.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Generation: gen, Cert: c, Key: key, CreatedAt: now,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Fingerprint is the SHA-256 of the certificate, hex with colons (as
// `openssl x509 -fingerprint -sha256` prints it).
func (a *Authority) Fingerprint() string {
	sum := sha256.Sum256(a.Cert.Raw)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// Mint makes a leaf certificate for host (a DNS name or an IP address),
// valid from now-skew for LeafValidity (never past the CA's own expiry),
// with a fresh ECDSA P-256 key.
func (a *Authority) Mint(host string, now time.Time) (*tls.Certificate, error) {
	if a.Key == nil {
		return nil, errors.New("the CA was loaded without its key")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(LeafValidity)
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"keyhole"}, CommonName: clipCN(host)},
		NotBefore:    now.Add(-skew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, a.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// clipCN keeps a common name within X.520's 64 characters (the SAN is
// what clients check).
func clipCN(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}
