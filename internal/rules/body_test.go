package rules

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// jsonCase is one ParseJSON row: want is the parsed value when wantErr is
// "" (refusals compare only the message substring).
type jsonCase struct {
	name    string
	in      string
	want    any
	wantErr string
}

// runJSONCases checks each row, and that refusals are *JSONError with a
// short message that never replays the body (only a duplicate key, clipped,
// is named).
func runJSONCases(t *testing.T, tests []jsonCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseJSON([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseJSON accepted %.80q as %#v", tt.in, got)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseJSON error = %q, want it to contain %q", err, tt.wantErr)
				}
				var je *JSONError
				if !errors.As(err, &je) {
					t.Errorf("error is %T, want *JSONError", err)
				}
				if len(err.Error()) > 120 {
					t.Errorf("error message is %d bytes: %q", len(err.Error()), err)
				}
				if got != nil {
					t.Errorf("value %#v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJSON(%.80q): %v", tt.in, err)
			}
			// reflect.DeepEqual, not cmp.Diff: cmp's slice diffing is
			// exponential on 64 nested arrays.
			if !reflect.DeepEqual(tt.want, got) {
				t.Errorf("ParseJSON(%.80q) = %.200v, want %.200v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseJSONDuplicateKeys(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "plain", in: `{"a":1,"a":2}`, wantErr: `repeats the key "a"`},
		{name: "same value", in: `{"a":1,"a":1}`, wantErr: "repeats the key"},
		{name: "escape collides", in: `{"a":1,"\u0061":2}`, wantErr: `repeats the key "a"`},
		{name: "escape collides reversed", in: `{"\u0061":1,"a":2}`, wantErr: "repeats the key"},
		{name: "escaped slash collides", in: `{"a/b":1,"a\/b":2}`, wantErr: "repeats the key"},
		{name: "non-ASCII escape collides", in: `{"é":1,"\u00e9":2}`, wantErr: "repeats the key"},
		{name: "pair escape collides", in: `{"😀":1,"\ud83d\ude00":2}`, wantErr: "repeats the key"},
		{name: "nested", in: `{"a":{"b":1,"b":2}}`, wantErr: `repeats the key "b"`},
		{name: "in array", in: `[{"x":1},{"y":1,"y":2}]`, wantErr: `repeats the key "y"`},
		{name: "deep", in: `{"a":[[{"b":{"c":1,"c":2}}]]}`, wantErr: "repeats the key"},
		{name: "empty key twice", in: `{"":1,"":2}`, wantErr: "repeats the key"},
		{name: "long key clipped", in: `{"` + strings.Repeat("k", 100) + `":1,"` + strings.Repeat("k", 100) + `":2}`, wantErr: "…"},
		{name: "case differs is fine", in: `{"a":1,"A":2}`, want: map[string]any{"a": int64(1), "A": int64(2)}},
		{name: "same key in siblings is fine", in: `{"a":{"k":1},"b":{"k":2}}`, want: map[string]any{"a": map[string]any{"k": int64(1)}, "b": map[string]any{"k": int64(2)}}},
		{name: "same key in array elements is fine", in: `[{"k":1},{"k":2}]`, want: []any{map[string]any{"k": int64(1)}, map[string]any{"k": int64(2)}}},
	})
}

func TestParseJSONInvalidUTF8(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "raw 0xff in string", in: "{\"a\":\"\xff\"}", wantErr: "not valid UTF-8"},
		{name: "raw 0xff in key", in: "{\"\xff\":1}", wantErr: "not valid UTF-8"},
		{name: "raw 0xff outside a string", in: "{\"a\":1}\xff", wantErr: "not valid UTF-8"},
		{name: "overlong slash C0 AF", in: "\"\xc0\xaf\"", wantErr: "not valid UTF-8"},
		{name: "overlong dot C0 AE", in: "\"\xc0\xae\"", wantErr: "not valid UTF-8"},
		{name: "encoded surrogate ED A0 80", in: "\"\xed\xa0\x80\"", wantErr: "not valid UTF-8"},
		{name: "encoded low surrogate ED B0 80", in: "\"\xed\xb0\x80\"", wantErr: "not valid UTF-8"},
		{name: "truncated sequence", in: "\"\xe2\x82\"", wantErr: "not valid UTF-8"},
		{name: "beyond U+10FFFF", in: "\"\xf4\x90\x80\x80\"", wantErr: "not valid UTF-8"},
		{name: "valid multibyte", in: `"é😀"`, want: "é😀"},
		{name: "U+FFFD itself is fine", in: "\"\xef\xbf\xbd\"", want: "\uFFFD"},
	})
}

