package httpfront

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// state is what a guarded connection expects next on its input.
type state uint8

const (
	stHeader    state = iota // a header block
	stBodyCL                 // clLeft more body bytes
	stChunked                // more of a chunked body
	stDiscard                // the rest of an oversized header block
	stSynthetic              // releasing the synthetic request
	stDrain                  // after a refusal: read and drop, release nothing
	stEOF                    // the input has ended for net/http
	stPass                   // no longer guarded
)

const (
	// bufSize is the size of the pooled buffers: net/http's own read
	// buffer size, so one read usually brings a whole header block.
	bufSize = 4096
	// minScratch is the smallest caller buffer the guard reads a new header
	// block into directly (io.Reader lets Read use all of p as scratch
	// space). Smaller ones are net/http's one-byte background reads.
	minScratch = 512
	// lingerTimeout bounds the wait for the client to finish after a
	// refusal, when the connection is closed. It is net/http's
	// rstAvoidanceDelay (server.go), for the same reason.
	lingerTimeout = 500 * time.Millisecond
	// maxReportedTarget is the longest request target a Rejection reports.
	maxReportedTarget = 1024
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// conn is a guarded connection. Read is called by one goroutine at a time
// (net/http's connReader serialises its foreground and background reads);
// Close may come from any goroutine.
type conn struct {
	net.Conn
	l *Listener

	// Input read from the real connection and not yet given to net/http is
	// buf[off:end]; its first ready bytes have been cleared for release.
	buf        []byte
	pooled     *[]byte // buf's pool entry, if buf came from the pool
	off, end   int
	ready      int
	in         int64 // bytes read from the real connection (trace offsets)
	pendingErr error // from a read that also returned data

	st        state
	hp        headerParser
	clLeft    int64
	ck        chunker
	synth     []byte
	discardCR int // bytes of "\r\n\r\n" matched while discarding
	dropLeft  int // bytes that may still be discarded after a refusal

	refused   atomic.Bool // input was cut short: linger on Close
	closeOnce sync.Once
}

func newConn(c net.Conn, l *Listener) *conn {
	gc := &conn{Conn: c, l: l}
	gc.hp.reset(l.maxHeader, false)
	return gc
}

// Read gives net/http the bytes it may parse: whole header blocks that
// passed, and their bodies as they arrive.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[c.off:c.off+c.ready])
			c.off += n
			c.ready -= n
			if c.off == c.end {
				c.off, c.end = 0, 0
				c.putBuf()
			}
			return n, nil
		}
		switch c.st {
		case stHeader:
			if n, err, done := c.readHeader(p); done {
				return n, err
			}
		case stBodyCL:
			if c.end > c.off {
				c.ready = int(min(int64(c.end-c.off), c.clLeft))
				c.bodyBytes(int64(c.ready), c.bufPos(c.off+c.ready))
				continue
			}
			// The body fast path: straight into p, never past the body.
			n, err := c.readInner(p[:min(int64(len(p)), c.clLeft)])
			c.bodyBytes(int64(n), c.in)
			return n, err
		case stChunked:
			if c.end > c.off {
				n, done, bad := c.ck.advance(c.buf[c.off:c.end])
				c.ready = n
				c.chunkResult(done, bad, c.bufPos(c.off+n))
				if bad {
					c.end = c.off + n // drop what follows
				}
				continue
			}
			n, err := c.readInner(p)
			if n == 0 {
				return 0, err
			}
			c.stash(err)
			m, done, bad := c.ck.advance(p[:n])
			c.chunkResult(done, bad, c.in-int64(n-m))
			if done && m < n {
				// The next request arrived with the end of this body.
				c.hold(p[m:n])
			}
			if m == 0 {
				continue // bad at the first byte: report EOF
			}
			return m, nil
		case stDiscard:
			if err := c.discard(); err != nil {
				return 0, err
			}
		case stSynthetic:
			n := copy(p, c.synth)
			c.synth = c.synth[n:]
			if len(c.synth) == 0 {
				c.synth = nil
				c.st = stDrain
			}
			return n, nil
		case stDrain:
			return 0, c.drain()
		case stEOF:
			return 0, io.EOF
		case stPass:
			if c.end > c.off {
				c.ready = c.end - c.off
				continue
			}
			return c.readInner(p)
		}
	}
}

