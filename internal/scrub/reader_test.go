package scrub

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// chunkReader returns its chunks one per Read, then io.EOF.
type chunkReader struct {
	chunks [][]byte
	// eofWithData returns io.EOF together with the last chunk.
	eofWithData bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if c.eofWithData && len(c.chunks) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// splitAt cuts in at the given increasing offsets.
func splitAt(in []byte, cuts ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, in[prev:c])
		prev = c
	}
	return append(out, in[prev:])
}

// countingReader counts what the scrubber consumed from its source.
type countingReader struct {
	r   io.Reader
	n   int
	eof bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// drain reads all of src through s with reads of pSize bytes, checking after
// each Read the streaming contract against the reference: once no output is
// pending, the output so far is exactly the scrubbed form of everything
// consumed except the hold-back tail, and that tail is the longest proper
// prefix of a secret (so at most MaxLen-1 bytes). Errors other than EOF are
// returned to the caller in the list, and reading goes on.
func drain(t testing.TB, s *Set, secrets [][]byte, in []byte, src io.Reader, pSize int) (out []byte, errs []error) {
	return drainSizes(t, s, secrets, in, src, []int{pSize})
}

// drainSizes is drain with the size of each Read's buffer taken in turn
// from pSizes.
func drainSizes(t testing.TB, s *Set, secrets [][]byte, in []byte, src io.Reader, pSizes []int) (out []byte, errs []error) {
	t.Helper()
	cr := &countingReader{r: src}
	rc := s.Reader(cr)
	r, _ := rc.(*Reader)
	buf := make([]byte, slices.Max(pSizes))
	// The reference's decisions before its hold point are final, so it
	// resumes from there as input comes: a test of N reads costs O(N), not
	// O(N²).
	var want []byte
	hold, checked, checkedEOF := 0, -1, false
	for i := 0; ; i++ {
		if i > 20*len(in)+1000 {
			t.Fatalf("no end after %d reads", i)
		}
		p := buf[:pSizes[i%len(pSizes)]]
		n, err := rc.Read(p)
		out = append(out, p[:n]...)
		if r != nil {
			if r.held > max(0, s.MaxLen()-1) {
				t.Fatalf("holding back %d bytes, MaxLen is %d", r.held, s.MaxLen())
			}
			if cr.n != checked || cr.eof != checkedEOF {
				more, h := refStream(in[hold:cr.n], secrets, s.repl, cr.eof)
				want, hold = append(want, more...), hold+h
				checked, checkedEOF = cr.n, cr.eof
			}
			if len(r.pend) == 0 && !r.eof {
				if !bytes.Equal(out, want) || r.held != cr.n-hold {
					t.Fatalf("after consuming %d bytes: sent %s holding %d, want %s holding %d",
						cr.n, show(out, secrets), r.held, show(want, secrets), cr.n-hold)
				}
			} else if !bytes.HasPrefix(want, out) {
				t.Fatalf("after consuming %d bytes: sent %s, not a prefix of %s", cr.n, show(out, secrets), show(want, secrets))
			}
		}
		if err == io.EOF {
			return out, errs
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
}

type sourceKind struct {
	name string
	make func(in []byte) io.Reader
}

var sources = []sourceKind{
	{"whole", func(in []byte) io.Reader { return bytes.NewReader(in) }},
	{"OneByteReader", func(in []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(in)) }},
	{"HalfReader", func(in []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(in)) }},
	{"DataErrReader", func(in []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(in)) }},
	{"DataErrReader/OneByte", func(in []byte) io.Reader {
		return iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(in)))
	}},
	{"TimeoutReader", func(in []byte) io.Reader { return iotest.TimeoutReader(bytes.NewReader(in)) }},
	{"TimeoutReader/HalfReader", func(in []byte) io.Reader {
		return iotest.TimeoutReader(iotest.HalfReader(bytes.NewReader(in)))
	}},
	{"chunks of 3", func(in []byte) io.Reader { return &chunkReader{chunks: chunksOf(in, 3)} }},
	{"chunks of 7 eof with data", func(in []byte) io.Reader { return &chunkReader{chunks: chunksOf(in, 7), eofWithData: true} }},
}

