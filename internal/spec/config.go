package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyhole-gw/keyhole/internal/strictjson"
)

// Declarative config (SPEC §9): `keyhole apply -f keyhole.yaml` reads a
// Config (YAML or JSON, one schema), resolves its secret references on the
// machine that runs the CLI, and sends the result as the body of
// POST /api/v1/apply (an ApplyRequest), which the node applies in one
// transaction. Both documents are decoded the way every admin API body is
// (strict.go: unknown fields, repeated keys and case variants refused), and
// their errors name the path of the value at fault
// (proxies[2].rules[0].effect) and, for YAML, its line.

// MaxConfigBytes bounds a config file and an apply body: the admin API's
// body limit.
const MaxConfigBytes = 4 << 20

// MaxApplyItems bounds each list of a config (secrets, proxies, agents).
const MaxApplyItems = 1000

// Config is a declarative config file as written.
type Config struct {
	// Secrets name the secrets the proxies use and where the CLI reads
	// their values. A value is never written in the file itself.
	Secrets []SecretSource `json:"secrets"`
	// Proxies are whole proxies, exactly as POST /api/v1/proxies takes
	// them (SPEC §7.1).
	Proxies []Proxy `json:"proxies"`
	// Agents are agent identities and their labels.
	Agents []Agent `json:"agents"`

	// HasProxies and HasAgents report whether the file lists the section
	// at all (an empty list counts; an absent or null one does not):
	// prune deletes only within the sections a file lists.
	HasProxies, HasAgents bool `json:"-"`
	// ProxiesJSON are the proxies as written, converted to JSON: what
	// apply sends, so that the node fills in its own defaults.
	ProxiesJSON []json.RawMessage `json:"-"`

	lines map[string]int // YAML only: the line of each path
}

// SecretSource says where the CLI reads one secret's value: exactly one of
// the four fields is set.
type SecretSource struct {
	Name string `json:"name"`
	// FromEnv: a string secret, the value of this environment variable,
	// taken exactly.
	FromEnv string `json:"from_env,omitempty"`
	// FromFile: a string secret, the content of this file with one
	// trailing newline dropped. A relative path is relative to the config
	// file's folder.
	FromFile string `json:"from_file,omitempty"`
	// ValueObjectFromEnv: an object secret, each field from an
	// environment variable ({"username": "JIRA_USER", …}).
	ValueObjectFromEnv map[string]string `json:"value_object_from_env,omitempty"`
	// ValueObjectFromFile: an object secret, each field from a file, as
	// for FromFile.
	ValueObjectFromFile map[string]string `json:"value_object_from_file,omitempty"`
}

// Agent is an agent identity as a config lists it (POST /api/v1/agents).
type Agent struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// ApplyRequest is the body of POST /api/v1/apply: a Config whose secrets
// carry their values (the CLI resolved them; the node never reads an
// environment variable or a file for an apply).
type ApplyRequest struct {
	Secrets []SecretValue `json:"secrets"`
	Proxies []Proxy       `json:"proxies"`
	Agents  []Agent       `json:"agents"`
	// Prune deletes the proxies and agents that the request does not list,
	// within the sections it lists (HasProxies, HasAgents). Secrets are
	// never pruned.
	Prune bool `json:"prune"`
	// DryRun answers what the apply would do, and changes nothing.
	DryRun bool `json:"dry_run"`

	HasProxies, HasAgents bool `json:"-"`
}

// SecretValue is a secret and its value: a JSON string, or an object of
// string fields (as POST /api/v1/secrets takes it).
type SecretValue struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// Format prints the name only, so that a value never reaches a log line
// through %v.
func (s SecretValue) Format(f fmt.State, verb rune) { fmt.Fprintf(f, "secret %s", s.Name) }