func TestParseJSONSurrogateEscapes(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "lone high", in: `"\ud800"`, wantErr: "lone surrogate"},
		{name: "lone low", in: `"\udc00x"`, wantErr: "lone surrogate"},
		{name: "lone high upper-case", in: `"\uD800"`, wantErr: "lone surrogate"},
		{name: "high then high", in: `"\ud800\ud800"`, wantErr: "lone surrogate"},
		{name: "low then high", in: `"\udc00\ud800"`, wantErr: "lone surrogate"},
		{name: "high then text", in: `"\ud800abcdef"`, wantErr: "lone surrogate"},
		{name: "high at end of key", in: `{"a\ud83d":1}`, wantErr: "lone surrogate"},
		{name: "high then escaped char", in: `"\ud800\n"`, wantErr: "lone surrogate"},
		{name: "valid pair", in: `"\ud83d\ude00"`, want: "😀"},
		{name: "valid pair upper-case", in: `"\uD83D\uDE00"`, want: "😀"},
		{name: "two valid pairs", in: `"\ud83d\ude00\ud83d\ude01"`, want: "😀😁"},
		{name: "escaped backslash then u", in: `"\\ud800"`, want: `\ud800`},
		{name: "three backslashes", in: `"\\\ud83d\ude00"`, want: `\😀`},
		{name: "not a surrogate", in: `"\u00e9\u20ac"`, want: "é€"},
	})
}

func TestParseJSONTrailingData(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "two objects", in: `{} {}`, wantErr: "data after its value"},
		{name: "garbage", in: `{}x`, wantErr: "data after its value"},
		{name: "closing bracket", in: `{}]`, wantErr: "data after its value"},
		{name: "closing brace", in: `{}}`, wantErr: "data after its value"},
		{name: "second scalar", in: `1 2`, wantErr: "data after its value"},
		{name: "NUL after", in: "{}\x00", wantErr: "data after its value"},
		{name: "comma after", in: `{},`, wantErr: "data after its value"},
		{name: "trailing space", in: `{} `, want: map[string]any{}},
		{name: "trailing newlines", in: "{}\r\n\t\n", want: map[string]any{}},
		{name: "leading whitespace", in: " \n{}", want: map[string]any{}},
	})
}

func TestParseJSONComments(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "line comment", in: "{\"a\":1 // c\n}", wantErr: "malformed"},
		{name: "block comment", in: `{"a":/* c */1}`, wantErr: "malformed"},
		{name: "leading comment", in: "// c\n{}", wantErr: "malformed"},
		{name: "trailing comment", in: `{} /* c */`, wantErr: "data after"},
		{name: "hash comment", in: "# c\n{}", wantErr: "malformed"},
		{name: "comment-like string is data", in: `{"a":"// not a comment"}`, want: map[string]any{"a": "// not a comment"}},
	})
}

func TestParseJSONSyntax(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "trailing comma object", in: `{"a":1,}`, wantErr: "malformed"},
		{name: "trailing comma array", in: `[1,]`, wantErr: "malformed"},
		{name: "missing colon", in: `{"a" 1}`, wantErr: "malformed"},
		{name: "missing comma", in: `[1 2]`, wantErr: "malformed"},
		{name: "single quotes", in: `{'a':1}`, wantErr: "malformed"},
		{name: "unquoted key", in: `{a:1}`, wantErr: "malformed"},
		{name: "number key", in: `{1:1}`, wantErr: "malformed"},
		{name: "unterminated string", in: `"abc`, wantErr: "ends too early"},
		{name: "unclosed object", in: `{"a":1`, wantErr: "ends too early"},
		{name: "unclosed array", in: `[1`, wantErr: "ends too early"},
		{name: "raw control char in string", in: "\"a\x01b\"", wantErr: "malformed at byte 3"},
		{name: "raw newline in string", in: "\"a\nb\"", wantErr: "malformed at byte 3"},
		{name: "bad escape", in: `"\x41"`, wantErr: "malformed"},
		{name: "short unicode escape", in: `"\u12"`, wantErr: "malformed"},
		{name: "TRUE", in: `TRUE`, wantErr: "malformed"},
		{name: "undefined", in: `undefined`, wantErr: "malformed"},
		{name: "escaped NUL is data", in: `"a\u0000b"`, want: "a\x00b"},
	})
}

