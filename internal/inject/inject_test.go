package inject_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

const (
	strSecret = "sk_live_abc+/=&xyz123"
	tokField  = "tok_0123456789abcdef"
	idField   = "app-id-7f3e9a"
	keyField  = "app-key-c0ffee+42"
	user      = "svc-user"
	pass      = "p@ss:w0rd/+="
)

func str(v string) *inject.Material {
	return &inject.Material{Name: "s", Version: 3, Fields: map[string]string{"": v}}
}

func obj(kv ...string) *inject.Material {
	m := &inject.Material{Name: "o", Version: 2, Fields: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Fields[kv[i]] = kv[i+1]
	}
	return m
}

// TestStaticApply pins SPEC §4's static schemes: what each puts on the
// outgoing request, that it overwrites whatever the agent sent under the
// same names (an agent cannot pick the credential), and that query
// parameters are appended to the agent's query without touching it.
func TestStaticApply(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	tests := []struct {
		name       string
		auth       spec.Auth
		mat        *inject.Material
		inQuery    string
		inHeader   http.Header
		wantHeader http.Header // compared on the names listed
		wantQuery  string
		wantVer    int
	}{
		{name: "bearer, string secret", auth: spec.Auth{Type: "bearer"}, mat: str(strSecret),
			wantHeader: http.Header{"Authorization": {"Bearer " + strSecret}}, wantVer: 3},
		{name: "bearer, object secret with a token field", auth: spec.Auth{Type: "bearer"}, mat: obj("token", tokField, "other", "unused-value"),
			wantHeader: http.Header{"Authorization": {"Bearer " + tokField}}, wantVer: 2},
		{name: "bearer overwrites the agent's Authorization", auth: spec.Auth{Type: "bearer"}, mat: str(strSecret),
			inHeader:   http.Header{"Authorization": {"Bearer agent-own", "Basic second"}},
			wantHeader: http.Header{"Authorization": {"Bearer " + strSecret}}, wantVer: 3},
		{name: "header, two fields", auth: spec.Auth{Type: "header", Headers: map[string]string{"x-app-id": "{{secret.id}}", "X-App-Key": "Key {{ secret.key }}"}},
			mat:        obj("id", idField, "key", keyField),
			inHeader:   http.Header{"X-App-Id": {"agent-chosen"}},
			wantHeader: http.Header{"X-App-Id": {idField}, "X-App-Key": {"Key " + keyField}, "Authorization": nil}, wantVer: 2},
		{name: "header, string secret", auth: spec.Auth{Type: "header", Headers: map[string]string{"X-Api-Key": "{{secret}}"}}, mat: str(strSecret),
			wantHeader: http.Header{"X-Api-Key": {strSecret}}, wantVer: 3},
		{name: "query, appended to the agent's query", auth: spec.Auth{Type: "query", Params: map[string]string{"api_key": "{{secret}}"}}, mat: str(strSecret),
			inQuery: "limit=3&q=a%20b+c", wantQuery: "limit=3&q=a%20b+c&api_key=" + url.QueryEscape(strSecret), wantVer: 3},
		{name: "query, no agent query", auth: spec.Auth{Type: "query", Params: map[string]string{"api_key": "{{secret}}"}}, mat: str(strSecret),
			wantQuery: "api_key=" + url.QueryEscape(strSecret), wantVer: 3},
		{name: "query, two params in a fixed order", auth: spec.Auth{Type: "query", Params: map[string]string{"token": "{{secret.key}}", "app id": "{{secret.id}}"}},
			mat: obj("id", idField, "key", keyField), inQuery: "z=1",
			wantQuery: "z=1&app+id=" + url.QueryEscape(idField) + "&token=" + url.QueryEscape(keyField), wantVer: 2},
		{name: "basic", auth: spec.Auth{Type: "basic"}, mat: obj("username", user, "password", pass),
			inHeader: http.Header{"Authorization": {"Bearer kh_agent"}}, wantHeader: http.Header{"Authorization": {basic}}, wantVer: 2},
		{name: "none", auth: spec.Auth{Type: "none"}, inQuery: "a=1", inHeader: http.Header{"Authorization": {"Bearer agent"}},
			wantHeader: http.Header{"Authorization": {"Bearer agent"}}, wantQuery: "a=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inj, err := inject.NewStatic(tc.auth, tc.mat)
			if err != nil {
				t.Fatalf("NewStatic: %v", err)
			}
			req := httptest.NewRequest("GET", "http://upstream.test/v1/x", nil)
			req.URL.RawQuery = tc.inQuery
			for k, v := range tc.inHeader {
				req.Header[k] = append([]string(nil), v...)
			}
			if err := inj.Apply(req); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			for k, want := range tc.wantHeader {
				if diff := cmp.Diff(want, req.Header[k]); diff != "" {
					t.Errorf("header %s (-want +got):\n%s", k, diff)
				}
			}
			if req.URL.RawQuery != tc.wantQuery {
				t.Errorf("query = %q, want %q", req.URL.RawQuery, tc.wantQuery)
			}
			if got := inj.SecretVersion(); got != tc.wantVer {
				t.Errorf("SecretVersion = %d, want %d", got, tc.wantVer)
			}
			// Applying twice (a retry) sets, never duplicates, headers.
			before := req.Header.Clone()
			inj.Apply(req)
			for k := range tc.wantHeader {
				if !slices.Equal(before[k], req.Header[k]) {
					t.Errorf("a second Apply changed %s: %q → %q", k, before[k], req.Header[k])
				}
			}
		})
	}
}