// ParseConfig reads a config file: JSON when its first character (after
// blanks and a UTF-8 byte order mark) is "{", YAML otherwise. The YAML is
// converted to JSON (yaml.go) and both are then decoded strictly. Proxies
// and agents are validated as the admin API validates them without the
// store (names, URLs, rules' shape); the node checks the rest (SSRF guard,
// CEL conditions, secret references) when the config is applied.
// Every error is an *Error.
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigBytes {
		return nil, errf("the config is larger than %d bytes", MaxConfigBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	js, lines := data, map[string]int(nil)
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		doc, err := yamlToJSON(data)
		if err != nil {
			return nil, err
		}
		js, lines = doc.json, doc.lines
	}
	cfg, err := decodeConfig(js, lines != nil)
	if err != nil {
		e, ok := err.(*Error)
		switch {
		case ok && lines != nil:
			if n := lineOf(lines, e.Path); n > 0 {
				return nil, &Error{Msg: fmt.Sprintf("line %d: %s", n, e.Msg), Path: e.Path}
			}
		case ok && e.Path == "" && strings.HasPrefix(e.Msg, "the body "):
			// decodeJSON's messages are about a request body; this is a
			// file, and maybe one meant as YAML ({a: b} is YAML too).
			msg := "the config " + strings.TrimPrefix(e.Msg, "the body ")
			if strings.Contains(msg, "not valid JSON") {
				msg += "; a config that starts with \"{\" is read as JSON"
			}
			return nil, &Error{Msg: msg}
		}
		return nil, err
	}
	cfg.lines = lines
	return cfg, nil
}

// Line is the line of the YAML value at path (as in an error message,
// proxies[2].rules[0]), or of its nearest enclosing value; 0 for JSON or
// an unknown path.
func (c *Config) Line(path string) int { return lineOf(c.lines, path) }

