package spec

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

	"go.yaml.in/yaml/v3"

	"github.com/keyhole-gw/keyhole/internal/strictjson"
)

// YAML is read as a way of writing JSON, nothing more: the document is
// converted to JSON and then decoded exactly as the admin API decodes a
// body (strictly, against the same structs). So everything YAML can say
// that JSON cannot is refused rather than given a meaning keyhole would
// have to define:
//
//   - anchors, aliases and merge keys (&a, *a, <<): a reviewer would have to
//     expand them in their head, and aliases are the "billion laughs";
//   - tags other than YAML's core ones (!!binary, !custom);
//   - keys that are not scalars, null keys, and keys that repeat once
//     converted to JSON text (1 and "1" are the same key);
//   - more than one document in the stream;
//   - NaN and infinities, which JSON has no numbers for;
//   - strings that are not UTF-8 (a "\ud800" escape), which JSON would
//     replace silently;
//   - nesting deeper than strictjson.MaxDepth.
//
// An unquoted scalar keeps YAML's meaning: 10 is a number and true a
// boolean (so a field that wants a string says so, and the message tells
// the writer to quote it), while a date such as 2024-06-20 (a Stripe-Version
// header) stays the text written, since JSON has no dates.

// yamlDoc is a YAML document converted to JSON, with the line of each
// value (a mapping entry's: its key's), by its path
// (proxies[2].rules[0].effect), for messages.
type yamlDoc struct {
	json  []byte
	lines map[string]int
}

// yamlToJSON converts one YAML document to JSON.
func yamlToJSON(data []byte) (doc *yamlDoc, err error) {
	if !utf8.Valid(data) {
		return nil, errf("the config is not valid UTF-8 (save it as UTF-8)")
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// The parser is well fuzzed, but a configuration file is read by the
	// CLI and by nothing else a panic could take down with it: a panic is
	// an unreadable file, not a crash.
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, errf("the config is not valid YAML")
		}
	}()
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errf("the config is empty")
		}
		return nil, errf("the config is not valid YAML: %s", clip(yamlMessage(err)))
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, errf("the config holds more than one YAML document (a second \"---\"); put everything in one")
	}
	c := converter{lines: map[string]int{}}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil, errf("the config is empty")
	}
	if n := root.Content[0]; n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == "" {
		return nil, errf("the config is empty") // "---" and nothing else
	}
	v, err := c.value(root.Content[0], nil)
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(v)
	if err != nil {
		return nil, errf("the config cannot be converted to JSON")
	}
	return &yamlDoc{json: js, lines: c.lines}, nil
}

// yamlMessage is the parser's message without its "yaml: " prefix.
func yamlMessage(err error) string {
	s := err.Error()
	if len(s) > 6 && s[:6] == "yaml: " {
		s = s[6:]
	}
	return s
}

type converter struct {
	lines map[string]int
	nodes int
}

// maxYAMLNodes bounds the work of one conversion (a 4 MiB file of "[]," is
// about a million nodes).
const maxYAMLNodes = 1 << 20

func (c *converter) fail(n *yaml.Node, path []any, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	p := strictjson.FormatPath(path...)
	if p != "" {
		msg = clipPath(p) + ": " + msg
	}
	return &Error{Msg: fmt.Sprintf("line %d: %s", n.Line, msg), Path: p}
}

// tagText is a tag for a message: as written when it is plain text,
// quoted when it holds anything else (%0A in a tag is a newline, %1B an
// escape sequence, %FF not UTF-8).
func tagText(tag string) string {
	t := clip(tag)
	if q := strconv.Quote(t); q[1:len(q)-1] == t && !strings.Contains(t, " ") {
		return t
	}
	return strconv.Quote(t)
}

// maxPathInMsg bounds the path a message shows: the converter sees any
// key at any depth (64 keys of 40 bytes, escaped, would be kilobytes, a
// replay of the file), and the line number already says where.
// Error.Path keeps all of it.
const maxPathInMsg = 80

func clipPath(p string) string {
	if len(p) <= maxPathInMsg {
		return p
	}
	n := maxPathInMsg
	for n > 0 && !utf8.RuneStart(p[n]) {
		n--
	}
	return p[:n] + "…"
}

