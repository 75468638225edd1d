package scrub

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// readSize is how much a Reader asks of its source at once: the buffer size
// of httputil.ReverseProxy and io.Copy, so a chunk upstream is a chunk to the
// agent.
const readSize = 32 << 10

// maxEmptyReads bounds how often in a row a source may return no data and
// no error before Read gives up with io.ErrNoProgress (as bufio does).
const maxEmptyReads = 100

var errBadCount = errors.New("scrub: source returned an invalid count")

// Reader replaces secrets in a stream. It is made by Set.Reader.
//
// Each Read returns output already scrubbed if some is pending; otherwise it
// reads its source once and returns all of that chunk, scrubbed, except the
// longest tail that is a proper prefix of a secret (at most MaxLen()-1
// bytes), which waits for the next chunk. Only if that left nothing to
// return (the whole chunk was such a prefix, or the source returned nothing)
// does it read again: it never waits for upstream data while it has output.
// At io.EOF the tail is scrubbed and sent. After any other error the tail is
// kept, not sent: a stream cut in the middle of a secret does not leak its
// beginning.
//
// A Reader is not safe for concurrent use, except Replaced.
type Reader struct {
	set *Set
	src io.Reader

	// buf[tailOff:tailOff+held] is the held-back tail; before the next
	// source read it moves to the front, and the read appends to it.
	buf     []byte
	tailOff int
	held    int

	out  []byte // reused output buffer when a chunk had replacements
	pend []byte // output not yet returned: a slice of buf or out

	err error // source error to return once pend is drained
	eof bool

	replaced atomic.Int64
}

var _ io.ReadCloser = (*Reader)(nil)

// Reader returns src wrapped in a streaming scrubber (a *Reader). If the Set
// holds no secret it returns src itself (or io.NopCloser(src) if src has no
// Close), at no cost.
func (s *Set) Reader(src io.Reader) io.ReadCloser {
	if s == nil || s.n == 0 {
		if rc, ok := src.(io.ReadCloser); ok {
			return rc
		}
		return io.NopCloser(src)
	}
	return &Reader{set: s, src: src}
}

// Replaced reports how many secrets r has replaced so far. It is 0 for a
// reader that is not a *Reader (the pass-through of an empty Set).
func Replaced(r io.Reader) int {
	if sr, ok := r.(*Reader); ok {
		return sr.Replaced()
	}
	return 0
}

// Replaced reports how many secrets have been replaced so far, for the audit
// record. It may be called concurrently with Read.
func (r *Reader) Replaced() int { return int(r.replaced.Load()) }

// Close closes the source if it is an io.Closer, and gives the read
// buffer back to the pool (a Reader is not read after Close).
func (r *Reader) Close() error {
	if r.buf != nil {
		b := r.buf[:0]
		r.buf, r.pend = nil, nil
		bufPool.Put(&b)
	}
	if c, ok := r.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// bufPool recycles read buffers: one per stream, and most responses are
// small, so allocating 32 KiB for each was most of a request's garbage.
var bufPool = sync.Pool{}

func getBuf(n int) []byte {
	if p, ok := bufPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n, max(n, 64<<10))
}

// Read implements io.Reader as described on Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for empty := 0; ; {
		if len(r.pend) > 0 {
			n := copy(p, r.pend)
			r.pend = r.pend[n:]
			return n, nil
		}
		if r.eof {
			return 0, io.EOF
		}
		if r.err != nil {
			// Returned once, like the source did: a caller that retries
			// (after a timeout, say) reads on from the same place.
			err := r.err
			r.err = nil
			return 0, err
		}
		if r.buf == nil {
			r.buf = getBuf(r.set.maxLen - 1 + readSize)
		}
		// pend is empty, so nothing refers to the front of buf any more.
		copy(r.buf, r.buf[r.tailOff:r.tailOff+r.held])
		r.tailOff = 0

		n, err := r.src.Read(r.buf[r.held:])
		if n < 0 || n > len(r.buf)-r.held {
			return 0, errBadCount
		}
		if err == nil && n == 0 {
			if empty++; empty >= maxEmptyReads {
				return 0, io.ErrNoProgress
			}
			continue
		}
		final := err == io.EOF
		if n > 0 || final {
			r.scan(r.buf[:r.held+n], final)
		}
		if final {
			r.eof = true
		} else if err != nil {
			r.err = err
		}
	}
}

// scan scrubs data (the held tail and a new chunk), making pend all of it
// but the new tail to hold back. Without a secret in the chunk, pend is the
// chunk itself: nothing is copied.
func (r *Reader) scan(data []byte, final bool) {
	s := r.set
	var cur cursor
	ms, me, hold := s.find(data, 0, final, &cur)
	if ms < 0 {
		r.pend = data[:hold]
	} else {
		if r.out == nil {
			// Room for the chunk and some growth (a replacement may be
			// longer than the secret), so that append rarely regrows.
			r.out = make([]byte, 0, len(r.buf)+len(r.buf)/4)
		}
		out := r.out[:0]
		pos, count := 0, 0
		for ms >= 0 {
			out = append(out, data[pos:ms]...)
			out = append(out, s.repl...)
			count++
			pos = me
			ms, me, hold = s.find(data, pos, final, &cur)
		}
		out = append(out, data[pos:hold]...)
		r.out, r.pend = out, out
		r.replaced.Add(int64(count))
	}
	r.tailOff, r.held = hold, len(data)-hold
}
