package cli

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// caView is GET /api/v1/ca: the forward proxy's CA certificate (never its key).
type caView struct {
	Generation  int    `json:"generation"`
	Certificate string `json:"certificate"`
	Fingerprint string `json:"fingerprint_sha256"`
	Subject     string `json:"subject"`
	NotBefore   string `json:"not_before"`
	NotAfter    string `json:"not_after"`
	CreatedAt   string `json:"created_at"`
}

func (a *app) caCmd() *cobra.Command {
	return group("ca", "Create, rotate and export the CA of forward-proxy mode (HTTPS_PROXY)",
		`In forward-proxy mode (keyhole serve --forward-listen), agents set
HTTPS_PROXY=http://kh:TOKEN@HOST:PORT and keep calling https://api.example.com
as before. keyhole terminates their TLS with certificates minted from its own
CA, so agents must trust that CA: `+"`keyhole ca export`"+` prints it.

The CA's private key is sealed in keyhole's vault and never leaves it. A node
started with --forward-listen creates the CA if there is none yet.`,
		`  keyhole ca init
  keyhole ca export > keyhole-ca.pem
  keyhole ca init --rotate`,
		a.caInitCmd(), a.caExportCmd())
}

func (a *app) caInitCmd() *cobra.Command {
	var rotate bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Create keyhole's CA (ECDSA P-256, 10 years), or with --rotate a new one",
		Long: `Create the CA that forward-proxy mode mints its TLS certificates from: an
ECDSA P-256 key, sealed in the vault, and a self-signed certificate valid for
10 years. Without --rotate it fails when a CA exists.

--rotate replaces the CA at once, on every node within a second: tunnels
opened from then on get certificates from the new CA, so agents must trust it
(` + "`keyhole ca export`" + ` again) before, or right after, the rotation.`,
		Example: "  keyhole ca init\n  keyhole ca init --rotate --json",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var v caView
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/ca", nil, map[string]any{"rotate": rotate}, &v)
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Code == "conflict" && !rotate {
					ae.Hint = "keyhole ca export prints the current CA; keyhole ca init --rotate makes a new one"
				}
				return err
			}
			w := c.OutOrStdout()
			return a.out(w, raw, func() error {
				verb := "created"
				if rotate {
					verb = "rotated: new"
				}
				_, err := fmt.Fprintf(w, "CA %s (generation %d)\n  subject:     %s\n  sha-256:     %s\n  valid until: %s\nagents trust it from: keyhole ca export > keyhole-ca.pem\n",
					verb, v.Generation, clean(v.Subject), clean(v.Fingerprint), clean(v.NotAfter))
				return err
			})
		},
	}
	c.Flags().BoolVar(&rotate, "rotate", false, "replace the existing CA with a new one (agents must trust the new one)")
	return c
}

func (a *app) caExportCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "export",
		Short: "Print the CA certificate (PEM) that agents must trust",
		Long: `Print keyhole's CA certificate, PEM-encoded, for agents in forward-proxy
mode to trust (curl --cacert, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS,
REQUESTS_CA_BUNDLE…). It is public: any admin role may export it. With --json
the certificate comes with its fingerprint and validity.`,
		Example: `  keyhole ca export > keyhole-ca.pem
  keyhole ca export --out /etc/ssl/keyhole-ca.pem
  keyhole ca export --json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var v caView
			raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/ca", nil, nil, &v)
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Code == "not_found" {
					ae.Hint = "create it with: keyhole ca init (or start a node with --forward-listen)"
				}
				return err
			}
			if b, _ := pem.Decode([]byte(v.Certificate)); b == nil || b.Type != "CERTIFICATE" {
				return errors.New("the node's answer holds no PEM certificate")
			}
			if out != "" {
				if err := os.WriteFile(out, []byte(v.Certificate), 0o644); err != nil {
					return err
				}
				if a.json {
					return printJSON(c.OutOrStdout(), raw)
				}
				_, err := fmt.Fprintf(c.ErrOrStderr(), "CA certificate (generation %d, SHA-256 %s) written to %s\n", v.Generation, clean(v.Fingerprint), clean(out))
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprint(c.OutOrStdout(), strings.TrimRight(v.Certificate, "\n")+"\n")
				return err
			})
		},
	}
	c.Flags().StringVarP(&out, "out", "o", "", "write the PEM to this file instead of stdout")
	return c
}
