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

var (
	hmacKey  = bytes.Repeat([]byte{0x42}, 32)
	otherKey = bytes.Repeat([]byte{0x17}, 32)
)

func H(v string) string { return audit.HashValue(hmacKey, v) }

func TestHashValue(t *testing.T) {
	h := audit.HashValue(hmacKey, "hunter2")
	if !strings.HasPrefix(h, audit.HMACPrefix) || len(h) != len(audit.HMACPrefix)+32 || strings.Trim(h[len(audit.HMACPrefix):], "0123456789abcdef") != "" {
		t.Fatalf("HashValue = %q, want hmac-sha256: and 32 lowercase hex digits", h)
	}
	if h != audit.HashValue(hmacKey, "hunter2") {
		t.Error("HashValue is not stable")
	}
	if h == audit.HashValue(otherKey, "hunter2") || h == audit.HashValue(hmacKey, "hunter3") {
		t.Error("HashValue does not depend on the key and the value")
	}
}

func TestRedactHMACHeaders(t *testing.T) {
	kh := newToken(t, token.Agent)
	r := testRedactor().WithHMAC(hmacKey)
	tests := []struct {
		name string
		in   http.Header
		want map[string][]string
	}{
		{"bearer keeps its scheme", http.Header{"Authorization": {"Bearer " + kh}}, map[string][]string{"Authorization": {"Bearer " + H(kh)}}},
		{"the credential is hashed without the spaces around it", http.Header{"Authorization": {"Basic  dXNlcjpw "}}, map[string][]string{"Authorization": {"Basic " + H("dXNlcjpw")}}},
		{"a bare credential", http.Header{"Authorization": {"dXNlcjpwYXNzd29yZA"}}, map[string][]string{"Authorization": {H("dXNlcjpwYXNzd29yZA")}}},
		{"cookie, whole", http.Header{"Cookie": {"session=abc; csrf=def"}}, map[string][]string{"Cookie": {H("session=abc; csrf=def")}}},
		{"set-cookie, every value", http.Header{"Set-Cookie": {"a=1", "b=2"}}, map[string][]string{"Set-Cookie": {H("a=1"), H("b=2")}}},
		{"redact_headers", http.Header{"X-Api-Key": {"k-123"}}, map[string][]string{"X-Api-Key": {H("k-123")}}},
		{"the secret inside another header", http.Header{"X-Note": {"key=" + upstreamSecret + ";v=1"}}, map[string][]string{"X-Note": {"key=" + H(upstreamSecret) + ";v=1"}}},
		{"a token inside another header", http.Header{"X-Trace": {"from " + kh + " ok"}}, map[string][]string{"X-Trace": {"from " + H(kh) + " ok"}}},
		{"a harmless header is kept", http.Header{"Accept": {"application/json"}}, map[string][]string{"Accept": {"application/json"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, r.Headers(tc.in)); d != "" {
				t.Errorf("Headers (-want +got):\n%s", d)
			}
		})
	}
}