// readHeader makes progress on a header block. done means Read returns
// (n, err); otherwise Read's loop continues (bytes were cleared for release
// or the state changed).
func (c *conn) readHeader(p []byte) (n int, err error, done bool) {
	if c.end == c.off && c.hp.fresh() && len(p) >= minScratch {
		// Nothing held: read the block into p itself. A block that
		// arrives whole in one read is then released where it lies.
		n, err := c.readInner(p)
		if n == 0 {
			return 0, err, true
		}
		c.stash(err)
		switch c.hp.parse(p[:n]) {
		case needMore:
			c.hold(p[:n])
			return 0, nil, false
		case accepted:
			end := c.hp.end
			c.accept(p[:n], c.in-int64(n))
			if end < n {
				c.hold(p[end:n])
			}
			return end, nil, true
		case passthrough:
			c.st = stPass
			c.emit(event{kind: evPass})
			return n, nil, true
		default: // refused
			c.refuse(p[:n], n)
			return 0, nil, false
		}
	}
	for {
		if c.end > c.off {
			switch c.hp.parse(c.buf[c.off:c.end]) {
			case accepted:
				c.ready = c.hp.end
				c.accept(c.buf[c.off:c.end], c.in-int64(c.end-c.off))
				return 0, nil, false
			case passthrough:
				c.st = stPass
				c.emit(event{kind: evPass})
				return 0, nil, false
			case refused:
				c.refuse(c.buf[c.off:c.end], c.end-c.off)
				return 0, nil, false
			}
		}
		if err := c.fill(); err != nil {
			return 0, err, true
		}
	}
}

// accept sets up the body of the block that b (found at input offset at)
// starts with, and the parser for the block after it.
func (c *conn) accept(b []byte, at int64) {
	h := &c.hp
	if c.l.trace != nil {
		c.emit(event{
			kind:    evAccept,
			start:   at + int64(h.pre),
			end:     at + int64(h.end),
			method:  string(b[h.mS:h.mE]),
			target:  string(b[h.tS:h.tE]),
			chunked: h.chunked,
			length:  h.length,
		})
	}
	post := string(b[h.mS:h.mE]) == "POST"
	switch {
	case h.chunked:
		c.st = stChunked
		c.ck = chunker{}
	case h.length > 0:
		c.st, c.clLeft = stBodyCL, h.length
	default:
		c.st = stHeader
		c.emit(event{kind: evBodyEnd, end: at + int64(h.end)})
	}
	h.reset(c.l.maxHeader, post)
}

// bodyBytes counts n bytes of a Content-Length body, which end at input
// offset at.
func (c *conn) bodyBytes(n int64, at int64) {
	c.clLeft -= n
	if c.clLeft == 0 {
		c.st = stHeader
		c.emit(event{kind: evBodyEnd, end: at})
	}
}

// chunkResult acts on what the chunker found; the body's valid bytes end at
// input offset at.
func (c *conn) chunkResult(done, bad bool, at int64) {
	switch {
	case done:
		c.st = stHeader
		c.emit(event{kind: evBodyEnd, end: at})
	case bad:
		// Body bytes have been released already, so no synthetic
		// request can take this one's place. Ending the input makes
		// net/http's body read fail with ErrUnexpectedEOF, and net/http
		// never parses another request after a failed body
		// (response.WriteHeader: "whatever remains on the wire must not
		// be parsed as another HTTP request").
		c.st = stEOF
		c.refused.Store(true)
		c.emit(event{kind: evBadChunk, trailer: c.ck.inTrailer(), end: at})
	}
}

// bufPos is the input offset of buf[i].
func (c *conn) bufPos(i int) int64 { return c.in - int64(c.end-i) }

// refuse replaces the block that b starts with (n bytes of which have been
// read) by the synthetic request.
func (c *conn) refuse(b []byte, n int) {
	h := &c.hp
	method, target := requestLineParts(b[h.pre:])
	c.synth = c.synthetic(h.status, h.reason, method, target)
	c.refused.Store(true)
	c.dropLeft = c.l.maxDiscard
	c.emit(event{kind: evRefuse, reason: h.reason, status: h.status, start: c.in - int64(n) + int64(h.pre)})
	c.st = stSynthetic
	if h.status == 431 {
		// Read on to the end of the block, so that the client is done
		// sending when the 431 goes out.
		c.discardCR = 0
		if crlfcrlf(b[h.searchFrom:n], &c.discardCR) < 0 && c.dropLeft > 0 {
			c.st = stDiscard
		}
	}
	// Whatever followed the refused block is dropped.
	c.off, c.end, c.ready = 0, 0, 0
	c.putBuf()
}

