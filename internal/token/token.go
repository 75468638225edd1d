// Package token generates, validates and hashes keyhole credentials: agent
// tokens (kh_…), admin tokens (kha_…) and the opaque public ids that name
// them in URLs. It also finds token-shaped strings in arbitrary bytes so that
// logs and audit captures can redact tokens nobody told them about.
//
// A token is a prefix followed by 40 base62 characters (SPEC §3.2): 34 random
// characters (~202 bits from crypto/rand) and a 6-character checksum, the
// CRC-32 (IEEE) of the prefix and the random part written as 6 base62 digits.
// This is the shape of GitHub's tokens, for the same reasons: a secret scanner
// recognises a keyhole token offline without a false positive on every
// 40-character word, and a mistyped token is refused (bad_token) before any
// store lookup.
//
// Only Hash(token) is ever stored; the token itself is shown once at issue.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind says which listener a token is for.
type Kind int

// The zero Kind is deliberately not a valid kind, so that a Kind returned
// next to an error (or left unset in a struct) never passes for an agent.
const (
	// Agent tokens (kh_…) authenticate agents on the gateway listener.
	Agent Kind = iota + 1
	// Admin tokens (kha_…) authenticate the admin API. They do not start
	// with "kh_", so the gateway never mistakes one for an agent token.
	Admin
)

// Token shape.
const (
	AgentPrefix = "kh_"
	AdminPrefix = "kha_"
	// BodyLen is the number of base62 characters after the prefix.
	BodyLen = randLen + checkLen

	randLen  = 34 // 34·log2(62) ≈ 202.4 random bits
	checkLen = 6  // 62^6 ≈ 5.7e10 > 2^32: any CRC-32 fits in 6 digits

	// idRandLen random base62 characters make an id: ~119 bits, so ids
	// never collide in practice and need no uniqueness retry.
	idRandLen = 20
)

// The errors Parse returns. They never contain the input, so a handler may
// log or return them as they are.
var (
	// ErrMalformed: wrong prefix, wrong length, or a character outside
	// 0-9A-Za-z.
	ErrMalformed = errors.New("token: malformed")
	// ErrChecksum: the shape is right but the checksum is not, which is
	// almost always a typo or a truncated copy-and-paste.
	ErrChecksum = errors.New("token: checksum mismatch")
)

