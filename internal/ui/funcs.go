package ui

import (
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"when":     when,
	"ago":      ago,
	"ms":       ms,
	"pct":      pct,
	"join":     strings.Join,
	"status":   statusText,
	"stclass":  statusClass,
	"decclass": decisionClass,
	"num":      func(n int64) string { return compact(float64(n)) },
	"f1":       func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"f0":       func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) },
	"short":    short,
	"deref":    deref,
	"derefInt": func(p *int) int { return derefOr(p, 0) },
	// link builds a dashboard URL with query parameters (empty ones
	// left out): link "/logs" "agent" .Agent.
	"link": func(path string, kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				v.Set(kv[i], kv[i+1])
			}
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	},
	"seg":      seg,
	"bytes":    humanBytes,
	"derefI64": func(p *int64) int64 { return derefOr(p, 0) },
	"has": func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	},
}

func deref(p *string) string { return derefOr(p, "") }

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func parse(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// when shows an API time as "2026-11-26 10:10:50.244 UTC".
func when(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case *string:
		if x == nil {
			return "—"
		}
		s = *x
	}
	t, ok := parse(s)
	if !ok {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

// ago shows an API time relative to now ("3 min ago", "in 2 days").
func ago(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case *string:
		if x == nil {
			return "never"
		}
		s = *x
	}
	t, ok := parse(s)
	if !ok {
		return s
	}
	d := time.Since(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, ""
	}
	var out string
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		out = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		out = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		out = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		out = fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	if suffix == "" {
		return "in " + out
	}
	return out + suffix
}

func ms(v any) string {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case *float64:
		if x == nil {
			return "—"
		}
		f = *x
	default:
		return "—"
	}
	switch {
	case f >= 10000:
		return strconv.FormatFloat(f/1000, 'f', 1, 64) + " s"
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64) + " ms"
	case f >= 1:
		return strconv.FormatFloat(f, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(f, 'f', 2, 64) + " ms"
}

func pct(f float64) string {
	if f == 0 {
		return "0%"
	}
	p := f * 100
	if p < 0.1 {
		return "<0.1%"
	}
	return strconv.FormatFloat(math.Round(p*10)/10, 'f', -1, 64) + "%"
}

func statusText(p *int) string {
	if p == nil || *p == 0 {
		return "—"
	}
	return strconv.Itoa(*p)
}

func statusClass(p *int) string {
	if p == nil || *p == 0 {
		return "st-none"
	}
	switch {
	case *p >= 500:
		return "st-5xx"
	case *p >= 400:
		return "st-4xx"
	case *p >= 300:
		return "st-3xx"
	}
	return "st-2xx"
}

func decisionClass(d string) string {
	switch d {
	case "allow", "deny", "error":
		return "dec-" + d
	}
	return "dec-other"
}

// short cuts a hash or id for a table cell (the full value is in title).
func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}
