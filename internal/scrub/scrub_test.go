package scrub

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

var red = []byte(Redacted)

// replaceCases are shared by the Set and the Reader tests.
var replaceCases = []struct {
	name    string
	secrets []string
	in      string
	want    string
}{
	{name: "no secrets", secrets: nil, in: "nothing to see", want: "nothing to see"},
	{name: "empty input", secrets: []string{"s3cr3t-v4lue"}, in: "", want: ""},
	{name: "absent", secrets: []string{"s3cr3t-v4lue"}, in: "s3cr3t-v4lu s3cr3t_v4lue", want: "s3cr3t-v4lu s3cr3t_v4lue"},
	{name: "whole input", secrets: []string{"s3cr3t-v4lue"}, in: "s3cr3t-v4lue", want: "[REDACTED]"},
	{name: "at start", secrets: []string{"s3cr3t-v4lue"}, in: "s3cr3t-v4lue tail", want: "[REDACTED] tail"},
	{name: "in middle", secrets: []string{"s3cr3t-v4lue"}, in: `{"key":"s3cr3t-v4lue","x":1}`, want: `{"key":"[REDACTED]","x":1}`},
	{name: "at end", secrets: []string{"s3cr3t-v4lue"}, in: "token=s3cr3t-v4lue", want: "token=[REDACTED]"},
	{name: "partial prefix at end", secrets: []string{"s3cr3t-v4lue"}, in: "token=s3cr3t-v4lu", want: "token=s3cr3t-v4lu"},
	{name: "partial prefix of longer, shorter inside, at end", secrets: []string{"ab", "abcdef"}, in: "zzabcde", want: "zz[REDACTED]cde"},
	{name: "twice", secrets: []string{"s3cr3t-v4lue"}, in: "a s3cr3t-v4lue b s3cr3t-v4lue c", want: "a [REDACTED] b [REDACTED] c"},
	{name: "adjacent same", secrets: []string{"s3cr3t-v4lue"}, in: "s3cr3t-v4lues3cr3t-v4lue", want: "[REDACTED][REDACTED]"},
	{name: "adjacent different", secrets: []string{"user-name", "pass-word"}, in: "xuser-namepass-wordx", want: "x[REDACTED][REDACTED]x"},
	{name: "prefix of another, longer present", secrets: []string{"abc", "abcdef"}, in: "xabcdefx", want: "x[REDACTED]x"},
	{name: "prefix of another, only shorter present", secrets: []string{"abc", "abcdef"}, in: "xabcdex", want: "x[REDACTED]dex"},
	{name: "prefix of another, shorter at end", secrets: []string{"abc", "abcdef"}, in: "xabcde", want: "x[REDACTED]de"},
	{name: "suffix of another", secrets: []string{"def", "abcdef"}, in: "abcdef bcdef", want: "[REDACTED] bc[REDACTED]"},
	{name: "overlap, leftmost wins", secrets: []string{"abcd", "cdef"}, in: "abcdef", want: "[REDACTED]ef"},
	{name: "overlap, later longer loses", secrets: []string{"ab", "bcdefgh"}, in: "abcdefgh", want: "[REDACTED]cdefgh"},
	{name: "inner shorter inside failed longer", secrets: []string{"xabcd", "ab", "abcq"}, in: "xabcq", want: "x[REDACTED]"},
	{name: "suffix pattern after failed long", secrets: []string{"wxabcd", "xabq", "ab"}, in: "wxabq", want: "w[REDACTED]"},
	{name: "shorter then separate", secrets: []string{"ab", "abcdX", "cd"}, in: "abcd!", want: "[REDACTED][REDACTED]!"},
	{name: "self overlap aaa", secrets: []string{"aaa"}, in: "aaaaaaa", want: "[REDACTED][REDACTED]a"},
	{name: "self overlap aa and aaa", secrets: []string{"aa", "aaa"}, in: "aaaaa", want: "[REDACTED][REDACTED]"},
	{name: "self overlap abab", secrets: []string{"abab"}, in: "abababab", want: "[REDACTED][REDACTED]"},
	{name: "self overlap restart", secrets: []string{"aab"}, in: "aaab", want: "a[REDACTED]"},
	{name: "one byte secret", secrets: []string{"x"}, in: "axbxx", want: "a[REDACTED]b[REDACTED][REDACTED]"},
	{name: "binary", secrets: []string{"\x00\xff\x00"}, in: "\x00\x00\xff\x00\xff", want: "\x00[REDACTED]\xff"},
	{name: "empty and duplicate secrets ignored", secrets: []string{"", "dup-secret", "dup-secret"}, in: "a dup-secret", want: "a [REDACTED]"},
	{name: "basic auth derived", secrets: []string{"alice", "hunter2-long", "YWxpY2U6aHVudGVyMi1sb25n"},
		in: "Authorization: Basic YWxpY2U6aHVudGVyMi1sb25n user=alice", want: "Authorization: Basic [REDACTED] user=[REDACTED]"},
}

