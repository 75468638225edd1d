// Package sigv4verify checks AWS Signature Version 4 signatures the way an
// AWS service does, for tests: httptest upstreams that stand in for AWS use
// it to prove that what keyhole sends verifies.
//
// It is written from AWS's documentation of SigV4 ("Create a canonical
// request", "Create a string to sign", "Calculate the signature"), not from
// the SDK whose signer keyhole uses, so the two implementations check each
// other; its canonical requests are also compared with the published test
// suite's (inject's tests).
package sigv4verify

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only algorithm SigV4 header signing uses.
const Algorithm = "AWS4-HMAC-SHA256"

// UnsignedPayload is the payload hash S3 accepts for an unsigned body.
const UnsignedPayload = "UNSIGNED-PAYLOAD"

// Auth is a parsed Authorization header.
type Auth struct {
	AccessKey     string
	Date          string // yyyymmdd
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

// ParseAuth parses "AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, SignedHeaders=a;b, Signature=hex".
func ParseAuth(h string) (Auth, error) {
	var a Auth
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != Algorithm {
		return a, errors.New("not an AWS4-HMAC-SHA256 Authorization header")
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, fmt.Errorf("malformed Authorization component %q", part)
		}
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return a, fmt.Errorf("malformed credential scope %q", v)
			}
			a.AccessKey, a.Date, a.Region, a.Service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			a.SignedHeaders = strings.Split(v, ";")
		case "Signature":
			a.Signature = v
		}
	}
	if a.AccessKey == "" || len(a.SignedHeaders) == 0 || a.Signature == "" {
		return a, errors.New("the Authorization header lacks Credential, SignedHeaders or Signature")
	}
	if !sort.StringsAreSorted(a.SignedHeaders) {
		return a, errors.New("SignedHeaders are not sorted")
	}
	return a, nil
}

