package ui

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// ---- overview ----

type statsCounts struct {
	Requests   int64    `json:"requests"`
	Denied     int64    `json:"denied"`
	Errors     int64    `json:"errors"`
	DenialRate float64  `json:"denial_rate"`
	ErrorRate  float64  `json:"error_rate"`
	PerMinute  float64  `json:"per_minute"`
	P50        *float64 `json:"p50_ms"`
	P95        *float64 `json:"p95_ms"`
	Name       string   `json:"name"`
	Start      string   `json:"start"`
}

type statsResp struct {
	Since         string        `json:"since"`
	Until         string        `json:"until"`
	BucketSeconds float64       `json:"bucket_seconds"`
	Total         statsCounts   `json:"total"`
	Series        []statsCounts `json:"series"`
	Proxies       []statsCounts `json:"proxies"`
	Agents        []statsCounts `json:"agents"`
	Reasons       []statsCounts `json:"reasons"`
	Partial       bool          `json:"partial"`
}

type overviewData struct {
	Window  string
	Windows []string
	S       statsResp
	Chart   *seriesChart
	Proxies []statsCounts
	Agents  []barRow
	Top     []barRow
	Reasons []barRow
}

var windows = map[string]time.Duration{"15m": 15 * time.Minute, "1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

func (u *UI) overview(q *req) error {
	win := q.r.URL.Query().Get("window")
	d, ok := windows[win]
	if !ok {
		win, d = "1h", time.Hour
	}
	var s statsResp
	if err := u.get(q, "/api/v1/stats", url.Values{"since": {d.String()}}, &s); err != nil {
		return err
	}
	since, _ := time.Parse(time.RFC3339Nano, s.Since)
	until, _ := time.Parse(time.RFC3339Nano, s.Until)
	bucket := time.Duration(s.BucketSeconds * float64(time.Second))
	byStart := map[int64]statsCounts{}
	for _, b := range s.Series {
		t, _ := time.Parse(time.RFC3339Nano, b.Start)
		byStart[t.Unix()] = b
	}
	var pts []seriesPoint
	for t := since; t.Before(until) && bucket > 0; t = t.Add(bucket) {
		b := byStart[t.Unix()]
		pts = append(pts, seriesPoint{Start: t, Requests: b.Requests, Denied: b.Denied, Errors: b.Errors})
	}
	data := overviewData{Window: win, Windows: []string{"15m", "1h", "6h", "24h", "7d"}, S: s, Chart: newSeriesChart(pts, bucket), Proxies: s.Proxies}
	since4 := d.String()
	for _, a := range s.Agents {
		data.Agents = append(data.Agents, barRow{Label: a.Name, Value: a.Requests, Link: "/logs?" + url.Values{"agent": {a.Name}, "since": {since4}}.Encode()})
	}
	for _, p := range s.Proxies {
		data.Top = append(data.Top, barRow{Label: p.Name, Value: p.Requests, Link: "/logs?" + url.Values{"proxy": {p.Name}, "since": {since4}}.Encode()})
		if len(data.Top) == 10 {
			break
		}
	}
	for _, r := range s.Reasons {
		data.Reasons = append(data.Reasons, barRow{Label: r.Name, Value: r.Requests, Link: "/logs?" + url.Values{"decision": {"deny"}, "reason": {r.Name}, "since": {since4}}.Encode()})
	}
	data.Agents, data.Top, data.Reasons = bars(data.Agents), bars(data.Top), bars(data.Reasons)
	return u.render(q, http.StatusOK, "overview", q.view("Overview", "overview", data))
}

// ---- request log ----

type chainLink struct {
	Seq      int64  `json:"seq"`
	Kind     string `json:"kind"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

type logRecord struct {
	ID                    string              `json:"id"`
	Time                  string              `json:"time"`
	Node                  string              `json:"node"`
	Agent                 string              `json:"agent"`
	TokenID               string              `json:"token_id"`
	Proxy                 string              `json:"proxy"`
	Method                string              `json:"method"`
	Path                  string              `json:"path"`
	Query                 *string             `json:"query"`
	QueryHidden           bool                `json:"query_hidden"`
	Decision              string              `json:"decision"`
	Rule                  *string             `json:"rule"`
	Reason                string              `json:"reason"`
	Report                []string            `json:"report"`
	Status                *int                `json:"status"`
	LatencyMS             *float64            `json:"latency_ms"`
	UpstreamLatencyMS     *float64            `json:"upstream_latency_ms"`
	RequestBytes          *int64              `json:"request_bytes"`
	ResponseBytes         *int64              `json:"response_bytes"`
	RequestHeaders        map[string][]string `json:"request_headers"`
	ResponseHeaders       map[string][]string `json:"response_headers"`
	RequestBody           *string             `json:"request_body"`
	ResponseBody          *string             `json:"response_body"`
	RequestBodyTruncated  bool                `json:"request_body_truncated"`
	ResponseBodyTruncated bool                `json:"response_body_truncated"`
	RequestBodyEncoding   string              `json:"request_body_encoding"`
	ResponseBodyEncoding  string              `json:"response_body_encoding"`
	RequestBodyHidden     bool                `json:"request_body_hidden"`
	ResponseBodyHidden    bool                `json:"response_body_hidden"`
	SecretVersion         *int                `json:"secret_version"`
	Incomplete            bool                `json:"incomplete"`
	ResponseFiltered      bool                `json:"response_filtered"`
	SecretsScrubbed       int                 `json:"secrets_scrubbed"`
	Error                 string              `json:"error"`
	PrevHash              string              `json:"prev_hash"`
	Hash                  string              `json:"hash"`
	Chain                 []chainLink         `json:"chain"`
}

type logFilter struct {
	Agent, Proxy, Status, Decision, Reason, Since, Until, Q string
}

func (f logFilter) values() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{{"agent", f.Agent}, {"proxy", f.Proxy}, {"status", f.Status}, {"decision", f.Decision},
		{"reason", f.Reason}, {"since", f.Since}, {"until", f.Until}, {"q", f.Q}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	return v
}

type logsData struct {
	F        logFilter
	Records  []logRecord
	Next     string // the URL of the next (older) page, "" on the last
	Paged    bool   // this is not the first page
	Stream   string // the live tail's URL (the same filters)
	Proxies  []string
	Agents   []string
	Filtered bool
}

const logPage = 50

func (u *UI) logs(q *req) error {
	v := q.r.URL.Query()
	f := logFilter{Agent: v.Get("agent"), Proxy: v.Get("proxy"), Status: v.Get("status"), Decision: v.Get("decision"),
		Reason: v.Get("reason"), Since: v.Get("since"), Until: v.Get("until"), Q: v.Get("q")}
	api := f.values()
	api.Set("limit", "50")
	if c := v.Get("cursor"); c != "" {
		api.Set("cursor", c)
	}
	var page struct {
		Records    []logRecord `json:"records"`
		NextCursor string      `json:"next_cursor"`
	}
	d := logsData{F: f, Paged: v.Get("cursor") != "", Filtered: len(f.values()) > 0}
	if err := u.get(q, "/api/v1/logs", api, &page); err != nil {
		// A filter the API refuses is shown on the page, not as an error page.
		if ae, ok := err.(*apiErr); ok && ae.Status == http.StatusBadRequest {
			v := q.view("Requests", "logs", d)
			v.Error = ae.Message
			return u.render(q, http.StatusBadRequest, "logs", v)
		}
		return err
	}
	d.Records = page.Records
	if page.NextCursor != "" {
		nv := f.values()
		nv.Set("cursor", page.NextCursor)
		d.Next = "/logs?" + nv.Encode()
	}
	sv := f.values()
	sv.Del("since")
	sv.Del("until")
	d.Stream = "/api/v1/logs/stream?" + sv.Encode()
	d.Proxies, d.Agents = u.names(q)
	return u.render(q, http.StatusOK, "logs", q.view("Requests", "logs", d))
}

// names lists the proxies and agents, for filter choices.
func (u *UI) names(q *req) (proxies, agents []string) {
	var ps struct {
		Proxies []struct {
			Name string `json:"name"`
		} `json:"proxies"`
	}
	var as struct {
		Agents []struct {
			Name string `json:"name"`
		} `json:"agents"`
	}
	if u.get(q, "/api/v1/proxies", nil, &ps) == nil {
		for _, p := range ps.Proxies {
			proxies = append(proxies, p.Name)
		}
	}
	if u.get(q, "/api/v1/agents", nil, &as) == nil {
		for _, a := range as.Agents {
			agents = append(agents, a.Name)
		}
	}
	sort.Strings(proxies)
	sort.Strings(agents)
	return proxies, agents
}

type header struct {
	Name   string
	Values []string
}

type body struct {
	Text      string
	Pretty    bool // JSON, indented here
	Binary    bool // base64 of a non-UTF-8 body
	Size      int
	Truncated bool
	Hidden    bool
	Present   bool
}

type detailData struct {
	R               logRecord
	RequestHeaders  []header
	ResponseHeaders []header
	RequestBody     body
	ResponseBody    body
}

func (u *UI) logDetail(q *req) error {
	var rec logRecord
	if err := u.get(q, "/api/v1/logs/"+seg(q.r.PathValue("id")), nil, &rec); err != nil {
		return err
	}
	d := detailData{R: rec, RequestHeaders: headers(rec.RequestHeaders), ResponseHeaders: headers(rec.ResponseHeaders),
		RequestBody:  makeBody(rec.RequestBody, rec.RequestBodyEncoding, rec.RequestBodyTruncated, rec.RequestBodyHidden),
		ResponseBody: makeBody(rec.ResponseBody, rec.ResponseBodyEncoding, rec.ResponseBodyTruncated, rec.ResponseBodyHidden)}
	return u.render(q, http.StatusOK, "logdetail", q.view(rec.Method+" "+rec.Path, "logs", d))
}

func headers(m map[string][]string) []header {
	out := make([]header, 0, len(m))
	for k, v := range m {
		out = append(out, header{Name: k, Values: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// makeBody prepares a captured body for display: JSON is indented here
// (the page never parses it in the browser), anything else is shown as
// it is — always as text, escaped by html/template.
func makeBody(s *string, enc string, trunc, hidden bool) body {
	b := body{Truncated: trunc, Hidden: hidden}
	if s == nil {
		return b
	}
	b.Present = true
	b.Text = *s
	b.Size = len(*s)
	if enc == "base64" {
		b.Binary = true
		if raw, err := base64.StdEncoding.DecodeString(*s); err == nil {
			b.Size = len(raw)
		}
		return b
	}
	if t := strings.TrimSpace(*s); (strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[")) && json.Valid([]byte(t)) {
		var buf bytes.Buffer
		if json.Indent(&buf, []byte(t), "", "  ") == nil {
			b.Text, b.Pretty = buf.String(), true
		}
	}
	if !utf8.ValidString(b.Text) {
		b.Text = strings.ToValidUTF8(b.Text, "\uFFFD")
	}
	return b
}

// ---- audit integrity ----

type verifyResult struct {
	OK       bool   `json:"ok"`
	Records  int64  `json:"records"`
	Events   int64  `json:"events"`
	Nodes    int    `json:"nodes"`
	FirstBad string `json:"first_bad"`
	Node     string `json:"node"`
	Seq      int64  `json:"seq"`
	Reason   string `json:"reason"`
}

type auditData struct {
	Result *verifyResult
	At     string
	Recent []logRecord
}

func (u *UI) auditPage(q *req) error {
	return u.renderAudit(q, nil)
}

func (u *UI) renderAudit(q *req, res *verifyResult) error {
	d := auditData{Result: res}
	if res != nil {
		d.At = time.Now().UTC().Format("2006-01-02 15:04:05 UTC")
	}
	var page struct {
		Records []logRecord `json:"records"`
	}
	if err := u.get(q, "/api/v1/logs", url.Values{"proxy": {"-admin"}, "limit": {"20"}}, &page); err != nil {
		return err
	}
	d.Recent = page.Records
	return u.render(q, http.StatusOK, "audit", q.view("Audit integrity", "audit", d))
}

func (u *UI) auditVerify(q *req) error {
	var res verifyResult
	if err := u.call(q, http.MethodPost, "/api/v1/audit/verify", nil, nil, &res); err != nil {
		return err
	}
	return u.renderAudit(q, &res)
}

// ---- access: admin tokens and dashboard users (read-only) ----

type accessData struct {
	Tokens []struct {
		ID        string  `json:"id"`
		Name      string  `json:"name"`
		Role      string  `json:"role"`
		CreatedAt string  `json:"created_at"`
		ExpiresAt *string `json:"expires_at"`
		RevokedAt *string `json:"revoked_at"`
	} `json:"admin_tokens"`
	Users []struct {
		Name         string  `json:"name"`
		Role         string  `json:"role"`
		AdminTokenID string  `json:"admin_token_id"`
		CreatedAt    string  `json:"created_at"`
		ExpiresAt    *string `json:"expires_at"`
		State        string  `json:"state"`
	} `json:"users"`
	NoUsers bool
}

func (u *UI) access(q *req) error {
	var d accessData
	if err := u.get(q, "/api/v1/admin-tokens", nil, &d); err != nil {
		return err
	}
	if err := u.get(q, "/api/v1/users", nil, &d); err != nil {
		if ae, ok := err.(*apiErr); ok && ae.Status == http.StatusNotImplemented {
			d.NoUsers = true
		} else {
			return err
		}
	}
	return u.render(q, http.StatusOK, "access", q.view("Access", "access", d))
}