// String returns "agent" or "admin".
func (k Kind) String() string {
	switch k {
	case Agent:
		return "agent"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Prefix returns the token prefix of k, or "" for an invalid Kind.
func (k Kind) Prefix() string {
	switch k {
	case Agent:
		return AgentPrefix
	case Admin:
		return AdminPrefix
	}
	return ""
}

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Generate returns a new token of kind k.
func Generate(k Kind) (string, error) {
	prefix := k.Prefix()
	if prefix == "" {
		return "", fmt.Errorf("token: cannot generate a token of %v", k)
	}
	var buf [len(AdminPrefix) + BodyLen]byte
	n := copy(buf[:], prefix)
	randomBase62(buf[n : n+randLen])
	check := encodeCheck(checksum(k, buf[n:n+randLen]))
	n += randLen
	n += copy(buf[n:], check[:])
	return string(buf[:n]), nil
}

// randomBase62 fills dst with characters drawn uniformly from alphabet.
// Each random byte is masked to 6 bits and values ≥ 62 are rejected: taking
// a byte modulo 62 instead would make the first 8 characters 25% more likely
// than the rest (256 = 4·62 + 8).
func randomBase62(dst []byte) {
	var pool [64]byte
	used := len(pool)
	for i := 0; i < len(dst); {
		if used == len(pool) {
			// crypto/rand.Read never returns an error (since Go 1.24 it
			// aborts the program if the OS generator fails), so there is
			// no error to propagate.
			_, _ = rand.Read(pool[:])
			used = 0
		}
		v := pool[used] & 63
		used++
		if v < 62 {
			dst[i] = alphabet[v]
			i++
		}
	}
}

// Parse reports the kind of s if s is exactly a well-formed token: a known
// prefix, exactly BodyLen characters after it, all in 0-9A-Za-z, and a
// correct checksum. Otherwise it returns ErrMalformed or ErrChecksum.
//
// Parse does not allocate and never panics. Its running time depends on the
// prefix and the length (which are public) and on which outcome it reports,
// but not otherwise on the token's characters: every character is checked
// and the checksum computed even when an earlier character is already bad,
// with branch-free arithmetic rather than table lookups indexed by the
// token's bytes, and the checksum is compared without an early exit.
func Parse(s string) (Kind, error) {
	var kind Kind
	var body string
	switch {
	case strings.HasPrefix(s, AdminPrefix):
		kind, body = Admin, s[len(AdminPrefix):]
	case strings.HasPrefix(s, AgentPrefix):
		kind, body = Agent, s[len(AgentPrefix):]
	default:
		return 0, ErrMalformed
	}
	if len(body) != BodyLen {
		return 0, ErrMalformed
	}
	var bad uint32
	for i := 0; i < len(body); i++ {
		bad |= isBase62(body[i]) ^ 1
	}
	want := encodeCheck(checksum(kind, body[:randLen]))
	var diff byte
	for i := range want {
		diff |= want[i] ^ body[randLen+i]
	}
	if bad != 0 {
		return 0, ErrMalformed
	}
	if diff != 0 {
		return 0, ErrChecksum
	}
	return kind, nil
}

// LooksLikeAgentToken reports whether s starts with "kh_": the gateway's
// rule for which header carries the agent's token (SPEC §3.2), so that an
// SDK's own non-keyhole key in Authorization is skipped. It is not a
// validity check; Parse is. Admin tokens ("kha_…") do not match.
func LooksLikeAgentToken(s string) bool {
	return strings.HasPrefix(s, AgentPrefix)
}

// Hash returns what the store keeps for a token: the lowercase hex SHA-256 of
// the token string.
//
// A fast unsalted hash is the right tool here, unlike for passwords: issued
// tokens carry ~202 random bits, so there is no dictionary to precompute and
// brute force is out of reach however fast the hash is; a salt would only
// stop the gateway from finding a token by its hash with one indexed lookup,
// and a slow KDF would put milliseconds of CPU on every request. The same
// function hashes the bootstrap admin token (KEYHOLE_ADMIN_TOKEN), which the
// operator chooses: its strength is theirs, which is why ValidBootstrap
// insists on at least 32 characters and the docs recommend a random value.
//
// Looking the hash up in a map is safe against timing attacks: the timing
// can reveal at most something about the hash of the guess, which tells an
// attacker nothing about any stored token.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// MinBootstrapLen is the minimum length in bytes of KEYHOLE_ADMIN_TOKEN
// (SPEC §2).
const MinBootstrapLen = 32

// ValidBootstrap checks an operator-chosen bootstrap admin token
// (KEYHOLE_ADMIN_TOKEN). It must be at least MinBootstrapLen bytes of valid
// UTF-8 with no whitespace, control or invisible formatting characters: those
// are what a copy from a file, a terminal or a web page adds by accident (a
// trailing newline, a pasted tab, a byte-order mark, a zero-width space),
// and a token that silently differs from what the operator will type later
// is worse than a refusal at startup. The value is otherwise accepted as
// given, not trimmed. The error names the problem and the byte offset, never
// the value.
func ValidBootstrap(s string) error {
	const hint = "; use a random value such as the output of `openssl rand -base64 32`, or unset it and keyhole creates an admin token on first start"
	if len(s) < MinBootstrapLen {
		return fmt.Errorf("KEYHOLE_ADMIN_TOKEN is too short: it has %d bytes and needs at least %d%s", len(s), MinBootstrapLen, hint)
	}
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return fmt.Errorf("KEYHOLE_ADMIN_TOKEN is not valid UTF-8 (at byte %d)%s", i, hint)
		case unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return fmt.Errorf("KEYHOLE_ADMIN_TOKEN contains whitespace, a control character or an invisible formatting character at byte %d (a trailing newline from a file?)%s", i, hint)
		}
	}
	return nil
}

// NewID returns a new public id: prefix followed by 20 random base62
// characters (~119 bits), e.g. NewID("tok_") → "tok_3kTMd8…". Ids name
// objects in URLs (/tokens/{id}) and logs; they are not secrets, but being
// random they reveal neither how many objects exist nor when each was made.
func NewID(prefix string) string {
	buf := make([]byte, len(prefix)+idRandLen)
	n := copy(buf, prefix)
	randomBase62(buf[n:])
	return string(buf)
}

// ValidID reports whether s is prefix followed by exactly 20 base62
// characters, the shape NewID produces. Handlers check it before a store
// lookup so that a hostile path segment never reaches a query.
func ValidID(prefix, s string) bool {
	if len(s) != len(prefix)+idRandLen || !strings.HasPrefix(s, prefix) {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		if !isBase62Table[s[i]] {
			return false
		}
	}
	return true
}