func (c *converter) value(n *yaml.Node, path []any) (any, error) {
	c.nodes++
	if c.nodes > maxYAMLNodes {
		return nil, c.fail(n, path, "the config has more than %d values", maxYAMLNodes)
	}
	if len(path) >= strictjson.MaxDepth {
		return nil, c.fail(n, path, "the config nests deeper than %d levels", strictjson.MaxDepth)
	}
	if p := strictjson.FormatPath(path...); p != "" {
		if _, ok := c.lines[p]; !ok {
			c.lines[p] = n.Line
		}
	}
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return nil, c.fail(n, path, "anchors and aliases (&name, *name) are not supported; write the value out")
	}
	switch n.Kind {
	case yaml.MappingNode:
		if t := n.ShortTag(); t != "!!map" {
			return nil, c.fail(n, path, "the tag %s is not supported", tagText(n.Tag))
		}
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			k, err := c.key(kn, path)
			if err != nil {
				return nil, err
			}
			if _, dup := m[k]; dup {
				return nil, c.fail(kn, path, "the key %q appears twice; a key may appear once per mapping", strictjson.ClipKey(k))
			}
			kp := append(path[:len(path):len(path)], k)
			// A field's line is its key's, where a message's path points
			// ("lables:"), not the first line of a block value below it.
			if p := strictjson.FormatPath(kp...); c.lines[p] == 0 {
				c.lines[p] = kn.Line
			}
			v, err := c.value(vn, kp)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	case yaml.SequenceNode:
		if t := n.ShortTag(); t != "!!seq" {
			return nil, c.fail(n, path, "the tag %s is not supported", tagText(n.Tag))
		}
		a := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := c.value(e, append(path[:len(path):len(path)], i))
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	case yaml.ScalarNode:
		return c.scalar(n, path)
	}
	return nil, c.fail(n, path, "this kind of YAML value is not supported")
}

// key is a mapping key as JSON text: a scalar's text as written.
func (c *converter) key(n *yaml.Node, path []any) (string, error) {
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return "", c.fail(n, path, "anchors and aliases (&name, *name) are not supported; write the value out")
	}
	if n.Kind != yaml.ScalarNode {
		return "", c.fail(n, path, "a key must be a plain value, not a list or a mapping")
	}
	switch n.ShortTag() {
	case "!!merge":
		return "", c.fail(n, path, "merge keys (<<) are not supported; write the values out")
	case "!!null":
		return "", c.fail(n, path, "a key cannot be null (~ or empty); quote it if you mean the text")
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
	default:
		return "", c.fail(n, path, "the tag %s is not supported", tagText(n.Tag))
	}
	if !utf8.ValidString(n.Value) {
		return "", c.fail(n, path, "a key is not valid UTF-8 (a \\u escape of a lone surrogate?)")
	}
	return n.Value, nil
}

func (c *converter) scalar(n *yaml.Node, path []any) (any, error) {
	switch t := n.ShortTag(); t {
	case "!!str", "!!timestamp":
		// A date stays the text written: JSON has no dates, and a
		// reformatted "2024-06-20T00:00:00Z" would be a different value.
		if !utf8.ValidString(n.Value) {
			return nil, c.fail(n, path, "the value is not valid UTF-8 (a \\u escape of a lone surrogate?)")
		}
		return n.Value, nil
	case "!!null":
		return nil, nil
	case "!!bool", "!!int", "!!float":
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, c.fail(n, path, "the value is not a valid %s", t[2:])
		}
		switch x := v.(type) {
		case bool, int, int64, uint64:
			return x, nil
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, c.fail(n, path, "JSON has no number for %s", clip(n.Value))
			}
			return x, nil
		}
		return nil, c.fail(n, path, "the value is not a valid %s", t[2:])
	case "!!binary":
		return nil, c.fail(n, path, "binary values (!!binary) are not supported")
	default:
		return nil, c.fail(n, path, "the tag %s is not supported", tagText(n.Tag))
	}
}
