// Command upstream is the HTTPS_PROXY example's stand-in for a third-party
// API ("weather"): an HTTPS server on 127.0.0.1 whose certificate is for
// localhost, signed by a throwaway CA it writes to -ca (keyhole is told to
// trust that CA as it trusts public ones for real APIs). It answers only
// requests that carry the real API key (-key, or $WEATHER_API_KEY), which
// the agent never has: keyhole injects it.
//
//	GET /v1/weather?city=…  a forecast
//	GET /v1/debug           echoes the Authorization it received (keyhole scrubs it)
//	GET /v1/admin/…         an endpoint keyhole's rules keep agents away from
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	caFile := flag.String("ca", "upstream-ca.pem", "where to write the CA certificate of this server")
	portFile := flag.String("port-file", "upstream.port", "where to write the port it listens on")
	key := flag.String("key", os.Getenv("WEATHER_API_KEY"), "the API key requests must carry")
	flag.Parse()
	if *key == "" {
		log.Fatal("no API key: set -key or WEATHER_API_KEY")
	}
	cert, caPEM, err := pki()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*caFile, caPEM, 0o644); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/weather", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"city": r.URL.Query().Get("city"), "forecast": "sunny", "celsius": 21})
	})
	mux.HandleFunc("GET /v1/debug", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"you_sent": r.Header.Get("Authorization")})
	})
	mux.HandleFunc("/v1/admin/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"deleted": "everything"})
	})
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+*key {
				w.WriteHeader(http.StatusUnauthorized)
				reply(w, map[string]any{"error": "invalid API key"})
				return
			}
			mux.ServeHTTP(w, r)
		})}
	if err := os.WriteFile(*portFile, []byte(port+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("weather API on https://localhost:%s", port)
	log.Fatal(srv.ServeTLS(ln, "", ""))
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// pki makes a CA and a certificate for localhost and 127.0.0.1.
func pki() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weather example CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