// checksum is the CRC-32 (IEEE) of prefix followed by the random part r,
// the same value as hash/crc32.ChecksumIEEE (the tests pin it), computed
// without branches or memory accesses that depend on r.
//
// hash/crc32 indexes tables with the input bytes (a cache-timing channel on
// the token) and wants a []byte (an allocation for a string this long). A
// plain bit-at-a-time CRC is constant-time but one long dependency chain
// (~400 ns per token here).
// Instead this uses that a CRC is affine: for a fixed length,
// crc(prefix‖r) = crc(prefix‖0…0) ⊕ L(r) with L linear, so it is the XOR of
// a per-prefix constant and, for every bit of r that is set, a precomputed
// word (masked in, not looked up, so every word is read every time). The
// 272 masked XORs are independent of one another: ~130 ns.
func checksum[T string | []byte](k Kind, r T) uint32 {
	crc := crcZero[k]
	var odd uint32 // a second accumulator halves the XOR dependency chain
	for i := 0; i < randLen; i++ {
		b := uint32(r[i])
		w := &crcBit[i]
		crc ^= w[0]&-(b&1) ^ w[2]&-(b>>2&1) ^ w[4]&-(b>>4&1) ^ w[6]&-(b>>6&1)
		odd ^= w[1]&-(b>>1&1) ^ w[3]&-(b>>3&1) ^ w[5]&-(b>>5&1) ^ w[7]&-(b>>7)
	}
	return crc ^ odd
}

var (
	// crcZero[k] is crc32(k.Prefix() followed by randLen zero bytes).
	crcZero [Admin + 1]uint32
	// crcBit[i][j] is L(the randLen-byte string with only bit j of byte
	// i set): what that bit adds to the checksum.
	crcBit [randLen][8]uint32
)

func init() {
	for _, k := range []Kind{Agent, Admin} {
		var buf [len(AdminPrefix) + randLen]byte
		n := copy(buf[:], k.Prefix())
		crcZero[k] = crc32IEEE(buf[:n+randLen])
	}
	// A bit in the last byte contributes the register after that one byte
	// from a zero state; each byte after a bit shifts its contribution by
	// one more zero byte. (The CRC's initial and final complements cancel
	// in these differences, so they are left out.)
	for j := range 8 {
		v := uint32(1) << j
		for i := randLen - 1; i >= 0; i-- {
			v = crcShift(v, 8)
			crcBit[i][j] = v
		}
	}
}

// crcShift clocks a reflected CRC-32 register n times with zero input bits
// (the input byte, if any, is XORed in beforehand).
func crcShift(v uint32, n int) uint32 {
	for range n {
		v = (v >> 1) ^ (0xEDB88320 & -(v & 1))
	}
	return v
}

// crc32IEEE is the reference bit-at-a-time CRC-32 (IEEE), used once per
// prefix at init.
func crc32IEEE(p []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range p {
		crc = crcShift(crc^uint32(c), 8)
	}
	return ^crc
}

// encodeCheck writes c as exactly 6 base62 digits, most significant first,
// left-padded with '0'.
func encodeCheck(c uint32) (out [checkLen]byte) {
	v := uint64(c)
	for i := checkLen - 1; i >= 0; i-- {
		out[i] = base62Digit(byte(v % 62))
		v /= 62
	}
	return out
}

// base62Digit maps 0..61 to its character without branches or lookups:
// '0'+d, then +7 to jump from '9'+1 to 'A' for d ≥ 10, then +6 to jump from
// 'Z'+1 to 'a' for d ≥ 36.
func base62Digit(d byte) byte {
	ge10 := byte((uint32(9) - uint32(d)) >> 31)
	ge36 := byte((uint32(35) - uint32(d)) >> 31)
	return '0' + d + 7*ge10 + 6*ge36
}

// isBase62 returns 1 if c is in 0-9A-Za-z and 0 otherwise, without branches:
// (lo-1-x) & (x-hi-1) is negative exactly when lo ≤ x ≤ hi.
func isBase62(c byte) uint32 {
	x := int32(c)
	d := (('0' - 1 - x) & (x - '9' - 1)) >> 31
	u := (('A' - 1 - x) & (x - 'Z' - 1)) >> 31
	l := (('a' - 1 - x) & (x - 'z' - 1)) >> 31
	return uint32(d|u|l) & 1
}

// isBase62Table is for scanning non-secret or bulk input (ids, FindAll),
// where speed matters more than constant time.
var isBase62Table = func() (t [256]bool) {
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = true
	}
	return t
}()
