package audit_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/scrub"
	"github.com/keyhole-gw/keyhole/internal/token"
)

// The upstream secret of the test proxy: 40 characters.
const upstreamSecret = "sk_live_4eC39HqLyjWDarjtT1zdp7dcABCDEFGH"

const R = audit.Redacted

func newToken(t *testing.T, k token.Kind) string {
	t.Helper()
	s, err := token.Generate(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testRedactor is a proxy's redactor as the catalog builds it: its
// secret, a redact_headers entry, two redact_json paths and an injected
// query parameter.
func testRedactor(secrets ...string) *audit.Redactor {
	if secrets == nil {
		secrets = []string{upstreamSecret}
	}
	var bs [][]byte
	for _, s := range secrets {
		bs = append(bs, []byte(s))
	}
	return audit.NewRedactor(scrub.New(bs, []byte(R)), secrets, []string{"x-api-key"},
		[]string{"card.number", "**.password"}, []string{"api_key"})
}

func TestRedactHeaders(t *testing.T) {
	kh := newToken(t, token.Agent)
	kha := newToken(t, token.Admin)
	tests := []struct {
		name string
		r    *audit.Redactor
		in   http.Header
		want map[string][]string
	}{
		{"bearer keeps its scheme", testRedactor(), http.Header{"Authorization": {"Bearer " + kh}}, map[string][]string{"Authorization": {"Bearer " + R}}},
		{"basic keeps its scheme", testRedactor(), http.Header{"Authorization": {"Basic dXNlcjpwYXNzd29yZA=="}}, map[string][]string{"Authorization": {"Basic " + R}}},
		{"a bare credential", testRedactor(), http.Header{"Authorization": {"dXNlcjpwYXNzd29yZA"}}, map[string][]string{"Authorization": {R}}},
		{"an unknown scheme word is not kept", testRedactor(), http.Header{"Authorization": {"hunter2 hunter3"}}, map[string][]string{"Authorization": {R}}},
		{"proxy-authorization", testRedactor(), http.Header{"Proxy-Authorization": {"Basic Zm9vOmJhcg=="}}, map[string][]string{"Proxy-Authorization": {"Basic " + R}}},
		{"cookie", testRedactor(), http.Header{"Cookie": {"session=abc; csrf=def"}}, map[string][]string{"Cookie": {R}}},
		{"set-cookie, every value", testRedactor(), http.Header{"Set-Cookie": {"a=1; HttpOnly", "b=2"}}, map[string][]string{"Set-Cookie": {R, R}}},
		{"x-keyhole-token", testRedactor(), http.Header{"X-Keyhole-Token": {kh}}, map[string][]string{"X-Keyhole-Token": {R}}},
		{"a non-canonical name is still a credential", testRedactor(), http.Header{"authorization": {"Bearer x"}}, map[string][]string{"Authorization": {"Bearer " + R}}},
		{"redact_headers", testRedactor(), http.Header{"X-Api-Key": {"k-123"}}, map[string][]string{"X-Api-Key": {R}}},
		{"the secret inside another header", testRedactor(), http.Header{"X-Note": {"key=" + upstreamSecret + ";v=1"}}, map[string][]string{"X-Note": {"key=" + R + ";v=1"}}},
		{"an agent token inside another header", testRedactor(), http.Header{"X-Trace": {"from " + kh + " ok"}}, map[string][]string{"X-Trace": {"from " + R + " ok"}}},
		{"an admin token inside another header", testRedactor(), http.Header{"X-Debug": {kha}}, map[string][]string{"X-Debug": {R}}},
		{"a harmless header is kept", testRedactor(), http.Header{"Accept": {"application/json"}}, map[string][]string{"Accept": {"application/json"}}},
		{"a nil redactor still redacts credentials", nil, http.Header{"Authorization": {"Bearer " + kh}, "Cookie": {"a=b"}}, map[string][]string{"Authorization": {"Bearer " + R}, "Cookie": {R}}},
		{"a nil redactor still redacts tokens", nil, http.Header{"X-Trace": {kha}}, map[string][]string{"X-Trace": {R}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.r.Headers(tc.in)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Headers (-want +got):\n%s", d)
			}
		})
	}
}

func TestRedactQuery(t *testing.T) {
	kh := newToken(t, token.Agent)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"nothing to redact", "page=2&per_page=50", "page=2&per_page=50"},
		{"the secret in a value", "q=" + upstreamSecret + "&page=2", "q=" + R + "&page=2"},
		{"an injected parameter by name", "api_key=abc&page=2", "api_key=" + R + "&page=2"},
		{"an injected parameter, URL-encoded name", "api%5Fkey=abc&page=2", "api%5Fkey=" + R + "&page=2"},
		{"an injected parameter, every occurrence", "api_key=a&x=1&api_key=b", "api_key=" + R + "&x=1&api_key=" + R},
		{"an injected parameter without a value", "api_key&x=1", "api_key=" + R + "&x=1"},
		{"a longer name is another parameter", "api_key2=abc", "api_key2=abc"},
		{"an agent token", "token=" + kh, "token=" + R},
		{"an agent token glued to text", "t=x" + kh, "t=x" + R},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := testRedactor().Query(tc.in); got != tc.want {
				t.Errorf("Query(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRedactCaptureJSON(t *testing.T) {
	kh, kha := newToken(t, token.Agent), newToken(t, token.Admin)
	tests := []struct {
		name string
		in   string
		want string // as JSON, compared decoded
	}{
		{"nested path and ** at any depth",
			`{"card":{"number":"4111111111111111","exp":"12/30"},"user":{"password":"hunter2","name":"ann"},"password":"top"}`,
			`{"card":{"number":"[REDACTED]","exp":"12/30"},"user":{"password":"[REDACTED]","name":"ann"},"password":"[REDACTED]"}`},
		{"inside arrays",
			`{"users":[{"password":"a"},{"password":"b","id":1}]}`,
			`{"users":[{"password":"[REDACTED]"},{"password":"[REDACTED]","id":1}]}`},
		{"a non-string value",
			`{"card":{"number":4111111111111111}}`,
			`{"card":{"number":"[REDACTED]"}}`},
		{"card.number is not **.number",
			`{"order":{"number":42}}`,
			`{"order":{"number":42}}`},
		{"tokens anywhere, even glued to text or escaped",
			`{"note":"use ` + kh + ` now","admin":"x` + kha + `","esc":"\n` + kh + `"}`,
			`{"note":"use [REDACTED] now","admin":"x[REDACTED]","esc":"\n[REDACTED]"}`},
		{"the secret and a JSON path together",
			`{"auth":"` + upstreamSecret + `","password":"p"}`,
			`{"auth":"[REDACTED]","password":"[REDACTED]"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := testRedactor().Capture([]byte(tc.in), 64<<10, false, "application/json")
			if b.Truncated {
				t.Error("Truncated = true")
			}
			var got, want any
			if err := json.Unmarshal(b.Data, &got); err != nil {
				t.Fatalf("captured body %s: %v", b.Data, err)
			}
			json.Unmarshal([]byte(tc.want), &want)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("Capture (-want +got):\n%s", d)
			}
		})
	}
}

// TestRedactCaptureTruncatedJSON: a JSON body longer than the capture limit
// does not parse as a whole, yet its redact_json fields are masked (the
// capture is masked as a prefix), also a field cut by the end of the data.
func TestRedactCaptureTruncatedJSON(t *testing.T) {
	body := `{"user":{"password":"hunter2-very-secret"},"items":"` + strings.Repeat("x", 200) + `"}`
	b := testRedactor().Capture([]byte(body[:150]), 100, true, "application/json")
	if len(b.Data) > 100 {
		t.Errorf("stored %d bytes, max 100", len(b.Data))
	}
	if bytes.Contains(b.Data, []byte("hunter2")) {
		t.Errorf("a redact_json field of a JSON body longer than capture.max_bytes is stored in clear: %q", b.Data)
	}
	cut := testRedactor().Capture([]byte(`{"user":{"password":"hunter2-ve`), 100, true, "application/json")
	if bytes.Contains(cut.Data, []byte("hunter")) {
		t.Errorf("a redact_json value cut by the end of the capture must be masked whole: %q", cut.Data)
	}
	form := testRedactor().Capture([]byte(`user=ann&password=hunter2-very-secret`), 100, false, "application/x-www-form-urlencoded")
	if bytes.Contains(form.Data, []byte("hunter2")) {
		t.Errorf("a redact_json name masks the form field too: %q", form.Data)
	}
}

// TestRedactCaptureCut pins that a body cut at capture.max_bytes never
// keeps a recognisable piece of a secret or a token: a partial secret or
// token at the cut is a credential the audit log would leak to whoever
// reads bodies.
func TestRedactCaptureCut(t *testing.T) {
	kh := newToken(t, token.Agent) // "kh_" and 40 characters
	const max = 100
	filler := func(n int) string { return strings.Repeat(".", n) }
	tests := []struct {
		name      string
		r         *audit.Redactor
		data      string // what the gateway captured: max plus the longest secret at most
		truncated bool   // the body went on after data
		leak      string // must not be in the stored body
	}{
		{
			// The gateway captures max + the longest secret so that a
			// secret straddling the cut is whole in data and gets replaced.
			name: "a secret straddling the cut", r: testRedactor(),
			data:      filler(max-10) + upstreamSecret + filler(10),
			truncated: true, leak: upstreamSecret[:10],
		},
		{
			name: "a secret cut by the end of the capture", r: testRedactor(),
			data:      filler(max-10) + upstreamSecret[:30],
			truncated: true, leak: upstreamSecret[:10],
		},
		{
			// Replacing earlier secrets shortens the body below max, so no
			// cut happens, but the capture itself ended inside a secret.
			name: "a secret cut by the end of the capture after redaction shortened the body", r: testRedactor(),
			data:      upstreamSecret + upstreamSecret + filler(25) + upstreamSecret[:35],
			truncated: true, leak: upstreamSecret[:20],
		},
		{
			// With auth "none" there is no secret: the gateway captures
			// exactly max bytes. A token whose first 39 characters fit is
			// recoverable (the last is one of 62, and checksummed).
			name: "an agent token cut by the end of the capture", r: testRedactor(""),
			data:      filler(max-42) + kh[:42],
			truncated: true, leak: kh[:20],
		},
		{
			name: "an agent token cut at max", r: testRedactor(""),
			data:      filler(max-30) + kh + filler(20),
			truncated: true, leak: kh[:20],
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.r.Capture([]byte(tc.data), max, tc.truncated, "")
			if !b.Truncated {
				t.Error("Truncated = false")
			}
			if len(b.Data) > max {
				t.Errorf("stored %d bytes, max %d", len(b.Data), max)
			}
			if bytes.Contains(b.Data, []byte(tc.leak)) {
				t.Errorf("the stored body keeps a piece of a credential: %q", b.Data)
			}
		})
	}

	// A body that fits is kept whole, even when it ends like a secret
	// begins.
	whole := filler(10) + upstreamSecret[:20]
	if b := testRedactor().Capture([]byte(whole), max, false, ""); string(b.Data) != whole || b.Truncated {
		t.Errorf("a whole body was changed: %q, truncated %v", b.Data, b.Truncated)
	}
}
