package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/keyhole-gw/keyhole/internal/jsonpath"
	"github.com/keyhole-gw/keyhole/internal/quota"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// sumQuota is a sum quota to charge once the response says how much.
type sumQuota struct {
	key  string
	q    spec.Quota
	path jsonpath.Path
}

// takeQuotas is the quota half of SPEC §3.3 step 6: a spent quota → 429.
// Count quotas are charged here; sum quotas after the response.
func (g *Gateway) takeQuotas(x *exchange) *refusal {
	if g.Quotas == nil {
		return nil
	}
	now := time.Now()
	for i, q := range x.proxy.Spec.Quotas {
		if !quota.Applies(q, x.tok.Agent) {
			continue
		}
		key := quota.Key(x.proxy.Name, q, i, x.tok.Agent)
		ok, wait := g.Quotas.Take(key, q, now)
		if !ok {
			secs := int((wait + time.Second - 1) / time.Second)
			what := "requests"
			if q.Sum != "" {
				what = q.Sum
			}
			return &refusal{status: http.StatusTooManyRequests, reason: "quota_exceeded:" + quota.Name(q, i),
				header:  http.Header{"Retry-After": {strconv.Itoa(max(secs, 1))}},
				message: fmt.Sprintf("quota %s is spent: at most %d %s per %s; it renews in %d s", quota.Name(q, i), q.Limit, what, q.Per, secs)}
		}
		if q.Sum != "" {
			p, err := jsonpath.Parse(q.Sum)
			if err == nil {
				x.sumQuotas = append(x.sumQuotas, sumQuota{key: key, q: q, path: p})
			}
		}
	}
	return nil
}

// maxUsageBody bounds what is kept of a JSON response to read a sum
// quota's number from it; a longer response charges nothing (logged).
const maxUsageBody = 8 << 20

// usageTap passes the response through and reads the sum quotas' numbers:
// from the whole JSON document, or from the last event of a stream that
// carries them (an OpenAI stream's final usage chunk, Anthropic's
// message_delta).
type usageTap struct {
	src   io.ReadCloser
	sse   bool
	buf   bytes.Buffer
	line  []byte
	over  bool
	paths []jsonpath.Path
	found map[int]float64
}

func newUsageTap(src io.ReadCloser, contentType string, qs []sumQuota) *usageTap {
	mt, _, _ := mime.ParseMediaType(contentType)
	u := &usageTap{src: src, sse: mt == "text/event-stream", found: map[int]float64{}}
	for _, q := range qs {
		u.paths = append(u.paths, q.path)
	}
	return u
}

func (u *usageTap) Read(p []byte) (int, error) {
	n, err := u.src.Read(p)
	if n > 0 {
		if u.sse {
			u.scanLines(p[:n])
		} else if !u.over {
			if u.buf.Len()+n > maxUsageBody {
				u.over = true
				u.buf = bytes.Buffer{}
			} else {
				u.buf.Write(p[:n])
			}
		}
	}
	return n, err
}

func (u *usageTap) Close() error { return u.src.Close() }

func (u *usageTap) scanLines(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(u.line)+len(b) <= 1<<20 {
				u.line = append(u.line, b...)
			}
			return
		}
		u.line = append(u.line, b[:i]...)
		if data, ok := bytes.CutPrefix(bytes.TrimRight(u.line, "\r"), []byte("data:")); ok {
			u.look(bytes.TrimSpace(data))
		}
		u.line = u.line[:0]
		b = b[i+1:]
	}
}

func (u *usageTap) look(doc []byte) {
	if len(doc) == 0 || doc[0] != '{' {
		return
	}
	v, err := jsonpath.Decode(doc)
	if err != nil {
		return
	}
	for i, p := range u.paths {
		if n, ok := number(v, p); ok {
			u.found[i] = n
		}
	}
}

func number(v any, p jsonpath.Path) (float64, bool) {
	x, ok := jsonpath.Lookup(v, p)
	if !ok {
		return 0, false
	}
	n, ok := x.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil && f >= 0
}

// charge adds what the response said to each sum quota.
func (g *Gateway) chargeUsage(x *exchange) {
	u := x.usage
	if u == nil || g.Quotas == nil {
		return
	}
	if !u.sse {
		if u.over {
			g.Logger.Warn("a response was too long to read its quota usage; nothing charged", "proxy", x.proxy.Name, "request_id", x.rid)
		} else {
			u.look(bytes.TrimSpace(u.buf.Bytes()))
		}
	}
	now := time.Now()
	for i, q := range x.sumQuotas {
		if v, ok := u.found[i]; ok {
			g.Quotas.Add(q.key, q.q.Per, v, now)
		}
	}
}