func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if n, ok := lines[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Shapes the strict reading checks documents against.
type configShape struct {
	Secrets []SecretSource `json:"secrets"`
	Proxies []Proxy        `json:"proxies"`
	Agents  []Agent        `json:"agents"`
}

type applyShape struct {
	Secrets []SecretValue `json:"secrets"`
	Proxies []Proxy       `json:"proxies"`
	Agents  []Agent       `json:"agents"`
	Prune   bool          `json:"prune"`
	DryRun  bool          `json:"dry_run"`
}

var (
	secretValuePath = regexp.MustCompile(`^secrets\[\d+\]\.value$`)
	// An unknown key of a secret's entry that is not a plain word (its
	// path quotes it): "value:sk_live_…" in a YAML flow mapping, where a
	// missing space after the colon makes the value part of the key.
	secretOddKeyPath = regexp.MustCompile(`^(secrets\[\d+\])\."(.*)$`)
)

const valueNeverWritten = ": a secret's value is never written in the config; read it with from_env, from_file, value_object_from_env or value_object_from_file"

func decodeConfig(js []byte, fromYAML bool) (*Config, error) {
	doc, err := parseStrict(js, reflect.TypeFor[*configShape](), "the config", "the config")
	if err != nil {
		e, ok := err.(*Error)
		if !ok {
			return nil, err
		}
		if secretValuePath.MatchString(e.Path) {
			return nil, &Error{Path: e.Path, Msg: strings.TrimSuffix(e.Path, ".value") + valueNeverWritten}
		}
		if m := secretOddKeyPath.FindStringSubmatch(e.Path); m != nil && strings.HasPrefix(e.Msg, "unknown field ") {
			// Such a key is not repeated: it may hold a value.
			if strings.HasPrefix(strings.ToLower(m[2]), "value") {
				return nil, &Error{Path: e.Path, Msg: m[1] + valueNeverWritten}
			}
			return nil, &Error{Path: e.Path, Msg: m[1] + ": unknown field (not repeated here, as it may hold a value); a secret has a name and one of from_env, from_file, value_object_from_env and value_object_from_file"}
		}
		return nil, err
	}
	if doc == nil {
		// null (a YAML "~") is not an empty config: an empty file is
		// refused, and so is this.
		return nil, kindErr(nil, "an object", nil, false)
	}
	if err := checkKinds(doc, reflect.TypeFor[configShape](), nil, fromYAML); err != nil {
		return nil, err
	}
	var raw struct {
		Secrets []SecretSource    `json:"secrets"`
		Proxies []json.RawMessage `json:"proxies"`
		Agents  []Agent           `json:"agents"`
	}
	if err := decodeJSON(bytes.NewReader(js), &raw); err != nil {
		return nil, err
	}
	cfg := &Config{Secrets: raw.Secrets, Agents: raw.Agents, ProxiesJSON: raw.Proxies}
	cfg.HasProxies, cfg.HasAgents = present(doc, "proxies"), present(doc, "agents")
	if err := checkCounts(len(cfg.Secrets), len(raw.Proxies), len(cfg.Agents)); err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for i := range cfg.Secrets {
		if err := cfg.Secrets[i].validate(i, seen); err != nil {
			return nil, err
		}
	}
	if cfg.Proxies, err = decodeProxies(raw.Proxies); err != nil {
		return nil, err
	}
	if err := validateAgents(cfg.Agents); err != nil {
		return nil, err
	}
	return cfg, nil
}

// DecodeApply reads the body of POST /api/v1/apply strictly, and
// validates what can be checked without the store. Every error is an
// *Error; none quotes a secret's value.
func DecodeApply(data []byte) (*ApplyRequest, error) {
	if len(data) > MaxConfigBytes {
		return nil, errf("the body is larger than %d bytes", MaxConfigBytes)
	}
	doc, err := parseStrict(data, reflect.TypeFor[*applyShape](), "the request", "the body")
	if err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, kindErr(nil, "an object", nil, false)
	}
	if err := checkKinds(doc, reflect.TypeFor[applyShape](), nil, false); err != nil {
		return nil, err
	}
	var raw struct {
		Secrets []SecretValue     `json:"secrets"`
		Proxies []json.RawMessage `json:"proxies"`
		Agents  []Agent           `json:"agents"`
		Prune   bool              `json:"prune"`
		DryRun  bool              `json:"dry_run"`
	}
	if err := decodeJSON(bytes.NewReader(data), &raw); err != nil {
		return nil, err
	}
	req := &ApplyRequest{Secrets: raw.Secrets, Agents: raw.Agents, Prune: raw.Prune, DryRun: raw.DryRun,
		HasProxies: present(doc, "proxies"), HasAgents: present(doc, "agents")}
	if err := checkCounts(len(req.Secrets), len(raw.Proxies), len(req.Agents)); err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for i, s := range req.Secrets {
		at := fmt.Sprintf("secrets[%d]", i)
		if !ValidSecretName(s.Name) {
			return nil, errAt(at+".name", "secret name %q is invalid: 1–128 characters A-Z a-z 0-9 . _ -, starting with a letter or digit", clip(s.Name))
		}
		if j, dup := seen[s.Name]; dup {
			return nil, errAt(at+".name", "secret %s is listed twice (also secrets[%d])", s.Name, j)
		}
		seen[s.Name] = i
		if v := bytes.TrimSpace(s.Value); len(v) == 0 || string(v) == "null" {
			return nil, errAt(at+".value", "secret %s: value is required: a string, or an object of string fields", s.Name)
		}
	}
	if req.Proxies, err = decodeProxies(raw.Proxies); err != nil {
		return nil, err
	}
	if err := validateAgents(req.Agents); err != nil {
		return nil, err
	}
	return req, nil
}

// present reports whether the top-level object doc has key set to
// something other than null.
func present(doc any, key string) bool {
	m, _ := doc.(map[string]any)
	v, ok := m[key]
	return ok && v != nil
}

func checkCounts(secrets, proxies, agents int) error {
	for _, c := range []struct {
		what string
		n    int
	}{{"secrets", secrets}, {"proxies", proxies}, {"agents", agents}} {
		if c.n > MaxApplyItems {
			return errAt(c.what, "%s lists %d entries; at most %d are taken in one apply", c.what, c.n, MaxApplyItems)
		}
	}
	return nil
}

// errAt is an error about the value at path, which the message starts with.
func errAt(path, format string, a ...any) error {
	return &Error{Msg: path + ": " + fmt.Sprintf(format, a...), Path: path}
}

// wrapAt prefixes an error of this package with the path it is about.
func wrapAt(path string, err error) error {
	if e, ok := err.(*Error); ok {
		return &Error{Msg: path + ": " + e.Msg, Path: path}
	}
	return errAt(path, "%v", err)
}

