// Package strictjson reads one JSON value the strict way (RFC 8259 with
// I-JSON's RFC 7493 restrictions), for the places where two parsers must
// never read the same bytes differently: request bodies that rules inspect
// (SPEC §5) and configuration that keyhole runs (SPEC §7.1).
//
// encoding/json is lenient where an attacker (or a reviewer) gets hurt: it
// replaces invalid UTF-8 and lone surrogate escapes with U+FFFD, lets a
// repeated key through (the last one wins, while another parser may keep
// the first), and matches struct field names without regard to case. Parse
// refuses all of that, and bounds nesting.
//
// Parse never rewrites anything: callers forward or store the bytes they
// were given, and the value it returns is only what those bytes mean.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxDepth bounds nesting (SPEC §5: deeper than 64 → 400).
const MaxDepth = 64

// Kind says which rule a document broke.
type Kind int

// The kinds of refusal.
const (
	// Syntax: the bytes are not JSON (Offset is where the scanner stopped).
	Syntax Kind = iota + 1
	// Truncated: the document ends inside a value, or is empty.
	Truncated
	// Trailing: more bytes after the value (Offset is where they start).
	Trailing
	// InvalidUTF8: a byte sequence that is not UTF-8, anywhere.
	InvalidUTF8
	// LoneSurrogate: a \uD800–\uDFFF escape that is not a proper pair.
	LoneSurrogate
	// DuplicateKey: an object repeats a key after escapes are decoded
	// (Key and Path say which).
	DuplicateKey
	// TooDeep: nesting deeper than MaxDepth.
	TooDeep
	// NumberRange: a number out of float64's range.
	NumberRange
	// NonStringKey: an object key that is not a string (encoding/json's
	// scanner refuses these first; kept for completeness).
	NonStringKey
)

// Error says why a document is not strict JSON. Its message names a kind,
// a byte offset, or (for a repeated key) the key clipped to 40 bytes —
// never the document's other content — so it is safe to send back to
// whoever sent the document.
type Error struct {
	Kind Kind
	// Offset is the byte offset where the problem was found, when known.
	Offset int64
	// Key is the repeated key (DuplicateKey), clipped.
	Key string
	// Path is where the object with the repeated key sits, as a dotted
	// path with [i] for array elements ("" for the top level).
	Path string
}

// Error is the message with "the JSON document" as its subject.
func (e *Error) Error() string { return e.Message("the JSON document") }

// Message is the message with subject naming the document, e.g. "the
// JSON body" or "the body".
func (e *Error) Message(subject string) string {
	switch e.Kind {
	case Syntax:
		return fmt.Sprintf("%s is malformed at byte %d", subject, e.Offset)
	case Truncated:
		return subject + " ends too early"
	case Trailing:
		return subject + " has data after its value"
	case InvalidUTF8:
		return subject + " is not valid UTF-8"
	case LoneSurrogate:
		return subject + " holds a lone surrogate escape"
	case DuplicateKey:
		// Path is left to callers: deep in a body it could be long.
		return fmt.Sprintf("%s repeats the key %q in one object", subject, e.Key)
	case TooDeep:
		return fmt.Sprintf("%s nests deeper than %d levels", subject, MaxDepth)
	case NumberRange:
		return subject + " holds a number out of range"
	case NonStringKey:
		return subject + " has an object key that is not a string"
	}
	return subject + " is not strict JSON"
}

// Parse parses one strict JSON value: valid UTF-8 only, no lone surrogate
// escapes, no duplicate keys (after decoding escapes, so "a" and "\u0061"
// collide), no trailing data, no comments, depth ≤ MaxDepth. Objects become
// map[string]any and arrays []any; integers that fit in 64 bits become
// int64, every other number float64, and a number out of float64's range is
// an error. Every error is an *Error.
func Parse(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, &Error{Kind: InvalidUTF8, Offset: int64(invalidAt(data))}
	}
	if err := checkSurrogates(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	p := parser{dec: dec}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	at := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Kind: Trailing, Offset: at + int64(len(data[at:])-len(bytes.TrimLeft(data[at:], " \t\r\n")))}
	}
	return v, nil
}

// seg is one step of the path to the value being read; only formatted
// when a key repeats.
type seg struct {
	key   string
	index int
	isIdx bool
}

type parser struct {
	dec  *json.Decoder
	path []seg
}

func (p *parser) value(depth int) (any, error) {
	dec := p.dec
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxErr(err, dec)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxDepth {
			return nil, &Error{Kind: TooDeep, Offset: dec.InputOffset()}
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
					return nil, &Error{Kind: NonStringKey, Offset: dec.InputOffset()}
				}
				if _, dup := m[k]; dup {
					return nil, &Error{Kind: DuplicateKey, Offset: dec.InputOffset(), Key: ClipKey(k), Path: formatPath(p.path)}
				}
				p.path = append(p.path, seg{key: k})
				v, err := p.value(depth + 1)
				p.path = p.path[:len(p.path)-1]
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
				p.path = append(p.path, seg{index: len(a), isIdx: true})
				v, err := p.value(depth + 1)
				p.path = p.path[:len(p.path)-1]
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
		return nil, &Error{Kind: Syntax, Offset: dec.InputOffset()}
	case json.Number:
		return number(string(t), dec.InputOffset())
	case string, bool, nil:
		return t, nil
	}
	return nil, &Error{Kind: Syntax, Offset: dec.InputOffset()}
}

// Number converts a JSON number literal the way Parse does: int64 when it
// is an integer that fits, else float64; out of float64's range is an
// error.
func Number(s string) (any, error) { return number(s, 0) }

func number(s string, at int64) (any, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, &Error{Kind: NumberRange, Offset: at}
	}
	return f, nil
}

func syntaxErr(err error, dec *json.Decoder) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Kind: Truncated, Offset: dec.InputOffset()}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &Error{Kind: Syntax, Offset: se.Offset}
	}
	return &Error{Kind: Syntax, Offset: dec.InputOffset()}
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
			i++
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
			return &Error{Kind: LoneSurrogate, Offset: int64(i)}
		case r >= 0xDC00 && r <= 0xDFFF:
			return &Error{Kind: LoneSurrogate, Offset: int64(i)}
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

// invalidAt is the offset of the first byte that is not UTF-8.
func invalidAt(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// ClipKey shortens a key for a message: at most 40 bytes, cut on a rune
// boundary, marked with "…".
func ClipKey(k string) string {
	if len(k) <= 40 {
		return k
	}
	n := 40
	for n > 0 && !utf8.RuneStart(k[n]) {
		n--
	}
	return k[:n] + "…"
}

// FormatPath writes a path of object keys (strings) and array indexes
// (ints) as a.b[0].c; a key that is not a plain identifier is quoted, and
// every key is clipped.
func FormatPath(steps ...any) string {
	var s []seg
	for _, st := range steps {
		switch v := st.(type) {
		case string:
			s = append(s, seg{key: v})
		case int:
			s = append(s, seg{index: v, isIdx: true})
		}
	}
	return formatPath(s)
}

func formatPath(path []seg) string {
	var b strings.Builder
	for _, s := range path {
		if s.isIdx {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if plainKey(s.key) {
			b.WriteString(s.key)
		} else {
			b.WriteString(strconv.Quote(ClipKey(s.key)))
		}
	}
	return b.String()
}

func plainKey(k string) bool {
	if k == "" || len(k) > 40 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
