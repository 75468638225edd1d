package httpfront

// chunkState is where a chunker is in a chunked body (RFC 9112 §7.1).
type chunkState uint8

const (
	ckSize    chunkState = iota // chunk-size digits
	ckSizeOWS                   // whitespace after the digits
	ckExt                       // chunk-ext, after ';'
	ckSizeLF                    // CR seen at the end of the chunk-size line
	ckData                      // chunk-data; n bytes left
	ckDataCR                    // CRLF after chunk-data
	ckDataLF
	ckTrStart // start of a trailer line, or of the final CRLF
	ckTrName
	ckTrValue
	ckTrLF    // CR seen at the end of a trailer line
	ckTrEndLF // CR seen at the start of a line: the final CRLF
)

// Limits of net/http's chunked reader. Its server reads through a 4096-byte
// bufio.Reader, and:
//   - readChunkLine uses ReadSlice('\n'), which fails when a line, LF
//     included, does not fit in the buffer;
//   - readTrailer (transfer.go) requires the whole trailer section to be
//     visible in the buffer (seeUpcomingDoubleCRLF) before parsing it.
const (
	maxChunkLine = 4096
	maxTrailer   = 4096
	// chunkedReader.beginChunk: "we're willing to accept 16 bytes of
	// overhead per chunk, plus twice the amount of real data in the chunk"
	// and no more than 16 KiB of excess in all.
	maxExcess = 16 * 1024
)

// A chunker follows a chunked body byte by byte, exactly as net/http's
// chunkedReader and body.readTrailer will read it, so that the guard knows
// where the body ends without holding any byte back: every byte is released
// as soon as it is seen to be consistent with valid framing. Where net/http
// is lax (trailer lines are read with net/textproto, which takes bare LF and
// obs-fold), the chunker is strict and calls the body bad; bad is always
// safe, because the guard then ends the connection's input.
type chunker struct {
	st      chunkState
	n       uint64 // chunk size being parsed, then data bytes left
	digits  int
	lineLen int   // bytes of the current chunk-size line so far
	excess  int64 // net/http's chunkedReader.excess
	trLen   int   // bytes of the trailer section so far
}

// advance consumes bytes from b. It returns how many belong to the body and
// are valid so far (consumed), whether the body ended there (done), and
// whether b[consumed] breaks the framing (bad).
func (k *chunker) advance(b []byte) (consumed int, done, bad bool) {
	i := 0
	for i < len(b) {
		if k.st == ckData {
			// The fast path: chunk-data is not looked at.
			m := uint64(len(b) - i)
			if m > k.n {
				m = k.n
			}
			i += int(m)
			k.n -= m
			if k.n == 0 {
				k.st = ckDataCR
			}
			continue
		}
		c := b[i]
		switch k.st {
		case ckSize, ckSizeOWS, ckExt, ckSizeLF:
			// chunk-size [ chunk-ext ] CRLF, as readChunkLine,
			// trimTrailingWhitespace, removeChunkExtension and
			// parseHexUint accept it: 1 to 16 hex digits, then either
			// optional SP/HTAB, or ';' and anything but CR and LF;
			// CRLF; at most 4096 bytes with the CRLF.
			k.lineLen++
			if k.lineLen > maxChunkLine {
				return i, false, true
			}
			if !k.sizeByte(c) {
				return i, false, true
			}
			if k.st == ckData { // the line just ended
				i++
				if !k.beginChunk() {
					return i - 1, false, true
				}
				continue
			}
		case ckDataCR:
			if c != '\r' {
				return i, false, true
			}
			k.st = ckDataLF
		case ckDataLF:
			if c != '\n' {
				return i, false, true
			}
			k.st = ckSize
		default:
			// The trailer section (RFC 9112 §7.1.2): field lines, then
			// CRLF.
			k.trLen++
			if k.trLen > maxTrailer {
				return i, false, true
			}
			switch k.st {
			case ckTrStart:
				switch {
				case c == '\r':
					k.st = ckTrEndLF
				case tokenByte[c]:
					k.st = ckTrName
				default: // obs-fold, bare LF, empty name
					return i, false, true
				}
			case ckTrName:
				switch {
				case c == ':':
					k.st = ckTrValue
				case !tokenByte[c]: // includes whitespace before ':'
					return i, false, true
				}
			case ckTrValue:
				switch {
				case c == '\r':
					k.st = ckTrLF
				case !validValueByte[c]:
					return i, false, true
				}
			case ckTrLF:
				if c != '\n' {
					return i, false, true
				}
				k.st = ckTrStart
			case ckTrEndLF:
				if c != '\n' {
					return i, false, true
				}
				return i + 1, true, false
			}
		}
		i++
	}
	return i, false, false
}

// sizeByte takes one byte of a chunk-size line. When the line's LF arrives it
// sets k.st to ckData and leaves the rest to beginChunk.
func (k *chunker) sizeByte(c byte) bool {
	switch k.st {
	case ckSize:
		if v, ok := unhex(c); ok {
			// parseHexUint: "http chunk length too large" at the
			// 17th digit.
			k.digits++
			if k.digits > 16 {
				return false
			}
			k.n = k.n<<4 | uint64(v)
			return true
		}
		if k.digits == 0 {
			return false // "empty hex number for chunk length"
		}
		switch c {
		case ';':
			k.st = ckExt
		case ' ', '\t':
			k.st = ckSizeOWS
		case '\r':
			k.st = ckSizeLF
		default:
			return false
		}
	case ckSizeOWS:
		// Trailing whitespace is trimmed before the extension is cut
		// off, so whitespace followed by ';' is an error in net/http.
		switch c {
		case ' ', '\t':
		case '\r':
			k.st = ckSizeLF
		default:
			return false
		}
	case ckExt:
		// net/http does not look inside chunk-ext; it only requires
		// that the line have no CR but the one before LF, and no bare
		// LF (errata 7633: bare LF is not a chunk line terminator).
		switch c {
		case '\r':
			k.st = ckSizeLF
		case '\n':
			return false
		}
	case ckSizeLF:
		if c != '\n' {
			return false
		}
		k.st = ckData
	}
	return true
}

// beginChunk runs the checks that net/http's chunkedReader.beginChunk runs on
// a complete chunk-size line, with the same int64 arithmetic (including its
// wrap-around for sizes of 2^63 and more), and sets up the next state.
func (k *chunker) beginChunk() bool {
	k.excess += int64(k.lineLen)
	k.excess -= 16 + (2 * int64(k.n))
	k.excess = max(k.excess, 0)
	k.lineLen, k.digits = 0, 0
	if k.excess > maxExcess {
		return false // "chunked encoding contains too much non-data"
	}
	if k.n == 0 {
		k.st, k.trLen = ckTrStart, 0
	} else {
		k.st = ckData
	}
	return true
}

// inTrailer reports whether the chunker is in the trailer section.
func (k *chunker) inTrailer() bool { return k.st >= ckTrStart }

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
