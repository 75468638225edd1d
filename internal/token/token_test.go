package token

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"regexp"
	"strings"
	"testing"
)

// ref is an independent, obviously-correct implementation of the token
// format, written the slow way (regexp, hash/crc32, repeated division), that
// Parse and Generate are checked against.
func refChecksum(s string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(s)))
	out := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return string(out)
}

var refRE = regexp.MustCompile(`^(kha?_)[0-9A-Za-z]{40}$`)

func refParse(s string) (Kind, error) {
	m := refRE.FindStringSubmatch(s)
	if m == nil {
		return 0, ErrMalformed
	}
	if refChecksum(s[:len(s)-6]) != s[len(s)-6:] {
		return 0, ErrChecksum
	}
	if m[1] == AdminPrefix {
		return Admin, nil
	}
	return Agent, nil
}

// withChecksum returns body34 under prefix with its correct checksum.
func withChecksum(prefix, body34 string) string {
	return prefix + body34 + refChecksum(prefix+body34)
}

func mustGenerate(t testing.TB, k Kind) string {
	t.Helper()
	s, err := Generate(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCRCMatchesHashCRC32(t *testing.T) {
	for _, s := range []string{"", "a", "kh_", "kha_0123456789abcdefghijABCDEFGHIJxyzw", strings.Repeat("\xff", 100)} {
		if got, want := crc32IEEE([]byte(s)), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("crc32IEEE(%q) = %08x, want %08x", s, got, want)
		}
	}
	// The affine decomposition must agree with hash/crc32 on every bit of
	// every position, not only on the values random tokens happen to have.
	for _, k := range []Kind{Agent, Admin} {
		for i := range randLen {
			for j := range 8 {
				for _, fill := range []byte{0, 0xff, 'a'} {
					r := bytes.Repeat([]byte{fill}, randLen)
					r[i] ^= 1 << j
					want := crc32.ChecksumIEEE(append([]byte(k.Prefix()), r...))
					if got := checksum(k, r); got != want {
						t.Fatalf("checksum(%v, fill %#x with bit %d of byte %d flipped) = %08x, want %08x", k, fill, j, i, got, want)
					}
					if got := checksum(k, string(r)); got != want {
						t.Fatalf("checksum of a string differs from that of a []byte")
					}
				}
			}
		}
	}
}

func TestEncodeCheck(t *testing.T) {
	for _, c := range []uint32{0, 1, 61, 62, 3843, 3844, 1 << 31, math.MaxUint32} {
		got := encodeCheck(c)
		v := uint64(c)
		want := make([]byte, 6)
		for i := 5; i >= 0; i-- {
			want[i] = alphabet[v%62]
			v /= 62
		}
		if string(got[:]) != string(want) {
			t.Errorf("encodeCheck(%d) = %q, want %q", c, got[:], want)
		}
	}
	if got := encodeCheck(0); string(got[:]) != "000000" {
		t.Errorf("encodeCheck(0) = %q, want left-padded 000000", got[:])
	}
	for d := byte(0); d < 62; d++ {
		if got := base62Digit(d); got != alphabet[d] {
			t.Errorf("base62Digit(%d) = %q, want %q", d, got, alphabet[d])
		}
	}
	for c := 0; c < 256; c++ {
		if got, want := isBase62(byte(c)) == 1, isBase62Table[c]; got != want {
			t.Errorf("isBase62(%#x) = %v, want %v", c, got, want)
		}
	}
}

func TestGenerate(t *testing.T) {
	for _, k := range []Kind{Agent, Admin} {
		seen := make(map[string]bool, 10000)
		for range 10000 {
			s := mustGenerate(t, k)
			if len(s) != len(k.Prefix())+BodyLen || !strings.HasPrefix(s, k.Prefix()) {
				t.Fatalf("Generate(%v) = token of length %d, want prefix %q and %d characters after it", k, len(s), k.Prefix(), BodyLen)
			}
			if got, err := Parse(s); err != nil || got != k {
				t.Fatalf("Parse(Generate(%v)) = %v, %v", k, got, err)
			}
			if got, err := refParse(s); err != nil || got != k {
				t.Fatalf("reference parse of Generate(%v) = %v, %v", k, got, err)
			}
			if seen[s] {
				t.Fatalf("Generate(%v) repeated a token", k)
			}
			seen[s] = true
		}
	}
	if _, err := Generate(0); err == nil {
		t.Error("Generate(0) succeeded; the zero Kind is not a kind")
	}
	if _, err := Generate(Kind(7)); err == nil {
		t.Error("Generate(7) succeeded")
	}
}

// TestGenerateUniform pins the rejection sampling: a byte%62 sampler makes
// 8 of the 62 characters 25% more likely, which shows as a chi-square in the
// thousands on this sample; a uniform one stays near its 61 degrees of
// freedom (the threshold is ~7 standard deviations out: no flakes).
func TestGenerateUniform(t *testing.T) {
	var counts [256]int
	const n = 10000
	for range n {
		s := mustGenerate(t, Agent)
		for _, c := range []byte(s[len(AgentPrefix) : len(AgentPrefix)+randLen]) {
			counts[c]++
		}
	}
	expected := float64(n*randLen) / 62
	var chi2 float64
	for i := 0; i < len(alphabet); i++ {
		d := float64(counts[alphabet[i]]) - expected
		chi2 += d * d / expected
	}
	if chi2 > 150 {
		t.Errorf("chi-square of random characters = %.1f over 61 degrees of freedom; want < 150 (biased sampler?)", chi2)
	}
}

func TestParse(t *testing.T) {
	agent := withChecksum(AgentPrefix, "0123456789ABCDEFGHIJKLMNOPQRSTUVWX")
	admin := withChecksum(AdminPrefix, "abcdefghijklmnopqrstuvwxyz01234567")
	body := agent[len(AgentPrefix):]
	rnd := body[:randLen]
	tests := []struct {
		name     string
		in       string
		wantKind Kind
		wantErr  error
	}{
		{"agent token", agent, Agent, nil},
		{"admin token", admin, Admin, nil},
		{"generated agent", mustGenerate(t, Agent), Agent, nil},
		{"generated admin", mustGenerate(t, Admin), Admin, nil},
		{"checksum 000000 is valid padding", findZeroPadded(t), Agent, nil},

		{"empty", "", 0, ErrMalformed},
		{"agent prefix only", "kh_", 0, ErrMalformed},
		{"admin prefix only", "kha_", 0, ErrMalformed},
		{"no prefix", body, 0, ErrMalformed},
		{"39 characters", "kh_" + body[:39], 0, ErrMalformed},
		{"41 characters", agent + "0", 0, ErrMalformed},
		{"46 characters (SPEC allows 40+ for scanners; we issue 40)", "kh_" + rnd + "abcdef" + body[randLen:], 0, ErrMalformed},
		{"upper-case prefix KH_", "KH_" + body, 0, ErrMalformed},
		{"mixed-case prefix Kh_", "Kh_" + body, 0, ErrMalformed},
		{"upper-case admin prefix KHA_", "KHA_" + admin[4:], 0, ErrMalformed},
		{"kh- prefix", "kh-" + body, 0, ErrMalformed},
		{"khx_ prefix", "khx_" + body, 0, ErrMalformed},
		{"agent body under admin prefix", AdminPrefix + body, 0, ErrChecksum},
		{"admin body under agent prefix", AgentPrefix + admin[len(AdminPrefix):], 0, ErrChecksum},
		{"checksum digits swapped", agent[:len(agent)-2] + agent[len(agent)-1:] + agent[len(agent)-2:len(agent)-1], 0, ErrChecksum},
		{"trailing newline", agent + "\n", 0, ErrMalformed},
		{"trailing CRLF", agent + "\r\n", 0, ErrMalformed},
		{"leading space", " " + agent, 0, ErrMalformed},
		{"Bearer scheme left on", "Bearer " + agent, 0, ErrMalformed},
		{"1 MB", "kh_" + strings.Repeat("a", 1<<20), 0, ErrMalformed},
		{"fullwidth letters keeping the byte length", "kh_" + "\uff21" + body[3:], 0, ErrMalformed},
		{"fullwidth prefix", "\uff4b\uff48_" + body, 0, ErrMalformed},
		{"invalid UTF-8", "kh_\xff" + body[1:], 0, ErrMalformed},
	}
	for _, c := range []byte{'-', '_', '+', '/', '=', ' ', 0, '\t', '.', '%', 0x7f, 0x80, '0' - 1, '9' + 1, 'A' - 1, 'Z' + 1, 'a' - 1, 'z' + 1} {
		for _, pos := range []int{0, 17, randLen - 1, randLen, BodyLen - 1} {
			b := []byte(body)
			b[pos] = c
			tests = append(tests, struct {
				name     string
				in       string
				wantKind Kind
				wantErr  error
			}{fmt.Sprintf("byte %#02x at %d", c, pos), "kh_" + string(b), 0, ErrMalformed})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if got != tt.wantKind || !errors.Is(err, tt.wantErr) {
				t.Errorf("Parse = %v, %v; want %v, %v", got, err, tt.wantKind, tt.wantErr)
			}
			rk, rerr := refParse(tt.in)
			if rk != got || rerr != err {
				t.Errorf("Parse = %v, %v but the reference says %v, %v", got, err, rk, rerr)
			}
		})
	}
}

