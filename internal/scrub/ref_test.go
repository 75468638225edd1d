package scrub

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// refStream is the specification written as plainly as possible: from the
// left, hold back at the first position whose rest of the input is a proper
// prefix of a secret (unless final), else replace the longest secret that
// matches there, else pass the byte on. It returns the output and where the
// held-back tail begins.
func refStream(in []byte, secrets [][]byte, repl []byte, final bool) (out []byte, hold int) {
	out = []byte{}
	pos := 0
	for pos < len(in) {
		rest := in[pos:]
		if !final {
			for _, s := range secrets {
				if len(s) > len(rest) && bytes.HasPrefix(s, rest) {
					return out, pos
				}
			}
		}
		best := 0
		for _, s := range secrets {
			if len(s) > best && bytes.HasPrefix(rest, s) {
				best = len(s)
			}
		}
		if best > 0 {
			out = append(out, repl...)
			pos += best
			continue
		}
		out = append(out, in[pos])
		pos++
	}
	return out, len(in)
}

func refReplace(in []byte, secrets [][]byte, repl []byte) []byte {
	out, _ := refStream(in, secrets, repl, true)
	return out
}

// show formats b for a failure message without printing any secret beyond a
// short prefix: each run of 4 or more bytes that begins a secret (the whole
// secret or a part cut by a stream) becomes ‹abc… n/len›, and long output is
// cut.
func show(b []byte, secrets [][]byte) string {
	var sb strings.Builder
	for pos := 0; pos < len(b); {
		best := 0
		var which []byte
		for _, s := range secrets {
			k := 0
			for k < len(s) && pos+k < len(b) && b[pos+k] == s[k] {
				k++
			}
			if k > best {
				best, which = k, s
			}
		}
		if best >= 4 {
			fmt.Fprintf(&sb, "‹%s %d/%d›", prefix(which), best, len(which))
			pos += best
			continue
		}
		sb.WriteByte(b[pos])
		pos++
	}
	masked := sb.String()
	const max = 160
	if len(masked) > max {
		masked = masked[:max] + fmt.Sprintf("…(%d bytes)", len(b))
	}
	return fmt.Sprintf("%q", masked)
}

// prefix returns the first few bytes of a secret, enough to tell which one.
func prefix(s []byte) string {
	return string(s[:min(3, len(s))]) + "…"
}

func bs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// The failure-message helper itself must not print secrets.
func TestShowMasksSecrets(t *testing.T) {
	secrets := bs("sk_live_0123456789")
	got := show([]byte("x sk_live_0123456789 y sk_live_01"), secrets)
	if strings.Contains(got, "sk_l") {
		t.Errorf("show leaked more than a prefix: %d bytes", len(got))
	}
	if want := `"x ‹sk_… 18/18› y ‹sk_… 10/18›"`; got != want {
		t.Errorf("show = %s, want %s", got, want)
	}
}