func TestRedactHMACQuery(t *testing.T) {
	kh := newToken(t, token.Agent)
	r := testRedactor().WithHMAC(hmacKey)
	tests := []struct {
		name, in, want string
	}{
		{"nothing to redact", "page=2", "page=2"},
		{"an injected parameter, hashed decoded", "api_key=a%2Bb&page=2", "api_key=" + H("a+b") + "&page=2"},
		{"an injected parameter without a value", "api_key&x=1", "api_key=" + H("") + "&x=1"},
		{"a redact_json name", "password=hunter2", "password=" + H("hunter2")},
		{"the secret in a value", "q=" + upstreamSecret, "q=" + H(upstreamSecret)},
		{"a token", "t=" + kh, "t=" + H(kh)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Query(tc.in); got != tc.want {
				t.Errorf("Query(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRedactHMACCapture(t *testing.T) {
	kh := newToken(t, token.Agent)
	r := testRedactor().WithHMAC(hmacKey)
	tests := []struct {
		name      string
		in        string
		ct        string
		truncated bool
		want      string // JSON compared decoded, others as bytes
	}{
		{name: "string fields hash their decoded text", ct: "application/json",
			in:   `{"card":{"number":"4111111111111111","exp":"12/30"},"user":{"password":"hun\"ter\u0032"}}`,
			want: `{"card":{"number":"` + H("4111111111111111") + `","exp":"12/30"},"user":{"password":"` + H(`hun"ter2`) + `"}}`},
		{name: "a number hashes as its JSON text", ct: "application/json",
			in: `{"card":{"number":4111111111111111}}`, want: `{"card":{"number":"` + H("4111111111111111") + `"}}`},
		{name: "an object hashes as its JSON text", ct: "application/json",
			in: `{"password":{"a":1}}`, want: `{"password":"` + H(`{"a":1}`) + `"}`},
		{name: "inside arrays", ct: "application/json",
			in: `{"users":[{"password":"a"},{"password":"b"}]}`, want: `{"users":[{"password":"` + H("a") + `"},{"password":"` + H("b") + `"}]}`},
		{name: "a field holding a token hashes as the token", ct: "application/json",
			in: `{"password":"` + kh + `","note":"` + kh + `"}`, want: `{"password":"` + H(kh) + `","note":"` + H(kh) + `"}`},
		{name: "the secret outside fields", ct: "application/json",
			in: `{"auth":"Bearer ` + upstreamSecret + `"}`, want: `{"auth":"Bearer ` + H(upstreamSecret) + `"}`},
		{name: "an empty value is masked", ct: "application/json",
			in: `{"password":,"x":1}`, want: `{"password":"[REDACTED]","x":1}`},
		{name: "form fields hash decoded", ct: "application/x-www-form-urlencoded",
			in: `user=ann&password=hunter%212+x`, want: `user=ann&password=` + H("hunter!2 x")},
		{name: "the last form field of a cut body is masked", ct: "application/x-www-form-urlencoded", truncated: true,
			in: `password=abc&user=ann&password=hunt`, want: `password=` + H("abc") + `&user=ann&password=[REDACTED]`},
		{name: "the secret in plain text", ct: "text/plain",
			in: "x " + upstreamSecret + " y", want: "x " + H(upstreamSecret) + " y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := r.Capture([]byte(tc.in), 64<<10, tc.truncated, tc.ct)
			if tc.ct != "application/json" {
				if string(b.Data) != tc.want {
					t.Errorf("Capture\n got %s\nwant %s", b.Data, tc.want)
				}
				return
			}
			var got, want any
			if err := json.Unmarshal(b.Data, &got); err != nil {
				t.Fatalf("captured body %s: %v", b.Data, err)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("Capture (-want +got):\n%s", d)
			}
		})
	}
}

// TestRedactHMACCutJSON: a redact_json value cut by the end of the capture
// is masked, not hashed (a hash of part of it would stand in for the whole).
func TestRedactHMACCutJSON(t *testing.T) {
	r := testRedactor().WithHMAC(hmacKey)
	b := r.Capture([]byte(`{"a":1,"password":"hunter2-ve`), 100, true, "application/json")
	if want := `{"a":1,"password":"[REDACTED]"`; string(b.Data) != want {
		t.Errorf("got %s, want %s", b.Data, want)
	}
}

// TestRedactHMACLongestSecret: of two secret values where one begins the
// other, the longer is hashed whole (leftmost-longest, as the mask does).
func TestRedactHMACLongestSecret(t *testing.T) {
	short, long := "abcdefgh12", "abcdefgh1234567"
	r := audit.NewRedactor(scrub.New([][]byte{[]byte(short), []byte(long)}, []byte(R)), []string{short, long}, nil, nil, nil).WithHMAC(hmacKey)
	tests := []struct{ in, want string }{
		{"<" + long + ">", "<" + H(long) + ">"},
		{"<" + short + ">", "<" + H(short) + ">"},
		{short + long + short, H(short) + H(long) + H(short)},
	}
	for _, tc := range tests {
		if got := r.String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRedactHMACStable: what hmac mode stores depends on the key and the
// value only — two redactors (two nodes, two snapshots) with the same key
// store the same, another key stores something else — and never holds the
// value itself.
func TestRedactHMACStable(t *testing.T) {
	kh := newToken(t, token.Agent)
	hdr := http.Header{"Authorization": {"Bearer " + kh}, "X-Api-Key": {"k-123456"}, "X-Note": {upstreamSecret}}
	body := `{"password":"hunter2-canary","note":"` + upstreamSecret + `"}`
	store := func(r *audit.Redactor) string {
		b, _ := json.Marshal(r.Headers(hdr))
		return string(b) + r.Query("api_key=qp-canary") + string(r.Capture([]byte(body), 64<<10, false, "application/json").Data)
	}
	a, b, c := store(testRedactor().WithHMAC(hmacKey)), store(testRedactor().WithHMAC(hmacKey)), store(testRedactor().WithHMAC(otherKey))
	if a != b {
		t.Errorf("two redactors with the same key store different values:\n%s\n%s", a, b)
	}
	if a == c {
		t.Error("another key stores the same values")
	}
	for _, s := range []string{a, c} {
		for _, raw := range []string{kh, "k-123456", upstreamSecret, "hunter2-canary", "qp-canary", audit.Redacted} {
			if strings.Contains(s, raw) {
				t.Errorf("hmac mode stored %q:\n%s", raw, s)
			}
		}
	}
	if m := testRedactor().Mode(); m != "mask" {
		t.Errorf("Mode() = %q, want mask", m)
	}
	if m := testRedactor().WithHMAC(hmacKey).Mode(); m != "hmac" {
		t.Errorf("Mode() = %q, want hmac", m)
	}
	if got := testRedactor().WithHMAC(nil).Query("api_key=x"); got != "api_key="+R {
		t.Errorf("a nil key keeps the mask: %q", got)
	}
}

// TestRedactHMACCaptureCut: hmac mode keeps the cut rules of the mask — no
// recognisable piece of a secret or a token at the end of a cut capture.
func TestRedactHMACCaptureCut(t *testing.T) {
	kh := newToken(t, token.Agent)
	const max = 100
	dots := func(n int) string { return strings.Repeat(".", n) }
	tests := []struct {
		name string
		r    *audit.Redactor
		data string
		leak string
	}{
		{"a secret straddling the cut", testRedactor(), dots(max-10) + upstreamSecret + dots(10), upstreamSecret[:10]},
		{"a secret cut by the end of the capture", testRedactor(), dots(max-10) + upstreamSecret[:30], upstreamSecret[:10]},
		{"a token cut by the end of the capture", testRedactor(""), dots(max-42) + kh[:42], kh[:20]},
		{"a token cut at max", testRedactor(""), dots(max-30) + kh + dots(20), kh[:20]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.r.WithHMAC(hmacKey).Capture([]byte(tc.data), max, true, "")
			if len(b.Data) > max || !b.Truncated {
				t.Errorf("stored %d bytes (max %d), truncated %v", len(b.Data), max, b.Truncated)
			}
			if bytes.Contains(b.Data, []byte(tc.leak)) {
				t.Errorf("the stored body keeps a piece of a credential: %q", b.Data)
			}
		})
	}
}