// uriEncode is the documentation's UriEncode: every byte except the
// unreserved characters A-Z a-z 0-9 - . _ ~ becomes %XY (upper-case hex);
// "/" is kept when encodeSlash is false.
func uriEncode(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// CanonicalURI: the absolute path, each segment URI-encoded; for every
// service but S3 the path as sent (already percent-encoded once) is
// encoded again ("Each path segment must be URI-encoded twice"); S3's is
// encoded once. An empty path is "/".
func CanonicalURI(rawPath string, s3 bool) (string, error) {
	if rawPath == "" {
		return "/", nil
	}
	if s3 {
		dec, err := url.PathUnescape(rawPath)
		if err != nil {
			return "", err
		}
		return uriEncode(dec, false), nil
	}
	return uriEncode(rawPath, false), nil
}

// CanonicalQuery: each name and value decoded, then URI-encoded (slash
// included), sorted by name then value, joined name=value with "&".
func CanonicalQuery(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		dk, err := unescapeQueryPart(k)
		if err != nil {
			return "", err
		}
		dv, err := unescapeQueryPart(v)
		if err != nil {
			return "", err
		}
		pairs = append(pairs, kv{uriEncode(dk, true), uriEncode(dv, true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p.k + "=" + p.v
	}
	return strings.Join(out, "&"), nil
}

// unescapeQueryPart decodes %XY; "+" stays a "+" (AWS reads a query's
// plus sign as itself, and signers encode a space as %20).
func unescapeQueryPart(s string) (string, error) {
	return url.PathUnescape(s)
}

// trimAll collapses runs of spaces to one and trims both ends.
func trimAll(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Request is what a verifier needs of a received request.
type Request struct {
	Method        string
	RawPath       string // as on the request line
	RawQuery      string
	Host          string
	Header        http.Header
	ContentLength int64 // -1 unknown
}

// FromHTTP reads a Request from a server-side *http.Request (net/http
// removes Host and Content-Length from the header map; they are put back).
func FromHTTP(r *http.Request) Request {
	path, q, _ := strings.Cut(r.RequestURI, "?")
	h := r.Header.Clone()
	return Request{Method: r.Method, RawPath: path, RawQuery: q, Host: r.Host, Header: h, ContentLength: r.ContentLength}
}

// CanonicalRequest builds the canonical request for the signed headers
// named, with payloadHash as its last line.
func CanonicalRequest(r Request, signed []string, payloadHash string, s3 bool) (string, error) {
	uri, err := CanonicalURI(r.RawPath, s3)
	if err != nil {
		return "", err
	}
	q, err := CanonicalQuery(r.RawQuery)
	if err != nil {
		return "", err
	}
	var hdr strings.Builder
	for _, name := range signed {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			if v := r.Header.Values("Content-Length"); len(v) > 0 {
				vals = v
			} else if r.ContentLength >= 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			vals = r.Header.Values(name)
		}
		if len(vals) == 0 {
			return "", fmt.Errorf("signed header %q is not in the request", name)
		}
		for i, v := range vals {
			vals[i] = trimAll(v)
		}
		hdr.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}
	return strings.Join([]string{r.Method, uri, q, hdr.String(), strings.Join(signed, ";"), payloadHash}, "\n"), nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// StringToSign is the documentation's string to sign.
func StringToSign(amzDate, scope, canonical string) string {
	return Algorithm + "\n" + amzDate + "\n" + scope + "\n" + sha256Hex([]byte(canonical))
}

// Signature derives the signing key (kDate, kRegion, kService, kSigning)
// and signs.
func Signature(secret, date, region, service, stringToSign string) string {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, "aws4_request")
	return hex.EncodeToString(hmacSHA256(k, stringToSign))
}

// Verifier checks requests signed for one service and region.
type Verifier struct {
	Secrets map[string]string // access key id → secret access key
	Region  string
	Service string
	// Tokens: access key id → session token that must come with it.
	Tokens map[string]string
	// Now and Skew bound X-Amz-Date (zero Skew: not checked).
	Now  func() time.Time
	Skew time.Duration
}

// Result is what a verified request carried.
type Result struct {
	Auth        Auth
	Canonical   string
	PayloadHash string
}

// Verify checks r and its body against its Authorization header.
func (v *Verifier) Verify(r Request, body []byte) (Result, error) {
	var res Result
	a, err := ParseAuth(r.Header.Get("Authorization"))
	if err != nil {
		return res, err
	}
	res.Auth = a
	secret, ok := v.Secrets[a.AccessKey]
	if !ok {
		return res, errors.New("unknown access key id")
	}
	if a.Region != v.Region || a.Service != v.Service {
		return res, fmt.Errorf("scope is %s/%s, want %s/%s", a.Region, a.Service, v.Region, v.Service)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return res, errors.New("X-Amz-Date is missing or malformed")
	}
	if t.Format("20060102") != a.Date {
		return res, errors.New("the credential scope's date is not X-Amz-Date's")
	}
	if v.Skew > 0 && v.Now != nil {
		if d := v.Now().Sub(t); d > v.Skew || d < -v.Skew {
			return res, errors.New("X-Amz-Date is too far from now")
		}
	}
	signedSet := map[string]bool{}
	for _, h := range a.SignedHeaders {
		signedSet[h] = true
	}
	if !signedSet["host"] {
		return res, errors.New("host is not signed")
	}
	for name := range r.Header {
		if l := strings.ToLower(name); strings.HasPrefix(l, "x-amz-") && !signedSet[l] {
			return res, fmt.Errorf("header %s is sent but not signed", name)
		}
	}
	if want := v.Tokens[a.AccessKey]; want != "" && r.Header.Get("X-Amz-Security-Token") != want {
		return res, errors.New("the session token is missing or wrong")
	}
	s3 := strings.HasPrefix(v.Service, "s3")
	hash := sha256Hex(body)
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" {
		switch {
		case h == UnsignedPayload && s3:
			hash = h
		case h != hash:
			return res, errors.New("x-amz-content-sha256 is not the body's hash")
		}
	} else if s3 {
		return res, errors.New("S3 needs x-amz-content-sha256")
	}
	res.PayloadHash = hash
	canon, err := CanonicalRequest(r, a.SignedHeaders, hash, s3)
	if err != nil {
		return res, err
	}
	res.Canonical = canon
	scope := a.Date + "/" + a.Region + "/" + a.Service + "/aws4_request"
	want := Signature(secret, a.Date, a.Region, a.Service, StringToSign(amzDate, scope, canon))
	if !hmac.Equal([]byte(want), []byte(a.Signature)) {
		return res, errors.New("the signature does not match")
	}
	return res, nil
}

// Handler wraps next with verification: a request that does not verify is
// answered 403 with an AWS-style error body, as AWS would; one that does
// reaches next with its body intact.
func (v *Verifier) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "body", http.StatusBadRequest)
			return
		}
		if _, err := v.Verify(FromHTTP(r), body); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Sigv4-Error", err.Error())
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"message":"The request signature we calculated does not match the signature you provided."}`)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}
