package jsonpath

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Path
		wantErr string
	}{
		{name: "one key", in: "email", want: Path{"email"}},
		{name: "dotted", in: "card.number", want: Path{"card", "number"}},
		{name: "wildcards", in: "**.items.*.id", want: Path{"**", "items", "*", "id"}},
		{name: "only double star", in: "**", want: Path{"**"}},
		{name: "512 chars", in: strings.Repeat("a", 512), want: Path{strings.Repeat("a", 512)}},
		{name: "unicode key", in: "données.é", want: Path{"données", "é"}},
		{name: "empty", in: "", wantErr: "1–512 characters"},
		{name: "513 chars", in: strings.Repeat("a", 513), wantErr: "1–512 characters"},
		{name: "double dot", in: "a..b", wantErr: "no empty keys"},
		{name: "leading dot", in: ".a", wantErr: "no empty keys"},
		{name: "trailing dot", in: "a.", wantErr: "no empty keys"},
		{name: "star suffix", in: "a*", wantErr: "whole keys"},
		{name: "star prefix", in: "*a.b", wantErr: "whole keys"},
		{name: "triple star", in: "***", wantErr: "whole keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestMustParseAll(t *testing.T) {
	got := MustParseAll([]string{"a.b", "a..b", "**.c", "", "x*"})
	want := []Path{{"a", "b"}, {"**", "c"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("MustParseAll (-want +got):\n%s", diff)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		path string
		keys string // dotted; "" is the empty key path
		want bool
	}{
		{name: "literal", path: "card.number", keys: "card.number", want: true},
		{name: "literal shorter", path: "card.number", keys: "card", want: false},
		{name: "literal longer", path: "card", keys: "card.number", want: false},
		{name: "literal case-sensitive", path: "card.number", keys: "Card.number", want: false},

		{name: "star one key", path: "items.*.id", keys: "items.x.id", want: true},
		{name: "star not zero keys", path: "items.*.id", keys: "items.id", want: false},
		{name: "star not two keys", path: "items.*.id", keys: "items.x.y.id", want: false},
		{name: "star at end", path: "a.*", keys: "a.b", want: true},
		{name: "star at end needs a key", path: "a.*", keys: "a", want: false},
		{name: "star alone", path: "*", keys: "a", want: true},
		{name: "star alone not two", path: "*", keys: "a.b", want: false},

		{name: "double star start zero", path: "**.ssn", keys: "ssn", want: true},
		{name: "double star start one", path: "**.ssn", keys: "customer.ssn", want: true},
		{name: "double star start many", path: "**.ssn", keys: "a.b.c.ssn", want: true},
		{name: "double star start not suffix", path: "**.ssn", keys: "ssn.x", want: false},
		{name: "double star start not substring", path: "**.ssn", keys: "a.xssn", want: false},
		{name: "double star middle zero", path: "a.**.z", keys: "a.z", want: true},
		{name: "double star middle many", path: "a.**.z", keys: "a.b.c.z", want: true},
		{name: "double star middle wrong end", path: "a.**.z", keys: "a.b.c", want: false},
		{name: "double star middle wrong start", path: "a.**.z", keys: "b.z", want: false},
		{name: "double star end zero", path: "a.**", keys: "a", want: true},
		{name: "double star end many", path: "a.**", keys: "a.b.c", want: true},
		{name: "double star end wrong start", path: "a.**", keys: "b.a", want: false},
		{name: "double star alone", path: "**", keys: "x.y.z", want: true},
		{name: "double star alone empty", path: "**", keys: "", want: true},
		{name: "double star run collapses", path: "**.**.a", keys: "a", want: true},
		{name: "two double stars", path: "**.a.**.b", keys: "x.a.y.z.b", want: true},
		{name: "two double stars zero each", path: "**.a.**.b", keys: "a.b", want: true},
		{name: "two double stars order", path: "**.a.**.b", keys: "b.a", want: false},
		{name: "double star then star", path: "**.*.id", keys: "id", want: false},
		{name: "double star then star one", path: "**.*.id", keys: "x.id", want: true},
		{name: "star then double star", path: "*.**", keys: "a", want: true},
		{name: "star then double star empty", path: "*.**", keys: "", want: false},
		{name: "backtracking", path: "**.a.b", keys: "a.a.a.b", want: true},
		{name: "backtracking fails", path: "**.a.b.c", keys: "a.b.a.b", want: false},
		{name: "literal star key", path: "a.b", keys: "a.*", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			if tt.keys != "" {
				keys = strings.Split(tt.keys, ".")
			}
			if got := p.Match(keys); got != tt.want {
				t.Errorf("%q.Match(%q) = %v, want %v", tt.path, tt.keys, got, tt.want)
			}
			if got := refMatch(p, keys); got != tt.want {
				t.Errorf("reference disagrees with the table on %q / %q", tt.path, tt.keys)
			}
		})
	}
}

// Many "**" over many keys stays fast (runs are collapsed; no exponential
// blow-up on a miss).
func TestMatchManyDoubleStars(t *testing.T) {
	p, _ := Parse(strings.Repeat("**.a.", 20) + "b")
	keys := strings.Split(strings.Repeat("a.", 60)+"c", ".")
	if p.Match(keys) {
		t.Error("matched")
	}
}

func paths(ss ...string) []Path {
	var out []Path
	for _, s := range ss {
		p, err := Parse(s)
		if err != nil {
			panic(err)
		}
		out = append(out, p)
	}
	return out
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		remove      []string
		mask        []string
		want        string
		wantChanged bool
	}{
		{name: "nothing to do", in: `{"a":1}`, want: `{"a":1}`},
		{name: "no match", in: `{"a":1}`, remove: []string{"b"}, mask: []string{"c"}, want: `{"a":1}`},
		{name: "remove", in: `{"a":1,"ssn":"x"}`, remove: []string{"ssn"}, want: `{"a":1}`, wantChanged: true},
		{name: "mask", in: `{"email":"a@b.c","n":1}`, mask: []string{"email"}, want: `{"email":"[MASKED]","n":1}`, wantChanged: true},
		{name: "remove wins over mask", in: `{"a":1,"b":2}`, remove: []string{"a"}, mask: []string{"a", "b"}, want: `{"b":"[MASKED]"}`, wantChanged: true},
		{name: "remove wins over a wildcard mask", in: `{"x":{"ssn":1}}`, remove: []string{"x.ssn"}, mask: []string{"**.ssn"}, want: `{"x":{}}`, wantChanged: true},
		{name: "masked parent hides the child", in: `{"card":{"number":"4242","exp":"12/30"}}`, remove: []string{"card.number"}, mask: []string{"card"}, want: `{"card":"[MASKED]"}`, wantChanged: true},
		{name: "removed parent", in: `{"card":{"number":"4242"},"id":1}`, remove: []string{"card"}, mask: []string{"card.number"}, want: `{"id":1}`, wantChanged: true},
		{name: "nested", in: `{"customer":{"address":{"line1":"x","city":"y"}}}`, remove: []string{"customer.address.line1"}, want: `{"customer":{"address":{"city":"y"}}}`, wantChanged: true},
		{name: "double star everywhere", in: `{"ssn":1,"a":{"ssn":2,"b":{"ssn":3,"k":4}}}`, remove: []string{"**.ssn"}, want: `{"a":{"b":{"k":4}}}`, wantChanged: true},
		{name: "arrays are transparent", in: `{"data":[{"id":1,"embedding":[0.1]},{"id":2,"embedding":[0.2]}]}`, remove: []string{"data.embedding"}, want: `{"data":[{"id":1},{"id":2}]}`, wantChanged: true},
		{name: "arrays of arrays", in: `{"m":[[{"s":1,"k":1}],[{"s":2}]]}`, mask: []string{"m.s"}, want: `{"m":[[{"k":1,"s":"[MASKED]"}],[{"s":"[MASKED]"}]]}`, wantChanged: true},
		{name: "top-level array", in: `[{"ssn":1},{"ssn":2,"x":3}]`, remove: []string{"ssn"}, want: `[{},{"x":3}]`, wantChanged: true},
		// Array elements are not keys: "*" does not stand for an index.
		{name: "star is not an index", in: `{"items":[{"id":1}]}`, remove: []string{"items.*.id"}, want: `{"items":[{"id":1}]}`},
		{name: "star is one object key", in: `{"items":{"a":{"id":1},"b":{"id":2,"k":0}}}`, remove: []string{"items.*.id"}, want: `{"items":{"a":{},"b":{"k":0}}}`, wantChanged: true},
		{name: "mask an array whole", in: `{"tags":["a","b"]}`, mask: []string{"tags"}, want: `{"tags":"[MASKED]"}`, wantChanged: true},
		{name: "mask null", in: `{"a":null}`, mask: []string{"a"}, want: `{"a":"[MASKED]"}`, wantChanged: true},
		{name: "scalar document", in: `"ssn"`, remove: []string{"**"}, want: `"ssn"`},
		{name: "remove everything", in: `{"a":1,"b":{"c":2}}`, remove: []string{"**"}, want: `{}`, wantChanged: true},
		{name: "numbers kept exact", in: `{"amount":1.000,"big":12345678901234567890123,"ssn":1}`, remove: []string{"ssn"}, want: `{"amount":1.000,"big":12345678901234567890123}`, wantChanged: true},
		{name: "keys with dots are one key", in: `{"a.b":1,"a":{"b":2}}`, remove: []string{"a.b"}, want: `{"a":{},"a.b":1}`, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			changed := Rewrite(v, paths(tt.remove...), paths(tt.mask...), "[MASKED]")
			got, err := Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Rewrite = %s, want %s", got, tt.want)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	doc, err := Decode([]byte(`{"usage":{"total_tokens":1234,"detail":{"x":null}},"n":5,"list":[{"a":1}],"s":"str"}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		want   any
		wantOK bool
	}{
		{name: "nested number", path: "usage.total_tokens", want: jsonNumber("1234"), wantOK: true},
		{name: "top-level", path: "n", want: jsonNumber("5"), wantOK: true},
		{name: "object", path: "usage.detail", want: map[string]any{"x": nil}, wantOK: true},
		{name: "null value is found", path: "usage.detail.x", want: nil, wantOK: true},
		{name: "missing", path: "usage.prompt_tokens", wantOK: false},
		{name: "missing parent", path: "nope.total_tokens", wantOK: false},
		{name: "through a number", path: "n.x", wantOK: false},
		{name: "through a string", path: "s.x", wantOK: false},
		{name: "through an array", path: "list.a", wantOK: false},
		{name: "through null", path: "usage.detail.x.y", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := Lookup(doc, p)
			if ok != tt.wantOK {
				t.Fatalf("Lookup(%q) ok = %v, want %v", tt.path, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Lookup(%q) (-want +got):\n%s", tt.path, diff)
			}
		})
	}
	if got, ok := Lookup(doc, Path{}); !ok || got == nil {
		t.Errorf("Lookup of the empty path = %v, %v; want the document", got, ok)
	}
}

func TestDecodeEncode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "trailing zeros kept", in: `{"a":1.000}`, want: `{"a":1.000}`},
		{name: "big int kept", in: `{"a":123456789012345678901234567890}`, want: `{"a":123456789012345678901234567890}`},
		{name: "exponent kept", in: `[1E2,1e-7,-0,0.10]`, want: `[1E2,1e-7,-0,0.10]`},
		{name: "huge exponent kept", in: `[1e400]`, want: `[1e400]`},
		{name: "no HTML escaping", in: `{"q":"<a href='x'>&</a>"}`, want: `{"q":"<a href='x'>&</a>"}`},
		{name: "unicode kept", in: `{"é":"😀"}`, want: `{"é":"😀"}`},
		{name: "keys sorted, whitespace dropped", in: "{ \"b\" : 1 ,\n \"a\" : [ ] }", want: `{"a":[],"b":1}`},
		{name: "scalar", in: `"x"`, want: `"x"`},
		{name: "trailing whitespace", in: "{} \n", want: `{}`},
		{name: "empty", in: ``, wantErr: true},
		{name: "invalid", in: `{"a":}`, wantErr: true},
		{name: "two values", in: `{} {}`, wantErr: true},
		{name: "trailing garbage", in: `{}x`, wantErr: true},
		{name: "trailing bracket", in: `{"a":1}]`, wantErr: true},
		{name: "trailing brace", in: `{"a":1}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Decode([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Decode(%q) = %v, want an error", tt.in, v)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			got, err := Encode(v)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Encode(Decode(%q)) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// refMatch is the textbook exponential matcher: "**" either matches
// nothing more or swallows one key and stays.
func refMatch(p Path, k []string) bool {
	if len(p) == 0 {
		return len(k) == 0
	}
	switch p[0] {
	case "**":
		return refMatch(p[1:], k) || len(k) > 0 && refMatch(p, k[1:])
	case "*":
		return len(k) > 0 && refMatch(p[1:], k[1:])
	}
	return len(k) > 0 && k[0] == p[0] && refMatch(p[1:], k[1:])
}

// FuzzMatch compares Match with refMatch on short paths and key lists over
// a small alphabet (so matches are common).
func FuzzMatch(f *testing.F) {
	for _, tt := range [][2]string{
		{"\x03\x00", "\x00"}, {"\x03\x00\x03\x01", "\x02\x00\x02\x01"}, {"\x02\x02", "\x00\x01"},
		{"\x00\x03", "\x00"}, {"\x03\x03\x00", "\x00\x00\x00"}, {"", ""}, {"\x03", ""},
	} {
		f.Add([]byte(tt[0]), []byte(tt[1]))
	}
	pathSegs := []string{"a", "b", "*", "**"}
	keySegs := []string{"a", "b", "c", "*"}
	f.Fuzz(func(t *testing.T, pb, kb []byte) {
		if len(pb) > 12 || len(kb) > 12 {
			return
		}
		p := make(Path, len(pb))
		for i, b := range pb {
			p[i] = pathSegs[int(b)%len(pathSegs)]
		}
		k := make([]string, len(kb))
		for i, b := range kb {
			k[i] = keySegs[int(b)%len(keySegs)]
		}
		if got, want := p.Match(k), refMatch(p, k); got != want {
			t.Fatalf("%q.Match(%q) = %v, reference says %v", p, k, got, want)
		}
	})
}

func jsonNumber(s string) any { return json.Number(s) }
