package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/keyhole-gw/keyhole/internal/strictjson"
)

// Strict configuration JSON (SPEC §7.1: unknown fields → 400).
//
// encoding/json matches object keys to struct fields without regard to
// case ({"NAME":…} sets Name, and so does {"ſtatic_headers":…} through
// Unicode folding) and lets a repeated key through, the last one winning.
// Either way the configuration a reviewer reads is not the one keyhole
// runs. So before encoding/json fills a struct, the document is read with
// internal/strictjson (duplicate keys, invalid UTF-8, lone surrogates,
// depth, trailing data refused) and every object key is checked against
// the exact, case-sensitive JSON name of a field of the struct at that
// position.

// DecodeStrict decodes exactly one JSON object from data into v (a pointer
// to a struct), strictly: duplicate keys, keys that are not the exact JSON
// name of a field (case-sensitive), invalid UTF-8, lone surrogates, nesting
// deeper than 64 and trailing data are refused, with messages a person can
// act on. what names the object in messages ("proxy", "rule", "request").
// Every error is an *Error.
func DecodeStrict(data []byte, v any, what string) error {
	if err := checkStrict(data, reflect.TypeOf(v), what); err != nil {
		return err
	}
	return decodeJSON(bytes.NewReader(data), v)
}

// DecodeProxyNamed is DecodeProxy for a proxy whose name is already known
// (PUT /api/v1/proxies/{name}): a body that omits "name" takes name. The
// body is read once, strictly. (Adding "name" by decoding the body into a
// map and encoding it again would let encoding/json collapse a repeated
// key, or replace invalid UTF-8, before the strict reading sees it.) A body
// that names another proxy decodes with that name: the caller refuses the
// rename.
func DecodeProxyNamed(r io.Reader, name string) (Proxy, error) {
	p := NewProxy()
	p.Name = name
	if err := decodeStrict(r, &p); err != nil {
		return Proxy{}, err
	}
	p.normalize()
	if err := p.Validate(); err != nil {
		return Proxy{}, err
	}
	return p, nil
}

// readStrict reads the whole body and runs the strict pre-pass for v.
func readStrict(r io.Reader, v any) ([]byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, errf("the body could not be read")
	}
	what := "the object"
	switch v.(type) {
	case *Proxy:
		what = "proxy"
	case *Rule:
		what = "rule"
	}
	if err := checkStrict(b, reflect.TypeOf(v), what); err != nil {
		return nil, err
	}
	return b, nil
}

// checkStrict is the pre-pass: the document must be strict JSON and every
// key must name a field of t (a pointer to a struct) exactly.
func checkStrict(data []byte, t reflect.Type, what string) error {
	_, err := parseStrict(data, t, what, "the body")
	return err
}

// parseStrict is checkStrict that also returns the parsed document;
// subject names the document in messages ("the body", "the config").
func parseStrict(data []byte, t reflect.Type, what, subject string) (any, error) {
	doc, err := strictjson.Parse(data)
	if err != nil {
		var se *strictjson.Error
		if !errors.As(err, &se) {
			return nil, errf("%s is not valid JSON", subject)
		}
		switch se.Kind {
		case strictjson.Syntax, strictjson.Truncated, strictjson.Trailing, strictjson.NonStringKey:
			if len(bytes.TrimSpace(data)) == 0 {
				return nil, errf("%s is empty; send a JSON object", subject)
			}
			// Bytes that are not one JSON value: encoding/json refuses them
			// too, and its messages (byte offsets, "more than one JSON
			// value") are the ones the rest of the API gives.
			var raw json.RawMessage
			if jerr := decodeJSON(bytes.NewReader(data), &raw); jerr != nil {
				return nil, jerr
			}
			return nil, errf("%s", se.Message(subject))
		case strictjson.DuplicateKey:
			e := errf("%s repeats the key %q in %s; a key may appear once per object", subject, se.Key, where(what, se.Path)).(*Error)
			e.Path = se.Path
			return nil, e
		}
		return nil, errf("%s", se.Message(subject))
	}
	if err := checkKeys(doc, t, what, nil); err != nil {
		return nil, err
	}
	return doc, nil
}

