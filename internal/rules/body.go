package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxJSONDepth bounds nesting (SPEC §5: deeper than 64 → 400).
const MaxJSONDepth = 64

// maxFormFields bounds a form body like the query (SPEC §3.4: 1,000).
const maxFormFields = 1000

// Body is a request body buffered for rules. What the rules read is exactly
// what is forwarded: Data is never rewritten.
type Body struct {
	// Data is the body as the rules see it (decoded from gzip when the
	// request was gzip-encoded; the forwarded bytes are the original).
	Data        []byte
	ContentType string

	once    sync.Once
	json    any
	jsonOK  bool
	jsonErr error
	form    map[string][]string
	formOK  bool
}

// NewBody wraps buffered data.
func NewBody(data []byte, contentType string) *Body {
	return &Body{Data: data, ContentType: contentType}
}

func (b *Body) parse() {
	b.once.Do(func() {
		if len(bytes.TrimSpace(b.Data)) > 0 {
			b.json, b.jsonErr = ParseJSON(b.Data)
			b.jsonOK = b.jsonErr == nil
		} else {
			b.jsonErr = errors.New("empty body")
		}
		if IsForm(b.ContentType) {
			if f, err := ParseForm(b.Data); err == nil {
				b.form, b.formOK = f, true
			}
		}
	})
}

// JSON is the parsed body when it parses as strict JSON, whatever the
// Content-Type says (so relabelling a JSON body cannot dodge a rule).
func (b *Body) JSON() (any, bool) {
	b.parse()
	return b.json, b.jsonOK
}

// JSONErr is why the body is not JSON (nil when it is).
func (b *Body) JSONErr() error {
	b.parse()
	return b.jsonErr
}

// Form is the parsed form when the Content-Type is
// application/x-www-form-urlencoded and it parses.
func (b *Body) Form() (map[string][]string, bool) {
	b.parse()
	return b.form, b.formOK
}

// IsJSONType reports application/json and any */*+json media type.
func IsJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// IsForm reports application/x-www-form-urlencoded.
func IsForm(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/x-www-form-urlencoded"
}

// ParseForm parses a urlencoded body strictly: an invalid escape or more
// than 1,000 fields is an error, never a partial result.
func ParseForm(b []byte) (map[string][]string, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("form body is not valid UTF-8")
	}
	if bytes.Count(b, []byte("&"))+1 > maxFormFields {
		return nil, fmt.Errorf("form body has more than %d fields", maxFormFields)
	}
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, errors.New("form body does not parse")
	}
	// Escapes can encode what the raw check refused (%ff, %c0%ae): the
	// decoded keys and values must be UTF-8 too, so rules and upstream read
	// the same text.
	for k, vs := range v {
		if !utf8.ValidString(k) {
			return nil, errors.New("form body is not valid UTF-8 once decoded")
		}
		for _, s := range vs {
			if !utf8.ValidString(s) {
				return nil, errors.New("form body is not valid UTF-8 once decoded")
			}
		}
	}
	return v, nil
}

// JSONError says why a body is not strict JSON; its message is safe to
// send back (it names a position, never the content).
type JSONError struct{ Msg string }

func (e *JSONError) Error() string { return e.Msg }

func jerr(format string, a ...any) error { return &JSONError{Msg: fmt.Sprintf(format, a...)} }

// ParseJSON parses one strict JSON value (RFC 8259, plus I-JSON's RFC 7493
// restrictions): valid UTF-8 only, no lone surrogate escapes, no duplicate
// keys (after decoding escapes, so "a" and "\u0061" collide), no trailing
// data, no comments, depth ≤ 64. Integers that fit in 64 bits become int64,
// every other number float64; a number out of float64's range is an error.
func ParseJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, jerr("the JSON body is not valid UTF-8")
	}
	if err := checkSurrogates(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, jerr("the JSON body has data after its value")
	}
	return v, nil
}

func readValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxErr(err, dec)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxJSONDepth {
			return nil, jerr("the JSON body nests deeper than %d levels", MaxJSONDepth)
		}
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, syntaxErr(err, dec)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, jerr("the JSON body has an object key that is not a string")
				}
				if _, dup := m[k]; dup {
					return nil, jerr("the JSON body repeats the key %q in one object", clipKey(k))
				}
				v, err := readValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, syntaxErr(err, dec)
			}
			return m, nil
		case '[':
			a := []any{}
			for dec.More() {
				v, err := readValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, syntaxErr(err, dec)
			}
			return a, nil
		}
		return nil, jerr("the JSON body is malformed at byte %d", dec.InputOffset())
	case json.Number:
		return number(string(t))
	case string, bool, nil:
		return t, nil
	}
	return nil, jerr("the JSON body is malformed at byte %d", dec.InputOffset())
}

func number(s string) (any, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, jerr("the JSON body holds a number out of range")
	}
	return f, nil
}

func syntaxErr(err error, dec *json.Decoder) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return jerr("the JSON body ends too early")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return jerr("the JSON body is malformed at byte %d", se.Offset)
	}
	return jerr("the JSON body is malformed at byte %d", dec.InputOffset())
}

// checkSurrogates refuses \uD800–\uDFFF escapes that are not a high
// surrogate followed by a low one: encoding/json would silently turn them
// into U+FFFD, so two parsers could read the same key differently.
func checkSurrogates(b []byte) error {
	for i := 0; i+5 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++ // skip the escaped character (\\ or \")
			continue
		}
		r, ok := hex4(b[i+2 : i+6])
		if !ok {
			i += 1
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				if lo, ok := hex4(b[i+8 : i+12]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 11
					continue
				}
			}
			return jerr("the JSON body holds a lone surrogate escape")
		case r >= 0xDC00 && r <= 0xDFFF:
			return jerr("the JSON body holds a lone surrogate escape")
		}
		i += 5
	}
	return nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func clipKey(k string) string {
	if len(k) > 40 {
		return k[:40] + "…"
	}
	return k
}