func chunksOf(in []byte, k int) [][]byte {
	var out [][]byte
	for len(in) > k {
		out = append(out, in[:k])
		in = in[k:]
	}
	return append(out, in)
}

func TestReader(t *testing.T) {
	for _, tc := range replaceCases {
		for _, mode := range allModes {
			for _, src := range sources {
				for _, pSize := range []int{1, 5, readSize} {
					name := fmt.Sprintf("%s/%v/%s/p=%d", tc.name, mode, src.name, pSize)
					t.Run(name, func(t *testing.T) {
						secrets := bs(tc.secrets...)
						s := build(secrets, red, mode)
						in := []byte(tc.in)
						got, errs := drain(t, s, secrets, in, src.make(in), pSize)
						if string(got) != tc.want {
							t.Errorf("got %s, want %s", show(got, secrets), show([]byte(tc.want), secrets))
						}
						for _, err := range errs {
							if !errors.Is(err, iotest.ErrTimeout) {
								t.Errorf("unexpected error %v", err)
							}
						}
						if strings.HasPrefix(src.name, "TimeoutReader") && len(tc.in) > 1 && len(errs) != 1 {
							t.Errorf("got %d errors, want the source's one timeout", len(errs))
						}
					})
				}
			}
		}
	}
}

// splitSets are secret sets for the split tests: one secret; one the prefix
// of another; a suffix; self-overlap; and sets that pick each prefilter,
// including secrets longer than the rare-byte window.
var splitSets = []struct {
	name    string
	secrets []string
	in      string
}{
	{"one", []string{"sk_live_0123456789"}, "data: sk_live_0123456789 end"},
	{"prefix pair", []string{"abc", "abcdef"}, "x abcdef abcde abc abcdefabc"},
	{"suffix pair", []string{"def", "abcdef"}, "xabcdefbcdefdefx"},
	{"self overlap", []string{"aaa", "aab"}, "aaaaabaaab"},
	{"rare long", []string{"aaaaaaaaaaaaaaaaaaaaaaaaQaaaaaaa", "aaaaaaaaaaaaaaaQ"}, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaQaaaaaaaaaaaaa aaaaaaaaaaaaaaaaaaaaaaaaQaaaaaaab"},
	{"basic", []string{"alice", "hunter2-hunter2", "YWxpY2U6aHVudGVyMi1odW50ZXIy"}, "Basic YWxpY2U6aHVudGVyMi1odW50ZXIy user=alice pw=hunter2-hunter"},
}

// TestReaderSplits cuts the input at every point (two reads) and every pair
// of points (three reads); a one-byte reader covers N reads.
func TestReaderSplits(t *testing.T) {
	for _, set := range splitSets {
		for _, mode := range allModes {
			t.Run(set.name+"/"+mode.String(), func(t *testing.T) {
				secrets := bs(set.secrets...)
				s := build(secrets, red, mode)
				in := []byte(set.in)
				want := refReplace(in, secrets, red)
				check := func(desc string, src io.Reader) {
					t.Helper()
					got, errs := drain(t, s, secrets, in, src, readSize)
					if !bytes.Equal(got, want) || errs != nil {
						t.Fatalf("%s: got %s, %v; want %s", desc, show(got, secrets), errs, show(want, secrets))
					}
				}
				for i := 0; i <= len(in); i++ {
					check(fmt.Sprintf("cut at %d", i), &chunkReader{chunks: splitAt(in, i)})
					for j := i; j <= len(in); j++ {
						check(fmt.Sprintf("cut at %d, %d", i, j), &chunkReader{chunks: splitAt(in, i, j)})
					}
				}
				check("one byte at a time", &chunkReader{chunks: chunksOf(in, 1)})
			})
		}
	}
}

// TestReaderHoldBack feeds a long secret's prefixes again and again: the
// Reader must hold back no more than MaxLen-1 bytes, and send everything
// before the unfinished prefix (drain checks both after every Read).
func TestReaderHoldBack(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 20) // 320 bytes, past the rare window
	secrets := bs(long, "short-secret")
	var in []byte
	for i := 1; i < len(long); i += 37 {
		in = append(in, long[:i]...)
		in = append(in, "|"...)
	}
	in = append(in, long...)
	in = append(in, long[:len(long)-1]...)
	want := refReplace(in, secrets, red)
	for _, mode := range allModes {
		s := build(secrets, red, mode)
		for _, k := range []int{1, 2, 31, 319, 320, 1000} {
			got, _ := drain(t, s, secrets, in, &chunkReader{chunks: chunksOf(in, k)}, readSize)
			if !bytes.Equal(got, want) {
				t.Fatalf("mode %v chunks of %d: got %s, want %s", s.pf.mode, k, show(got, secrets), show(want, secrets))
			}
		}
	}
}

