package token

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// findRE is the reference for FindAll: leftmost-first, non-overlapping,
// greedy matches of the token shape.
var findRE = regexp.MustCompile(`kha?_[0-9A-Za-z]{40,}`)

func refFindAll(b []byte) [][2]int {
	var spans [][2]int
	for _, m := range findRE.FindAllIndex(b, -1) {
		spans = append(spans, [2]int{m[0], m[1]})
	}
	return spans
}

func TestFindAll(t *testing.T) {
	agent := mustGenerate(t, Agent)
	admin := mustGenerate(t, Admin)
	a40 := strings.Repeat("a", 40)
	tests := []struct {
		name string
		in   string
		want [][2]int
	}{
		{"empty", "", nil},
		{"no kh", "hello world, nothing to see", nil},
		{"kh but no token", "khaki kh kh_ kha_ khan", nil},
		{"agent token alone", agent, [][2]int{{0, 43}}},
		{"admin token alone", admin, [][2]int{{0, 44}}},
		{"bearer header", "Authorization: Bearer " + agent, [][2]int{{22, 65}}},
		{"JSON value", `{"token":"` + agent + `"}`, [][2]int{{10, 53}}},
		{"two tokens", agent + "," + admin, [][2]int{{0, 43}, {44, 88}}},
		{"adjacent tokens with a separator", agent + " " + agent, [][2]int{{0, 43}, {44, 87}}},
		{"39 characters is not a token", "kh_" + a40[1:], nil},
		{"longer run is redacted whole", "kh_" + a40 + "bbbbbb.", [][2]int{{0, 49}}},
		{"checksum not required", "kh_" + a40, [][2]int{{0, 43}}},
		{"URL-encoded, %3D before", "token%3D" + agent + "&x=1", [][2]int{{8, 51}}},
		{"JSON escape \\n before", `"line\n` + agent + `"`, [][2]int{{7, 50}}},
		{"underscore before", "token_" + agent, [][2]int{{6, 49}}},
		{"prefix inside a word", "xkh_" + a40, [][2]int{{1, 44}}},
		{"kh_kh_ then a token", "kh_kh_" + a40, [][2]int{{3, 46}}},
		{"kha without underscore", "kha" + a40, nil},
		{"kh_ run ended by underscore then kh_", "kh_abkh_" + a40, [][2]int{{5, 48}}},
		{"kha_ run ended then kha_", "kha_xkha_" + a40, [][2]int{{5, 49}}},
		{"upper-case KH_ is not a token", "KH_" + a40, nil},
		{"token followed by underscore", agent + "_suffix", [][2]int{{0, 43}}},
		{"prefix at the very end", "abc kh", nil},
		{"kh at the very end after kha", "kha", nil},
		{"kh_ then non-base62 run", "kh_" + strings.Repeat("é", 40), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FindAll([]byte(tt.in))
			if !slices.Equal(got, tt.want) {
				t.Errorf("FindAll(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if ref := refFindAll([]byte(tt.in)); !slices.Equal(got, ref) {
				t.Errorf("FindAll(%q) = %v, but the reference says %v", tt.in, got, ref)
			}
		})
	}
}

func TestFindAllNoAllocWithoutToken(t *testing.T) {
	in := bytes.Repeat([]byte("khaki kh_short kha_ {\"a\":1} "), 1000)
	if n := testing.AllocsPerRun(50, func() { _ = FindAll(in) }); n != 0 {
		t.Errorf("FindAll allocates %v times on input without tokens", n)
	}
}

// TestFindAllLinear: hostile input made of near-miss prefixes must not make
// FindAll quadratic; 1 MiB of them completes like any other input.
func TestFindAllLinear(t *testing.T) {
	for _, unit := range []string{"kh_", "kha_", "kh_" + strings.Repeat("a", 39) + "_", "kh"} {
		in := bytes.Repeat([]byte(unit), (1<<20)/len(unit))
		if got, ref := FindAll(in), refFindAll(in); !slices.Equal(got, ref) {
			t.Errorf("FindAll(%q × n) = %d spans, but the reference finds %d", unit, len(got), len(ref))
		}
	}
}

// FuzzFindAll: FindAll never panics and returns exactly the reference
// regexp's matches, each of which is token-shaped and maximal.
func FuzzFindAll(f *testing.F) {
	for _, s := range []string{"", "kh_", "kh_kh_" + strings.Repeat("a", 40), "x=" + mustGenerate(f, Agent) + "&y=" + mustGenerate(f, Admin),
		"kha_xkha_" + strings.Repeat("Z", 41), "%3Dkh_" + strings.Repeat("9", 40) + "_"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := FindAll(b)
		if ref := refFindAll(b); !slices.Equal(got, ref) {
			t.Fatalf("FindAll(%q) = %v, but the reference says %v", b, got, ref)
		}
		last := 0
		for _, sp := range got {
			if sp[0] < last || sp[1] > len(b) || sp[1]-sp[0] < len(AgentPrefix)+BodyLen {
				t.Fatalf("FindAll(%q): bad span %v", b, sp)
			}
			if sp[1] < len(b) && isBase62Table[b[sp[1]]] {
				t.Fatalf("FindAll(%q): span %v stops inside a base62 run", b, sp)
			}
			last = sp[1]
		}
	})
}

func BenchmarkFindAll(b *testing.B) {
	body := bytes.Repeat([]byte(`{"id":"cus_123","name":"Jane","email":"jane@example.com"},`), 1100) // ~64 KiB
	b.Run("no-kh", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			_ = FindAll(body)
		}
	})
	withTok := append(bytes.Clone(body), []byte(mustGenerate(b, Agent))...)
	b.Run("one-token", func(b *testing.B) {
		b.SetBytes(int64(len(withTok)))
		for b.Loop() {
			_ = FindAll(withTok)
		}
	})
}
