package mcp

// MCP upstreams (SPEC §8): a proxy whose upstream is itself an MCP server
// (streamable HTTP). Nothing marks such a proxy: the JSON-RPC messages are
// recognised in requests whose body the rules already read.
//
// Why that is enough: tool-level rules are conditions on the JSON body
// (request.json.method, request.json.params.name), so a proxy that has any
// has its POST bodies buffered and strictly parsed by the gateway before
// the decision (max_rule_body; no prefix is ever inspected alone). A proxy
// whose rules read no body cannot tell one tool from another: every
// tools/call to it gets the same decision as the tools/list request itself,
// which was allowed, so there is nothing to filter. The filter therefore
// costs nothing on proxies without body rules, and cannot be dodged on
// those with them (padding, relabelling the Content-Type or gzip do not
// hide a body from the rules' parser).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/rules"
)

// ErrTooLarge is returned for a tools/list answer larger than the filter
// may buffer: it is withheld (fail closed), never passed on unfiltered.
var ErrTooLarge = errors.New("tools/list response too large to filter")

// Listing is one request's tools/list calls, and how to filter their results.
type Listing struct {
	ids     map[string]bool // canonical JSON-RPC ids of the tools/list requests
	firstID any
	allow   func(id any, tool string) bool
	cache   map[string]bool
	// OnFilter, when set, is called each time a tool is removed.
	OnFilter func()
}

// NewListing returns the tools/list requests in a parsed JSON-RPC body (a
// message object, or a batch array of them, as rules.Body.JSON returns
// it), or nil when there is none. allow decides whether the agent may call
// a tool by name (see ToolAllowed).
func NewListing(body any, allow func(id any, tool string) bool) *Listing {
	var l *Listing
	add := func(v any) {
		m, ok := v.(map[string]any)
		if !ok || m["method"] != "tools/list" {
			return
		}
		id, ok := m["id"]
		key, kok := idKey(id)
		if !ok || !kok {
			return // a notification has no answer to filter
		}
		if l == nil {
			l = &Listing{ids: map[string]bool{}, firstID: id, allow: allow, cache: map[string]bool{}}
		}
		l.ids[key] = true
	}
	switch v := body.(type) {
	case map[string]any:
		add(v)
	case []any:
		for _, e := range v {
			add(e)
		}
	}
	return l
}

// idKey is a JSON-RPC id's canonical form (ids are strings or numbers).
func idKey(id any) (string, bool) {
	switch v := id.(type) {
	case string:
		return "s:" + v, true
	case int64:
		return "n:" + strconv.FormatInt(v, 10), true
	case int:
		return "n:" + strconv.Itoa(v), true
	case float64:
		if v == float64(int64(v)) {
			return "n:" + strconv.FormatInt(int64(v), 10), true
		}
		return "n:" + strconv.FormatFloat(v, 'g', -1, 64), true
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return "n:" + strconv.FormatInt(i, 10), true
		}
		if f, err := v.Float64(); err == nil {
			return idKey(f)
		}
	}
	return "", false
}

func rawIDKey(raw json.RawMessage) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return "", false
	}
	return idKey(v)
}

func (l *Listing) allowed(name string) bool {
	if ok, seen := l.cache[name]; seen {
		return ok
	}
	ok := l.allow(l.firstID, name)
	l.cache[name] = ok
	return ok
}

// ToolCallBody is the synthetic request a listed tool is judged by: what
// an MCP client sends to call it with no arguments.
func ToolCallBody(id any, tool string) []byte {
	if id == nil {
		id = 0
	}
	b, _ := marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": map[string]any{}}})
	return b
}

// ToolAllowed reports whether a tools/call of tool could be allowed for the
// request in (its method, path, query, headers, agent and token, with the
// body replaced by ToolCallBody), by every rule set given (the proxy's, then
// a child token's own; nil sets are skipped).
//
// Rules are evaluated dry (rules.Set.Explain: no rate limit is spent). A
// tool is listed unless an enforced deny rule matches, and only if some
// enforced allow rule matches or has a condition that cannot be decided
// from the tool's name alone — one that reads the call's arguments, which
// a listing does not have (the condition errors on the empty arguments).
// The call itself is then decided with its real arguments, failing closed
// as always; the listing only ever hides what no call could be allowed.
func ToolAllowed(in rules.Input, contentType string, id any, tool string, sets ...*rules.Set) bool {
	in.Body = rules.NewBody(ToolCallBody(id, tool), contentType)
	for _, s := range sets {
		if s == nil {
			continue
		}
		if !mayAllow(s.Explain(&in)) {
			return false
		}
	}
	return true
}

func mayAllow(ex rules.Explanation) bool {
	allowed := false
	for _, r := range ex.Rules {
		if r.Mode == "report" {
			continue
		}
		switch {
		case r.Effect == "deny" && r.Result == rules.ResultMatched:
			return false
		case r.Effect == "allow" && (r.Result == rules.ResultMatched || r.Result == rules.ResultError):
			allowed = true
		}
	}
	return allowed
}

