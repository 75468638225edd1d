package scrub

import (
	"bytes"
	"encoding/binary"
)

// The prefilter finds the positions where the automaton has to run. A
// response body seldom holds a secret, so this is the cost of scrubbing:
// bytes.IndexByte scans many bytes per cycle, a byte-at-a-time table about
// one.

type pfMode uint8

const (
	modeAuto  pfMode = iota
	modeFirst        // bytes.IndexByte over the secrets' distinct first bytes (at most maxPfBytes)
	modeTable        // a table lookup of every byte: too many first bytes, or too common ones
	modeRare         // bytes.IndexByte over one rare byte of each secret, then back up to its start
)

// maxPfBytes is how many bytes the prefilter scans for: each is one pass of
// bytes.IndexByte over the chunk, so past three the table is as fast.
const maxPfBytes = 3

// rareWindow bounds where in a secret its rare byte may be: a hit at h means
// a match may start as early as h-(rareWindow-1), and the prefilter then
// looks at each position in between.
const rareWindow = 16

type prefilter struct {
	mode  pfMode
	nb    int
	bytes [maxPfBytes]byte
	// off[b] is the largest offset at which b occurs within the first
	// rareWindow bytes of any secret (modeRare). Whatever secret starts at
	// p and holds b at h, p >= h-off[b]: the back-up never overshoots.
	off [256]uint8
	// first[b] reports whether some secret begins with b.
	first [256]bool
	// pair is a bitmap of the secrets' first two bytes (all pairs b·x for
	// a one-byte secret b): most positions that pass first fail here, for
	// the price of one load, without entering the automaton.
	pair [1 << 16 / 64]uint64
}

// cand reports whether a secret, or (at the end of buf) a prefix of one, may
// begin at buf[i].
func (pf *prefilter) cand(buf []byte, i int) bool {
	if !pf.first[buf[i]] {
		return false
	}
	if i+1 >= len(buf) {
		return true
	}
	return pf.hasPair(uint64(buf[i]) | uint64(buf[i+1])<<8)
}

// hasPair reports whether the two bytes in the low 16 bits of w (first one
// lowest, as a little-endian load puts them) begin a secret.
func (pf *prefilter) hasPair(w uint64) bool {
	return pf.pairBit(w) != 0
}

func (pf *prefilter) pairBit(w uint64) uint64 {
	k := w & 0xffff
	return pf.pair[k>>6] >> (k & 63) & 1
}

// cursor remembers, for one buffer, where the next occurrence of each
// prefilter byte is, so that each byte costs one pass over the buffer
// however many candidates the others produce.
type cursor struct {
	next [maxPfBytes]int // position+1 of the next occurrence; 0 unknown; len(buf)+1 none
}

// nextByte returns the first position at or after at that holds one of the
// prefilter's bytes, or len(buf).
func (pf *prefilter) nextByte(buf []byte, at int, cur *cursor) int {
	h := len(buf)
	for j := 0; j < pf.nb; j++ {
		x := cur.next[j] - 1
		if x < at {
			if i := bytes.IndexByte(buf[at:], pf.bytes[j]); i < 0 {
				x = len(buf)
			} else {
				x = at + i
			}
			cur.next[j] = x + 1
		}
		h = min(h, x)
	}
	return h
}

// skip returns the first position at or after at where a secret may begin
// (a whole one, or before tail only, a proper prefix that ends the buffer),
// or len(buf) if there is none. It may return earlier positions, never
// later ones.
func (s *Set) skip(buf []byte, at, tail int, cur *cursor) int {
	pf := &s.pf
	n := len(buf)
	switch pf.mode {
	case modeFirst:
		// A first byte starts whole secrets and tails alike.
		for {
			h := pf.nextByte(buf, at, cur)
			if h >= n || pf.cand(buf, h) {
				return h
			}
			at = h + 1
		}
	case modeRare:
		// Every secret holds a rare byte within its first rareWindow
		// bytes, so no whole secret begins before the first rare byte
		// minus its offset. A tail of the buffer may be too short to
		// reach its rare byte: the last MaxLen-1 positions are looked
		// at one by one below.
		for at < tail {
			h := pf.nextByte(buf, at, cur)
			if h >= n {
				break
			}
			lo := max(at, h-int(pf.off[buf[h]]))
			hi := min(h, tail-1)
			for i := lo; i <= hi; i++ {
				if pf.cand(buf, i) {
					return i
				}
			}
			at = max(at, hi+1)
		}
		at = max(at, tail)
	}
	// Test every position's first two bytes against pair: few false
	// candidates even when many secrets make most bytes a first byte. One
	// 8-byte load gives seven positions, tested with one branch.
	for at+8 <= n {
		w := binary.LittleEndian.Uint64(buf[at:])
		if pf.pairBit(w)|pf.pairBit(w>>8)|pf.pairBit(w>>16)|pf.pairBit(w>>24)|
			pf.pairBit(w>>32)|pf.pairBit(w>>40)|pf.pairBit(w>>48) != 0 {
			break
		}
		at += 7
	}
	for ; at < n; at++ {
		if pf.cand(buf, at) {
			return at
		}
	}
	return n
}

// Rough costs in nanoseconds, measured on amd64, to choose a prefilter: per
// input byte for one IndexByte pass and for the table loop, and per
// candidate position (restarting IndexByte, a step or two of the automaton).
const (
	costScan = 0.06
	costByte = 1.0
	costHit  = 15.0
)

