package spec

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewProxyDefaults(t *testing.T) {
	p, err := DecodeProxy(strings.NewReader(`{"name":"a","upstream":"https://a.example.com","auth":{"type":"none"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := NewProxy()
	want.Name, want.Upstream, want.Auth.Type = "a", "https://a.example.com", "none"
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	// SPEC §7.1's defaults, spelled out.
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "capture.request_body", got: p.Capture.RequestBody, want: true},
		{name: "capture.response_body", got: p.Capture.ResponseBody, want: true},
		{name: "capture.max_bytes", got: p.Capture.MaxBytes, want: int64(65536)},
		{name: "timeouts.connect", got: time.Duration(p.Timeouts.Connect), want: 5 * time.Second},
		{name: "timeouts.response_header", got: time.Duration(p.Timeouts.ResponseHeader), want: 30 * time.Second},
		{name: "timeouts.total", got: time.Duration(p.Timeouts.Total), want: 5 * time.Minute},
		{name: "max_rule_body", got: p.MaxRuleBody, want: int64(1 << 20)},
		{name: "allow_semicolons", got: p.AllowSemicolons, want: false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// NewProxy must hand out fresh maps and slices: a caller filling one proxy
// must not change the defaults of the next.
func TestNewProxyNotShared(t *testing.T) {
	a := NewProxy()
	a.StaticHeaders["X-A"] = "1"
	a.Capture.RedactJSON = append(a.Capture.RedactJSON, "x")
	a.ResponseFilters.Remove = []string{"y"}
	b := NewProxy()
	if len(b.StaticHeaders) != 0 || len(b.Capture.RedactJSON) != 0 || !b.ResponseFilters.Empty() {
		t.Errorf("NewProxy shares state between calls: %+v", b)
	}
}

func TestDecodeRule(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Rule
		wantErr string
	}{
		{
			name: "minimal gets defaults",
			in:   `{"name":"r","effect":"allow","paths":["/**"]}`,
			want: Rule{Name: "r", Effect: "allow", Mode: "enforce", Agents: []string{},
				AgentLabels: map[string]string{}, Methods: []string{}, Paths: []string{"/**"}},
		},
		{
			name: "every field",
			in: `{"name":"read-customers","effect":"allow","mode":"report","agents":["billing-bot"],
			      "agent_labels":{"team":"billing"},"methods":["GET"],"paths":["/v1/customers","/v1/customers/*"],
			      "when":"int(request.query['limit'][0]) <= 100","rate_limit":"60/m",
			      "response_filters":{"remove":["**.ssn"],"mask":["email"]}}`,
			want: Rule{Name: "read-customers", Effect: "allow", Mode: "report", Agents: []string{"billing-bot"},
				AgentLabels: map[string]string{"team": "billing"}, Methods: []string{"GET"},
				Paths: []string{"/v1/customers", "/v1/customers/*"}, When: "int(request.query['limit'][0]) <= 100",
				RateLimit: "60/m", ResponseFilters: &Filters{Remove: []string{"**.ssn"}, Mask: []string{"email"}}},
		},
		{name: "unknown field", in: `{"name":"r","effect":"allow","paths":["/"],"priority":1}`, wantErr: `unknown field "priority"`},
		{name: "effect maybe", in: `{"name":"r","effect":"maybe","paths":["/"]}`, wantErr: "effect must be allow or deny"},
		{name: "mode bad", in: `{"name":"r","effect":"deny","mode":"audit","paths":["/"]}`, wantErr: "mode must be enforce or report"},
		{name: "no paths", in: `{"name":"r","effect":"allow"}`, wantErr: "paths is required"},
		{name: "bad name", in: `{"name":"R_1","effect":"allow","paths":["/"]}`, wantErr: `rule name "R_1" is invalid`},
		{name: "label key too long", in: `{"name":"r","effect":"allow","paths":["/"],"agent_labels":{"` + strings.Repeat("k", 64) + `":"v"}}`, wantErr: "agent_labels keys"},
		{name: "when too long", in: `{"name":"r","effect":"allow","paths":["/"],"when":"` + strings.Repeat("a", 8193) + `"}`, wantErr: "when is longer than 8192"},
		{name: "paths wrong type", in: `{"name":"r","effect":"allow","paths":"/"}`, wantErr: `field "paths" must be a JSON array`},
		{name: "filter path bad", in: `{"name":"r","effect":"allow","paths":["/"],"response_filters":{"remove":["a..b"]}}`, wantErr: "empty segment"},
		{name: "trailing", in: `{"name":"r","effect":"allow","paths":["/"]} {}`, wantErr: "more than one JSON value"},
		{name: "empty", in: ``, wantErr: "the body is empty"},
		{name: "array", in: `[{"name":"r","effect":"allow","paths":["/"]}]`, wantErr: "must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRule(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeRule error = %v, want one containing %q", err, tt.wantErr)
				}
				var se *Error
				if !errors.As(err, &se) {
					t.Errorf("error is %T, want *spec.Error", err)
				}
				checkMessage(t, err.Error(), tt.in)
				return
			}
			if err != nil {
				t.Fatalf("DecodeRule: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecodeRule (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantHost string
		wantPath string
		wantErr  string
	}{
		{name: "https", in: "https://api.stripe.com", wantHost: "api.stripe.com"},
		{name: "base path", in: "https://api.example.com/v2", wantHost: "api.example.com", wantPath: "/v2"},
		{name: "trailing slash", in: "https://api.example.com/v2/", wantHost: "api.example.com", wantPath: "/v2/"},
		{name: "port", in: "http://127.0.0.1:9000", wantHost: "127.0.0.1:9000"},
		{name: "ipv6", in: "https://[::1]:8443", wantHost: "[::1]:8443"},
		{name: "empty", in: "", wantErr: "upstream is required"},
		{name: "ftp", in: "ftp://example.com", wantErr: "must start with https:// or http://"},
		{name: "no scheme", in: "//example.com", wantErr: "must start with"},
		{name: "scheme only", in: "http://", wantErr: "has no host"},
		{name: "no host", in: "https:///x", wantErr: "has no host"},
		{name: "port only", in: "https://:80", wantErr: "has no host"},
		{name: "userinfo", in: "https://key@api.example.com", wantErr: "must not hold credentials"},
		{name: "empty userinfo", in: "https://@api.example.com", wantErr: "must not hold credentials"},
		{name: "query", in: "https://api.example.com?api_key=1", wantErr: "query or fragment"},
		{name: "force query", in: "https://api.example.com/?", wantErr: "query or fragment"},
		{name: "fragment", in: "https://api.example.com/#x", wantErr: "query or fragment"},
		{name: "empty fragment", in: "https://api.example.com/#", wantErr: "query or fragment"},
		{name: "opaque", in: "https:api.example.com", wantErr: "has no host"},
		{name: "backslash path", in: `https://api.example.com/a\b`, wantErr: "not canonical"},
		{name: "double slash path", in: "https://api.example.com/a//b", wantErr: "not canonical"},
		{name: "space in host", in: "https://api example.com", wantErr: "is not a URL"},
		{name: "control char", in: "https://api.example.com/\x00", wantErr: "is not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUpstream(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseUpstream(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUpstream(%q): %v", tt.in, err)
			}
			if u.Host != tt.wantHost || u.Path != tt.wantPath {
				t.Errorf("ParseUpstream(%q) = host %q path %q, want %q %q", tt.in, u.Host, u.Path, tt.wantHost, tt.wantPath)
			}
		})
	}
}

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		want       []TemplatePart
		wantFields []string
		wantErr    string
	}{
		{name: "empty", in: "", want: nil},
		{name: "literal", in: "static", want: []TemplatePart{{Text: "static"}}},
		{name: "secret", in: "{{secret}}", want: []TemplatePart{{Ref: true}}, wantFields: []string{""}},
		{name: "bearer", in: "Bearer {{secret}}", want: []TemplatePart{{Text: "Bearer "}, {Ref: true}}, wantFields: []string{""}},
		{name: "field", in: "{{secret.api_key}}", want: []TemplatePart{{Ref: true, Field: "api_key"}}, wantFields: []string{"api_key"}},
		{name: "spaces inside", in: "{{ secret.app-key }}", want: []TemplatePart{{Ref: true, Field: "app-key"}}, wantFields: []string{"app-key"}},
		{
			name: "two refs and text", in: "k={{secret.a}}&s={{secret.B_2}}!",
			want:       []TemplatePart{{Text: "k="}, {Ref: true, Field: "a"}, {Text: "&s="}, {Ref: true, Field: "B_2"}, {Text: "!"}},
			wantFields: []string{"a", "B_2"},
		},
		{name: "adjacent refs", in: "{{secret}}{{secret}}", want: []TemplatePart{{Ref: true}, {Ref: true}}, wantFields: []string{"", ""}},
		{name: "closing braces are literal", in: "a}}b", want: []TemplatePart{{Text: "a}}b"}}},
		{name: "single braces are literal", in: "{a}", want: []TemplatePart{{Text: "{a}"}}},
		{name: "tab allowed", in: "a\t{{secret}}", want: []TemplatePart{{Text: "a\t"}, {Ref: true}}, wantFields: []string{""}},
		{name: "64-char field", in: "{{secret." + strings.Repeat("f", 64) + "}}", want: []TemplatePart{{Ref: true, Field: strings.Repeat("f", 64)}}, wantFields: []string{strings.Repeat("f", 64)}},

		{name: "secret dot", in: "{{secret.}}", wantErr: "use {{secret}} or {{secret.FIELD}}"},
		{name: "nope", in: "{{nope}}", wantErr: "use {{secret}} or {{secret.FIELD}}"},
		{name: "empty ref", in: "{{}}", wantErr: "use {{secret}}"},
		{name: "unclosed", in: "Bearer {{secret", wantErr: "unclosed {{"},
		{name: "unclosed after ref", in: "{{secret}} {{", wantErr: "unclosed {{"},
		{name: "triple brace", in: "{{{secret}}}", wantErr: "use {{secret}}"},
		{name: "nested field", in: "{{secret.a.b}}", wantErr: "use {{secret}}"},
		{name: "field with space", in: "{{secret.a b}}", wantErr: "use {{secret}}"},
		{name: "65-char field", in: "{{secret." + strings.Repeat("f", 65) + "}}", wantErr: "use {{secret}}"},
		{name: "upper SECRET", in: "{{SECRET}}", wantErr: "use {{secret}}"},
		{name: "CRLF", in: "{{secret}}\r\nX-Evil: 1", wantErr: "control character"},
		{name: "NUL", in: "a\x00", wantErr: "control character"},
		{name: "DEL", in: "a\x7f", wantErr: "control character"},
		{name: "long input clipped", in: strings.Repeat("x", 500) + "{{nope}}", wantErr: "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTemplate(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTemplate(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				checkMessage(t, err.Error(), tt.in)
				return
			}
			if err != nil {
				t.Fatalf("ParseTemplate(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got.Parts); diff != "" {
				t.Errorf("parts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantFields, got.Fields()); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTemplateRender(t *testing.T) {
	tests := []struct {
		name    string
		tmpl    string
		fields  map[string]string
		want    string
		wantErr string
	}{
		{name: "string secret", tmpl: "Bearer {{secret}}", fields: map[string]string{"": "sk_1"}, want: "Bearer sk_1"},
		{name: "object fields", tmpl: "{{secret.a}}:{{secret.b}}", fields: map[string]string{"a": "1", "b": "2"}, want: "1:2"},
		{name: "literal only", tmpl: "v1", fields: nil, want: "v1"},
		{name: "value with braces is not re-expanded", tmpl: "{{secret}}", fields: map[string]string{"": "{{secret}}"}, want: "{{secret}}"},
		{name: "object secret, string ref", tmpl: "{{secret}}", fields: map[string]string{"a": "1"}, wantErr: "use {{secret.FIELD}}"},
		{name: "missing field", tmpl: "{{secret.b}}", fields: map[string]string{"a": "1"}, wantErr: `no field "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := ParseTemplate(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tp.Render(tt.fields)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Render error = %v, want %q", err, tt.wantErr)
				}
				for _, v := range tt.fields {
					if strings.Contains(err.Error(), v) {
						t.Errorf("Render error %q contains a secret value", err)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Render = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestValidJSONPath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "one key", in: "email", want: true},
		{name: "dotted", in: "card.number", want: true},
		{name: "double star start", in: "**.ssn", want: true},
		{name: "star middle", in: "items.*.id", want: true},
		{name: "only double star", in: "**", want: true},
		{name: "512 chars", in: strings.Repeat("a", 512), want: true},
		{name: "empty", in: "", want: false},
		{name: "513 chars", in: strings.Repeat("a", 513), want: false},
		{name: "double dot", in: "a..b", want: false},
		{name: "leading dot", in: ".a", want: false},
		{name: "trailing dot", in: "a.", want: false},
		{name: "star suffix", in: "a*", want: false},
		{name: "star prefix", in: "*a", want: false},
		{name: "triple star", in: "***", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidJSONPath(tt.in) == nil; got != tt.want {
				t.Errorf("ValidJSONPath(%q) ok = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidNames(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		want       bool // ValidName
		wantSecret bool // ValidSecretName
	}{
		{name: "simple", in: "stripe", want: true, wantSecret: true},
		{name: "digit first", in: "0x", want: true, wantSecret: true},
		{name: "dash inside", in: "a-b", want: true, wantSecret: true},
		{name: "63 chars", in: strings.Repeat("a", 63), want: true, wantSecret: true},
		{name: "64 chars", in: strings.Repeat("a", 64), want: false, wantSecret: true},
		{name: "128 chars", in: strings.Repeat("a", 128), want: false, wantSecret: true},
		{name: "129 chars", in: strings.Repeat("a", 129), want: false, wantSecret: false},
		{name: "upper", in: "Stripe", want: false, wantSecret: true},
		{name: "underscore", in: "a_b", want: false, wantSecret: true},
		{name: "dot", in: "aws.billing", want: false, wantSecret: true},
		{name: "leading dash", in: "-admin", want: false, wantSecret: false},
		{name: "leading dot", in: ".env", want: false, wantSecret: false},
		{name: "slash", in: "a/b", want: false, wantSecret: false},
		{name: "empty", in: "", want: false, wantSecret: false},
		{name: "trailing newline", in: "a\n", want: false, wantSecret: false},
		{name: "unicode", in: "café", want: false, wantSecret: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.in); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if got := ValidSecretName(tt.in); got != tt.wantSecret {
				t.Errorf("ValidSecretName(%q) = %v, want %v", tt.in, got, tt.wantSecret)
			}
		})
	}
}

func TestValidHeaderName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "canonical", in: "X-Api-Key", want: true},
		{name: "lower", in: "x-api-key", want: true},
		{name: "tchars", in: "a!#$%&'*+-.^_`|~9", want: true},
		{name: "256 chars", in: strings.Repeat("h", 256), want: true},
		{name: "257 chars", in: strings.Repeat("h", 257), want: false},
		{name: "empty", in: "", want: false},
		{name: "space", in: "X Api", want: false},
		{name: "colon", in: "X:Api", want: false},
		{name: "newline", in: "X\nApi", want: false},
		{name: "non-ASCII", in: "X-Ä", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidHeaderName(tt.in); got != tt.want {
				t.Errorf("ValidHeaderName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantOut string
		wantErr string
	}{
		{name: "seconds", in: `"30s"`, want: 30 * time.Second, wantOut: `"30s"`},
		{name: "compound", in: `"1m30s"`, want: 90 * time.Second, wantOut: `"1m30s"`},
		{name: "minutes normalised", in: `"5m"`, want: 5 * time.Minute, wantOut: `"5m0s"`},
		{name: "zero", in: `"0"`, want: 0, wantOut: `"0s"`},
		{name: "fraction", in: `"1.5s"`, want: 1500 * time.Millisecond, wantOut: `"1.5s"`},
		{name: "negative", in: `"-1s"`, wantErr: "invalid duration"},
		{name: "days", in: `"1d"`, wantErr: "invalid duration"},
		{name: "words", in: `"5 minutes"`, wantErr: "invalid duration"},
		{name: "number", in: `5`, wantErr: "a duration is a string"},
		{name: "null keeps the value", in: `null`, want: 7 * time.Second, wantOut: `"7s"`},
		{name: "bool", in: `true`, wantErr: "a duration is a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Duration(7 * time.Second)
			err := d.UnmarshalJSON([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalJSON(%s) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || time.Duration(d) != tt.want {
				t.Fatalf("UnmarshalJSON(%s) = %v, %v; want %v", tt.in, time.Duration(d), err, tt.want)
			}
			out, err := json.Marshal(d)
			if err != nil || string(out) != tt.wantOut {
				t.Errorf("MarshalJSON = %s, %v; want %s", out, err, tt.wantOut)
			}
		})
	}
}

// A rule decoded alone and inside a proxy is normalised the same way.
func TestRuleNormaliseSameInProxy(t *testing.T) {
	const rule = `{"name":"r","effect":"deny","paths":["/admin/**"]}`
	alone, err := DecodeRule(strings.NewReader(rule))
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodeProxy(strings.NewReader(`{"name":"p","upstream":"https://x.example.com","auth":{"type":"none"},"rules":[` + rule + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(alone, p.Rules[0]); diff != "" {
		t.Errorf("(-alone +in proxy):\n%s", diff)
	}
}

func TestFiltersEmpty(t *testing.T) {
	tests := []struct {
		name string
		f    *Filters
		want bool
	}{
		{name: "nil", f: nil, want: true},
		{name: "zero", f: &Filters{}, want: true},
		{name: "empty slices", f: &Filters{Remove: []string{}, Mask: []string{}}, want: true},
		{name: "remove", f: &Filters{Remove: []string{"a"}}, want: false},
		{name: "mask", f: &Filters{Mask: []string{"a"}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Empty(); got != tt.want {
				t.Errorf("Empty() = %v, want %v", got, tt.want)
			}
		})
	}
}
