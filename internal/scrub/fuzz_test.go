package scrub

import (
	"bytes"
	"io"
	"testing"
)

// sizedReader returns data in reads of the given sizes, taken in turn, and
// io.EOF with the last bytes when eofWithData is set.
type sizedReader struct {
	data        []byte
	sizes       []int
	i           int
	eofWithData bool
}

func (r *sizedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(r.data), r.sizes[r.i%len(r.sizes)])
	r.i++
	n := copy(p, r.data[:k])
	r.data = r.data[n:]
	if r.eofWithData && len(r.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// fuzzSecrets derives 1 to 4 secrets from spec: most are pieces of the
// input itself (so that they match), some are arbitrary bytes, a few are
// longer than the prefilter's rare-byte window.
func fuzzSecrets(in, spec []byte) (secrets [][]byte, repl []byte) {
	next := func() int {
		if len(spec) == 0 {
			return 0
		}
		b := int(spec[0])
		spec = spec[1:]
		return b
	}
	k := 1 + next()%4
	for range k {
		ctl := next()
		n := 1 + ctl%8
		if ctl&0x80 != 0 {
			n = 1 + next()%(3*rareWindow)
		}
		var sec []byte
		if ctl&0x40 == 0 && len(in) > 0 {
			at := (next()<<8 | next()) % len(in)
			sec = in[at:min(len(in), at+n)]
		} else {
			sec = spec[:min(len(spec), n)]
			spec = spec[len(sec):]
		}
		if len(sec) == 0 {
			sec = []byte("a")
		}
		secrets = append(secrets, bytes.Clone(sec))
	}
	switch next() % 4 {
	case 0:
		repl = []byte{}
	case 1:
		repl = []byte("#")
	default:
		repl = red
	}
	return secrets, repl
}

// FuzzReader checks the streaming scrubber, with every prefilter, against
// the reference (leftmost-longest replacement over the whole input) for
// random inputs, secrets and read sizes on both sides; drainSizes checks the
// hold-back after every Read.
func FuzzReader(f *testing.F) {
	f.Add([]byte("data: one\n\ndata: key=sk_live_123\n\n"), []byte{0, 0x00, 0, 22}, []byte{5, 200, 1})
	f.Add([]byte("aaaaaaaaab"), []byte{2, 2, 0, 0, 0x42, 'a', 'a', 'a'}, []byte{1})
	f.Add([]byte("abcdefabcdeabc"), []byte{1, 5, 0, 0, 2, 0, 0}, []byte{2, 3})
	f.Add([]byte("xxQaaaaaaaaaaaaaaaaaaaaQaaay"), []byte{0, 0x8f, 20, 0, 2}, []byte{4, 9, 1})
	f.Fuzz(func(t *testing.T, in, spec, sizes []byte) {
		if len(in) > 2048 {
			in = in[:2048]
		}
		secrets, repl := fuzzSecrets(in, spec)
		want := refReplace(in, secrets, repl)
		chunks := []int{1 << 20}
		pSizes := []int{readSize}
		if len(sizes) > 0 {
			chunks, pSizes = chunks[:0], pSizes[:0]
			for i, b := range sizes {
				chunks = append(chunks, 1+int(b)%64)
				pSizes = append(pSizes, 1+int(sizes[(i+1)%len(sizes)])%48)
			}
		}
		for _, mode := range allModes {
			s := build(secrets, repl, mode)
			if got := s.ReplaceBytes(in); !bytes.Equal(got, want) {
				t.Fatalf("mode %v: ReplaceBytes = %s, want %s", s.pf.mode, show(got, secrets), show(want, secrets))
			}
			if got := s.ReplaceString(string(in)); got != string(want) {
				t.Fatalf("mode %v: ReplaceString = %s, want %s", s.pf.mode, show([]byte(got), secrets), show(want, secrets))
			}
			contains := false
			for _, sec := range secrets {
				contains = contains || bytes.Contains(in, sec)
			}
			if got := s.Contains(in); got != contains {
				t.Fatalf("mode %v: Contains = %v, want %v", s.pf.mode, got, contains)
			}
			src := &sizedReader{data: in, sizes: chunks, eofWithData: len(sizes) > 0 && sizes[0]&1 == 1}
			got, errs := drainSizes(t, s, secrets, in, src, pSizes)
			if !bytes.Equal(got, want) || errs != nil {
				t.Fatalf("mode %v: Reader = %s, %v; want %s", s.pf.mode, show(got, secrets), errs, show(want, secrets))
			}
		}
	})
}
