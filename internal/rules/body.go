package rules

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/keyhole-gw/keyhole/internal/strictjson"
)

// MaxJSONDepth bounds nesting (SPEC §5: deeper than 64 → 400).
const MaxJSONDepth = strictjson.MaxDepth

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

// ParseJSON parses one strict JSON body (internal/strictjson: RFC 8259
// plus I-JSON's RFC 7493 restrictions): valid UTF-8 only, no lone
// surrogate escapes, no duplicate keys (after decoding escapes, so "a" and
// "\u0061" collide), no trailing data, no comments, depth ≤ 64. Integers
// that fit in 64 bits become int64, every other number float64; a number
// out of float64's range is an error. Errors are *JSONError.
func ParseJSON(data []byte) (any, error) {
	v, err := strictjson.Parse(data)
	if err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) {
			return nil, &JSONError{Msg: se.Message("the JSON body")}
		}
		return nil, &JSONError{Msg: "the JSON body does not parse"}
	}
	return v, nil
}

// number converts one JSON number literal as ParseJSON does (int64 when
// integral and in range, else float64).
func number(s string) (any, error) { return strictjson.Number(s) }