// decodeProxies decodes each proxy as DecodeProxy does (defaults first),
// and validates it, naming the proxy (and the rule) at fault.
func decodeProxies(raws []json.RawMessage) ([]Proxy, error) {
	out := make([]Proxy, 0, len(raws))
	seen := map[string]int{}
	for i, raw := range raws {
		at := fmt.Sprintf("proxies[%d]", i)
		p := NewProxy()
		if err := decodeJSON(bytes.NewReader(raw), &p); err != nil {
			return nil, wrapAt(at, err)
		}
		p.normalize()
		for j := range p.Rules {
			if err := p.Rules[j].Validate(); err != nil {
				return nil, wrapAt(fmt.Sprintf("%s.rules[%d]", at, j), err)
			}
		}
		if err := p.Validate(); err != nil {
			return nil, wrapAt(at, err)
		}
		if j, dup := seen[p.Name]; dup {
			return nil, errAt(at+".name", "proxy %s is listed twice (also proxies[%d])", p.Name, j)
		}
		seen[p.Name] = i
		out = append(out, p)
	}
	return out, nil
}

// validateAgents checks agents as POST /api/v1/agents does, and fills in
// empty labels.
func validateAgents(agents []Agent) error {
	seen := map[string]int{}
	for i := range agents {
		ag := &agents[i]
		at := fmt.Sprintf("agents[%d]", i)
		if !ValidName(ag.Name) {
			return errAt(at+".name", "agent name %q is invalid: 1–63 characters a-z, 0-9 and -, starting with a letter or digit", clip(ag.Name))
		}
		if j, dup := seen[ag.Name]; dup {
			return errAt(at+".name", "agent %s is listed twice (also agents[%d])", ag.Name, j)
		}
		seen[ag.Name] = i
		if len(ag.Labels) > 64 {
			return errAt(at+".labels", "an agent has at most 64 labels")
		}
		for k, v := range ag.Labels {
			if k == "" || len(k) > 63 || len(v) > 256 {
				return errAt(at+".labels", "label keys are 1–63 characters and values at most 256")
			}
		}
		if ag.Labels == nil {
			ag.Labels = map[string]string{}
		}
	}
	return nil
}

// maxRefLen bounds an environment variable's name or a file path.
const maxRefLen = 4096