// findZeroPadded returns a valid token whose checksum starts with '0', so
// the left-padding is exercised (about 1 in 13 tokens).
func findZeroPadded(t *testing.T) string {
	for {
		s := mustGenerate(t, Agent)
		if s[len(s)-checkLen] == '0' {
			return s
		}
	}
}

// TestParseEverySingleCharacterChange: a typo anywhere is caught. Changing
// one character of the random part or the checksum to any other base62
// character must fail the checksum (CRC-32 detects every single-byte error).
func TestParseEverySingleCharacterChange(t *testing.T) {
	for _, k := range []Kind{Agent, Admin} {
		s := mustGenerate(t, k)
		for pos := len(k.Prefix()); pos < len(s); pos++ {
			for i := 0; i < len(alphabet); i++ {
				c := alphabet[i]
				if c == s[pos] {
					continue
				}
				m := s[:pos] + string(c) + s[pos+1:]
				if _, err := Parse(m); err != ErrChecksum {
					t.Fatalf("%v token with position %d changed: Parse = %v, want ErrChecksum", k, pos, err)
				}
			}
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	good := mustGenerate(t, Agent)
	bad := good[:len(good)-1] + "!"
	for _, s := range []string{good, bad, "garbage", good + "x"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = Parse(s) }); n != 0 {
			t.Errorf("Parse allocates %v times per call", n)
		}
	}
}

