package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// secret connect: the OAuth 2.0 authorization-code flow (admin API
// POST /secrets/{name}/oauth/start, then the provider's callback on the
// admin listener), which stores {client_id, client_secret, refresh_token}
// as the secret.

type connectFlags struct {
	template, authorizeURL, tokenURL, clientID, redirectURI, authStyle string
	secretEnv, secretFile                                              string
	scopes, params                                                     []string
	noWait                                                             bool
	timeout, poll                                                      time.Duration
}

func (a *app) secretConnectCmd() *cobra.Command {
	var f connectFlags
	c := &cobra.Command{
		Use:   "connect NAME",
		Short: "Connect an OAuth 2.0 account: print the consent URL, wait, store the refresh token",
		Long: `Run an OAuth 2.0 authorization-code flow (with PKCE) and store what it yields
as the secret NAME: {client_id, client_secret, refresh_token} — a new secret,
or the next version of an existing one. A proxy of auth type
oauth2_refresh_token then uses it.

keyhole prints the provider's consent URL. Open it in a browser, sign in and
consent; the provider sends the browser back to keyhole's admin listener
(` + "/api/v1/oauth/callback" + `), which exchanges the code and stores the secret.
This command waits until the secret has its new version (or the link
expires after 10 minutes). The redirect URI keyhole gives the provider is
the admin listener's callback as this CLI reaches it; register that URI with
the provider's app, or give --redirect-uri when the browser reaches keyhole
another way.

The OAuth client: --client-id with the client secret from --client-secret-
from-env or --client-secret-from-file (never a flag value), or neither to
use the client_id and client_secret fields the secret already holds.

--template fills the authorize URL, token URL, default scopes and extra
parameters of a provider (google, salesforce, hubspot-oauth).`,
		Example: `  keyhole secret connect google-drive --template google \
          --scope https://www.googleapis.com/auth/drive.readonly \
          --client-id 1234.apps.googleusercontent.com --client-secret-from-env GOOGLE_CLIENT_SECRET
  keyhole secret connect my-app --authorize-url https://auth.example.com/authorize \
          --token-url https://auth.example.com/token --scope offline_access --scope read`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error { return a.connect(c, args[0], &f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.template, "template", "", "fill the provider's endpoints and parameters from a template (google, salesforce, hubspot-oauth)")
	fl.StringVar(&f.authorizeURL, "authorize-url", "", "the provider's authorization endpoint")
	fl.StringVar(&f.tokenURL, "token-url", "", "the provider's token endpoint")
	fl.StringArrayVar(&f.scopes, "scope", nil, "a scope to ask for (repeatable)")
	fl.StringArrayVar(&f.params, "param", nil, "an extra authorization parameter 'name=value', e.g. 'prompt=consent' (repeatable)")
	fl.StringVar(&f.clientID, "client-id", "", "the OAuth client id (default: the secret's client_id)")
	fl.StringVar(&f.secretEnv, "client-secret-from-env", "", "read the client secret from this environment variable")
	fl.StringVar(&f.secretFile, "client-secret-from-file", "", "read the client secret from this file")
	fl.StringVar(&f.redirectURI, "redirect-uri", "", "the redirect URI to give the provider (default: this admin listener's callback)")
	fl.StringVar(&f.authStyle, "auth-style", "", "how the token endpoint wants the client: header (HTTP Basic) or body (default: try both)")
	fl.BoolVar(&f.noWait, "no-wait", false, "print the consent URL and return without waiting")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "how long to wait for the consent")
	fl.DurationVar(&f.poll, "poll-interval", time.Second, "how often to look for the new version")
	fl.MarkHidden("poll-interval")
	c.MarkFlagsMutuallyExclusive("client-secret-from-env", "client-secret-from-file")
	fl.SortFlags = false
	return c
}

func (a *app) connect(c *cobra.Command, name string, f *connectFlags) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	body := map[string]any{}
	params := map[string]string{}
	if f.template != "" {
		t, err := fetchTemplate(c, cl, f.template)
		if err != nil {
			return err
		}
		if t.Connect == nil {
			return usagef(c, "template %s has no OAuth connect flow (its auth is %s)", clean(t.Name), clean(t.Auth.Type))
		}
		f.fill("authorize-url", &f.authorizeURL, t.Connect.AuthorizeURL, c)
		f.fill("token-url", &f.tokenURL, t.Auth.TokenURL, c)
		f.fill("auth-style", &f.authStyle, t.Auth.AuthStyle, c)
		if !c.Flags().Changed("scope") {
			f.scopes = t.Auth.Scopes
		}
		for k, v := range t.Connect.Params {
			params[k] = v
		}
	}
	if f.authorizeURL == "" || f.tokenURL == "" {
		return usagef(c, "--authorize-url and --token-url are required (or --template for a known provider)")
	}
	m, err := pairs(f.params, "=", "--param", "'prompt=consent'")
	if err != nil {
		return usageErr(c, err)
	}
	for k, v := range m {
		params[k] = v
	}
	body["authorize_url"], body["token_url"] = f.authorizeURL, f.tokenURL
	if len(f.scopes) > 0 {
		body["scopes"] = f.scopes
	}
	if len(params) > 0 {
		body["params"] = params
	}
	for k, v := range map[string]string{"redirect_uri": f.redirectURI, "auth_style": f.authStyle} {
		if v != "" {
			body[k] = v
		}
	}
	switch {
	case f.clientID != "":
		sec, err := f.clientSecret(a)
		if err != nil {
			return err
		}
		if sec == "" {
			return usagef(c, "--client-id needs the client secret: --client-secret-from-env VAR or --client-secret-from-file PATH")
		}
		body["client_id"], body["client_secret"] = f.clientID, sec
	case f.secretEnv != "" || f.secretFile != "":
		return usagef(c, "the client secret needs --client-id")
	}

	before := 0
	var m0 secretMeta
	if _, err := cl.getJSON(c.Context(), "GET", "/api/v1/secrets/"+seg(name), nil, nil, &m0); err == nil {
		before = m0.Version
	} else if ae := (*apiError)(nil); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		return err
	}
	var start struct {
		URL         string `json:"url"`
		ExpiresAt   string `json:"expires_at"`
		RedirectURI string `json:"redirect_uri"`
	}
	raw, err := cl.getJSON(c.Context(), "POST", "/api/v1/secrets/"+seg(name)+"/oauth/start", nil, body, &start)
	if err != nil {
		return err
	}
	w := c.OutOrStdout()
	if a.json {
		fmt.Fprintf(w, "%s\n", strings.TrimSpace(string(raw)))
	} else {
		fmt.Fprintf(c.ErrOrStderr(), "Open this URL in a browser, sign in and consent (it works once, until %s):\n", clean(start.ExpiresAt))
		fmt.Fprintln(w, start.URL)
		fmt.Fprintf(c.ErrOrStderr(), "The provider then sends the browser to %s (register it with the OAuth app).\n", clean(start.RedirectURI))
	}
	if f.noWait {
		return nil
	}
	if !a.json {
		fmt.Fprintln(c.ErrOrStderr(), "Waiting for the consent…")
	}
	deadline := time.Now().Add(f.timeout)
	if t, err := time.Parse(time.RFC3339Nano, start.ExpiresAt); err == nil && t.Before(deadline) {
		deadline = t.Add(5 * time.Second)
	}
	ctx, cancel := context.WithDeadline(c.Context(), deadline)
	defer cancel()
	tick := time.NewTicker(max(f.poll, 10*time.Millisecond))
	defer tick.Stop()
	for {
		var meta secretMeta
		raw, err := cl.getJSON(ctx, "GET", "/api/v1/secrets/"+seg(name), nil, nil, &meta)
		if err == nil && meta.Version > before {
			return a.out(w, raw, func() error {
				_, err := fmt.Fprintf(w, "secret %s connected: version %d holds client_id, client_secret and the refresh token\n", clean(meta.Name), meta.Version)
				return err
			})
		}
		select {
		case <-ctx.Done():
			if c.Context().Err() != nil {
				return c.Context().Err()
			}
			return fmt.Errorf("the consent was not completed in time; nothing was stored (run keyhole secret connect %s again)", clean(name))
		case <-tick.C:
		}
	}
}

func (f *connectFlags) fill(flag string, dst *string, val string, c *cobra.Command) {
	if !c.Flags().Changed(flag) {
		*dst = val
	}
}

// clientSecret reads the client secret (never from a flag value).
func (f *connectFlags) clientSecret(a *app) (string, error) {
	switch {
	case f.secretEnv != "":
		v := a.getenv(f.secretEnv)
		if v == "" {
			return "", errors.New("the environment variable named by --client-secret-from-env is empty or not set")
		}
		return v, nil
	case f.secretFile != "":
		fh, err := os.Open(f.secretFile)
		if err != nil {
			return "", fmt.Errorf("cannot read the file named by --client-secret-from-file: %v", pathErr(err))
		}
		defer fh.Close()
		return readValue(fh, "the --client-secret-from-file file")
	}
	return "", nil
}
