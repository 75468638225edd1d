package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const minimal = `"upstream":"https://api.example.com","auth":{"type":"none"}`

// TestDecodeProxyStrict: one row per way encoding/json alone would let a
// configuration through that is not what it looks like (SPEC §7.1).
func TestDecodeProxyStrict(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // "" = accepted
	}{
		{name: "exact keys", in: `{"name":"a",` + minimal + `}`},
		{name: "escaped key is the same key", in: `{"n\u0061me":"a",` + minimal + `}`},
		{name: "maps accept any key", in: `{"name":"a",` + minimal + `,"static_headers":{"X-A":"1","x-a":"2","NAME":"3"}}`},
		{name: "null sections keep defaults", in: `{"name":"a",` + minimal + `,"capture":null,"rules":null}`},

		{name: "upper-case key", in: `{"NAME":"a",` + minimal + `}`, wantErr: `unknown field "NAME" in proxy (did you mean "name"?)`},
		{name: "title-case key", in: `{"name":"a",` + minimal + `,"Capture":{}}`, wantErr: `unknown field "Capture" in proxy (did you mean "capture"?)`},
		{name: "case-variant nested", in: `{"name":"a","upstream":"https://api.example.com","auth":{"Type":"none"}}`, wantErr: `unknown field "Type" in auth (did you mean "type"?)`},
		{name: "case-variant in a rule", in: `{"name":"a",` + minimal + `,"rules":[{"name":"r","effect":"allow","Paths":["/**"]}]}`, wantErr: `unknown field "Paths" in rules[0] (did you mean "paths"?)`},
		{name: "escaped case variant", in: `{"N\u0041ME":"a",` + minimal + `}`, wantErr: `unknown field "NAME"`},
		{name: "Unicode folding (long s)", in: `{"name":"a",` + minimal + `,"ſtatic_headers":{}}`, wantErr: `unknown field "ſtatic_headers" in proxy (did you mean "static_headers"?)`},
		{name: "Kelvin sign folds to k", in: `{"name":"a",` + minimal + `,"pass_coo\u212aies":true}`, wantErr: "unknown field \"pass_coo\u212aies\" in proxy (did you mean \"pass_cookies\"?)"},
		{name: "hyphen for underscore", in: `{"name":"a",` + minimal + `,"max-rule-body":5}`, wantErr: `unknown field "max-rule-body" in proxy (did you mean "max_rule_body"?)`},
		{name: "typo", in: `{"name":"a",` + minimal + `,"pass_cokies":true}`, wantErr: `(did you mean "pass_cookies"?)`},
		{name: "singular for plural", in: `{"name":"a",` + minimal + `,"rule":[]}`, wantErr: `unknown field "rule" in proxy (did you mean "rules"?)`},
		{name: "plural for singular", in: `{"name":"a",` + minimal + `,"descriptions":"x"}`, wantErr: `unknown field "descriptions" in proxy (did you mean "description"?)`},
		{name: "no suggestion for a stranger", in: `{"name":"a",` + minimal + `,"priority":1}`, wantErr: `unknown field "priority" in proxy`},
		{name: "unknown in quota", in: `{"name":"a",` + minimal + `,"quotas":[{"limit":1,"per":"day"},{"limit":1,"per":"day","Sum":"x"}]}`, wantErr: `unknown field "Sum" in quotas[1] (did you mean "sum"?)`},
		{name: "unknown in rule filters", in: `{"name":"a",` + minimal + `,"rules":[{"name":"r","effect":"allow","paths":["/"],"response_filters":{"drop":["x"]}}]}`, wantErr: `unknown field "drop" in rules[0].response_filters`},
		{name: "unknown in timeouts", in: `{"name":"a",` + minimal + `,"timeouts":{"read":"1s"}}`, wantErr: `unknown field "read" in timeouts`},

		{name: "duplicate top-level key", in: `{"name":"a","name":"b",` + minimal + `}`, wantErr: `the body repeats the key "name" in proxy`},
		{name: "duplicate by escape", in: `{"name":"a","n\u0061me":"b",` + minimal + `}`, wantErr: `repeats the key "name"`},
		{name: "duplicate in auth", in: `{"name":"a","upstream":"https://api.example.com","auth":{"type":"none","type":"bearer"}}`, wantErr: `repeats the key "type" in auth`},
		{name: "duplicate header in a map", in: `{"name":"a",` + minimal + `,"static_headers":{"X-A":"1","X-A":"2"}}`, wantErr: `repeats the key "X-A" in static_headers`},
		{name: "duplicate in the second rule", in: `{"name":"a",` + minimal + `,"rules":[{"name":"r","effect":"allow","paths":["/"]},{"name":"s","effect":"deny","effect":"allow","paths":["/"]}]}`, wantErr: `repeats the key "effect" in rules[1]`},
		{name: "case-variant and exact both present", in: `{"name":"a","NAME":"b",` + minimal + `}`, wantErr: `unknown field "NAME"`},

		{name: "invalid UTF-8", in: "{\"name\":\"a\",\"description\":\"\xff\"," + minimal + "}", wantErr: "the body is not valid UTF-8"},
		{name: "lone surrogate", in: `{"name":"a","description":"\ud800",` + minimal + `}`, wantErr: "lone surrogate"},
		{name: "too deep", in: `{"name":"a",` + minimal + `,"description":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, wantErr: "nests deeper than 64"},
		{name: "number out of range", in: `{"name":"a",` + minimal + `,"max_rule_body":1e999}`, wantErr: "number out of range"},
		{name: "syntax keeps encoding/json's message", in: `{"name":"a",`, wantErr: "not valid JSON"},
		{name: "comment", in: `{"name":"a", /* x */ ` + minimal + `}`, wantErr: "not valid JSON (at byte"},
		{name: "trailing garbage", in: `{"name":"a",` + minimal + `}x`, wantErr: "more than one JSON value"},
		{name: "trailing bracket", in: `{"name":"a",` + minimal + `}]`, wantErr: "data after its JSON value"},
		{name: "whitespace only", in: " \n\t", wantErr: "the body is empty"},
		{name: "wrong type still named by encoding/json", in: `{"name":"a","upstream":"https://api.example.com","auth":"bearer"}`, wantErr: `field "auth" must be a JSON object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodeProxy(strings.NewReader(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeProxy: %v", err)
				}
				if p.Name != "a" {
					t.Errorf("name = %q", p.Name)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeProxy accepted it: %+v", p)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Errorf("error is %T, want *spec.Error", err)
			}
			checkMessage(t, err.Error(), tt.in)
		})
	}
}