func TestErrorsDoNotEchoInput(t *testing.T) {
	s := mustGenerate(t, Agent)
	for _, in := range []string{s, s[:len(s)-1] + "x", s + "\n"} {
		if _, err := Parse(in); err != nil && strings.Contains(err.Error(), in[3:10]) {
			t.Errorf("Parse error %q contains the input", err)
		}
	}
}

func TestLooksLikeAgentToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"kh_", true},
		{"kh_x", true},
		{mustGenerate(t, Agent), true},
		{mustGenerate(t, Admin), false}, // "kha_" does not start with "kh_"
		{"KH_abc", false},
		{" kh_abc", false},
		{"sk-ant-api03-abc", false},
		{"", false},
		{"kh", false},
	}
	for _, tt := range tests {
		if got := LooksLikeAgentToken(tt.in); got != tt.want {
			t.Errorf("LooksLikeAgentToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestHash(t *testing.T) {
	// SHA-256("abc"), FIPS 180-2 appendix B.1.
	if got, want := Hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Hash(abc) = %s, want %s", got, want)
	}
	a, b := mustGenerate(t, Agent), mustGenerate(t, Agent)
	if Hash(a) == Hash(b) || Hash(a) != Hash(a) {
		t.Error("Hash is not a deterministic injective-looking function")
	}
	if strings.Contains(Hash(a), a[3:]) {
		t.Error("Hash contains the token")
	}
}

func TestValidBootstrap(t *testing.T) {
	long := strings.Repeat("x", 32)
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means valid
	}{
		{"32 bytes", long, ""},
		{"openssl rand -base64 32", "q1S4TBEfWx7mXUQc/9L+Q0yQ5WmS2hNuvGDVlqz4wyo=", ""},
		{"issued admin token", mustGenerate(t, Admin), ""},
		{"non-ASCII letters", strings.Repeat("é", 16), ""},
		{"empty", "", "too short"},
		{"31 bytes", long[1:], "too short"},
		{"trailing newline", long + "\n", "at byte 32"},
		{"leading space", " " + long, "at byte 0"},
		{"inner space", long[:10] + " " + long[10:], "at byte 10"},
		{"tab", long + "\t", "whitespace"},
		{"NUL", long + "\x00", "control"},
		{"DEL", long + "\x7f", "control"},
		{"no-break space", long + "\u00a0", "whitespace"},
		{"byte-order mark", "\ufeff" + long, "invisible"},
		{"zero-width space", long + "\u200b", "invisible"},
		{"invalid UTF-8", long + "\xff", "UTF-8"},
		{"genuine U+FFFD is fine", long + "\ufffd", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidBootstrap(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidBootstrap = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidBootstrap = %v, want an error containing %q", err, tt.wantErr)
			case err != nil && len(tt.in) >= 8 && strings.Contains(err.Error(), strings.TrimSpace(tt.in)):
				t.Errorf("ValidBootstrap error %q echoes the value", err)
			case err != nil && !strings.Contains(err.Error(), "openssl rand"):
				t.Errorf("ValidBootstrap error %q does not say what to do", err)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID("tok_")
		if !ValidID("tok_", id) {
			t.Fatalf("ValidID(tok_, NewID(tok_)) = false for %q", id)
		}
		if seen[id] {
			t.Fatal("NewID repeated an id")
		}
		seen[id] = true
	}
	good := NewID("tok_")
	tests := []struct {
		prefix, in string
		want       bool
	}{
		{"tok_", good, true},
		{"", good[4:], true},
		{"agt_", good, false},
		{"tok_", good[:len(good)-1], false},
		{"tok_", good + "a", false},
		{"tok_", good[:10] + "/" + good[11:], false},
		{"tok_", good[:10] + "." + good[11:], false},
		{"tok_", "tok_../../../../etc/passwd00", false},
		{"tok_", "", false},
		{"tok_", "tok_", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.prefix, tt.in); got != tt.want {
			t.Errorf("ValidID(%q, %q) = %v, want %v", tt.prefix, tt.in, got, tt.want)
		}
	}
}

func TestKind(t *testing.T) {
	if Agent.String() != "agent" || Admin.String() != "admin" || Kind(0).String() != "Kind(0)" {
		t.Errorf("Kind.String: %v %v %v", Agent, Admin, Kind(0))
	}
	if Kind(0).Prefix() != "" {
		t.Error("the zero Kind has a prefix")
	}
}

// FuzzParse: Parse never panics, agrees with the reference implementation
// on every input, and whatever it accepts is exactly prefix + 34 characters
// + the checksum of those. Random inputs almost never carry a valid
// checksum, so each input is also tried with its checksum repaired, which
// sends the fuzzer down the accepting path too.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "kh_", "kha_", "garbage", mustGenerate(f, Agent), mustGenerate(f, Admin),
		"KH_" + strings.Repeat("a", 40), "kh_" + strings.Repeat("\uff21", 13) + "a", mustGenerate(f, Agent) + "\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(s string) {
			k, err := Parse(s)
			rk, rerr := refParse(s)
			if k != rk || err != rerr {
				t.Fatalf("Parse(%q) = %v, %v; reference says %v, %v", s, k, err, rk, rerr)
			}
			if err != nil {
				if k != 0 || (err != ErrMalformed && err != ErrChecksum) {
					t.Fatalf("Parse(%q) = %v, %v: want the zero Kind and a sentinel", s, k, err)
				}
				return
			}
			p := k.Prefix()
			if !strings.HasPrefix(s, p) || len(s) != len(p)+BodyLen {
				t.Fatalf("Parse accepted %q of length %d as %v", s, len(s), k)
			}
			if withChecksum(p, s[len(p):len(p)+randLen]) != s {
				t.Fatalf("Parse accepted %q whose checksum does not re-encode", s)
			}
		}
		check(s)
		for _, p := range []string{AgentPrefix, AdminPrefix} {
			if strings.HasPrefix(s, p) && len(s) == len(p)+BodyLen {
				check(withChecksum(p, s[len(p):len(p)+randLen]))
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	s := mustGenerate(b, Agent)
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		_, _ = Generate(Agent)
	}
}

func BenchmarkHash(b *testing.B) {
	s := mustGenerate(b, Agent)
	for b.Loop() {
		_ = Hash(s)
	}
}
