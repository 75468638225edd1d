package inject

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/keyhole-gw/keyhole/internal/inject/sigv4verify"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// The test suite's fixed inputs (testdata/aws-sig-v4-test-suite/README.md).
const (
	suiteKeyID  = "AKIDEXAMPLE"
	suiteSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	suiteRegion = "us-east-1"
	suiteSvc    = "service"
)

var suiteTime = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)

type suiteCase struct {
	name                  string
	req, creq, sts, authz string
	method, target, body  string
	header                http.Header
	host, rawPath, rawQ   string
	sessionToken          string
}

// loadSuite reads each case of testdata/aws-sig-v4-test-suite and parses
// its .req (request line, "Name:value" header lines, blank line, body).
func loadSuite(t *testing.T) []suiteCase {
	t.Helper()
	dir := filepath.Join("testdata", "aws-sig-v4-test-suite")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []suiteCase
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		c := suiteCase{name: e.Name(), header: http.Header{}}
		read := func(ext string) string {
			b, err := os.ReadFile(filepath.Join(dir, c.name, c.name+"."+ext))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		c.req, c.creq, c.sts, c.authz = read("req"), read("creq"), read("sts"), read("authz")
		head, body, _ := strings.Cut(c.req, "\n\n")
		c.body = body
		lines := strings.Split(head, "\n")
		f := strings.Fields(lines[0])
		c.method, c.target = f[0], f[1]
		c.rawPath, c.rawQ, _ = strings.Cut(c.target, "?")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ":")
			if strings.EqualFold(k, "Host") {
				c.host = v
				continue
			}
			if strings.EqualFold(k, "X-Amz-Security-Token") {
				c.sessionToken = v
			}
			c.header[http.CanonicalHeaderKey(k)] = append(c.header[http.CanonicalHeaderKey(k)], v)
		}
		out = append(out, c)
	}
	if len(out) < 8 {
		t.Fatalf("only %d test-suite cases found", len(out))
	}
	return out
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestSigV4TestSuite signs each case of AWS's published SigV4 test suite
// with keyhole's signer (the AWS SDK's, configured as NewSigV4 configures
// it) and compares the Authorization header byte for byte with the suite's
// .authz. The suite's requests carry no Content-Length header, so the
// body is given to the signer as its hash only.
func TestSigV4TestSuite(t *testing.T) {
	for _, c := range loadSuite(t) {
		t.Run(c.name, func(t *testing.T) {
			r, err := http.NewRequest(c.method, "https://"+c.host+c.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Header = c.header.Clone()
			r.ContentLength = 0
			m := &Material{Name: "aws", Version: 1, Fields: map[string]string{"access_key_id": suiteKeyID, "secret_access_key": suiteSecret}}
			if c.sessionToken != "" {
				m.Fields["session_token"] = c.sessionToken
			}
			s, err := NewSigV4(spec.Auth{Type: "aws_sigv4", Secret: "aws", Region: suiteRegion, Service: suiteSvc}, m, func() time.Time { return suiteTime })
			if err != nil {
				t.Fatal(err)
			}
			if c.body == "" {
				// Through the injector itself: it hashes the (empty)
				// body, drops what it owns and signs.
				if err := s.Apply(r); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := s.signer.SignHTTP(context.Background(), s.creds, r, sha256Hex(c.body), suiteSvc, suiteRegion, suiteTime); err != nil {
					t.Fatal(err)
				}
			}
			if got := r.Header.Get("Authorization"); got != c.authz {
				t.Errorf("Authorization\n got  %s\n want %s", got, c.authz)
			}
			if got := r.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
		})
	}
}

// TestSigV4VerifierAgainstSuite checks the independent verifier (written
// from the AWS documentation) against the same suite: its canonical
// request equals .creq, its string to sign .sts, and it accepts .authz.
// A verifier that agrees with AWS's published answers can then judge what
// keyhole sends in the tests below and in the gateway's.
func TestSigV4VerifierAgainstSuite(t *testing.T) {
	for _, c := range loadSuite(t) {
		t.Run(c.name, func(t *testing.T) {
			h := c.header.Clone()
			h.Set("Authorization", c.authz)
			req := sigv4verify.Request{Method: c.method, RawPath: c.rawPath, RawQuery: c.rawQ, Host: c.host, Header: h, ContentLength: -1}
			a, err := sigv4verify.ParseAuth(c.authz)
			if err != nil {
				t.Fatal(err)
			}
			canon, err := sigv4verify.CanonicalRequest(req, a.SignedHeaders, sha256Hex(c.body), false)
			if err != nil {
				t.Fatal(err)
			}
			if canon != c.creq {
				t.Errorf("canonical request\n got  %q\n want %q", canon, c.creq)
			}
			if sts := sigv4verify.StringToSign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", canon); sts != c.sts {
				t.Errorf("string to sign\n got  %q\n want %q", sts, c.sts)
			}
			v := &sigv4verify.Verifier{Secrets: map[string]string{suiteKeyID: suiteSecret}, Region: suiteRegion, Service: suiteSvc}
			if _, err := v.Verify(req, []byte(c.body)); err != nil {
				t.Errorf("the verifier refuses the suite's own signature: %v", err)
			}
			// And it is not a verifier that accepts anything.
			bad := req
			bad.Header = h.Clone()
			bad.Header.Set("Authorization", strings.Replace(c.authz, "Signature=", "Signature=0", 1)[:len(c.authz)])
			if _, err := v.Verify(bad, []byte(c.body)); err == nil {
				t.Error("the verifier accepts a wrong signature")
			}
			if _, err := v.Verify(req, []byte(c.body+"x")); err == nil {
				t.Error("the verifier accepts a changed body")
			}
		})
	}
}