// Filter wraps the body of the upstream's answer. A JSON answer is read
// whole (at most max bytes, else ErrTooLarge), rewritten and returned with
// its new length; an event stream is rewritten event by event, so it still
// streams (length -1). wrapped is false, and body is returned as it is,
// for any other content type.
func (l *Listing) Filter(contentType string, body io.ReadCloser, max int) (out io.ReadCloser, length int64, wrapped bool, err error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "text/event-stream":
		return &sseFilter{l: l, src: body, br: bufio.NewReaderSize(body, 64<<10), max: max}, -1, true, nil
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		data, err := io.ReadAll(io.LimitReader(body, int64(max)+1))
		body.Close()
		if err != nil {
			return nil, 0, true, err
		}
		if len(data) > max {
			return nil, 0, true, ErrTooLarge
		}
		if out, changed := l.rewrite(data); changed {
			data = out
		}
		return io.NopCloser(bytes.NewReader(data)), int64(len(data)), true, nil
	}
	return body, 0, false, nil
}

// rewrite filters the tools of the JSON-RPC responses in data (a message
// or a batch) that answer one of the listing's requests.
func (l *Listing) rewrite(data []byte) ([]byte, bool) {
	t := bytes.TrimSpace(data)
	if len(t) == 0 {
		return data, false
	}
	switch t[0] {
	case '[':
		var batch []json.RawMessage
		if json.Unmarshal(t, &batch) != nil {
			return data, false
		}
		changed := false
		for i, m := range batch {
			if out, ok := l.rewriteMessage(m); ok {
				batch[i], changed = out, true
			}
		}
		if !changed {
			return data, false
		}
		out, err := marshal(batch)
		return out, err == nil
	case '{':
		return l.rewriteMessage(t)
	}
	return data, false
}

func (l *Listing) rewriteMessage(msg []byte) ([]byte, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil {
		return msg, false
	}
	key, ok := rawIDKey(m["id"])
	if !ok || !l.ids[key] || m["result"] == nil {
		return msg, false
	}
	var res map[string]json.RawMessage
	if json.Unmarshal(m["result"], &res) != nil || res["tools"] == nil {
		return msg, false
	}
	var tools []json.RawMessage
	if json.Unmarshal(res["tools"], &tools) != nil {
		return msg, false
	}
	kept := make([]json.RawMessage, 0, len(tools))
	for _, tl := range tools {
		var t struct {
			Name string `json:"name"`
		}
		// A tool without a readable name cannot be judged: it is
		// dropped, like any tool no rule lets the agent call.
		if json.Unmarshal(tl, &t) == nil && t.Name != "" && l.allowed(t.Name) {
			kept = append(kept, tl)
			continue
		}
		if l.OnFilter != nil {
			l.OnFilter()
		}
	}
	if len(kept) == len(tools) {
		return msg, false
	}
	var err error
	if res["tools"], err = marshal(kept); err != nil {
		return msg, false
	}
	if m["result"], err = marshal(res); err != nil {
		return msg, false
	}
	out, err := marshal(m)
	if err != nil {
		return msg, false
	}
	return out, true
}

// sseFilter rewrites the data of each server-sent event (an event ends at
// a blank line; its data lines joined by "\n" are one JSON-RPC message).
// Events pass on as soon as they are complete; other lines keep their place.
type sseFilter struct {
	l     *Listing
	src   io.Closer
	br    *bufio.Reader
	max   int
	event []byte
	out   []byte
	err   error
}

func (s *sseFilter) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		line, err := s.readLine()
		s.event = append(s.event, line...)
		if errors.Is(err, ErrTooLarge) || len(s.event) > s.max {
			s.err = ErrTooLarge
			return 0, s.err
		}
		blank := len(line) > 0 && len(bytes.TrimRight(line, "\r\n")) == 0
		if blank || err != nil {
			s.out = s.l.rewriteEvent(s.event)
			s.event = nil
		}
		if err != nil {
			s.err = err
		}
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// readLine reads one line, however long (bounded by max).
func (s *sseFilter) readLine() ([]byte, error) {
	var line []byte
	for {
		part, err := s.br.ReadSlice('\n')
		line = append(line, part...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > s.max {
				return nil, ErrTooLarge
			}
			continue
		}
		return line, err
	}
}

func (s *sseFilter) Close() error { return s.src.Close() }

func (l *Listing) rewriteEvent(ev []byte) []byte {
	if !bytes.Contains(ev, []byte("data:")) {
		return ev
	}
	lines := bytes.SplitAfter(ev, []byte("\n"))
	var data [][]byte
	first := -1
	for i, ln := range lines {
		if v, ok := bytes.CutPrefix(ln, []byte("data:")); ok {
			if first < 0 {
				first = i
			}
			v = bytes.TrimPrefix(v, []byte(" "))
			data = append(data, bytes.TrimRight(v, "\r\n"))
		}
	}
	out, changed := l.rewrite(bytes.Join(data, []byte("\n")))
	if !changed {
		return ev
	}
	var b bytes.Buffer
	for i, ln := range lines {
		switch {
		case i == first:
			b.WriteString("data: ")
			b.Write(out)
			b.WriteString("\n")
		case bytes.HasPrefix(ln, []byte("data:")):
		default:
			b.Write(ln)
		}
	}
	return b.Bytes()
}