func where(what, path string) string {
	if path == "" {
		return what
	}
	return path
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	rawMessage      = reflect.TypeFor[json.RawMessage]()
)

// checkKeys walks a strictly parsed document against the Go type that will
// receive it: an object for a struct may hold only the struct's exact JSON
// field names; maps accept any key; slices and arrays recurse into each
// element. A value of the wrong kind is left alone (encoding/json reports
// it, naming the field); types that decode themselves (json.Unmarshaler,
// json.RawMessage, any) are not looked into.
func checkKeys(v any, t reflect.Type, what string, path []any) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessage || t.Kind() == reflect.Interface ||
		reflect.PointerTo(t).Implements(jsonUnmarshaler) || t.Implements(jsonUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := fieldsOf(t)
		// Sorted, so the first unknown key reported does not depend on
		// map order.
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fields.byName[k]
			if !ok {
				return unknownField(k, fields.names, what, path)
			}
			if err := checkKeys(obj[k], f, what, append(path, k)); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		// A map's keys are data, never field names: any key is accepted.
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := checkKeys(obj[k], t.Elem(), what, append(path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		for i, e := range arr {
			if err := checkKeys(e, t.Elem(), what, append(path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func unknownField(k string, names []string, what string, path []any) error {
	msg := fmt.Sprintf("unknown field %q in %s", strictjson.ClipKey(k), where(what, strictjson.FormatPath(path...)))
	if s := suggest(k, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return &Error{Msg: msg, Path: strictjson.FormatPath(append(path[:len(path):len(path)], k)...)}
}

// structFields are a struct type's JSON field names and the types they
// decode into, as encoding/json sees them (json tags, "-" skipped,
// unexported fields skipped, untagged embedded structs flattened).
type structFields struct {
	byName map[string]reflect.Type
	names  []string // sorted
}

var fieldCache sync.Map // reflect.Type → *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	sf := &structFields{byName: map[string]reflect.Type{}}
	collectFields(t, sf, 0)
	for n := range sf.byName {
		sf.names = append(sf.names, n)
	}
	sort.Strings(sf.names)
	fieldCache.Store(t, sf)
	return sf
}

func collectFields(t reflect.Type, sf *structFields, depth int) {
	if depth > 8 {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				collectFields(et, sf, depth+1)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := sf.byName[name]; !dup || depth == 0 {
			sf.byName[name] = f.Type
		}
	}
}

// suggest is the one field name k was probably meant to be: the same name
// in another case, or with '-' or no separator for '_', or within two
// edits (typos such as "nmae" or "max_byte"); "" when none is close or two
// are equally close.
func suggest(k string, names []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	nk := norm(k)
	for _, n := range names {
		if strings.EqualFold(n, k) {
			return n
		}
	}
	var hits []string
	for _, n := range names {
		if norm(n) == nk {
			hits = append(hits, n)
		}
	}
	if len(hits) == 1 {
		return hits[0]
	}
	// A singular for a plural or the other way round (proxy for proxies,
	// rules for rule).
	hits = hits[:0]
	for _, n := range names {
		if nn := norm(n); nk != "" && nn != "" && (plural(nk) == nn || plural(nn) == nk) {
			hits = append(hits, n)
		}
	}
	if len(hits) == 1 {
		return hits[0]
	}
	if utf8.RuneCountInString(k) > 64 {
		return ""
	}
	best, bestD, ties := "", 3, 0
	for _, n := range names {
		d := editDistance(strings.ToLower(k), n)
		switch {
		case d < bestD:
			best, bestD, ties = n, d, 1
		case d == bestD:
			ties++
		}
	}
	// Two edits of a three-letter word is another word.
	if ties != 1 || bestD >= len(best)/2 {
		return ""
	}
	return best
}

// plural is the English plural of a lower-case field name.
func plural(s string) string {
	switch {
	case strings.HasSuffix(s, "y") && len(s) > 1 && !strings.ContainsRune("aeiou", rune(s[len(s)-2])):
		return s[:len(s)-1] + "ies"
	case strings.HasSuffix(s, "s"), strings.HasSuffix(s, "x"), strings.HasSuffix(s, "ch"), strings.HasSuffix(s, "sh"):
		return s + "es"
	}
	return s + "s"
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// adjacent transpositions), over runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