// nest is depth levels of open (object members named "a"), then close.
func nest(depth int, open, close, inner string) string {
	return strings.Repeat(open, depth) + inner + strings.Repeat(close, depth)
}

func TestParseJSONDepth(t *testing.T) {
	// deepArr is d nested arrays, the innermost holding inner (if any).
	deepArr := func(d int, inner ...any) any {
		v := any(append([]any{}, inner...))
		for range d - 1 {
			v = []any{v}
		}
		return v
	}
	deepObj := func(d int) any {
		var v any = map[string]any{}
		for range d - 1 {
			v = map[string]any{"a": v}
		}
		return v
	}
	runJSONCases(t, []jsonCase{
		{name: "arrays 64", in: nest(64, "[", "]", ""), want: deepArr(64)},
		{name: "arrays 65", in: nest(65, "[", "]", ""), wantErr: "nests deeper than 64"},
		{name: "objects 64", in: nest(63, `{"a":`, "}", "{}"), want: deepObj(64)},
		{name: "objects 65", in: nest(64, `{"a":`, "}", "{}"), wantErr: "nests deeper than 64"},
		{name: "mixed 65", in: nest(32, `{"a":[`, "]}", "[]"), wantErr: "nests deeper than 64"},
		{name: "scalar inside depth 64", in: nest(64, "[", "]", "1"), want: deepArr(64, int64(1))},
		{name: "empty object inside depth 64", in: nest(64, "[", "]", "{}"), wantErr: "nests deeper than 64"},
		{name: "100k arrays in one line", in: nest(100000, "[", "]", ""), wantErr: "nests deeper than 64"},
		{name: "100k unclosed arrays", in: strings.Repeat("[", 100000), wantErr: "nests deeper than 64"},
		{name: "wide is fine", in: "[" + strings.Repeat("[],", 9999) + "[]]", want: func() any {
			a := make([]any, 10000)
			for i := range a {
				a[i] = []any{}
			}
			return a
		}()},
	})
}

func TestParseJSONNumbers(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "int", in: `100`, want: int64(100)},
		{name: "negative int", in: `-7`, want: int64(-7)},
		{name: "max int64", in: `9223372036854775807`, want: int64(math.MaxInt64)},
		{name: "min int64", in: `-9223372036854775808`, want: int64(math.MinInt64)},
		{name: "2^63 is double", in: `9223372036854775808`, want: float64(9223372036854775808)},
		{name: "below min int64 is double", in: `-9223372036854775809`, want: float64(-9223372036854775809)},
		{name: "20 digits is double", in: `12345678901234567890`, want: float64(12345678901234567890)},
		{name: "minus zero", in: `-0`, want: int64(0)},
		{name: "minus zero point zero", in: `-0.0`, want: math.Copysign(0, -1)},
		{name: "1E2 is double 100", in: `1E2`, want: float64(100)},
		{name: "1e2 is double 100", in: `1e2`, want: float64(100)},
		{name: "1.0 is double", in: `1.0`, want: float64(1)},
		{name: "fraction", in: `99.5`, want: 99.5},
		{name: "exp sign", in: `1e+2`, want: float64(100)},
		{name: "negative exp", in: `25e-2`, want: 0.25},
		{name: "max float", in: `1.7976931348623157e308`, want: math.MaxFloat64},
		{name: "underflow rounds to zero", in: `1e-400`, want: float64(0)},
		{name: "1e400 refused", in: `1e400`, wantErr: "number out of range"},
		{name: "-1e400 refused", in: `-1e400`, wantErr: "number out of range"},
		{name: "huge integer literal", in: "1" + strings.Repeat("0", 400), wantErr: "number out of range"},
		{name: "leading zero", in: `01`, wantErr: "data after its value"},
		{name: "leading zero in array", in: `[01]`, wantErr: "malformed"},
		{name: "plus", in: `+1`, wantErr: "malformed"},
		{name: "leading dot", in: `.5`, wantErr: "malformed"},
		{name: "trailing dot", in: `5.`, wantErr: "ends too early"},
		{name: "NaN", in: `NaN`, wantErr: "malformed"},
		{name: "Infinity", in: `Infinity`, wantErr: "malformed"},
		{name: "-Infinity", in: `-Infinity`, wantErr: "malformed"},
		{name: "hex", in: `0x10`, wantErr: "data after its value"},
		{name: "bare exponent", in: `1e`, wantErr: "ends too early"},
		{name: "in object", in: `{"amount":100,"rate":0.5}`, want: map[string]any{"amount": int64(100), "rate": 0.5}},
	})
}

