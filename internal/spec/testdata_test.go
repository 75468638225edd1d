package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/valid/*.golden from the current normalisation")

// maxEcho is how many bytes of the input an error message may repeat: a
// message names what is wrong, it does not replay a megabyte of config
// (or a secret pasted in the wrong field) back to the sender.
const maxEcho = 80

// knownBugs are testdata cases that fail today for a reason the report
// names; each is skipped with that reason rather than deleted, so the fix
// only has to remove the line.
var knownBugs = map[string]string{}

func testdataFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestTestdataCounts(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		want int // at least
		side string
	}{
		{name: "valid", dir: "valid", want: 12, side: ".golden"},
		{name: "invalid", dir: "invalid", want: 30, side: ".err"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := testdataFiles(t, tt.dir)
			if len(files) < tt.want {
				t.Errorf("%d files in testdata/%s, want at least %d", len(files), tt.dir, tt.want)
			}
			if *update && tt.side == ".golden" {
				return
			}
			for _, f := range files {
				if _, err := os.Stat(strings.TrimSuffix(f, ".json") + tt.side); err != nil {
					t.Errorf("%s has no %s file: %v", f, tt.side, err)
				}
			}
		})
	}
}

// TestTestdataValid decodes every valid example and pins its normalised
// form (defaults filled in) in a golden file; `go test -update` rewrites
// them. The golden file must itself decode to the same proxy.
func TestTestdataValid(t *testing.T) {
	for _, file := range testdataFiles(t, "valid") {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := DecodeProxy(bytes.NewReader(in))
			if err != nil {
				t.Fatalf("DecodeProxy: %v", err)
			}
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(file, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("normalised JSON differs from %s (-want +got):\n%s", golden, diff)
			}

			// The normalised form is a fixed point.
			p2, err := DecodeProxy(bytes.NewReader(got))
			if err != nil {
				t.Fatalf("the normalised JSON does not decode: %v", err)
			}
			if diff := cmp.Diff(p, p2); diff != "" {
				t.Errorf("decode(normalised) differs (-first +second):\n%s", diff)
			}
			checkNormalised(t, p)
		})
	}
}

// checkNormalised asserts what every accepted proxy holds: no nil
// collections where the API promises [] or {}, every rule with a mode.
func checkNormalised(t *testing.T, p Proxy) {
	t.Helper()
	switch {
	case p.StaticHeaders == nil:
		t.Error("static_headers is nil")
	case p.Rules == nil:
		t.Error("rules is nil")
	case p.Quotas == nil:
		t.Error("quotas is nil")
	case p.ResponseFilters == nil:
		t.Error("response_filters is nil")
	case p.Capture.RedactHeaders == nil || p.Capture.RedactJSON == nil:
		t.Error("capture lists are nil")
	}
	for _, r := range p.Rules {
		if r.Mode != "enforce" && r.Mode != "report" {
			t.Errorf("rule %s: mode %q", r.Name, r.Mode)
		}
		if r.Agents == nil || r.AgentLabels == nil || r.Methods == nil || r.Paths == nil {
			t.Errorf("rule %s has nil collections: %+v", r.Name, r)
		}
	}
}

// TestTestdataInvalid decodes every invalid example: each must fail with
// a *Error whose message holds the sibling .err substring and repeats at
// most maxEcho bytes of the input.
func TestTestdataInvalid(t *testing.T) {
	for _, file := range testdataFiles(t, "invalid") {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			if why, ok := knownBugs["invalid/"+filepath.Base(file)]; ok {
				t.Skip(why)
			}
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wantB, err := os.ReadFile(strings.TrimSuffix(file, ".json") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimRight(string(wantB), "\n")
			p, err := DecodeProxy(bytes.NewReader(in))
			if err == nil {
				t.Fatalf("DecodeProxy accepted it: %+v", p)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Errorf("error is %T, want *spec.Error", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
			checkMessage(t, msg, string(in))
		})
	}
}

// checkMessage: a message a person reads — valid UTF-8 when the input
// is, one line, short, and never a long replay of the input.
func checkMessage(t *testing.T, msg, in string) {
	t.Helper()
	if n := longestCommon(msg, in); n > maxEcho {
		t.Errorf("error message repeats %d bytes of the input (max %d): %q", n, maxEcho, msg)
	}
	if utf8.ValidString(in) && !utf8.ValidString(msg) {
		t.Errorf("error message is not valid UTF-8: %q", msg)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error message spans lines: %q", msg)
	}
	if len(msg) > 512 {
		t.Errorf("error message is %d bytes", len(msg))
	}
}

// longestCommon is the length of the longest common substring of a and b.
func longestCommon(a, b string) int {
	best := 0
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			if a[i-1] == b[j-1] {
				cur[j] = prev[j-1] + 1
				best = max(best, cur[j])
			} else {
				cur[j] = 0
			}
		}
		prev, cur = cur, prev
	}
	return best
}

func TestLongestCommon(t *testing.T) {
	tests := []struct {
		name, a, b string
		want       int
	}{
		{name: "empty", a: "", b: "abc", want: 0},
		{name: "disjoint", a: "xyz", b: "abc", want: 0},
		{name: "inside", a: "--abcd--", b: "zzabcdzz", want: 4},
		{name: "equal", a: "hello", b: "hello", want: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := longestCommon(tt.a, tt.b); got != tt.want {
				t.Errorf("longestCommon(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
