package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/jsonpath"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// maxFilterBody bounds what is buffered to filter one JSON response; a
// larger response on a filtered route is refused (fail closed: a field the
// operator said the agent must not see never leaks because it was big).
const maxFilterBody = 16 << 20

// MaskValue replaces masked fields.
const MaskValue = "[MASKED]"

var errFilterTooLarge = errors.New("response too large to filter")

type filterSet struct {
	remove, mask []jsonpath.Path
}

func collectFilters(fs ...*spec.Filters) *filterSet {
	var out filterSet
	for _, f := range fs {
		if f.Empty() {
			continue
		}
		out.remove = append(out.remove, jsonpath.MustParseAll(f.Remove)...)
		out.mask = append(out.mask, jsonpath.MustParseAll(f.Mask)...)
	}
	if len(out.remove)+len(out.mask) == 0 {
		return nil
	}
	return &out
}

// filterResponse applies response_filters (SPEC §3.8) of the proxy and of
// the deciding rule: a JSON response is buffered (bounded), rewritten and
// sent with its new length; an event stream is filtered event by event
// (each data line that holds JSON), so it still streams; anything else
// passes unchanged.
func (g *Gateway) filterResponse(res *http.Response, x *exchange, body io.ReadCloser) (io.ReadCloser, error) {
	var tokFilters *spec.Filters
	if x.tokDecision != nil {
		tokFilters = x.tokDecision.Filters
	}
	fs := collectFilters(x.proxy.Spec.ResponseFilters, x.decision.Filters, tokFilters)
	if fs == nil || res.Request.Method == http.MethodHead || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified {
		return body, nil
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if mt == "text/event-stream" {
		res.ContentLength = -1
		res.Header.Del("Content-Length")
		return &sseFilter{src: body, br: bufio.NewReaderSize(body, 64<<10), fs: fs, x: x}, nil
	}
	data, err := io.ReadAll(io.LimitReader(body, maxFilterBody+1))
	body.Close()
	if err != nil {
		return nil, err
	}
	if len(data) > maxFilterBody {
		return nil, errFilterTooLarge
	}
	if v, err := jsonpath.Decode(data); err == nil {
		if jsonpath.Rewrite(v, fs.remove, fs.mask, MaskValue) {
			if out, err := jsonpath.Encode(v); err == nil {
				data = out
				x.end.Filtered = true
			}
		}
	}
	res.ContentLength = int64(len(data))
	res.Header.Set("Content-Length", strconv.Itoa(len(data)))
	return io.NopCloser(bytes.NewReader(data)), nil
}

// sseFilter rewrites the JSON of each `data:` line of an event stream.
type sseFilter struct {
	src io.Closer
	br  *bufio.Reader
	fs  *filterSet
	x   *exchange
	out []byte
	err error
}

func (s *sseFilter) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		line, err := s.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer cannot be parsed as one JSON
			// document here; refuse rather than pass it unfiltered.
			s.err = errFilterTooLarge
			return 0, s.err
		}
		s.out = append(s.out[:0], s.filterLine(line)...)
		s.err = err
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

func (s *sseFilter) filterLine(line []byte) []byte {
	rest, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return line
	}
	trimmed := strings.TrimSpace(string(rest))
	if trimmed == "" || trimmed[0] != '{' && trimmed[0] != '[' {
		return line
	}
	v, err := jsonpath.Decode([]byte(trimmed))
	if err != nil || !jsonpath.Rewrite(v, s.fs.remove, s.fs.mask, MaskValue) {
		return line
	}
	out, err := jsonpath.Encode(v)
	if err != nil {
		return line
	}
	s.x.end.Filtered = true
	eol := "\n"
	if bytes.HasSuffix(line, []byte("\r\n")) {
		eol = "\r\n"
	}
	return append(append([]byte("data: "), out...), eol...)
}

func (s *sseFilter) Close() error { return s.src.Close() }