func TestParseJSONBOMAndEmpty(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "BOM", in: "\xef\xbb\xbf{}", wantErr: "malformed"},
		{name: "BOM after whitespace", in: " \xef\xbb\xbf{}", wantErr: "malformed"},
		{name: "empty", in: "", wantErr: "ends too early"},
		{name: "whitespace only", in: " \t\r\n", wantErr: "ends too early"},
		{name: "NUL only", in: "\x00", wantErr: "malformed"},
	})
}

func TestParseJSONScalars(t *testing.T) {
	runJSONCases(t, []jsonCase{
		{name: "string", in: `"hi"`, want: "hi"},
		{name: "number", in: `42`, want: int64(42)},
		{name: "true", in: `true`, want: true},
		{name: "false", in: `false`, want: false},
		{name: "null", in: `null`, want: nil},
		{name: "empty array", in: `[]`, want: []any{}},
		{name: "empty object", in: `{}`, want: map[string]any{}},
		{name: "mixed array", in: `[1,"a",null,true,{}]`, want: []any{int64(1), "a", nil, true, map[string]any{}}},
	})
}

func TestParseJSONLarge(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	runJSONCases(t, []jsonCase{
		{name: "1 MiB string", in: `{"s":"` + big + `"}`, want: map[string]any{"s": big}},
		{name: "1 MiB of escapes", in: `"` + strings.Repeat(`\n`, 1<<19) + `"`, want: strings.Repeat("\n", 1<<19)},
		{name: "many keys", in: func() string {
			var b strings.Builder
			b.WriteString("{")
			for i := range 10000 {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(`"k` + strings.Repeat("0", 5-len(itoa(i))) + itoa(i) + `":1`)
			}
			b.WriteString("}")
			return b.String()
		}(), want: func() any {
			m := map[string]any{}
			for i := range 10000 {
				m["k"+strings.Repeat("0", 5-len(itoa(i)))+itoa(i)] = int64(1)
			}
			return m
		}()},
		{name: "duplicate after a 1 MiB value", in: `{"a":"` + big + `","a":1}`, wantErr: "repeats"},
	})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestIsJSONType(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		want bool
	}{
		{name: "plain", ct: "application/json", want: true},
		{name: "charset", ct: "application/json; charset=utf-8", want: true},
		{name: "vendor +json", ct: "application/vnd.api+json", want: true},
		{name: "problem+json", ct: "application/problem+json; charset=utf-8", want: true},
		{name: "upper case", ct: "APPLICATION/JSON", want: true},
		{name: "mixed case suffix", ct: "application/VND.API+JSON", want: true},
		{name: "spaces", ct: "  application/json  ", want: true},
		{name: "text/plain", ct: "text/plain", want: false},
		{name: "text/json", ct: "text/json", want: false},
		{name: "jsonp", ct: "application/javascript", want: false},
		{name: "json-seq", ct: "application/json-seq", want: false},
		{name: "x-json suffix without plus", ct: "application/x-json", want: false},
		{name: "form", ct: "application/x-www-form-urlencoded", want: false},
		{name: "empty", ct: "", want: false},
		{name: "malformed params still JSON", ct: "application/json; charset", want: true},
		{name: "malformed double semicolon", ct: "application/json;;", want: true},
		{name: "malformed garbage", ct: "json", want: false},
		{name: "malformed slash only", ct: "/", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsJSONType(tt.ct); got != tt.want {
				t.Errorf("IsJSONType(%q) = %v, want %v", tt.ct, got, tt.want)
			}
		})
	}
}

func TestIsForm(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		want bool
	}{
		{name: "plain", ct: "application/x-www-form-urlencoded", want: true},
		{name: "charset", ct: "application/x-www-form-urlencoded; charset=utf-8", want: true},
		{name: "upper", ct: "Application/X-WWW-Form-Urlencoded", want: true},
		{name: "multipart", ct: "multipart/form-data; boundary=x", want: false},
		{name: "json", ct: "application/json", want: false},
		{name: "empty", ct: "", want: false},
		{name: "malformed", ct: "application/x-www-form-urlencoded;;", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsForm(tt.ct); got != tt.want {
				t.Errorf("IsForm(%q) = %v, want %v", tt.ct, got, tt.want)
			}
		})
	}
}