// sseSource delivers the first chunk at once and the second only after
// delay, recording whether the second was delivered yet.
type sseSource struct {
	first, second []byte
	delay         time.Duration
	n             int
	sentSecond    atomic.Bool
}

func (s *sseSource) Read(p []byte) (int, error) {
	s.n++
	switch s.n {
	case 1:
		return copy(p, s.first), nil
	case 2:
		time.Sleep(s.delay)
		s.sentSecond.Store(true)
		return copy(p, s.second), nil
	}
	return 0, io.EOF
}

// TestReaderSSE pins the streaming promise of SPEC §3.6: an event ahead of a
// secret split across chunks is sent at once; only the partial secret waits.
func TestReaderSSE(t *testing.T) {
	secret := "sk_live_51HxYzSECRETvalue0123"
	half := len(secret) / 2
	src := &sseSource{
		first:  []byte("data: one\n\ndata: key=" + secret[:half]),
		second: []byte(secret[half:] + "\n\ndata: two\n\n"),
		delay:  200 * time.Millisecond,
	}
	s := New(bs(secret), red)
	r := s.Reader(src)
	p := make([]byte, readSize)
	n, err := r.Read(p)
	if err != nil || string(p[:n]) != "data: one\n\ndata: key=" {
		t.Fatalf("first Read = %s, %v; want the first event and the text before the secret", show(p[:n], bs(secret)), err)
	}
	if src.sentSecond.Load() {
		t.Fatal("first Read waited for the second chunk")
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	got := string(p[:n]) + string(rest)
	if want := "data: one\n\ndata: key=[REDACTED]\n\ndata: two\n\n"; got != want {
		t.Errorf("got %s, want %q", show([]byte(got), bs(secret)), want)
	}
	if Replaced(r) != 1 {
		t.Errorf("Replaced = %d, want 1", Replaced(r))
	}
}

// errSource returns its data with a non-EOF error, then more data on the
// next Read (as a retried timeout would).
type errSource struct {
	reads [][]byte
	errs  []error
}

func (e *errSource) Read(p []byte) (int, error) {
	if len(e.reads) == 0 {
		return 0, io.EOF
	}
	n := copy(p, e.reads[0])
	err := e.errs[0]
	e.reads, e.errs = e.reads[1:], e.errs[1:]
	return n, err
}

// A stream cut by an error in the middle of a secret must not send the
// secret's beginning; what came before is sent first, then the error.
func TestReaderErrorKeepsTail(t *testing.T) {
	secret := "s3cr3t-value-0123"
	boom := errors.New("upstream reset")
	src := &errSource{
		reads: [][]byte{[]byte("data: x " + secret[:9]), []byte(secret[9:] + " end")},
		errs:  []error{boom, nil},
	}
	r := New(bs(secret), red).Reader(src)
	p := make([]byte, 64)
	n, err := r.Read(p)
	if err != nil || string(p[:n]) != "data: x " {
		t.Fatalf("Read = %s, %v; want the text before the partial secret", show(p[:n], bs(secret)), err)
	}
	if n, err = r.Read(p); n != 0 || err != boom {
		t.Fatalf("Read = %d, %v; want 0, %v", n, err, boom)
	}
	// Reading on after the error continues the stream where it stopped.
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "[REDACTED] end" {
		t.Fatalf("ReadAll = %s, %v", show(rest, bs(secret)), err)
	}
}

func TestReaderPassThrough(t *testing.T) {
	src := io.NopCloser(strings.NewReader("x"))
	for name, s := range map[string]*Set{"nil": nil, "empty": New(bs(""), red)} {
		if got := s.Reader(src); got != src {
			t.Errorf("%s: Reader did not return its source", name)
		}
		sr := strings.NewReader("y")
		if b, _ := io.ReadAll(s.Reader(sr)); string(b) != "y" {
			t.Errorf("%s: got %q", name, b)
		}
		if Replaced(s.Reader(sr)) != 0 {
			t.Errorf("%s: Replaced != 0", name)
		}
	}
}

type closeRecorder struct {
	io.Reader
	closed int
}

func (c *closeRecorder) Close() error { c.closed++; return nil }

func TestReaderClose(t *testing.T) {
	s := New(bs("secret-1"), red)
	src := &closeRecorder{Reader: strings.NewReader("abc")}
	if err := s.Reader(src).Close(); err != nil || src.closed != 1 {
		t.Errorf("Close = %v, source closed %d times", err, src.closed)
	}
	if err := s.Reader(strings.NewReader("abc")).Close(); err != nil {
		t.Errorf("Close without a Closer = %v", err)
	}
}

func TestReaderReplaced(t *testing.T) {
	s := New(bs("tok-1234", "tok-5678"), red)
	r := s.Reader(strings.NewReader("tok-1234 tok-5678 tok-1234 tok-9"))
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	if got := Replaced(r); got != 3 {
		t.Errorf("Replaced = %d, want 3", got)
	}
}

func TestReaderEdgeCases(t *testing.T) {
	s := New(bs("secret-1"), red)
	t.Run("zero length read", func(t *testing.T) {
		r := s.Reader(strings.NewReader("abc"))
		if n, err := r.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) = %d, %v", n, err)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		r := s.Reader(readerFunc(func([]byte) (int, error) { return 0, nil }))
		if _, err := r.Read(make([]byte, 8)); err != io.ErrNoProgress {
			t.Errorf("err = %v, want io.ErrNoProgress", err)
		}
	})
	t.Run("bad count", func(t *testing.T) {
		r := s.Reader(readerFunc(func(p []byte) (int, error) { return len(p) + 1, nil }))
		if _, err := r.Read(make([]byte, 8)); err != errBadCount {
			t.Errorf("err = %v, want errBadCount", err)
		}
	})
	t.Run("eof is sticky", func(t *testing.T) {
		r := s.Reader(strings.NewReader("abc"))
		io.ReadAll(r)
		if n, err := r.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Errorf("Read after EOF = %d, %v", n, err)
		}
	})
	t.Run("iotest.TestReader", func(t *testing.T) {
		in := []byte(strings.Repeat("abc secret-1 secret- def ", 50))
		want := refReplace(in, bs("secret-1"), red)
		if err := iotest.TestReader(s.Reader(bytes.NewReader(in)), want); err != nil {
			t.Error(err)
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// loopReader returns its chunk forever.
type loopReader struct{ chunk []byte }

func (l *loopReader) Read(p []byte) (int, error) { return copy(p, l.chunk), nil }

// After the first Read, reads allocate nothing: the buffers are reused,
// whether chunks have secrets or not.
func TestReaderNoAllocsPerRead(t *testing.T) {
	secrets := bs("sk_live_0123456789abcdef", "whsec_fedcba9876543210")
	s := New(secrets, red)
	for name, chunk := range map[string]string{
		"clean":   strings.Repeat(`{"id":"ch_1","amount":2000},`, 1000),
		"secrets": strings.Repeat(`{"key":"sk_live_0123456789abcdef"},`, 1000) + "sk_live_0123",
	} {
		r := s.Reader(&loopReader{chunk: []byte(chunk)})
		p := make([]byte, readSize)
		r.Read(p)
		allocs := testing.AllocsPerRun(200, func() { r.Read(p) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Read, want 0", name, allocs)
		}
	}
}