func TestReplace(t *testing.T) {
	for _, tc := range replaceCases {
		for _, mode := range allModes {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				secrets := bs(tc.secrets...)
				s := build(secrets, red, mode)
				if got := s.ReplaceString(tc.in); got != tc.want {
					t.Errorf("ReplaceString = %s, want %s", show([]byte(got), secrets), show([]byte(tc.want), secrets))
				}
				if got := s.ReplaceBytes([]byte(tc.in)); string(got) != tc.want {
					t.Errorf("ReplaceBytes = %s, want %s", show(got, secrets), show([]byte(tc.want), secrets))
				}
				if got, want := s.Contains([]byte(tc.in)), tc.in != tc.want; got != want {
					t.Errorf("Contains = %v, want %v", got, want)
				}
				if ref := refReplace([]byte(tc.in), secrets, red); string(ref) != tc.want {
					t.Errorf("test case disagrees with the reference: %s", show(ref, secrets))
				}
			})
		}
	}
}

var allModes = []pfMode{modeAuto, modeFirst, modeTable, modeRare}

func (m pfMode) String() string {
	return [...]string{"auto", "first", "table", "rare"}[m]
}

func TestNew(t *testing.T) {
	tests := []struct {
		name        string
		secrets     []string
		wantLen     int
		wantMaxLen  int
		wantReplace string
	}{
		{name: "nil", secrets: nil, wantLen: 0, wantMaxLen: 0},
		{name: "only empty", secrets: []string{"", ""}, wantLen: 0, wantMaxLen: 0},
		{name: "duplicates", secrets: []string{"abcdefgh", "abcdefgh", "", "xyz"}, wantLen: 2, wantMaxLen: 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(bs(tc.secrets...), red)
			if s.Len() != tc.wantLen || s.MaxLen() != tc.wantMaxLen {
				t.Errorf("Len, MaxLen = %d, %d; want %d, %d", s.Len(), s.MaxLen(), tc.wantLen, tc.wantMaxLen)
			}
		})
	}
}

// The caller's slices are copied: a secret buffer wiped or reused after New
// must not change what is scrubbed.
func TestNewCopiesArguments(t *testing.T) {
	sec := []byte("copied-secret")
	rep := []byte("[X]")
	s := New([][]byte{sec}, rep)
	copy(sec, "zzzzzzzzzzzzz")
	copy(rep, "???")
	if got := s.ReplaceString("a copied-secret b"); got != "a [X] b" {
		t.Errorf("got %s", show([]byte(got), bs("copied-secret")))
	}
}

func TestNilAndEmptySet(t *testing.T) {
	for name, s := range map[string]*Set{"nil": nil, "zero": {}, "empty": New(nil, red)} {
		t.Run(name, func(t *testing.T) {
			if s.Len() != 0 || s.MaxLen() != 0 {
				t.Errorf("Len, MaxLen = %d, %d", s.Len(), s.MaxLen())
			}
			if got := s.ReplaceString("abc"); got != "abc" {
				t.Errorf("ReplaceString = %q", got)
			}
			b := []byte("abc")
			if got := s.ReplaceBytes(b); &got[0] != &b[0] {
				t.Error("ReplaceBytes did not return its input")
			}
			if s.Contains(b) {
				t.Error("Contains = true")
			}
		})
	}
}