// discard reads and drops the rest of an oversized header block, up to its
// CRLFCRLF or dropLeft bytes, then moves on to the synthetic request.
func (c *conn) discard() error {
	b := c.scratch()
	for c.st == stDiscard {
		n, err := c.readInner(b[:min(len(b), c.dropLeft)])
		c.dropLeft -= n
		if crlfcrlf(b[:n], &c.discardCR) >= 0 || c.dropLeft <= 0 {
			c.st = stSynthetic
			break
		}
		if err != nil {
			if isTimeout(err) {
				return err
			}
			c.st = stSynthetic // the client stopped sending: answer
		}
	}
	c.putBuf()
	return nil
}

// drain runs after the synthetic request was released. It does not report
// EOF right away: net/http's background read would take that as the client
// going away and cancel the synthetic request's context before the gateway
// has answered and audited it. Instead it keeps reading and dropping what the
// client sends (which also spares the client an RST while it is still
// sending), and reports EOF once the client stops or dropLeft runs out.
// Deadline errors are returned as they are: net/http's abortPendingRead
// relies on them.
func (c *conn) drain() error {
	if err := c.takePending(); err != nil {
		if isTimeout(err) {
			return err
		}
		c.st = stEOF
		return io.EOF
	}
	b := c.scratch()
	defer c.putBuf()
	for c.dropLeft > 0 {
		n, err := c.Conn.Read(b[:min(len(b), c.dropLeft)])
		c.dropLeft -= n
		if err != nil {
			if isTimeout(err) {
				return err
			}
			break
		}
	}
	c.st = stEOF
	return io.EOF
}

// fill reads more input into buf.
func (c *conn) fill() error {
	if c.buf == nil {
		c.getBuf()
	}
	if c.end == len(c.buf) {
		if c.off > 0 {
			c.end = copy(c.buf, c.buf[c.off:c.end])
			c.off = 0
		} else {
			// A header block can be pre + max + 1 bytes long before the
			// parser gives up on it, so the buffer never needs to be
			// larger than that to hold an incomplete one.
			c.grow(min(2*len(c.buf), c.l.maxHeader+maxPOSTSkip+1))
		}
		if c.end == len(c.buf) { // unreachable; never spin on a full buffer
			c.grow(len(c.buf) + bufSize)
		}
	}
	n, err := c.readInner(c.buf[c.end:])
	c.end += n
	if n > 0 {
		c.stash(err)
		return nil
	}
	return err
}

// hold keeps b (input already read) at the end of buf.
func (c *conn) hold(b []byte) {
	if c.buf == nil {
		c.getBuf()
	}
	if c.off > 0 && c.end+len(b) > len(c.buf) {
		c.end = copy(c.buf, c.buf[c.off:c.end])
		c.off = 0
	}
	if c.end+len(b) > len(c.buf) {
		c.grow(c.end + len(b))
	}
	c.end += copy(c.buf[c.end:], b)
}

// grow replaces buf by one of at least n bytes, keeping its contents.
func (c *conn) grow(n int) {
	if n <= len(c.buf) {
		return
	}
	nb := make([]byte, max(n, bufSize))
	c.end = copy(nb, c.buf[c.off:c.end])
	c.off = 0
	c.putPooled()
	c.buf = nb
}

func (c *conn) getBuf() {
	c.pooled = bufPool.Get().(*[]byte)
	c.buf = *c.pooled
}

// putBuf gives buf back to the pool when it holds nothing, so that an idle
// keep-alive connection holds no buffer.
func (c *conn) putBuf() {
	if c.off == c.end && c.buf != nil {
		c.off, c.end = 0, 0
		c.putPooled()
		c.buf = nil
	}
}

func (c *conn) putPooled() {
	if c.pooled != nil {
		bufPool.Put(c.pooled)
		c.pooled = nil
	}
}

// scratch returns a buffer to read input into that will be dropped.
func (c *conn) scratch() []byte {
	if c.buf == nil {
		c.getBuf()
	}
	c.off, c.end = 0, 0
	return c.buf
}

