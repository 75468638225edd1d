package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// clean makes a string from the API safe to print on a terminal. Audit
// records hold what agents sent (a path may carry ANSI escapes, CR/LF or a
// bidi override, to forge or hide log lines), so any string that is not
// entirely printable is shown Go-quoted, with every control character
// escaped; a printable string is shown as is.
func clean(s string) string {
	if printable(s) {
		return s
	}
	return strconv.Quote(s)
}

func printable(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return false
			}
		}
		if !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// safeJSON rewrites every non-printable character outside JSON's own
// whitespace as a \u escape. The JSON means the same, but a terminal
// never sees a raw ESC, C1 control, DEL or bidi override that encoding/json
// leaves unescaped. Invalid UTF-8 becomes U+FFFD.
func safeJSON(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + 16)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\n' || r == '\t' || r == ' ':
			out.WriteRune(r)
		case r == utf8.RuneError && n <= 1:
			out.WriteString(`\ufffd`)
		case !strconv.IsPrint(r):
			if r > 0xFFFF {
				r1, r2 := utf16Pair(r)
				fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
			} else {
				fmt.Fprintf(&out, `\u%04x`, r)
			}
		default:
			out.Write(b[:n])
		}
		b = b[n:]
	}
	return out.Bytes()
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF
}

// printJSON writes an API answer indented, for --json (and for records,
// which are JSON for people too).
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("the admin API's answer is not JSON")
	}
	buf.WriteByte('\n')
	_, err := w.Write(safeJSON(buf.Bytes()))
	return err
}

// table is a human table: aligned columns, every cell cleaned.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(headers) > 0 {
		t.tw.Write([]byte(strings.Join(headers, "\t") + "\n"))
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		cells[i] = clean(c)
	}
	t.tw.Write([]byte(strings.Join(cells, "\t") + "\n"))
}

func (t *table) flush() error { return t.tw.Flush() }

// Times. Lifecycle times (created, rotated, expires, last used) are shown
// relative to now ("3m ago", "in 23h"), which is what a person scanning a
// list of tokens wants; audit records, which are events to be correlated
// with other logs, show their absolute time in RFC 3339 UTC. `--json`
// always has the API's exact RFC 3339 times.

// parseTime reads an API time; zero when absent or unreadable.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// rel shows t relative to now. An absent time is shown as never.
func rel(now time.Time, s *string) string {
	if s == nil || *s == "" {
		return "never"
	}
	t := parseTime(*s)
	if t.IsZero() {
		return *s
	}
	d := now.Sub(t)
	if d >= 0 {
		return ago(d) + " ago"
	}
	return "in " + ago(-d)
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

// logTime shows a record's time in RFC 3339 UTC to the millisecond.
func logTime(s string) string {
	t := parseTime(s)
	if t.IsZero() {
		return s
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// latency shows milliseconds as 850µs, 12.3ms or 1.24s.
func latency(ms *float64) string {
	if ms == nil {
		return ""
	}
	v := *ms
	switch {
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	default:
		return fmt.Sprintf("%.2fs", v/1000)
	}
}

// list joins names, or returns def for an empty list.
func list(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return strings.Join(s, ",")
}

// labels shows a label map as k=v,k2=v2 in key order.
func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// plural writes "1 rule" or "3 rules".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
