package jsonpath

import (
	"bytes"
	"encoding/json"
)

// MaskPrefix replaces the value of every object member whose key path
// matches one of paths with mask (a JSON value, e.g. `"[REDACTED]"`). It
// works on a prefix of a JSON document — a capture cut at max_bytes — so a
// field is masked even when the document does not parse as a whole; a
// matching value cut by the end of data is masked too (nothing of it is
// kept). Bytes are copied unchanged otherwise, so numbers and key order
// survive. On input that stops looking like JSON it returns what it has
// masked so far followed by the rest unchanged, and ok=false.
func MaskPrefix(data []byte, paths []Path, mask []byte) (out []byte, changed, ok bool) {
	if len(paths) == 0 {
		return data, false, true
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' && data[i] != '[' {
		return data, false, false
	}
	m := &masker{in: data, paths: paths, mask: mask}
	ok = m.value(i, nil)
	if m.out == nil {
		return data, false, ok
	}
	if m.pos < len(data) {
		m.out = append(m.out, data[m.pos:]...)
	}
	return m.out, true, ok
}

type masker struct {
	in    []byte
	out   []byte // nil until something is masked
	pos   int    // input copied to out (or to be copied) up to here
	paths []Path
	mask  []byte
	i     int
}

// replace masks in[from:to] (to may be len(in): a cut value).
func (m *masker) replace(from, to int) {
	if m.out == nil {
		m.out = make([]byte, 0, len(m.in))
	}
	m.out = append(m.out, m.in[m.pos:from]...)
	m.out = append(m.out, m.mask...)
	m.pos = to
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// value scans the value at i with key path keys; it leaves m.i after it.
// It returns false when the input ends or stops being JSON.
func (m *masker) value(i int, keys []string) bool {
	b := m.in
	i = skipSpace(b, i)
	if i >= len(b) {
		m.i = i
		return false
	}
	switch b[i] {
	case '{':
		i++
		for {
			i = skipSpace(b, i)
			if i >= len(b) {
				m.i = i
				return false
			}
			if b[i] == '}' {
				m.i = i + 1
				return true
			}
			if b[i] == ',' {
				i++
				continue
			}
			if b[i] != '"' {
				m.i = i
				return false
			}
			end, ok := StringEnd(b, i)
			if !ok {
				m.i = len(b)
				return false
			}
			var key string
			if json.Unmarshal(b[i:end], &key) != nil {
				m.i = end
				return false
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				m.i = i
				return false
			}
			i = skipSpace(b, i+1)
			path := append(keys, key)
			if m.matches(path) {
				vend, ok := ValueEnd(b, i)
				m.replace(i, vend)
				if !ok {
					m.i = len(b)
					return false
				}
				i = vend
				continue
			}
			if !m.value(i, path) {
				return false
			}
			i = m.i
		}
	case '[':
		i++
		for {
			i = skipSpace(b, i)
			if i >= len(b) {
				m.i = i
				return false
			}
			if b[i] == ']' {
				m.i = i + 1
				return true
			}
			if b[i] == ',' {
				i++
				continue
			}
			if !m.value(i, keys) {
				return false
			}
			i = m.i
		}
	default:
		end, ok := ValueEnd(b, i)
		m.i = end
		return ok
	}
}

func (m *masker) matches(keys []string) bool {
	for _, p := range m.paths {
		if p.Match(keys) {
			return true
		}
	}
	return false
}

// StringEnd returns the index after the closing quote of the JSON string
// at i in b (which may be cut short); false when the data ends inside it.
func StringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(b), false
}

// ValueEnd returns the index after the JSON value at i in b (which may be
// cut short), skipping nested containers; false when the data ends inside
// it.
func ValueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return StringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := StringEnd(b, j)
				if !ok {
					return len(b), false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return len(b), false
	}
	j := i
	for j < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[j]) < 0 {
		j++
	}
	return j, j < len(b)
}