func TestStaticOwnedNames(t *testing.T) {
	inj, err := inject.NewStatic(spec.Auth{Type: "query", Params: map[string]string{"sig": "{{secret.b}}", "api_key": "{{secret.a}}"}}, obj("a", idField, "b", keyField))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"api_key", "sig"}, inj.QueryParams()); diff != "" {
		t.Errorf("QueryParams (-want +got):\n%s", diff)
	}
	if len(inj.Headers()) != 0 {
		t.Errorf("a query injector sets no headers, got %v", inj.Headers())
	}
	hinj, err := inject.NewStatic(spec.Auth{Type: "header", Headers: map[string]string{"x-b": "{{secret.b}}", "X-A": "{{secret.a}}"}}, obj("a", idField, "b", keyField))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"X-A", "X-B"}, hinj.Headers()); diff != "" {
		t.Errorf("Headers are canonical and sorted (-want +got):\n%s", diff)
	}
}

// TestStaticErrors pins the configuration errors: each says what is wrong
// and what the secret offers (field names), never a secret value.
func TestStaticErrors(t *testing.T) {
	tests := []struct {
		name     string
		auth     spec.Auth
		mat      *inject.Material
		wantMsgs []string // substrings of the message
	}{
		{"bearer on an object without token", spec.Auth{Type: "bearer"}, obj("client_id", idField, "client_secret", keyField),
			[]string{"string secret", `"token" field`, "[client_id, client_secret]"}},
		{"basic on a string secret", spec.Auth{Type: "basic"}, str(strSecret), []string{"username and password", "(none: it is a string)"}},
		{"basic without password", spec.Auth{Type: "basic"}, obj("username", user, "pass", pass), []string{"username and password", "[pass, username]"}},
		{"basic without username", spec.Auth{Type: "basic"}, obj("password", pass), []string{"username and password", "[password]"}},
		{"header naming a missing field", spec.Auth{Type: "header", Headers: map[string]string{"X-Key": "{{secret.api_key}}"}}, obj("key", keyField),
			[]string{"auth.headers[X-Key]", `no field "api_key"`, "[key]"}},
		{"header {{secret}} on an object", spec.Auth{Type: "header", Headers: map[string]string{"X-Key": "{{secret}}"}}, obj("key", keyField),
			[]string{"{{secret.FIELD}}", "[key]"}},
		{"header field on a string secret", spec.Auth{Type: "header", Headers: map[string]string{"X-Key": "{{secret.key}}"}}, str(strSecret),
			[]string{`no field "key"`, "(none: it is a string)"}},
		{"query naming a missing field", spec.Auth{Type: "query", Params: map[string]string{"api_key": "{{secret.k}}"}}, obj("key", keyField),
			[]string{"auth.params[api_key]", `no field "k"`}},
		{"malformed template", spec.Auth{Type: "header", Headers: map[string]string{"X-Key": "{{secret"}}, str(strSecret), []string{"unclosed"}},
		{"missing secret", spec.Auth{Type: "bearer", Secret: "gone"}, nil, []string{`secret "gone" does not exist`}},
		{"not a static type", spec.Auth{Type: "aws_sigv4"}, str(strSecret), []string{"not a static scheme"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inj, err := inject.NewStatic(tc.auth, tc.mat)
			if err == nil {
				t.Fatalf("NewStatic accepted it: %+v", inj)
			}
			var ie *inject.Error
			var se *spec.Error
			if !errors.As(err, &ie) && !errors.As(err, &se) {
				t.Errorf("want an *inject.Error (a message a person can act on), got %T", err)
			}
			msg := err.Error()
			for _, want := range tc.wantMsgs {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q should mention %q", msg, want)
				}
			}
			for _, v := range []string{strSecret, tokField, idField, keyField, pass, url.QueryEscape(strSecret)} {
				if strings.Contains(msg, v) {
					t.Errorf("the message holds a secret value: %q", msg)
				}
			}
		})
	}
}