// awsUpstream is an httptest server that verifies every request the way AWS
// does (sigv4verify) and echoes what it saw.
func awsUpstream(t *testing.T, service string, tokens map[string]string) (*httptest.Server, *[]string) {
	t.Helper()
	var seen []string
	v := &sigv4verify.Verifier{Secrets: map[string]string{"AKIDKEYHOLETEST": "s3cr3t/KEY+with=chars"}, Region: "eu-west-1", Service: service, Tokens: tokens}
	srv := httptest.NewServer(v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen = append(seen, r.Method+" "+r.RequestURI+" "+string(b))
		w.Write([]byte("verified"))
	})))
	t.Cleanup(srv.Close)
	return srv, &seen
}

// TestSigV4VerifiesAtServer sends requests signed by the injector (as the
// gateway does: headers set first, Apply last) to a server that verifies
// them independently: paths needing escapes, repeated and unordered query
// parameters, bodies, a session token, extra headers set before signing.
func TestSigV4VerifiesAtServer(t *testing.T) {
	tests := []struct {
		name, service, method, target, body string
		hdr                                 map[string]string
		token                               string
	}{
		{name: "get", service: "bedrock", method: "GET", target: "/foundation-models"},
		{name: "bedrock invoke", service: "bedrock", method: "POST", target: "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke",
			body: `{"messages":[{"role":"user","content":"hi"}],"max_tokens":5}`, hdr: map[string]string{"Content-Type": "application/json", "Accept": "application/json"}},
		{name: "escaped path", service: "execute-api", method: "GET", target: "/a%20b/c%2Bd/%E2%82%AC"},
		{name: "query order, repeats and escapes", service: "execute-api", method: "GET", target: "/q?b=2&a=3&a=1&c=x%20y&d=%2F&e"},
		{name: "plus in the query", service: "execute-api", method: "GET", target: "/q?v=a+b"},
		{name: "session token", service: "sts", method: "POST", target: "/", body: "Action=GetCallerIdentity&Version=2011-06-15",
			hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, token: "FQoGZXIvYXdzEXAMPLEsessionTOKEN/+="},
		{name: "keyhole headers signed too", service: "bedrock", method: "POST", target: "/x", body: "{}",
			hdr: map[string]string{"X-Keyhole-Request-Id": "0190-abc", "Anthropic-Version": "2023-06-01", "X-Amz-Date": "19990101T000000Z"}},
		{name: "s3 unsigned payload", service: "s3", method: "PUT", target: "/bucket/key%20with%20space.txt", body: strings.Repeat("x", 1000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tokens map[string]string
			if tc.token != "" {
				tokens = map[string]string{"AKIDKEYHOLETEST": tc.token}
			}
			srv, seen := awsUpstream(t, tc.service, tokens)
			m := &Material{Name: "aws", Version: 3, Fields: map[string]string{"access_key_id": "AKIDKEYHOLETEST", "secret_access_key": "s3cr3t/KEY+with=chars"}}
			if tc.token != "" {
				m.Fields["session_token"] = tc.token
			}
			s, err := NewSigV4(spec.Auth{Type: "aws_sigv4", Secret: "aws", Region: "eu-west-1", Service: tc.service}, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r, err := http.NewRequest(tc.method, srv.URL+tc.target, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.body != "" {
				r.ContentLength = -1 // as a streamed agent body arrives
			}
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			if err := s.Apply(r); err != nil {
				t.Fatal(err)
			}
			if tc.service != "s3" && tc.body != "" && r.ContentLength != int64(len(tc.body)) {
				t.Errorf("ContentLength %d after signing, want %d", r.ContentLength, len(tc.body))
			}
			res, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("the server refused the signature: %d %s (%s)", res.StatusCode, b, res.Header.Get("X-Sigv4-Error"))
			}
			if len(*seen) != 1 || !strings.HasSuffix((*seen)[0], " "+tc.body) {
				t.Errorf("the server saw %q", *seen)
			}
		})
	}
}

// TestSigV4BodyBounds: a body over MaxSignedBody is refused (never signed
// over a prefix); S3 streams a body of any size with UNSIGNED-PAYLOAD
// without reading it.
func TestSigV4BodyBounds(t *testing.T) {
	m := &Material{Name: "aws", Version: 1, Fields: map[string]string{"access_key_id": "AKIDKEYHOLETEST", "secret_access_key": "s3cr3t/KEY+with=chars"}}
	bedrock, _ := NewSigV4(spec.Auth{Type: "aws_sigv4", Region: "eu-west-1", Service: "bedrock"}, m, nil)
	big := bytes.Repeat([]byte("a"), MaxSignedBody+1)
	for _, cl := range []int64{int64(len(big)), -1} {
		r, _ := http.NewRequest("POST", "https://bedrock-runtime.eu-west-1.amazonaws.com/x", bytes.NewReader(big))
		r.ContentLength = cl
		if err := bedrock.Apply(r); !errors.Is(err, ErrBodyTooLarge) {
			t.Errorf("Content-Length %d: %d bytes → %v, want ErrBodyTooLarge", cl, len(big), err)
		}
		if r.Header.Get("Authorization") != "" {
			t.Error("a refused request was signed")
		}
	}
	exact := bytes.Repeat([]byte("a"), MaxSignedBody)
	r, _ := http.NewRequest("POST", "https://bedrock-runtime.eu-west-1.amazonaws.com/x", bytes.NewReader(exact))
	r.ContentLength = -1
	if err := bedrock.Apply(r); err != nil {
		t.Errorf("a body of exactly MaxSignedBody: %v", err)
	}

	s3, _ := NewSigV4(spec.Auth{Type: "aws_sigv4", Region: "eu-west-1", Service: "s3"}, m, nil)
	src := &countReader{r: bytes.NewReader(big)}
	r, _ = http.NewRequest("PUT", "https://bucket.s3.eu-west-1.amazonaws.com/k", io.NopCloser(src))
	r.ContentLength = int64(len(big))
	if err := s3.Apply(r); err != nil {
		t.Fatal(err)
	}
	if src.n != 0 {
		t.Errorf("S3 signing read %d bytes of the body; it must stream", src.n)
	}
	if got := r.Header.Get("X-Amz-Content-Sha256"); got != UnsignedPayload {
		t.Errorf("x-amz-content-sha256 = %q", got)
	}
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestSigV4AgentCannotSmuggle: X-Amz-Security-Token, X-Amz-Date and
// X-Amz-Content-Sha256 sent by the agent are replaced, never signed as
// given; the presigning query parameters belong to keyhole.
func TestSigV4AgentCannotSmuggle(t *testing.T) {
	m := &Material{Name: "aws", Version: 1, Fields: map[string]string{"access_key_id": "AKIDKEYHOLETEST", "secret_access_key": "s3cr3t/KEY+with=chars"}}
	s, _ := NewSigV4(spec.Auth{Type: "aws_sigv4", Region: "eu-west-1", Service: "bedrock"}, m, func() time.Time { return suiteTime })
	r, _ := http.NewRequest("GET", "https://x.amazonaws.com/", nil)
	r.Header.Set("X-Amz-Security-Token", "agent-token")
	r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	if err := s.Apply(r); err != nil {
		t.Fatal(err)
	}
	if v := r.Header.Values("X-Amz-Security-Token"); len(v) != 0 {
		t.Errorf("agent's session token forwarded: %q", v)
	}
	if v := r.Header.Get("X-Amz-Content-Sha256"); v != "" {
		t.Errorf("agent's payload hash forwarded: %q", v)
	}
	if r.Header.Get("X-Amz-Date") != "20150830T123600Z" {
		t.Error("X-Amz-Date is not the signing time")
	}
	if !contains(s.QueryParams(), "X-Amz-Signature") {
		t.Error("X-Amz-Signature is not an injected parameter")
	}
	// The SDK signer and the reference agree on what it produced.
	v := &sigv4verify.Verifier{Secrets: map[string]string{"AKIDKEYHOLETEST": "s3cr3t/KEY+with=chars"}, Region: "eu-west-1", Service: "bedrock"}
	if _, err := v.Verify(sigv4verify.Request{Method: "GET", RawPath: "/", Host: "x.amazonaws.com", Header: r.Header, ContentLength: 0}, nil); err != nil {
		t.Error(err)
	}
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// TestSigV4Config refuses secrets and settings that cannot sign.
func TestSigV4Config(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields map[string]string
		a      spec.Auth
	}{
		{"string secret", map[string]string{"": "AKIDxxxxxxxx"}, spec.Auth{Region: "us-east-1", Service: "s3"}},
		{"no secret key", map[string]string{"access_key_id": "AKIDxxxxxxxx"}, spec.Auth{Region: "us-east-1", Service: "s3"}},
		{"bad region", map[string]string{"access_key_id": "AKIDxxxxxxxx", "secret_access_key": "yyyyyyyyyyyy"}, spec.Auth{Region: "US East", Service: "s3"}},
	} {
		if _, err := NewSigV4(tc.a, &Material{Name: "aws", Fields: tc.fields}, nil); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestSigV4MatchesSDKDirect guards the configuration: for a non-S3 service
// the injector's Authorization equals the SDK signer's defaults.
func TestSigV4MatchesSDKDirect(t *testing.T) {
	m := &Material{Name: "aws", Version: 1, Fields: map[string]string{"access_key_id": suiteKeyID, "secret_access_key": suiteSecret}}
	s, _ := NewSigV4(spec.Auth{Region: suiteRegion, Service: suiteSvc}, m, func() time.Time { return suiteTime })
	r1, _ := http.NewRequest("GET", "https://example.amazonaws.com/a%20b/c?x=1", nil)
	r2 := r1.Clone(context.Background())
	if err := s.Apply(r1); err != nil {
		t.Fatal(err)
	}
	v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: suiteKeyID, SecretAccessKey: suiteSecret}, r2, sha256Hex(""), suiteSvc, suiteRegion, suiteTime)
	if a, b := r1.Header.Get("Authorization"), r2.Header.Get("Authorization"); a != b {
		t.Errorf("injector %s\nSDK      %s", a, b)
	}
}