// readInner reads from the real connection, first returning any error kept
// back by stash.
func (c *conn) readInner(p []byte) (int, error) {
	if err := c.takePending(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.in += int64(n)
	return n, err
}

// stash keeps back the error of a read that also returned data, to be
// returned by the next read of the real connection.
func (c *conn) stash(err error) {
	if err != nil {
		c.pendingErr = err
	}
}

func (c *conn) takePending() error {
	err := c.pendingErr
	if err != io.EOF {
		c.pendingErr = nil // io.EOF stays: nothing comes after it
	}
	return err
}

// passthrough stops guarding (see Passthrough).
func (c *conn) passthrough() {
	switch c.st {
	case stHeader, stBodyCL, stChunked:
		// Bytes the guard holds were sent after the request that
		// switched protocols; they belong to the new protocol.
		c.st = stPass
		c.hp.reset(c.l.maxHeader, false)
		c.emit(event{kind: evPass})
	}
}

// CloseWrite shuts down the writing side of the real connection, if it has
// one (net/http's closeWriteAndWait uses it to send FIN before closing).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Close closes the connection. After a refusal it first sends FIN and keeps
// reading (and dropping) what the client still sends, for up to
// lingerTimeout, in the background, before closing: RFC 9112 §9.6 ("Tear-down")
// recommends this staged close, because closing a socket with unread input
// makes the kernel send RST, and the client may then lose the response that
// explains the refusal.
func (c *conn) Close() error {
	if !c.refused.Load() {
		return c.Conn.Close()
	}
	var err error = net.ErrClosed
	c.closeOnce.Do(func() {
		err = nil
		c.CloseWrite()
		go c.linger()
	})
	return err
}

func (c *conn) linger() {
	defer c.Conn.Close()
	if c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout)) != nil {
		return
	}
	b := make([]byte, bufSize)
	for left := c.l.maxDiscard; left > 0; {
		n, err := c.Conn.Read(b[:min(len(b), left)])
		left -= n
		if err != nil {
			return
		}
	}
}

// ReadFrom lets writes use the real connection's ReadFrom (sendfile, splice)
// when it has one; only reads are guarded.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// crlfcrlf looks for "\r\n\r\n" in b, continuing a match of *m bytes from a
// previous call. It returns the index just past it, or -1.
func crlfcrlf(b []byte, m *int) int {
	const pat = "\r\n\r\n"
	for i, c := range b {
		switch {
		case c == pat[*m]:
			*m++
			if *m == len(pat) {
				*m = 0
				return i + 1
			}
		case c == '\r':
			*m = 1
		default:
			*m = 0
		}
	}
	return -1
}

// requestLineParts splits what there is of a request line the way net/http's
// parseRequestLine does, for reporting a refusal.
func requestLineParts(b []byte) (method, target []byte) {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	method, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return line, nil
	}
	target, _, _ = bytes.Cut(rest, []byte{' '})
	return method, target
}

// synthetic builds the request that takes a refused block's place.
func (c *conn) synthetic(status int, reason string, method, target []byte) []byte {
	if !isToken(method) || len(method) > maxReportedTarget {
		method = nil
	}
	target = target[:min(len(target), maxReportedTarget)]
	b := make([]byte, 0, 256+len(method)+3*len(target))
	b = append(b, "GET "+RejectionPath+" HTTP/1.1\r\nHost: keyhole.invalid\r\nConnection: close\r\n"...)
	b = append(b, hdrGuard+": "...)
	b = append(b, c.l.nonce...)
	b = append(b, "\r\n"+hdrStatus+": "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, "\r\n"+hdrReason+": "...)
	b = append(b, reason...)
	b = append(b, "\r\n"+hdrMethod+": "...)
	b = append(b, method...)
	b = append(b, "\r\n"+hdrTarget+": "...)
	const hexDigits = "0123456789ABCDEF"
	for _, x := range target {
		if x < 0x21 || x > 0x7e {
			b = append(b, '%', hexDigits[x>>4], hexDigits[x&15])
		} else {
			b = append(b, x)
		}
	}
	return append(b, "\r\n\r\n"...)
}

// Tracing, for the tests: the guard's own account of where each request
// starts and ends in the input, compared with net/http's in FuzzFraming.

type eventKind uint8

const (
	evAccept eventKind = iota
	evBodyEnd
	evRefuse
	evBadChunk
	evPass
)

type event struct {
	kind           eventKind
	start, end     int64
	method, target string
	chunked        bool
	length         int64
	reason         string
	status         int
	trailer        bool
}

func (c *conn) emit(ev event) {
	if c.l.trace != nil {
		c.l.trace(c, ev)
	}
}