func TestParseForm(t *testing.T) {
	fields := func(n int) string {
		var parts []string
		for i := range n {
			parts = append(parts, "k"+itoa(i)+"=v")
		}
		return strings.Join(parts, "&")
	}
	tests := []struct {
		name    string
		in      string
		want    map[string][]string
		wantErr string
	}{
		{name: "simple", in: "amount=500&currency=usd", want: map[string][]string{"amount": {"500"}, "currency": {"usd"}}},
		{name: "repeated keys are lists", in: "a=1&a=2&b=3", want: map[string][]string{"a": {"1", "2"}, "b": {"3"}}},
		{name: "decoded", in: "q=a+b%26c&%C3%A9=%E2%82%AC", want: map[string][]string{"q": {"a b&c"}, "é": {"€"}}},
		{name: "brackets", in: "metadata%5Bk%5D=v", want: map[string][]string{"metadata[k]": {"v"}}},
		{name: "no value", in: "flag", want: map[string][]string{"flag": {""}}},
		{name: "empty", in: "", want: map[string][]string{}},
		{name: "1000 fields", in: fields(1000), want: func() map[string][]string {
			m := map[string][]string{}
			for i := range 1000 {
				m["k"+itoa(i)] = []string{"v"}
			}
			return m
		}()},
		{name: "1001 fields", in: fields(1001), wantErr: "more than 1000 fields"},
		{name: "1001 empty fields", in: strings.Repeat("&", 1000), wantErr: "more than 1000 fields"},
		{name: "bad escape", in: "a=%zz", wantErr: "does not parse"},
		{name: "bad escape in key", in: "%zz=1", wantErr: "does not parse"},
		{name: "truncated escape", in: "a=%4", wantErr: "does not parse"},
		{name: "semicolon separator", in: "a=1;b=2", wantErr: "does not parse"},
		{name: "raw non-UTF-8", in: "a=\xff", wantErr: "not valid UTF-8"},
		{name: "encoded non-UTF-8 value", in: "a=%ff", wantErr: "not valid UTF-8"},
		{name: "encoded non-UTF-8 key", in: "%c0%ae=1", wantErr: "not valid UTF-8"},
		{name: "encoded surrogate", in: "a=%ed%a0%80", wantErr: "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseForm([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseForm error = %v, want %q (got %v)", err, tt.wantErr, got)
				}
				if got != nil {
					t.Errorf("partial result %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseForm: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseForm (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBody(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		ct       string
		wantJSON any
		wantOK   bool
		wantForm map[string][]string
	}{
		{name: "JSON labelled JSON", data: `{"a":1}`, ct: "application/json", wantJSON: map[string]any{"a": int64(1)}, wantOK: true},
		{name: "JSON labelled text", data: `{"a":1}`, ct: "text/plain", wantJSON: map[string]any{"a": int64(1)}, wantOK: true},
		{name: "JSON labelled form is JSON and not a form", data: `{"a":1}`, ct: "application/x-www-form-urlencoded", wantJSON: map[string]any{"a": int64(1)}, wantOK: true,
			wantForm: map[string][]string{`{"a":1}`: {""}}},
		{name: "form", data: "a=1", ct: "application/x-www-form-urlencoded", wantForm: map[string][]string{"a": {"1"}}},
		{name: "form without its type", data: "a=1", ct: "text/plain"},
		{name: "bad JSON labelled JSON", data: `{"a":1,"a":2}`, ct: "application/json"},
		{name: "empty", data: "", ct: "application/json"},
		{name: "whitespace", data: "  \n", ct: "application/json"},
		{name: "nil data", data: "\x00nil", ct: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data []byte
			if tt.data != "\x00nil" {
				data = []byte(tt.data)
			}
			b := NewBody(data, tt.ct)
			got, ok := b.JSON()
			if ok != tt.wantOK {
				t.Fatalf("JSON ok = %v, want %v (err %v)", ok, tt.wantOK, b.JSONErr())
			}
			if (b.JSONErr() == nil) != tt.wantOK {
				t.Errorf("JSONErr = %v with ok %v", b.JSONErr(), ok)
			}
			if diff := cmp.Diff(tt.wantJSON, got); diff != "" {
				t.Errorf("JSON (-want +got):\n%s", diff)
			}
			form, fok := b.Form()
			if fok != (tt.wantForm != nil) {
				t.Errorf("Form ok = %v, want %v", fok, tt.wantForm != nil)
			}
			if diff := cmp.Diff(tt.wantForm, form); diff != "" {
				t.Errorf("Form (-want +got):\n%s", diff)
			}
			if string(b.Data) != string(data) {
				t.Errorf("Data was rewritten")
			}
		})
	}
}
