package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// apiErr is an admin API error as the dashboard shows it.
type apiErr struct {
	Status  int
	Code    string
	Message string
}

func (e *apiErr) Error() string { return e.Message }

// recorder is a minimal in-memory http.ResponseWriter for in-process API
// calls.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// call runs one admin API call in-process as the page's session: the
// session cookie authenticates it (the API checks the identity and role as
// for any call), and a change carries the session's CSRF token and this
// origin, which the page's own form already proved. out, when not nil,
// receives the JSON answer. An API error is returned as *apiErr.
func (u *UI) call(q *req, method, path string, query url.Values, body any, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(js)
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	r, err := http.NewRequestWithContext(q.r.Context(), method, target, rd)
	if err != nil {
		return err
	}
	r.Host, r.RemoteAddr, r.TLS = q.r.Host, q.r.RemoteAddr, q.r.TLS
	for _, k := range []string{"Cookie", "User-Agent"} {
		if v := q.r.Header.Values(k); len(v) > 0 {
			r.Header[k] = v
		}
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet && method != http.MethodHead {
		r.Header.Set(CSRFHeader, q.sess.csrf)
		r.Header.Set("Origin", origin(q.r))
	}
	rec := &recorder{h: http.Header{}}
	if u.api == nil {
		return fmt.Errorf("the dashboard has no admin API")
	}
	u.api.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 400 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Error.Message == "" {
			return &apiErr{Status: rec.status, Code: "internal", Message: http.StatusText(rec.status)}
		}
		return &apiErr{Status: rec.status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("%s %s: the answer did not decode: %w", method, path, err)
		}
	}
	return nil
}

// get is call with GET.
func (u *UI) get(q *req, path string, query url.Values, out any) error {
	return u.call(q, http.MethodGet, path, query, nil, out)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }
