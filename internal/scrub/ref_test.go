package scrub

import (
	"bytes"
	"fmt"
	"strings"
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
// short prefix: whole secrets become ‹abc…›, and long output is cut.
func show(b []byte, secrets [][]byte) string {
	masked := refReplaceFunc(b, secrets, func(s []byte) string {
		return "‹" + prefix(s) + "›"
	})
	const max = 160
	if len(masked) > max {
		masked = masked[:max] + fmt.Sprintf("…(%d bytes)", len(b))
	}
	return fmt.Sprintf("%q", masked)
}

// prefix returns the first few bytes of a secret, enough to tell which one.
func prefix(s []byte) string {
	if len(s) <= 3 {
		return string(s) + "…"
	}
	return string(s[:3]) + "…"
}

func refReplaceFunc(in []byte, secrets [][]byte, f func([]byte) string) string {
	var sb strings.Builder
	for pos := 0; pos < len(in); {
		var best []byte
		for _, s := range secrets {
			if len(s) > len(best) && bytes.HasPrefix(in[pos:], s) {
				best = s
			}
		}
		if best != nil {
			sb.WriteString(f(best))
			pos += len(best)
			continue
		}
		sb.WriteByte(in[pos])
		pos++
	}
	return sb.String()
}

func bs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
