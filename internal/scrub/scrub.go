// Package scrub replaces upstream secret values in response headers and
// streamed response bodies before they reach an agent (SPEC §3.6), and in the
// copies kept for the audit log (SPEC §6).
//
// A Set is compiled once per configuration snapshot from the secret values of
// one proxy (each field of the upstream secret and the derived forms the
// gateway sends: base64 of a Basic pair, URL- and JSON-escaped forms, OAuth
// access tokens). Matching is leftmost-longest and non-overlapping: at each
// position the longest secret that matches is replaced, and the search goes on
// after it.
//
// The matcher is an Aho–Corasick automaton built for leftmost-longest
// semantics (the construction of BurntSushi's aho-corasick crate: failure
// transitions of every state at or after a match lead to a dead state, so the
// search stops as soon as no longer match at the same start is possible). Its
// cost is linear in the input, whatever an upstream sends, plus a rescan of
// at most MaxLen-1 bytes after each replacement (the bytes read past the
// match while looking for a longer one) and of the held-back tail on each
// Read; "compare every secret at every candidate" would let an upstream make
// it quadratic with near-misses. Response bodies seldom contain a
// secret, so the automaton runs only at candidate positions found by a
// prefilter: bytes.IndexByte (assembly, many bytes per cycle) over at most
// three bytes, either the secrets' first bytes or one rare byte near the
// start of each secret, or, when neither is cheap (many secrets), a bitmap of
// the secrets' first two bytes tested at every position. The choice is made
// once, in New, from an estimate of byte frequencies in API responses.
//
// Streaming (Reader) holds back only the longest unsent tail that is a proper
// prefix of some secret: that is exactly the automaton's state when a chunk
// ends, so nothing else is ever delayed and server-sent events still arrive as
// they come.
package scrub

import (
	"bytes"
	"sort"
	"unsafe"
)

// Redacted is the replacement the gateway uses for secret values.
const Redacted = "[REDACTED]"

// dead is the automaton's absorbing state: the current match (there always is
// one when it is reached) cannot get any longer, so the search stops. The root
// is state 0.
const dead int32 = -1

// state is one node of the trie of secrets, with its failure transition.
type state struct {
	// fail is the state for the longest proper suffix of this state's path
	// that is a path in the trie, or dead at and after a match (leftmost
	// semantics: a suffix would start later than the match already seen).
	fail int32
	// depth is the length of the path from the root: when a chunk ends in
	// this state, that many bytes are the tail held back.
	depth int32
	// match is the length of the secret that ends on entering this state
	// (the state's own secret, or else the longest one that is a suffix of
	// its path), 0 if none.
	match int32
	// edges[lo:hi] are the transitions out of this state, sorted by byte;
	// most states have a single one.
	lo, hi int32
}

type edge struct {
	b  byte
	to int32
}

// A Set is a compiled set of secret values. It is immutable and safe for
// concurrent use. The zero value, like a nil *Set, holds no secret: it
// replaces nothing and its Reader returns the source unchanged.
type Set struct {
	repl   []byte
	n      int // distinct non-empty secrets
	maxLen int

	root   [256]int32 // dense transitions out of the root: the hottest state
	states []state
	edges  []edge

	pf prefilter
}

// New compiles secrets into a Set whose matches are replaced by replacement
// (usually []byte(Redacted)). Empty and duplicate values are ignored; the
// arguments are copied, so the caller may reuse them. Building costs time and
// memory linear in the total length of the secrets; it is meant to run once
// per configuration snapshot, not per request.
func New(secrets [][]byte, replacement []byte) *Set {
	return build(secrets, replacement, modeAuto)
}

