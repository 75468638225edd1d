package scrub

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// benchSecrets are three 40-byte values shaped like real ones: a Stripe-style
// key, a GitHub-style token and the base64 of a Basic pair.
var benchSecrets = func() [][]byte {
	rng := rand.New(rand.NewPCG(7, 7))
	const b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	mk := func(prefix, alpha string) []byte {
		b := []byte(prefix)
		for len(b) < 40 {
			b = append(b, alpha[rng.IntN(len(alpha))])
		}
		return b
	}
	return [][]byte{
		mk("sk_live_", b62),
		mk("ghp_", b62),
		mk("", b62+"+/"),
	}
}()

// manySecrets returns n random 40-byte base64 values.
func manySecrets(n int) [][]byte {
	rng := rand.New(rand.NewPCG(9, 9))
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, 40)
		for j := range out[i] {
			out[i][j] = b64[rng.IntN(len(b64))]
		}
	}
	return out
}

// benchBody is 1 MiB of JSON events like an API's list response, with ids,
// numbers and English text.
var benchBody = func() []byte {
	rng := rand.New(rand.NewPCG(1, 1))
	words := strings.Fields("the a customer charge was paid refund payment invoice for account " +
		"status pending succeeded failed amount currency usd eur description order shipping " +
		"address line city country metadata created updated object event livemode true false")
	const b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var buf bytes.Buffer
	for buf.Len() < 1<<20 {
		buf.WriteString(`{"id":"evt_`)
		for range 24 {
			buf.WriteByte(b62[rng.IntN(len(b62))])
		}
		buf.WriteString(`","object":"event","created":17`)
		for range 8 {
			buf.WriteByte('0' + byte(rng.IntN(10)))
		}
		buf.WriteString(`,"type":"charge.succeeded","livemode":false,"data":{"amount":`)
		buf.WriteString(string(rune('1' + rng.IntN(9))))
		buf.WriteString(`200,"currency":"usd","description":"`)
		for i := range 8 + rng.IntN(8) {
			if i > 0 {
				buf.WriteByte(' ')
			}
			buf.WriteString(words[rng.IntN(len(words))])
		}
		buf.WriteString("\"}},\n")
	}
	return buf.Bytes()[:1<<20]
}()

// withSecrets returns body with a secret written over it every 4 KiB.
func withSecrets(body []byte) []byte {
	b := bytes.Clone(body)
	for i, at := 0, 2048; at+40 < len(b); i, at = i+1, at+4096 {
		copy(b[at:], benchSecrets[i%len(benchSecrets)])
	}
	return b
}

// chunkSource returns data in reads of at most size bytes, like an upstream
// body read by ReverseProxy.
type chunkSource struct {
	data []byte
	size int
}

func (c *chunkSource) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func BenchmarkReader(b *testing.B) {
	clean := benchBody
	dirty := withSecrets(benchBody)
	// An upstream that sends nothing but near-misses of a long secret:
	// every position continues a partial match. Linear all the same.
	worst := bytes.Repeat([]byte("a"), len(benchBody))
	worstSecrets := [][]byte{append(bytes.Repeat([]byte("a"), 2047), 'b'), []byte("aaaaaaaab")}
	for _, bc := range []struct {
		name    string
		body    []byte
		secrets [][]byte
		mode    pfMode
	}{
		{"none", clean, benchSecrets, modeAuto},
		{"every4KiB", dirty, benchSecrets, modeAuto},
		// The other prefilters on the same data, for comparison.
		{"none-first", clean, benchSecrets, modeFirst},
		{"none-table", clean, benchSecrets, modeTable},
		{"none-rare", clean, benchSecrets, modeRare},
		// Twenty values (the most a proxy typically has): no three bytes
		// cover them all, so the table scan serves.
		{"none-20secrets", clean, manySecrets(20), modeAuto},
		{"near-misses", worst, worstSecrets, modeAuto},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := build(bc.secrets, red, bc.mode)
			p := make([]byte, readSize)
			src := &chunkSource{}
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				*src = chunkSource{data: bc.body, size: readSize}
				r := s.Reader(src)
				for {
					if _, err := r.Read(p); err == io.EOF {
						break
					}
				}
			}
		})
	}
}

// BenchmarkBaseline gives the yardsticks: copying the body through the same
// buffers without scrubbing, and bytes.Index for each of the three secrets.
func BenchmarkBaseline(b *testing.B) {
	b.Run("copy", func(b *testing.B) {
		p := make([]byte, readSize)
		src := &chunkSource{}
		b.SetBytes(int64(len(benchBody)))
		b.ReportAllocs()
		for b.Loop() {
			*src = chunkSource{data: benchBody, size: readSize}
			for {
				if _, err := src.Read(p); err == io.EOF {
					break
				}
			}
		}
	})
	b.Run("bytes.Index", func(b *testing.B) {
		b.SetBytes(int64(len(benchBody)))
		b.ReportAllocs()
		for b.Loop() {
			for _, sec := range benchSecrets {
				if bytes.Index(benchBody, sec) >= 0 {
					b.Fatal("found")
				}
			}
		}
	})
}

func BenchmarkReplaceString(b *testing.B) {
	// A 200-byte header value, as a Location or a Link header might be.
	clean := "https://api.example.com/v1/charges?starting_after=ch_3MmlLrLkdIwHu7ix0snN0B15&limit=100&expand[]=data.customer&expand[]=data.invoice&created[gte]=1700000000&status=succeeded&currency=usd&customer=cus_NffrFeUfNV2Hib"
	clean = clean[:200]
	dirty := clean[:80] + string(benchSecrets[0]) + clean[120:]
	s := New(benchSecrets, red)
	for _, bc := range []struct{ name, v string }{{"none", clean}, {"one", dirty}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.v)))
			b.ReportAllocs()
			for b.Loop() {
				s.ReplaceString(bc.v)
			}
		})
	}
}
