package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The full hostile tables for bodies live in internal/rules (ParseJSON is
// this parser); these pin what the package adds: the kind, offset and path
// of each refusal, and the messages' subject.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantKind   Kind
		wantOffset int64 // -1: not checked
		wantKey    string
		wantPath   string
		wantMsg    string // with subject "the body"
	}{
		{name: "empty", in: "", wantKind: Truncated, wantOffset: 0, wantMsg: "the body ends too early"},
		{name: "truncated object", in: `{"a":1`, wantKind: Truncated, wantOffset: -1, wantMsg: "the body ends too early"},
		{name: "syntax", in: `{"a" 1}`, wantKind: Syntax, wantOffset: 5, wantMsg: "the body is malformed at byte 5"},
		{name: "comment", in: `{"a":/*x*/1}`, wantKind: Syntax, wantOffset: -1, wantMsg: "is malformed at byte"},
		{name: "trailing", in: `{}  x`, wantKind: Trailing, wantOffset: 4, wantMsg: "the body has data after its value"},
		{name: "trailing bracket", in: "{}\n]", wantKind: Trailing, wantOffset: 3},
		{name: "invalid UTF-8", in: "{\"a\":\"x\xffy\"}", wantKind: InvalidUTF8, wantOffset: 7, wantMsg: "the body is not valid UTF-8"},
		{name: "lone surrogate", in: `{"k":"ab\udc00"}`, wantKind: LoneSurrogate, wantOffset: 8, wantMsg: "the body holds a lone surrogate escape"},
		{name: "duplicate at top", in: `{"a":1,"b":2,"a":3}`, wantKind: DuplicateKey, wantOffset: -1, wantKey: "a", wantPath: "",
			wantMsg: `the body repeats the key "a" in one object`},
		{name: "duplicate nested", in: `{"rules":[{"name":"x"},{"name":"y","name":"z"}]}`, wantKind: DuplicateKey, wantOffset: -1,
			wantKey: "name", wantPath: "rules[1]"},
		{name: "duplicate by escape", in: `{"x":{"n\u0061me":1,"name":2}}`, wantKind: DuplicateKey, wantOffset: -1, wantKey: "name", wantPath: "x"},
		{name: "duplicate under an odd key", in: `{"a b":[[{"k":1,"k":2}]]}`, wantKind: DuplicateKey, wantOffset: -1, wantKey: "k", wantPath: `"a b"[0][0]`},
		{name: "long duplicate clipped on a rune", in: `{"` + strings.Repeat("é", 30) + `":1,"` + strings.Repeat("é", 30) + `":1}`,
			wantKind: DuplicateKey, wantOffset: -1, wantKey: strings.Repeat("é", 20) + "…"},
		{name: "too deep", in: strings.Repeat("[", 65) + strings.Repeat("]", 65), wantKind: TooDeep, wantOffset: 65, wantMsg: "the body nests deeper than 64 levels"},
		{name: "number out of range", in: `[1e999]`, wantKind: NumberRange, wantOffset: -1, wantMsg: "the body holds a number out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Parse([]byte(tt.in))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse = %v, %v; want an *Error", v, err)
			}
			if v != nil {
				t.Errorf("value %v with an error", v)
			}
			if e.Kind != tt.wantKind {
				t.Errorf("Kind = %d, want %d (%v)", e.Kind, tt.wantKind, e)
			}
			if tt.wantOffset >= 0 && e.Offset != tt.wantOffset {
				t.Errorf("Offset = %d, want %d", e.Offset, tt.wantOffset)
			}
			if e.Key != tt.wantKey || e.Path != tt.wantPath {
				t.Errorf("Key, Path = %q, %q; want %q, %q", e.Key, e.Path, tt.wantKey, tt.wantPath)
			}
			if msg := e.Message("the body"); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("Message = %q, want it to contain %q", msg, tt.wantMsg)
			}
			if !strings.HasPrefix(e.Error(), "the JSON document ") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want any
	}{
		{name: "object", in: `{"a":[1,2.5,"x",true,null,{}]}`, want: map[string]any{"a": []any{int64(1), 2.5, "x", true, nil, map[string]any{}}}},
		{name: "escaped key is decoded", in: `{"n\u0061me":1}`, want: map[string]any{"name": int64(1)}},
		{name: "keys are case-sensitive", in: `{"a":1,"A":2}`, want: map[string]any{"a": int64(1), "A": int64(2)}},
		{name: "surrogate pair", in: `"\ud83d\ude00"`, want: "😀"},
		{name: "int64 bounds", in: `[9223372036854775807,-9223372036854775808,9223372036854775808]`,
			want: []any{int64(math.MaxInt64), int64(math.MinInt64), float64(9223372036854775808)}},
		{name: "exponent is a double", in: `1e2`, want: float64(100)},
		{name: "depth 64", in: strings.Repeat("[", 64) + strings.Repeat("]", 64), want: nestArr(64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func nestArr(d int) any {
	var v any = []any{}
	for range d - 1 {
		v = []any{v}
	}
	return v
}

func TestFormatPath(t *testing.T) {
	tests := []struct {
		name  string
		steps []any
		want  string
	}{
		{name: "empty", want: ""},
		{name: "keys", steps: []any{"a", "b_c", "d-e"}, want: "a.b_c.d-e"},
		{name: "index first", steps: []any{0, "a"}, want: "[0].a"},
		{name: "indexes", steps: []any{"rules", 3, "paths", 0}, want: "rules[3].paths[0]"},
		{name: "odd key quoted", steps: []any{"x", "a.b", "\n"}, want: `x."a.b"."\n"`},
		{name: "empty key quoted", steps: []any{""}, want: `""`},
		{name: "long key clipped", steps: []any{strings.Repeat("k", 50)}, want: `"` + strings.Repeat("k", 40) + `…"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatPath(tt.steps...); got != tt.want {
				t.Errorf("FormatPath = %q, want %q", got, tt.want)
			}
		})
	}
}

// refDup reports a repeated key in one object, found with encoding/json's
// tokenizer (an independent reading of the same document).
func refDup(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj     bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.wantKey {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.wantKey = false
				continue
			}
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.obj {
			top.wantKey = true
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, &frame{obj: d == '{', keys: map[string]bool{}, wantKey: d == '{'})
		}
	}
}

func asFloats(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = asFloats(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = asFloats(e)
		}
		return a
	}
	return v
}

// FuzzParse: Parse never panics; a refusal is an *Error of a known kind,
// with an offset inside the document and a short one-line message; it
// refuses invalid UTF-8 exactly when the document is not UTF-8; what it
// accepts, encoding/json accepts with the same meaning, holds no repeated
// key, and survives a round trip through json.Marshal.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `1`, `-0`, `1e400`, `"x"`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `"\ud800"`, `"\ud83d\ude00"`,
		`{} {}`, `{}x`, "\xef\xbb\xbf{}", `{"a":[1,2,{"b":null}]}`, `01`, `12345678901234567890`, `[1.5e3,true,false]`,
		strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
		`"\\ud800"`, `"\\\ud800"`, "\"\xed\xa0\x80\"", `{"a":{"a":{"a":1}}}`, `{"":1}`, " \t\n",
		`{"name":"x","rules":[{"name":"r","name":"s"}]}`, `{"NAME":1,"name":2}`, `[{"k":1},{"k":1,"k":2}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error", err)
			}
			if e.Kind < Syntax || e.Kind > NonStringKey {
				t.Fatalf("unknown kind %d", e.Kind)
			}
			if e.Offset < 0 || e.Offset > int64(len(data)) {
				t.Fatalf("offset %d outside a %d-byte document", e.Offset, len(data))
			}
			msg := e.Message("the body")
			if len(msg) > 120 || strings.ContainsAny(msg, "\r\n") || !utf8.ValidString(msg) {
				t.Fatalf("message %q", msg)
			}
			if (e.Kind == InvalidUTF8) != !utf8.Valid(data) {
				t.Fatalf("kind %d for a document whose UTF-8 validity is %v", e.Kind, utf8.Valid(data))
			}
			if e.Kind == DuplicateKey && !refDup(data) {
				t.Fatalf("repeated key %q reported at %q, but encoding/json's tokens repeat none", e.Key, e.Path)
			}
			if e.Kind == Syntax && json.Valid(data) {
				t.Fatalf("syntax error at %d in JSON that encoding/json calls valid", e.Offset)
			}
			return
		}
		if !utf8.Valid(data) || refDup(data) {
			t.Fatalf("accepted %q", data)
		}
		var ref any
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatalf("encoding/json refuses what Parse accepted: %v", err)
		}
		if !reflect.DeepEqual(asFloats(v), ref) {
			t.Fatalf("Parse and encoding/json disagree on %q", data)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal of an accepted value: %v", err)
		}
		v2, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse refuses its own value's JSON %q: %v", b, err)
		}
		if !reflect.DeepEqual(asFloats(v), asFloats(v2)) {
			t.Fatalf("round trip changed the value: %q → %q", data, b)
		}
		for _, n := range numbers(data) {
			got, err := Number(n)
			if err != nil {
				t.Fatalf("Number(%q) refused in an accepted document: %v", n, err)
			}
			_, isInt := got.(int64)
			_, fitErr := strconv.ParseInt(n, 10, 64)
			if want := !strings.ContainsAny(n, ".eE") && fitErr == nil; isInt != want {
				t.Fatalf("number %q read as %T", n, got)
			}
		}
	})
}

func numbers(data []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out []string
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		if n, ok := tok.(json.Number); ok {
			out = append(out, string(n))
		}
	}
}