func (s *SecretSource) validate(i int, seen map[string]int) error {
	at := fmt.Sprintf("secrets[%d]", i)
	if !ValidSecretName(s.Name) {
		return errAt(at+".name", "secret name %q is invalid: 1–128 characters A-Z a-z 0-9 . _ -, starting with a letter or digit", clip(s.Name))
	}
	if j, dup := seen[s.Name]; dup {
		return errAt(at+".name", "secret %s is listed twice (also secrets[%d])", s.Name, j)
	}
	seen[s.Name] = i
	n := 0
	for _, set := range []bool{s.FromEnv != "", s.FromFile != "", s.ValueObjectFromEnv != nil, s.ValueObjectFromFile != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errAt(at, "secret %s needs exactly one of from_env, from_file, value_object_from_env and value_object_from_file (it has %d)", s.Name, n)
	}
	checkEnv := func(path, v string) error {
		if v == "" || len(v) > maxRefLen || strings.ContainsAny(v, "=\x00") || !utf8.ValidString(v) {
			// Not quoted: a value pasted where a name belongs (a key
			// ending in "=") must not be printed back.
			return errAt(path, "not an environment variable name (1–%d characters, without = or NUL; the text is not repeated, in case it is a secret's value)", maxRefLen)
		}
		return nil
	}
	checkFile := func(path, v string) error {
		if v == "" || len(v) > maxRefLen || strings.ContainsRune(v, 0) {
			return errAt(path, "a file path is 1–%d characters, without NUL", maxRefLen)
		}
		return nil
	}
	checkObject := func(path string, m map[string]string, check func(string, string) error) error {
		if len(m) == 0 {
			return errAt(path, "an object secret needs at least one field")
		}
		if len(m) > 64 {
			return errAt(path, "an object secret has at most 64 fields")
		}
		for _, k := range sortedKeys(m) {
			if !ValidSecretField(k) {
				return errAt(path, "field name %q is invalid: 1–64 characters A-Z a-z 0-9 _ -", clip(k))
			}
			if err := check(path+"."+k, m[k]); err != nil {
				return err
			}
		}
		return nil
	}
	switch {
	case s.FromEnv != "":
		return checkEnv(at+".from_env", s.FromEnv)
	case s.FromFile != "":
		return checkFile(at+".from_file", s.FromFile)
	case s.ValueObjectFromEnv != nil:
		return checkObject(at+".value_object_from_env", s.ValueObjectFromEnv, checkEnv)
	default:
		return checkObject(at+".value_object_from_file", s.ValueObjectFromFile, checkFile)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var durationType = reflect.TypeFor[Duration]()

// checkKinds walks a strictly parsed document (whose keys checkKeys has
// already checked) against the Go type that will receive it, and refuses a
// value of the wrong kind with its path: encoding/json would name the
// field only (rules.effect, not proxies[2].rules[0].effect). null is
// accepted anywhere (it keeps the default, as encoding/json does). Types
// that decode themselves are not looked into, except Duration, whose
// message would otherwise name no field.
func checkKinds(v any, t reflect.Type, path []any, fromYAML bool) error {
	if v == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return kindErr(path, "a duration such as \"30s\"", v, false)
		}
		if d, err := time.ParseDuration(s); err != nil || d < 0 {
			return errAt(strictjson.FormatPath(path...), "invalid duration %q: use a Go duration such as \"30s\" or \"5m\"", clip(s))
		}
		return nil
	}
	if t == rawMessage || t.Kind() == reflect.Interface ||
		reflect.PointerTo(t).Implements(jsonUnmarshaler) || t.Implements(jsonUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return kindErr(path, "an object", v, false)
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var fields *structFields
		if t.Kind() == reflect.Struct {
			fields = fieldsOf(t)
		}
		for _, k := range keys {
			et := t
			if fields != nil {
				f, ok := fields.byName[k]
				if !ok {
					continue // checkKeys refused it already
				}
				et = f
			} else {
				et = t.Elem()
			}
			if err := checkKinds(obj[k], et, append(path[:len(path):len(path)], k), fromYAML); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return kindErr(path, "a list", v, false)
		}
		for i, e := range arr {
			if err := checkKinds(e, t.Elem(), append(path[:len(path):len(path)], i), fromYAML); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return kindErr(path, "a string", v, fromYAML)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return kindErr(path, "true or false", v, false)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			return kindErr(path, "a whole number", v, false)
		}
		bits := t.Bits()
		if n < -1<<(bits-1) || n > 1<<(bits-1)-1 {
			return errAt(strictjson.FormatPath(path...), "the number is out of range")
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		if !ok || n < 0 {
			return kindErr(path, "a whole number, 0 or more", v, false)
		}
		if t.Bits() < 64 && uint64(n) > 1<<t.Bits()-1 {
			return errAt(strictjson.FormatPath(path...), "the number is out of range")
		}
	case reflect.Float32, reflect.Float64:
		switch x := v.(type) {
		case int64:
		case float64:
			if t.Kind() == reflect.Float32 && math.Abs(x) > math.MaxFloat32 {
				return errAt(strictjson.FormatPath(path...), "the number is out of range")
			}
		default:
			return kindErr(path, "a number", v, false)
		}
	}
	return nil
}

func kindErr(path []any, want string, got any, quoteHint bool) error {
	var kind string
	switch got.(type) {
	case string:
		kind = "a string"
	case bool:
		kind = "true or false"
	case int64, float64:
		kind = "a number"
	case map[string]any:
		kind = "an object"
	case []any:
		kind = "a list"
	case nil:
		kind = "null"
	default:
		kind = "another kind of value"
	}
	p := strictjson.FormatPath(path...)
	if p == "" {
		return &Error{Msg: fmt.Sprintf("the document must be %s, not %s", want, kind)}
	}
	msg := fmt.Sprintf("must be %s, not %s", want, kind)
	if quoteHint {
		msg += " (in YAML, quote it to make it a string)"
	}
	return errAt(p, "%s", msg)
}