// choosePrefilter picks the prefilter with the lowest estimated cost per
// byte of a typical response body. mode forces a kind (tests use it to cover
// each one); a kind that cannot serve the secrets falls back to the table.
func choosePrefilter(pats [][]byte, mode pfMode) prefilter {
	var pf prefilter
	var firsts []byte
	for _, p := range pats {
		if !pf.first[p[0]] {
			pf.first[p[0]] = true
			firsts = append(firsts, p[0])
		}
		for x := range 256 {
			if len(p) == 1 || int(p[1]) == x {
				k := uint(p[0]) | uint(x)<<8
				pf.pair[k>>6] |= 1 << (k & 63)
			}
		}
	}
	rare, rareOK := rareBytes(pats)
	for _, p := range pats {
		for i, b := range p[:min(len(p), rareWindow)] {
			pf.off[b] = max(pf.off[b], uint8(i))
		}
	}

	costFirst := inf
	if len(firsts) <= maxPfBytes {
		costFirst = float64(len(firsts)) * costScan
		for _, b := range firsts {
			costFirst += freq(b) * costHit
		}
	}
	// The table tests two bytes: only a secret's first two bytes enter
	// the automaton.
	costTable := costByte
	for _, p := range pats {
		f := freq(p[0])
		if len(p) > 1 {
			f *= freq(p[1])
		}
		costTable += f * costHit
	}
	costRare := inf
	if rareOK {
		costRare = float64(len(rare)) * costScan
		for _, b := range rare {
			// After a hit, each position back to the start of the
			// window is looked at.
			costRare += freq(b) * (costHit + float64(pf.off[b]))
		}
	}

	if mode == modeAuto {
		mode = modeTable
		best := costTable
		if costFirst <= best {
			mode, best = modeFirst, costFirst
		}
		if costRare < best {
			mode = modeRare
		}
	}
	switch {
	case mode == modeRare && rareOK:
		pf.mode = modeRare
		pf.nb = copy(pf.bytes[:], rare)
	case mode == modeFirst && len(firsts) <= maxPfBytes || mode == modeRare && !rareOK && len(firsts) <= maxPfBytes:
		pf.mode = modeFirst
		pf.nb = copy(pf.bytes[:], firsts)
	default:
		pf.mode = modeTable
	}
	return pf
}

const inf = 1e300

// rareBytes chooses at most maxPfBytes bytes such that each secret holds
// one of them within its first rareWindow bytes, preferring rare ones and
// reusing a byte already chosen when a secret holds it (so that, say,
// "sk_live_…" and "rk_live_…" share '_'). ok is false when no such choice
// was found.
func rareBytes(pats [][]byte) (chosen []byte, ok bool) {
	var in [256]bool
	for _, p := range pats {
		w := p[:min(len(p), rareWindow)]
		covered := false
		for _, b := range w {
			if in[b] {
				covered = true
				break
			}
		}
		if covered {
			continue
		}
		best := w[0]
		for _, b := range w[1:] {
			if freq(b) < freq(best) {
				best = b
			}
		}
		if len(chosen) == maxPfBytes {
			return nil, false
		}
		in[best] = true
		chosen = append(chosen, best)
	}
	return chosen, true
}

// freq estimates how often b occurs in a typical API response body (JSON
// with English text, numbers and identifiers), as a fraction. Only the
// order of magnitude matters: it decides whether a byte is rare enough to
// scan for.
func freq(b byte) float64 {
	return byteFreq[b]
}

var byteFreq = func() (t [256]float64) {
	for i := range t {
		switch {
		case i < 0x20 || i == 0x7f:
			t[i] = 0.00005
		case i >= 0x80:
			t[i] = 0.0003
		default:
			t[i] = 0.0005
		}
	}
	// Per mille, roughly: English letter frequencies diluted by JSON
	// punctuation, digits and identifiers.
	for b, pm := range map[byte]float64{
		' ': 80, '"': 60, 'e': 60, 't': 45, 'a': 40, 'o': 38, 'i': 36, 'n': 36,
		's': 34, 'r': 33, ':': 25, ',': 25, 'l': 22, 'c': 22, 'd': 20, 'u': 18,
		'0': 18, '1': 16, '2': 14, 'm': 14, 'h': 14, 'p': 13, '_': 12, '.': 10,
		'-': 10, 'f': 10, 'g': 10, '3': 10, '4': 9, '5': 9, '6': 8, '7': 8,
		'8': 8, '9': 8, 'y': 8, 'b': 8, '\n': 8, 'w': 7, '/': 6, 'v': 5,
		'{': 5, '}': 5, 'k': 4, 'x': 3, 'T': 3, 'S': 3, 'A': 3, 'C': 3,
		'I': 3, 'E': 2, 'N': 2, 'R': 2, 'D': 2, 'P': 2, 'L': 2, 'O': 2,
		'M': 2, 'B': 1.5, 'F': 1.5, 'G': 1.5, 'H': 1.5, 'U': 1.5, 'W': 1.5,
		'j': 1, 'q': 1, 'z': 1, 'K': 1, 'Y': 1, 'V': 1, 'J': 0.7, 'X': 0.7,
		'Q': 0.5, 'Z': 0.5, '[': 1, ']': 1, '=': 1, '\t': 1, '\r': 1,
		'<': 1, '>': 1, '(': 0.8, ')': 0.8, '\'': 0.8, '&': 0.6, '+': 0.6,
		';': 0.6, '%': 0.6, '\\': 0.6,
	} {
		t[b] = pm / 1000
	}
	return t
}()
