// Package jsonpath matches the dotted JSON paths of keyhole's configuration
// (capture.redact_json, response_filters, quota sums): "card.number",
// "**.ssn" (** matches zero or more keys), "items.*.id" (* matches one key).
// Array elements are transparent: a path names keys, and it matches the
// same keys inside every element of an array on the way.
package jsonpath

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// Path is a parsed path: its keys, with "*" and "**" as wildcards.
type Path []string

// Parse checks and splits a path.
func Parse(s string) (Path, error) {
	if s == "" || len(s) > 512 {
		return nil, errors.New("a JSON path is 1–512 characters")
	}
	p := Path(strings.Split(s, "."))
	for _, seg := range p {
		if seg == "" {
			return nil, errors.New("a JSON path has no empty keys (a..b)")
		}
		if strings.Contains(seg, "*") && seg != "*" && seg != "**" {
			return nil, errors.New("* and ** stand for whole keys")
		}
	}
	return p, nil
}

// MustParseAll parses paths already validated elsewhere, skipping bad ones.
func MustParseAll(ss []string) []Path {
	var out []Path
	for _, s := range ss {
		if p, err := Parse(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Match reports whether the key path keys matches p.
func (p Path) Match(keys []string) bool {
	return match(p, keys)
}

// match is the greedy wildcard matcher of policy.Pattern.Match over keys:
// "**" first absorbs nothing, and on a mismatch the last "**" absorbs one
// more key and matching resumes after it. O(len(p)×len(k)) however many
// "**" the path holds (trying every split recursively is exponential in
// them, and the keys come from upstream responses).
func match(p Path, k []string) bool {
	pi, ki := 0, 0
	starPi, starKi := -1, 0 // the last "**" seen, and where its absorption stops
	for ki < len(k) {
		if pi < len(p) {
			switch p[pi] {
			case "**":
				starPi, starKi = pi, ki
				pi++
				continue
			case "*":
				pi, ki = pi+1, ki+1
				continue
			default:
				if k[ki] == p[pi] {
					pi, ki = pi+1, ki+1
					continue
				}
			}
		}
		if starPi < 0 {
			return false
		}
		starKi++
		pi, ki = starPi+1, starKi
	}
	// The keys are consumed; what is left of the path must match nothing.
	for pi < len(p) && p[pi] == "**" {
		pi++
	}
	return pi == len(p)
}

// Action is what Rewrite does to a matched member.
type Action int

// Actions.
const (
	Keep Action = iota
	Remove
	Mask
)

// Rewrite walks a decoded JSON value and removes or masks the object
// members whose key path matches; it reports whether anything changed.
// remove wins over mask when both match.
func Rewrite(v any, remove, mask []Path, maskValue any) bool {
	var keys []string
	return rewrite(v, &keys, remove, mask, maskValue)
}

func rewrite(v any, keys *[]string, remove, mask []Path, maskValue any) bool {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			*keys = append(*keys, k)
			switch decide(*keys, remove, mask) {
			case Remove:
				delete(x, k)
				changed = true
			case Mask:
				x[k] = maskValue
				changed = true
			default:
				if rewrite(child, keys, remove, mask, maskValue) {
					changed = true
				}
			}
			*keys = (*keys)[:len(*keys)-1]
		}
	case []any:
		for _, e := range x {
			if rewrite(e, keys, remove, mask, maskValue) {
				changed = true
			}
		}
	}
	return changed
}

func decide(keys []string, remove, mask []Path) Action {
	for _, p := range remove {
		if p.Match(keys) {
			return Remove
		}
	}
	for _, p := range mask {
		if p.Match(keys) {
			return Mask
		}
	}
	return Keep
}

// Lookup returns the value at a path without wildcards (for quota sums).
func Lookup(v any, p Path) (any, bool) {
	for _, k := range p {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// Decode reads JSON keeping numbers exact (json.Number), so a rewritten
// document changes nothing but what was removed or masked.
func Decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	// dec.More is false before a stray ']' or '}', so ask for the next
	// token: only the end of the input may follow the value.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

// Encode writes JSON without HTML escaping (bodies are data, not HTML).
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
