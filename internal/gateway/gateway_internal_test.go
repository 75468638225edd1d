package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/catalog"
)

// TestCheckQuery pins SPEC §3.4's query refusals at the unit level: a query
// that does not parse, more than 1,000 parameters, ambiguous separators,
// and a parameter the proxy's auth injects — whatever way the agent
// spells its name.
func TestCheckQuery(t *testing.T) {
	many := func(n int) string {
		p := make([]string, n)
		for i := range p {
			p[i] = fmt.Sprintf("p%d=%d", i, i)
		}
		return strings.Join(p, "&")
	}
	injected := map[string]bool{"api_key": true, "sig nature": true}
	tests := []struct {
		name, raw  string
		wantReason string // "" = accepted
	}{
		{"empty", "", ""},
		{"simple", "limit=3&q=a%20b+c", ""},
		{"key without value", "flag", ""},
		{"empty parts", "a=1&&b=2&", ""},
		{"1,000 parameters", many(1000), ""},
		{"1,001 parameters", many(1001), "bad_query"},
		{"1,001 empty parameters", strings.Repeat("&", 1000), "bad_query"},
		{"invalid escape in a value", "a=%zz", "bad_query"},
		{"invalid escape in a key", "%zz=1", "bad_query"},
		{"truncated escape", "a=%2", "bad_query"},
		{"semicolon separator", "a=1;b=2", "bad_query"},
		{"raw NUL", "a=\x00", "bad_query"},
		{"injected parameter", "api_key=mine", "bad_query"},
		{"injected parameter without value", "x=1&api_key", "bad_query"},
		{"injected parameter, escaped name", "api%5fkey=mine", "bad_query"},
		{"injected parameter with + for space", "sig+nature=x", "bad_query"},
		{"injected parameter with %20 for space", "sig%20nature=x", "bad_query"},
		{"different case is another parameter", "API_KEY=mine", ""},
		{"prefix of an injected name", "api=1&api_keys=2", ""},
		{"injected name as a value", "name=api_key", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := checkQuery(tc.raw, injected)
			got := ""
			if f != nil {
				got = f.reason
				if f.status != http.StatusBadRequest {
					t.Errorf("status %d, want 400", f.status)
				}
			}
			if got != tc.wantReason {
				t.Errorf("checkQuery(%.60q) = %q, want %q", tc.raw, got, tc.wantReason)
			}
		})
	}
}

func TestNameOK(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"stripe", true}, {"a", true}, {"0abc", true}, {"my-api-2", true}, {strings.Repeat("a", 63), true},
		{"", false}, {"-a", false}, {"Stripe", false}, {"a_b", false}, {"a.b", false}, {"-", false},
		{strings.Repeat("a", 64), false}, {"café", false}, {"a b", false}, {"%61", false},
	} {
		if got := nameOK(tc.name); got != tc.want {
			t.Errorf("nameOK(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHostOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"stripe.gw.example.com", "stripe.gw.example.com"},
		{"Stripe.GW.Example.com:8080", "stripe.gw.example.com"},
		{"stripe.gw.example.com.", "stripe.gw.example.com"},
		{"[::1]:8080", "[::1]"},
		{"[::1]", "[::1]"},
		{"", ""},
	} {
		if got := hostOf(tc.in); got != tc.want {
			t.Errorf("hostOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTokenFrom pins SPEC §3.2's order: Authorization: Bearer, then
// X-Keyhole-Token, then the proxy's agent_token_header; the first that
// holds a kh_ value supplies the token, and "present" tells bad_token from
// no_token.
func TestTokenFrom(t *testing.T) {
	const a, b, c = "kh_AAAA", "kh_BBBB", "kh_CCCC"
	p := &catalog.Proxy{TokenHeader: "X-Api-Key"}
	tests := []struct {
		name        string
		hdr         http.Header
		proxy       *catalog.Proxy
		want        string
		wantPresent bool
	}{
		{"nothing", http.Header{}, p, "", false},
		{"Authorization wins", http.Header{"Authorization": {"Bearer " + a}, "X-Keyhole-Token": {b}, "X-Api-Key": {c}}, p, a, true},
		{"X-Keyhole-Token second", http.Header{"X-Keyhole-Token": {b}, "X-Api-Key": {c}}, p, b, true},
		{"agent_token_header third", http.Header{"X-Api-Key": {c}}, p, c, false},
		{"Bearer inside agent_token_header", http.Header{"X-Api-Key": {"Bearer " + c}}, p, c, false},
		{"non-kh Bearer skipped for the header", http.Header{"Authorization": {"Bearer sk-sdk"}, "X-Api-Key": {c}}, p, c, true},
		{"non-kh X-Keyhole-Token skipped", http.Header{"X-Keyhole-Token": {"junk"}, "X-Api-Key": {c}}, p, c, true},
		{"Basic is not a token location", http.Header{"Authorization": {"Basic " + a}}, p, "", false},
		{"scheme case", http.Header{"Authorization": {"BEARER " + a}}, p, a, true},
		{"spaces around the token", http.Header{"Authorization": {"Bearer   " + a + " "}}, p, a, true},
		{"agent_token_header without a proxy", http.Header{"X-Api-Key": {c}}, nil, "", false},
		{"non-kh Bearer alone", http.Header{"Authorization": {"Bearer sk-sdk"}}, p, "", true},
		{"admin token is not an agent token", http.Header{"Authorization": {"Bearer kha_XXXX"}}, p, "", true},
		{"GitHub's token scheme", http.Header{"Authorization": {"token " + a}}, p, a, false},
		{"a bare token (Linear's SDK)", http.Header{"Authorization": {a}}, p, a, false},
		{"token scheme with a non-kh value is no token", http.Header{"Authorization": {"token ghp_x"}}, p, "", false},
		{"a bare non-kh value is no token", http.Header{"Authorization": {"sk_live_x"}}, p, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://gw/x", nil)
			r.Header = tc.hdr
			got, present := tokenFrom(r, tc.proxy)
			if got != tc.want || present != tc.wantPresent {
				t.Errorf("tokenFrom = %q, present %v; want %q, %v", got, present, tc.want, tc.wantPresent)
			}
		})
	}
}

// TestStripToken: every header carrying the presented token, or any other
// keyhole-token-shaped value, is removed; the rest is untouched.
func TestStripToken(t *testing.T) {
	tok := "kh_" + strings.Repeat("A", 40)
	other := "kh_" + strings.Repeat("B", 44)
	admin := "kha_" + strings.Repeat("C", 40)
	h := http.Header{
		"Authorization":   {"Bearer " + tok},
		"X-Keyhole-Token": {"anything"},
		"X-Api-Key":       {other},
		"X-Copy":          {"first", "then " + tok},
		"X-Admin":         {admin},
		"X-Short":         {"kh_short"},
		"Accept":          {"application/json"},
		"X-Khaki":         {"khaki trousers"},
	}
	stripToken(h, tok)
	want := http.Header{"X-Short": {"kh_short"}, "Accept": {"application/json"}, "X-Khaki": {"khaki trousers"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("after stripToken (-want +got):\n%s", diff)
	}
}