func TestDecodeRuleStrict(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "exact", in: `{"name":"r","effect":"allow","paths":["/**"]}`},
		{name: "case variant", in: `{"name":"r","Effect":"allow","paths":["/**"]}`, wantErr: `unknown field "Effect" in rule (did you mean "effect"?)`},
		{name: "duplicate effect", in: `{"name":"r","effect":"deny","effect":"allow","paths":["/**"]}`, wantErr: `repeats the key "effect" in rule`},
		{name: "duplicate label", in: `{"name":"r","effect":"allow","paths":["/**"],"agent_labels":{"team":"a","team":"b"}}`, wantErr: `repeats the key "team" in agent_labels`},
		{name: "typo in filters", in: `{"name":"r","effect":"allow","paths":["/**"],"response_filters":{"mask":[],"removes":[]}}`, wantErr: `unknown field "removes" in response_filters (did you mean "remove"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRule(strings.NewReader(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeRule error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// DecodeStrict is the same strictness for other request shapes.
func TestDecodeStrictOtherShapes(t *testing.T) {
	type inner struct {
		Value string `json:"value"`
	}
	type Embedded struct {
		Shared string `json:"shared"`
	}
	type req struct {
		Embedded
		Name    string            `json:"name"`
		Skip    string            `json:"-"`
		NoTag   string            // no tag: the Go name is the JSON name
		Raw     json.RawMessage   `json:"raw"`
		Any     any               `json:"any"`
		Dur     *Duration         `json:"dur"`
		Inner   *inner            `json:"inner"`
		List    []inner           `json:"list"`
		ByName  map[string]inner  `json:"by_name"`
		Headers map[string]string `json:"headers,omitempty"`
		unexp   string
	}
	_ = req{}.unexp
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "every kind of field", in: `{"shared":"s","name":"n","NoTag":"x","raw":{"Anything":1},"any":{"X":1},"dur":"1s","inner":{"value":"v"},"list":[{"value":"v"}],"by_name":{"K":{"value":"v"}},"headers":{"A":"b"}}`},
		{name: "json:\"-\" is not a field", in: `{"Skip":"x"}`, wantErr: `unknown field "Skip" in request`},
		{name: "unexported is not a field", in: `{"unexp":"x"}`, wantErr: `unknown field "unexp" in request`},
		{name: "untagged Go name is exact", in: `{"notag":"x"}`, wantErr: `unknown field "notag" in request (did you mean "NoTag"?)`},
		{name: "embedded field exact", in: `{"Shared":"x"}`, wantErr: `unknown field "Shared" in request (did you mean "shared"?)`},
		{name: "inside a pointer", in: `{"inner":{"Value":"v"}}`, wantErr: `unknown field "Value" in inner`},
		{name: "inside a slice", in: `{"list":[{"value":"v"},{"valu":"v"}]}`, wantErr: `unknown field "valu" in list[1] (did you mean "value"?)`},
		{name: "inside a map of structs", in: `{"by_name":{"K":{"VALUE":"v"}}}`, wantErr: `unknown field "VALUE" in by_name.K`},
		{name: "duplicate inside raw", in: `{"raw":{"a":1,"a":2}}`, wantErr: `repeats the key "a" in raw`},
		{name: "first unknown in key order", in: `{"zz":1,"aa":1}`, wantErr: `unknown field "aa"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r req
			err := DecodeStrict([]byte(tt.in), &r, "request")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.Shared != "s" || r.NoTag != "x" || r.Dur == nil || r.ByName["K"].Value != "v" {
					t.Errorf("decoded %+v", r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeStrict error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"agent_token_header", "auth", "capture", "name", "pass_cookies", "per", "quotas", "rules", "sum", "upstream"}
	tests := []struct {
		in, want string
	}{
		{"NAME", "name"},
		{"Name", "name"},
		{"nmae", "name"},
		{"nam", "name"},
		{"agent-token-header", "agent_token_header"},
		{"agenttokenheader", "agent_token_header"},
		{"AgentTokenHeader", "agent_token_header"},
		{"upstrem", "upstream"},
		{"rule", "rules"},
		{"quota", "quotas"},
		{"xyz", ""},    // nothing close
		{"pe", ""},     // two edits from several short names: no guess
		{"window", ""}, // nothing close
		{"su", ""},     // "sum" is one edit, but half the word
		{strings.Repeat("n", 100), ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, names); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"a", "", 1},
		{"name", "name", 0},
		{"nmae", "name", 1},
		{"max_byte", "max_bytes", 1},
		{"kitten", "sitting", 3},
		{"éa", "aé", 1},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzDecodeStrict: the strict pre-pass never panics and never changes
// what an accepted proxy means — DecodeProxy and encoding/json alone
// decode it to the same proxy — and changing the case of any top-level key
// of an accepted proxy makes it refused.
func FuzzDecodeStrict(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"name":"a",` + minimal + `,"rules":[{"name":"r","effect":"allow","paths":["/**"],"Mode":"report"}]}`))
	f.Add([]byte(`{"n\u0061me":"a",` + minimal + `}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := DecodeProxy(bytes.NewReader(in))
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T (%v) is not a *spec.Error", err, err)
			}
			if msg := err.Error(); len(msg) > 512 || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("message %q", msg)
			}
			return
		}
		// encoding/json alone, on the same bytes, means the same proxy.
		ref := NewProxy()
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ref); err != nil {
			t.Fatalf("encoding/json refuses an accepted proxy: %v", err)
		}
		ref.normalize()
		if diff := cmp.Diff(ref, p); diff != "" {
			t.Fatalf("the strict decode changed the proxy (-encoding/json +strict):\n%s", diff)
		}
		// Every top-level key with a letter, in another case, is refused.
		var top map[string]json.RawMessage
		if err := json.Unmarshal(in, &top); err != nil {
			t.Fatalf("an accepted proxy is not an object: %v", err)
		}
		for k := range top {
			up := strings.ToUpper(k)
			if up == k {
				continue
			}
			mangled := map[string]json.RawMessage{}
			for k2, v := range top {
				mangled[k2] = v
			}
			delete(mangled, k)
			mangled[up] = top[k]
			b, _ := json.Marshal(mangled)
			if _, err := DecodeProxy(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "unknown field") {
				t.Fatalf("key %q as %q: DecodeProxy error = %v, want unknown field", k, up, err)
			}
		}
	})
}

func TestDecodeProxyNamed(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantName string
		wantErr  string
	}{
		{name: "name omitted takes the URL's", in: `{` + minimal + `}`, wantName: "from-url"},
		{name: "same name", in: `{"name":"from-url",` + minimal + `}`, wantName: "from-url"},
		{name: "another name is kept for the caller to refuse", in: `{"name":"other",` + minimal + `}`, wantName: "other"},
		{name: "null name takes the URL's", in: `{"name":null,` + minimal + `}`, wantName: "from-url"},
		{name: "a repeated key without name is still refused", in: `{"upstream":"https://a.example.com",` + minimal + `}`, wantErr: `repeats the key "upstream"`},
		{name: "a case variant without name is refused", in: `{"Name":"x",` + minimal + `}`, wantErr: `unknown field "Name"`},
		{name: "invalid UTF-8 without name is refused", in: "{\"description\":\"\xff\"," + minimal + "}", wantErr: "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodeProxyNamed(strings.NewReader(tt.in), "from-url")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tt.wantName {
				t.Errorf("name = %q, want %q", p.Name, tt.wantName)
			}
			checkNormalised(t, p)
		})
	}
}
