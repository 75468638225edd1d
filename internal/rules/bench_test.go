package rules

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// benchBody is a 4 KiB JSON body with an amount field and padding.
func benchBody() []byte {
	const size = 4 << 10
	head := `{"amount":99,"currency":"usd","padding":"`
	tail := `"}`
	return []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
}

// benchSet is n allow rules on /v1/resN/*, the one that matches last; with
// cond, each carries `request.json.amount <= 100`.
func benchSet(b *testing.B, n int, cond bool) *Set {
	rs := make([]spec.Rule, n)
	for i := range rs {
		rs[i] = spec.Rule{Name: fmt.Sprintf("r%d", i), Effect: "allow", Paths: []string{fmt.Sprintf("/v1/res%d/*", i)}}
		if cond {
			rs[i].Methods = []string{"POST"}
			rs[i].When = "request.json.amount <= 100"
		}
	}
	s, err := Compile(rs, Options{Proxy: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkDecide: the rules step of one request, for 1, 10 and 100 rules,
// without a body and with a 4 KiB JSON body read by a condition. The body is
// parsed afresh each iteration: every request brings its own.
func BenchmarkDecide(b *testing.B) {
	body := benchBody()
	if len(body) != 4<<10 {
		b.Fatalf("body is %d bytes", len(body))
	}
	hdr := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"bench"}}
	for _, n := range []int{1, 10, 100} {
		path := fmt.Sprintf("/v1/res%d/item_1", n-1)
		b.Run(fmt.Sprintf("rules=%d/body=none", n), func(b *testing.B) {
			s := benchSet(b, n, false)
			in := &Input{Method: "GET", Path: path, RawQuery: "limit=3", Header: hdr, Agent: "bot", TokenID: "t"}
			if d := s.Decide(in); !d.Allow {
				b.Fatalf("not allowed: %+v", d)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(in)
			}
		})
		b.Run(fmt.Sprintf("rules=%d/body=json4k", n), func(b *testing.B) {
			s := benchSet(b, n, true)
			if !s.Body {
				b.Fatal("Set.Body is false")
			}
			in := &Input{Method: "POST", Path: path, RawQuery: "limit=3", Header: hdr, Agent: "bot", TokenID: "t"}
			in.Body = NewBody(body, "application/json")
			if d := s.Decide(in); !d.Allow {
				b.Fatalf("not allowed: %+v", d)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				in.Body = NewBody(body, "application/json")
				s.Decide(in)
			}
		})
	}
}

func BenchmarkParseJSON(b *testing.B) {
	body := benchBody()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}