// Header values and audit copies nearly never hold a secret: that path must
// hand back its input and not allocate.
func TestReplaceNoMatchNoAlloc(t *testing.T) {
	s := New(bs("sk_live_0123456789abcdef", "rk_live_0123456789abcdef", "whsec_0123456789"), red)
	v := "application/json; charset=utf-8; sk_live_0123456789abcdeX"
	b := []byte(v)
	allocs := testing.AllocsPerRun(100, func() {
		if got := s.ReplaceString(v); unsafe.StringData(got) != unsafe.StringData(v) {
			t.Fatal("ReplaceString did not return its input")
		}
		if got := s.ReplaceBytes(b); &got[0] != &b[0] {
			t.Fatal("ReplaceBytes did not return its input")
		}
		if s.Contains(b) {
			t.Fatal("Contains = true")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}

func TestChoosePrefilter(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		want    pfMode
	}{
		// Rare bytes ('Q', 'Z', 'X') beat common first letters.
		{name: "api keys", secrets: []string{"sk_live_Q1w2e3r4t5y6", "rk_live_Z1w2e3r4t5y6", "ghp_X9aa8bb7cc6dd5ee"}, want: modeRare},
		// '~' and '^' are rare first bytes: nothing to back up over.
		{name: "rare first bytes", secrets: []string{"~abcdefgh", "^abcdefgh"}, want: modeFirst},
		// Too many distinct first bytes, and no rare byte shared enough.
		{name: "many", secrets: []string{"aaaa", "bbbb", "cccc", "dddd", "eeee"}, want: modeTable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(bs(tc.secrets...), red)
			if s.pf.mode != tc.want {
				t.Errorf("mode = %v, want %v", s.pf.mode, tc.want)
			}
		})
	}
}

// TestReplaceRandom checks every prefilter against the reference on inputs
// dense in near-misses: small alphabets, secrets longer than the rare-byte
// window, and secrets built from pieces of one another.
func TestReplaceRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 3000 {
		alpha := "abQ_"[:2+rng.IntN(3)]
		secrets := make([][]byte, 1+rng.IntN(5))
		for i := range secrets {
			n := 1 + rng.IntN(6)
			if rng.IntN(4) == 0 {
				n = rareWindow + rng.IntN(24)
			}
			secrets[i] = randBytes(rng, alpha, n)
		}
		in := randBytes(rng, alpha, rng.IntN(300))
		// Plant some secrets so that matches are not only by chance.
		for range rng.IntN(4) {
			sec := secrets[rng.IntN(len(secrets))]
			at := rng.IntN(len(in) + 1)
			in = append(in[:at], append(append([]byte{}, sec...), in[at:]...)...)
		}
		want := refReplace(in, secrets, red)
		for _, mode := range allModes {
			s := build(secrets, red, mode)
			if got := s.ReplaceBytes(in); !bytes.Equal(got, want) {
				t.Fatalf("iter %d mode %v (%v): got %s, want %s", iter, mode, s.pf.mode, show(got, secrets), show(want, secrets))
			}
			for _, final := range []bool{false, true} {
				var cur cursor
				got, hold := scanAll(s, in, final, &cur)
				wantOut, wantHold := refStream(in, secrets, red, final)
				if !bytes.Equal(got, wantOut) || hold != wantHold {
					t.Fatalf("iter %d mode %v final %v: got %s hold %d, want %s hold %d",
						iter, s.pf.mode, final, show(got, secrets), hold, show(wantOut, secrets), wantHold)
				}
			}
		}
	}
}

// scanAll runs find over buf as the Reader does.
func scanAll(s *Set, buf []byte, final bool, cur *cursor) ([]byte, int) {
	out := []byte{}
	pos := 0
	for {
		ms, me, hold := s.find(buf, pos, final, cur)
		if ms < 0 {
			return append(out, buf[pos:hold]...), hold
		}
		out = append(append(out, buf[pos:ms]...), s.repl...)
		pos = me
	}
}

func randBytes(rng *rand.Rand, alpha string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[rng.IntN(len(alpha))]
	}
	return b
}

// A Set is shared by every request of a snapshot: concurrent use must be
// safe (run with -race).
func TestConcurrentUse(t *testing.T) {
	secrets := bs("sk_live_0123456789abcdef", "hunter2-hunter2")
	s := New(secrets, red)
	in := bytes.Repeat([]byte("a sk_live_0123456789abcdef b hunter2-hunter2 c "), 200)
	want := refReplace(in, secrets, red)
	done := make(chan error)
	for range 8 {
		go func() {
			r := s.Reader(bytes.NewReader(in))
			var got []byte
			p := make([]byte, 1000)
			for {
				n, err := r.Read(p)
				got = append(got, p[:n]...)
				_ = Replaced(r) // the audit may read the count meanwhile
				if err != nil {
					break
				}
			}
			if !bytes.Equal(got, want) || s.ReplaceString(string(in)) != string(want) {
				done <- fmt.Errorf("mismatch")
				return
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
