package inject

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// SigV4 signs each request with AWS Signature Version 4 (SPEC §4,
// aws_sigv4), using the AWS SDK's reference signer.
//
// A signature covers the method, path, query, every header present and the
// payload's SHA-256, so it must be computed after every other change to
// the request: the gateway calls Apply at the very end of its Rewrite,
// after static headers and X-Keyhole-Request-Id are set, and nothing that
// runs later touches a signed header (ReverseProxy may only add an empty
// User-Agent, which SigV4 does not sign; the transport's own Host,
// Content-Length and Accept-Encoding are not header-map entries, and
// Content-Length is signed from ContentLength).
//
// The payload hash needs the whole body before the request leaves, so a
// body is buffered up to MaxSignedBody; a longer one is refused with 413
// (ErrBodyTooLarge) — never signed over a prefix. S3 is the exception: it
// accepts the literal UNSIGNED-PAYLOAD in x-amz-content-sha256 (the
// signature then covers the headers only, and TLS protects the body), so
// S3 bodies stream, whatever their size.
//
// The SDK's signer rewrites the query in canonical form (parameters
// sorted, AWS percent-encoding): that is what AWS verifies, so the bytes of
// the query sent differ from the agent's while meaning the same.
type SigV4 struct {
	creds    aws.Credentials
	region   string
	service  string
	unsigned bool // UNSIGNED-PAYLOAD (S3)
	signer   *v4.Signer
	now      func() time.Time
	values   []string
	version  int
}

var _ Injector = (*SigV4)(nil)

// MaxSignedBody bounds a body buffered to hash for a signature.
const MaxSignedBody = 10 << 20

// UnsignedPayload is S3's payload hash for a body outside the signature.
const UnsignedPayload = "UNSIGNED-PAYLOAD"

// ErrBodyTooLarge: the body is longer than MaxSignedBody and the service
// does not take UNSIGNED-PAYLOAD (the gateway answers 413).
var ErrBodyTooLarge = errors.New("the request body is too large to sign")

// unsignedPayloadServices take x-amz-content-sha256: UNSIGNED-PAYLOAD.
var unsignedPayloadServices = map[string]bool{"s3": true, "s3-object-lambda": true, "s3-outposts": true}

// NewSigV4 builds the signer of a proxy's aws_sigv4 auth from the secret's
// fields access_key_id, secret_access_key and, for temporary credentials,
// session_token (sent as X-Amz-Security-Token and signed). now is the
// clock (nil: time.Now).
func NewSigV4(a spec.Auth, m *Material, now func() time.Time) (*SigV4, error) {
	if m == nil {
		return nil, errf("secret %q does not exist", a.Secret)
	}
	id, sk := m.Fields["access_key_id"], m.Fields["secret_access_key"]
	if id == "" || sk == "" {
		return nil, errf("auth type aws_sigv4 needs an object secret with fields access_key_id and secret_access_key (and session_token for temporary credentials); secret %q has fields %s", m.Name, fieldList(m))
	}
	if !validRegion(a.Region) || !validRegion(a.Service) {
		return nil, errf("auth.region and auth.service are AWS names such as us-east-1 and bedrock (lowercase letters, digits and -)")
	}
	if now == nil {
		now = time.Now
	}
	s := &SigV4{
		creds:    aws.Credentials{AccessKeyID: id, SecretAccessKey: sk, SessionToken: m.Fields["session_token"], Source: "keyhole"},
		region:   a.Region,
		service:  a.Service,
		unsigned: unsignedPayloadServices[a.Service],
		now:      now,
		version:  m.Version,
	}
	s.signer = v4.NewSigner(func(o *v4.SignerOptions) {
		// S3 paths are encoded once in the canonical request; every other
		// service's twice (AWS SigV4 documentation, "canonical URI").
		o.DisableURIPathEscaping = s.unsigned
	})
	var vals []string
	for _, v := range m.Fields {
		vals = append(vals, v)
	}
	s.values = DeriveAll(vals)
	return s, nil
}

func validRegion(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// sigV4Owned are headers the signer sets: whatever the agent sent under
// these names is dropped, so an agent cannot smuggle its own session token
// or date into the signature.
var sigV4Owned = []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256"}

// Apply implements Injector: it reads the body (up to MaxSignedBody) to
// hash it, or sends UNSIGNED-PAYLOAD to S3, then signs.
func (s *SigV4) Apply(out *http.Request) error {
	for _, h := range sigV4Owned {
		delete(out.Header, h)
	}
	hash := UnsignedPayload
	if !s.unsigned {
		b, err := readSigned(out)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		hash = hex.EncodeToString(sum[:])
	} else {
		// S3 requires the header; for other services the hash is part of
		// the canonical request only.
		out.Header["X-Amz-Content-Sha256"] = []string{UnsignedPayload}
	}
	if err := s.signer.SignHTTP(out.Context(), s.creds, out, hash, s.service, s.region, s.now()); err != nil {
		return fmt.Errorf("%w: the request could not be signed", ErrAuthFailed)
	}
	return nil
}

// readSigned buffers the body for hashing (and leaves a replayable copy).
func readSigned(out *http.Request) ([]byte, error) {
	if out.Body == nil || out.Body == http.NoBody {
		return nil, nil
	}
	if out.ContentLength > MaxSignedBody {
		return nil, ErrBodyTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(out.Body, MaxSignedBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: the request body could not be read", ErrAuthFailed)
	}
	if len(b) > MaxSignedBody {
		return nil, ErrBodyTooLarge
	}
	out.Body.Close()
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	out.ContentLength = int64(len(b))
	out.TransferEncoding = nil
	if len(b) == 0 {
		out.Body = http.NoBody
	}
	return b, nil
}

// Values implements Injector.
func (s *SigV4) Values() []string { return s.values }

// QueryParams implements Injector: the presigning parameters belong to
// keyhole; an agent that sends them is refused (SPEC §3.4).
func (s *SigV4) QueryParams() []string {
	return []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders"}
}

// Headers implements Injector.
func (s *SigV4) Headers() []string {
	return []string{"Authorization", "X-Amz-Security-Token"}
}

// SecretVersion implements Injector.
func (s *SigV4) SecretVersion() int { return s.version }