func build(secrets [][]byte, replacement []byte, mode pfMode) *Set {
	seen := make(map[string]bool, len(secrets))
	var pats [][]byte
	for _, v := range secrets {
		if len(v) == 0 || seen[string(v)] {
			continue
		}
		seen[string(v)] = true
		pats = append(pats, bytes.Clone(v))
	}
	// A fixed order makes the compiled Set (and so its prefilter choice) a
	// function of the set of values, not of the order they were listed in.
	sort.Slice(pats, func(i, j int) bool { return bytes.Compare(pats[i], pats[j]) < 0 })

	s := &Set{repl: bytes.Clone(replacement), n: len(pats)}
	if s.n == 0 {
		return s
	}
	for _, p := range pats {
		s.maxLen = max(s.maxLen, len(p))
	}
	s.compile(pats)
	s.pf = choosePrefilter(pats, mode)
	return s
}

// compile builds the trie and its leftmost-longest failure transitions.
func (s *Set) compile(pats [][]byte) {
	type node struct {
		next  map[byte]int32
		depth int32
		term  bool
	}
	nodes := []node{{}}
	for _, p := range pats {
		cur := int32(0)
		for i, b := range p {
			nx, ok := nodes[cur].next[b]
			if !ok {
				nx = int32(len(nodes))
				nodes = append(nodes, node{depth: int32(i + 1)})
				if nodes[cur].next == nil {
					nodes[cur].next = make(map[byte]int32, 1)
				}
				nodes[cur].next[b] = nx
			}
			cur = nx
		}
		nodes[cur].term = true
	}

	s.states = make([]state, len(nodes))
	for id, nd := range nodes {
		keys := make([]byte, 0, len(nd.next))
		for b := range nd.next {
			keys = append(keys, b)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		st := &s.states[id]
		st.depth = nd.depth
		st.lo = int32(len(s.edges))
		for _, b := range keys {
			s.edges = append(s.edges, edge{b: b, to: nd.next[b]})
		}
		st.hi = int32(len(s.edges))
	}
	for _, e := range s.edges[s.states[0].lo:s.states[0].hi] {
		s.root[e.b] = e.to
	}

	// Breadth first, so that a state's failure target (shallower) is final
	// before the state's children need it.
	queue := make([]int32, 0, len(nodes))
	for _, e := range s.edges[s.states[0].lo:s.states[0].hi] {
		c := e.to
		if nodes[c].term {
			s.states[c].fail, s.states[c].match = dead, nodes[c].depth
		} else {
			s.states[c].fail = 0
		}
		queue = append(queue, c)
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, e := range s.edges[s.states[id].lo:s.states[id].hi] {
			c := e.to
			queue = append(queue, c)
			if nodes[c].term {
				// Its own secret is the longest match ending here, and any
				// suffix would start later: under leftmost semantics the
				// search never falls back from a match (nor from any state
				// below one, since dead propagates through the loop below).
				s.states[c].fail, s.states[c].match = dead, nodes[c].depth
				continue
			}
			f := s.states[id].fail
			for {
				if f == dead {
					break
				}
				if f == 0 {
					f = s.root[e.b]
					break
				}
				if nx := s.child(f, e.b); nx != 0 {
					f = nx
					break
				}
				f = s.states[f].fail
			}
			s.states[c].fail = f
			if f != dead {
				// A secret that is a suffix of this path ends here too.
				s.states[c].match = s.states[f].match
			}
		}
	}
}

// child returns the transition of non-root state st on b, 0 if none.
func (s *Set) child(st int32, b byte) int32 {
	x := &s.states[st]
	for _, e := range s.edges[x.lo:x.hi] {
		if e.b == b {
			return e.to
		}
	}
	return 0
}

// step follows the transition on b out of st, through failure transitions.
// It returns 0 (root) when no secret is in progress, dead when a match was
// seen and cannot be extended.
func (s *Set) step(st int32, b byte) int32 {
	for st != 0 {
		x := &s.states[st]
		for _, e := range s.edges[x.lo:x.hi] {
			if e.b == b {
				return e.to
			}
		}
		st = x.fail
		if st == dead {
			return dead
		}
	}
	return s.root[b]
}

// Len reports how many distinct non-empty secrets the Set holds.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// MaxLen reports the length of the longest secret; a Reader never holds
// back more than MaxLen()-1 bytes.
func (s *Set) MaxLen() int {
	if s == nil {
		return 0
	}
	return s.maxLen
}

// find looks for the leftmost-longest match in buf[at:].
//
// If there is one it returns its bounds [start, end). Otherwise start is -1
// and hold is where the undecided tail of buf begins: bytes before hold hold
// no match and can be sent; buf[hold:] is the longest tail that is a proper
// prefix of a secret, which more input may complete. With final set (no more
// input will come) nothing is undecided and hold is len(buf).
//
// cur caches the prefilter's scan positions across calls on the same buf,
// with nondecreasing at.
func (s *Set) find(buf []byte, at int, final bool, cur *cursor) (start, end, hold int) {
	n := len(buf)
	// Positions from tail on may begin a proper prefix of a secret that the
	// next chunk completes.
	tail := n
	if !final {
		tail = max(0, n-s.maxLen+1)
	}
	for at < n {
		at = s.skip(buf, at, tail, cur)
		if at >= n {
			break
		}
		from := at
		st, ms, me := int32(0), -1, -1
		for at < n {
			st = s.step(st, buf[at])
			at++
			if st <= 0 {
				break
			}
			if m := s.states[st].match; m != 0 {
				ms, me = at-int(m), at
			}
		}
		switch {
		case ms >= 0 && (st <= 0 || final || s.states[st].lo == s.states[st].hi):
			// Nothing can extend the match: dead, or the end of the input,
			// or a state with no way on.
			return ms, me, n
		case st > 0:
			// The chunk ended with a secret in progress.
			if final {
				return -1, -1, n
			}
			hold := n - int(s.states[st].depth)
			if ms >= 0 && hold > ms {
				// Unreachable by construction (the path in progress
				// starts at or before the match); never send part of
				// a match that is still undecided.
				hold = ms
			}
			return -1, -1, hold
		case st == dead:
			// Unreachable by construction (dead follows a match). Should
			// it ever happen, resume right after the candidate rather
			// than skip bytes that were never matched.
			at = from + 1
		}
		// Back at the root with no match in progress: skip again.
	}
	return -1, -1, n
}

// ReplaceBytes returns b with every secret replaced. When b holds no secret
// it returns b itself, without allocating.
func (s *Set) ReplaceBytes(b []byte) []byte {
	if s == nil || s.n == 0 {
		return b
	}
	var cur cursor
	ms, me, _ := s.find(b, 0, true, &cur)
	if ms < 0 {
		return b
	}
	out := make([]byte, 0, len(b)+len(s.repl))
	pos := 0
	for ms >= 0 {
		out = append(out, b[pos:ms]...)
		out = append(out, s.repl...)
		pos = me
		ms, me, _ = s.find(b, pos, true, &cur)
	}
	return append(out, b[pos:]...)
}

// ReplaceString returns v with every secret replaced. When v holds no secret
// it returns v itself, without allocating.
func (s *Set) ReplaceString(v string) string {
	if s == nil || s.n == 0 || v == "" {
		return v
	}
	// The scanner only reads, so it can look at the string's bytes in
	// place: header values are scrubbed on every response and nearly
	// never hold a secret, so copying each one would be pure waste.
	b := unsafe.Slice(unsafe.StringData(v), len(v))
	var cur cursor
	ms, me, _ := s.find(b, 0, true, &cur)
	if ms < 0 {
		return v
	}
	out := make([]byte, 0, len(v)+len(s.repl))
	pos := 0
	for ms >= 0 {
		out = append(out, v[pos:ms]...)
		out = append(out, s.repl...)
		pos = me
		ms, me, _ = s.find(b, pos, true, &cur)
	}
	out = append(out, v[pos:]...)
	return string(out)
}

// Contains reports whether b holds any secret of the Set.
func (s *Set) Contains(b []byte) bool {
	if s == nil || s.n == 0 {
		return false
	}
	var cur cursor
	ms, _, _ := s.find(b, 0, true, &cur)
	return ms >= 0
}