// TestValues pins the scrubber's list: each secret field and every form an
// upstream might echo it in (URL query and path escaping, JSON escaping,
// base64), the Basic header's base64 (it does not contain a field, so it
// must be listed itself), but not composites that merely contain a field
// ("Bearer sk_…"): those are scrubbed through the field, so the agent sees
// "Bearer [REDACTED]" and can tell what was there.
func TestValues(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		auth    spec.Auth
		mat     *inject.Material
		want    []string
		notWant []string
	}{
		{"bearer", spec.Auth{Type: "bearer"}, str(strSecret),
			[]string{strSecret, url.QueryEscape(strSecret), url.PathEscape(strSecret), `sk_live_abc+/=\u0026xyz123`, b64(strSecret),
				base64.RawStdEncoding.EncodeToString([]byte(strSecret)), base64.RawURLEncoding.EncodeToString([]byte(strSecret))},
			[]string{"Bearer " + strSecret, "Bearer"}},
		{"basic", spec.Auth{Type: "basic"}, obj("username", user, "password", pass),
			[]string{pass, url.QueryEscape(pass), b64(user + ":" + pass), url.QueryEscape(b64(user + ":" + pass))},
			[]string{"Basic " + b64(user+":"+pass), user + ":" + pass}},
		{"header composite", spec.Auth{Type: "header", Headers: map[string]string{"X-Key": "Key {{secret.key}}", "X-Id": "{{secret.id}}"}}, obj("id", idField, "key", keyField),
			[]string{idField, keyField, url.QueryEscape(keyField), b64(keyField)},
			[]string{"Key " + keyField}},
		{"query", spec.Auth{Type: "query", Params: map[string]string{"api_key": "{{secret}}"}}, str(strSecret),
			[]string{strSecret, url.QueryEscape(strSecret)},
			[]string{"api_key=" + url.QueryEscape(strSecret)}},
		{"short fields are not scrubbed", spec.Auth{Type: "header", Headers: map[string]string{"X-Key": "{{secret.key}}", "X-Region": "{{secret.r}}"}},
			obj("key", keyField, "r", "eu"),
			[]string{keyField},
			[]string{"eu", b64("eu")}},
		{"none", spec.Auth{Type: "none"}, nil, nil, []string{""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inj, err := inject.NewStatic(tc.auth, tc.mat)
			if err != nil {
				t.Fatal(err)
			}
			vals := inj.Values()
			for _, w := range tc.want {
				if !slices.Contains(vals, w) {
					t.Errorf("Values() lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if slices.Contains(vals, w) {
					t.Errorf("Values() holds %q", w)
				}
			}
			if !slices.IsSorted(vals) || len(slices.Compact(slices.Clone(vals))) != len(vals) {
				t.Errorf("Values() must be sorted and without duplicates: %q", vals)
			}
			for _, v := range vals {
				if len(v) < 6 {
					t.Errorf("Values() holds %q, shorter than the scrubbing minimum", v)
				}
			}
		})
	}
}

func TestDeriveAll(t *testing.T) {
	got := inject.DeriveAll([]string{"abc", "plainvalue", "plainvalue", ""})
	want := []string{
		base64.StdEncoding.EncodeToString([]byte("plainvalue")),
		base64.RawStdEncoding.EncodeToString([]byte("plainvalue")),
		"plainvalue",
	}
	slices.Sort(want)
	want = slices.Compact(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DeriveAll (-want +got):\n%s", diff)
	}
}
