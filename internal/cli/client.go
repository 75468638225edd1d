package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/keyhole-gw/keyhole/internal/version"
)

// DefaultAddr is the admin listener a CLI talks to when neither --addr nor
// KEYHOLE_ADDR says otherwise (SPEC §2: the admin listener's default).
const DefaultAddr = "http://127.0.0.1:8081"

// requestTimeout bounds every admin API call, so a node that accepts the
// connection and never answers cannot hang a script.
const requestTimeout = 30 * time.Second

// maxResponse bounds what the CLI reads of one answer (a logs page of 1,000
// records with headers is a few MiB at most).
const maxResponse = 64 << 20

// normalizeAddr turns KEYHOLE_ADDR (or --addr) into a base URL without a
// trailing slash: "127.0.0.1:8081" and "http://127.0.0.1:8081/" both become
// "http://127.0.0.1:8081", and so does ".../api/v1". A path prefix is kept (an admin API behind a
// reverse proxy at https://ops.example.com/keyhole). Credentials, queries
// and fragments are refused: the admin token travels only in
// KEYHOLE_ADMIN_TOKEN, never in a URL that ends up in shell history.
func normalizeAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultAddr, nil
	}
	raw := s
	if !strings.Contains(s, "://") {
		if strings.HasPrefix(s, ":") {
			s = "127.0.0.1" + s
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("KEYHOLE_ADDR %s is not a URL such as http://127.0.0.1:8081 or a host:port", clean(raw))
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return "", fmt.Errorf("KEYHOLE_ADDR %s: the scheme must be http or https", clean(raw))
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("KEYHOLE_ADDR %s has no host; want e.g. http://127.0.0.1:8081", clean(raw))
	}
	if u.User != nil {
		return "", errors.New("KEYHOLE_ADDR must not carry credentials; put the admin token in KEYHOLE_ADMIN_TOKEN")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("KEYHOLE_ADDR %s must not have a query or fragment", clean(raw))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	// The base is the listener, not the API: a KEYHOLE_ADDR copied from the
	// node's banner ("admin API: http://127.0.0.1:8081/api/v1") works too.
	u.Path = strings.TrimRight(strings.TrimSuffix(u.Path, "/api/v1"), "/")
	u.RawPath = ""
	return u.String(), nil
}

// adminToken finds the admin token: KEYHOLE_ADMIN_TOKEN, else the admin-token
// file a node writes into its data folder on first start (SPEC §2), looked
// for in $KEYHOLE_DATA_DIR and then ./keyhole-data. It returns the token and
// where it came from (for error messages; never the token itself).
func adminToken(getenv func(string) string) (tok, source string, err error) {
	if v := strings.TrimSpace(getenv("KEYHOLE_ADMIN_TOKEN")); v != "" {
		return v, "KEYHOLE_ADMIN_TOKEN", nil
	}
	var tried []string
	if d := getenv("KEYHOLE_DATA_DIR"); d != "" {
		tried = append(tried, filepath.Join(d, "admin-token"))
	}
	tried = append(tried, "./keyhole-data/admin-token")
	for _, p := range tried {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("cannot read the admin token file %s: %v", p, pathErr(err))
		}
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, p, nil
		}
		return "", "", fmt.Errorf("the admin token file %s is empty; set KEYHOLE_ADMIN_TOKEN instead", p)
	}
	return "", "", fmt.Errorf("no admin token: set KEYHOLE_ADMIN_TOKEN to an admin token (kha_…, or the node's bootstrap token), "+
		"or run keyhole where the node's data folder is (it looked for %s; set KEYHOLE_DATA_DIR to point at another folder)",
		strings.Join(tried, " and "))
}

// pathErr drops the path an *os.PathError repeats.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// client is a connection to one node's admin API.
type client struct {
	base      string // normalized, no trailing slash
	token     string
	source    string // where the token came from, for messages
	addrFrom  string // "--addr", "KEYHOLE_ADDR" or "the default"
	hc        *http.Client
	userAgent string
}

func newClient(base, token, source, addrFrom string) *client {
	return &client{base: base, token: token, source: source, addrFrom: addrFrom,
		userAgent: "keyhole-cli/" + version.String(),
		hc: &http.Client{
			Timeout: requestTimeout,
			// Never follow a redirect: an answer that is not the admin API's
			// is an error to show, and the admin token goes nowhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
}

// apiError is the admin API's error envelope (SPEC §3.3), plus a hint from
// the CLI about what to do next.
type apiError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
	Hint      string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s (%s, HTTP %d)", clean(e.Message), clean(e.Code), e.Status)
	if e.Hint != "" {
		s += "\n" + e.Hint
	}
	return s
}

// gatewayCodes are error codes only the gateway listener answers with: an
// admin call that gets one was sent to the wrong listener.
var gatewayCodes = map[string]bool{"no_token": true, "bad_token": true, "token_expired": true,
	"token_revoked": true, "not_in_scope": true, "bad_path": true, "no_rule_allows": true, "denied_by_rule": true}

// seg escapes one user-supplied path segment. Dot segments are escaped too,
// so `keyhole secret show ..` asks for a secret named ".." instead of
// walking up the API's paths.
func seg(s string) string {
	e := url.PathEscape(s)
	if e == "." || e == ".." {
		e = strings.ReplaceAll(e, ".", "%2E")
	}
	return e
}

// do calls the API and returns the body of a 2xx answer; any other answer
// is an *apiError. in, when not nil, is sent as JSON.
func (c *client) do(ctx context.Context, method, path string, q url.Values, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.netErr(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, c.netErr(ctx, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, c.httpErr(resp, b)
	}
	return b, nil
}

// getJSON calls the API and decodes its answer into out.
func (c *client) getJSON(ctx context.Context, method, path string, q url.Values, in, out any) ([]byte, error) {
	b, err := c.do(ctx, method, path, q, in)
	if err != nil {
		return nil, err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("the answer from %s is not the JSON keyhole's admin API sends (is %s a keyhole admin listener?)", c.base, c.addrFrom)
		}
	}
	return b, nil
}

func (c *client) netErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no keyhole node answers at %s; start one with `keyhole serve` or set KEYHOLE_ADDR", c.base)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("the keyhole node at %s did not answer within %s", c.base, requestTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach keyhole at %s: %v", c.base, err)
}

func (c *client) httpErr(resp *http.Response, b []byte) error {
	var env struct {
		Error *struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Code == "" {
		msg := fmt.Sprintf("%s answered HTTP %d, not with keyhole's error format; is %s (%s) a keyhole admin listener?",
			c.base, resp.StatusCode, c.addrFrom, c.base)
		if resp.StatusCode/100 == 3 {
			msg += " (it redirects to " + clean(clip(resp.Header.Get("Location"), 200)) + ")"
		}
		return errors.New(msg)
	}
	e := &apiError{Status: resp.StatusCode, Code: env.Error.Code, Message: env.Error.Message, RequestID: env.Error.RequestID}
	switch {
	case gatewayCodes[e.Code]:
		e.Hint = fmt.Sprintf("%s (%s) looks like a keyhole gateway listener; the admin API is on the admin listener (default 127.0.0.1:8081)", c.base, c.addrFrom)
	case e.Code == "unauthenticated":
		e.Hint = "the admin token was read from " + c.source
	}
	return e
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
