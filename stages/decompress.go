package stages

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/stage"
)

func init() { register("decompress", newDecompress) }

// Encodings the decompress step decodes.
const (
	encodingAuto    = "auto"
	encodingGzip    = "gzip"
	encodingZstd    = "zstd"
	encodingDeflate = "deflate"
	encodingBrotli  = "br"
)

const (
	defaultMaxOutputBytes = 1 << 30
	defaultMaxRatio       = 100
	// RFC 9659 caps the window of zstd as an HTTP content-coding at 8 MB, so that a
	// decoder never needs more than that much history; a sender may not ask for more.
	maxZstdWindowBytes = 8 << 20
	// RFC 7932's largest window, 2^24 - 16 bytes, rounded to 16 MiB. Browsers decode
	// it, and the brotli command line writes it by default.
	maxBrotliWindowBytes = 16 << 20

	// ratioAllowance is added to max_ratio × compressed bytes. Small bodies of repeated
	// text (a JSON array of identical records, a run of padding) legitimately compress
	// by far more than any sane ratio limit, and they cost nothing; a bomb has to be
	// large to hurt, and past this allowance the ratio bites.
	ratioAllowance = 1 << 20

	// decompressCopySize is the size of the buffer decoded bytes pass through on their
	// way to dst: the granularity at which the limits are checked.
	decompressCopySize = 32 << 10
	// decompressReadSize is the read-ahead on the compressed input. flate reads it a
	// byte at a time, so it must be buffered; more buys little.
	decompressReadSize = 4 << 10
)

// Decompress decodes a gzip, zstd, brotli or deflate body and removes its content-encoding.
// It refuses bodies that decode to more than MaxOutputBytes, or to more than MaxRatio
// times the compressed bytes read so far (plus a 1 MiB allowance), as soon as the
// output crosses the line: a decompression bomb costs one copy buffer, not its size.
type Decompress struct {
	// Encoding is auto (follow the message's content-encoding), gzip, zstd, br or
	// deflate.
	Encoding string `yaml:"encoding"`
	// MaxOutputBytes caps the decoded size of one body.
	MaxOutputBytes int64 `yaml:"max_output_bytes"`
	// MaxRatio caps decoded bytes per compressed byte read.
	MaxRatio int64 `yaml:"max_ratio"`
	// MaxWindowBytes caps the history a zstd frame may ask for: the decoder allocates
	// that much per body.
	MaxWindowBytes int64 `yaml:"max_window_bytes"`
	// MaxBrotliWindowBytes caps the window a brotli stream may declare: the decoder
	// allocates that much per body.
	MaxBrotliWindowBytes int64 `yaml:"max_brotli_window_bytes"`
}

// newDecompress returns the defaults, so that the configuration only overrides what
// it names and an explicit zero is refused rather than defaulted.
func newDecompress() Decompress {
	return Decompress{
		Encoding:             encodingAuto,
		MaxOutputBytes:       defaultMaxOutputBytes,
		MaxRatio:             defaultMaxRatio,
		MaxWindowBytes:       maxZstdWindowBytes,
		MaxBrotliWindowBytes: maxBrotliWindowBytes,
	}
}

// Build checks the options and returns the ready spec with its zstd decoder pool.
func (d Decompress) Build() (stage.Spec, error) {
	d.Encoding = strings.ToLower(strings.TrimSpace(d.Encoding))
	switch d.Encoding {
	case "":
		d.Encoding = encodingAuto
	case encodingAuto, encodingGzip, encodingZstd, encodingDeflate, encodingBrotli:
	default:
		return nil, fmt.Errorf("encoding: must be one of auto, gzip, zstd, br, deflate, got %q", d.Encoding)
	}
	if d.MaxOutputBytes <= 0 {
		return nil, fmt.Errorf("max_output_bytes: must be positive, got %d", d.MaxOutputBytes)
	}
	if d.MaxRatio < 1 {
		return nil, fmt.Errorf("max_ratio: must be at least 1, got %d", d.MaxRatio)
	}
	if d.MaxWindowBytes < zstd.MinWindowSize || d.MaxWindowBytes > maxZstdWindowBytes {
		return nil, fmt.Errorf("max_window_bytes: must be between %d and %d (RFC 9659), got %d",
			zstd.MinWindowSize, maxZstdWindowBytes, d.MaxWindowBytes)
	}
	if d.MaxBrotliWindowBytes < 1<<minBrotliWindowBits || d.MaxBrotliWindowBytes > maxBrotliWindowBytes {
		return nil, fmt.Errorf("max_brotli_window_bytes: must be between %d and %d (RFC 7932), got %d",
			1<<minBrotliWindowBits, maxBrotliWindowBytes, d.MaxBrotliWindowBytes)
	}

	p := &decompressPlanner{Decompress: d}
	p.zstdOptions = []zstd.DOption{
		zstd.WithDecoderMaxWindow(uint64(d.MaxWindowBytes)),
		// One block in flight and no goroutine: a body is one stream, and its
		// memory is the window, not the window times the cores.
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
	}
	dec, err := zstd.NewReader(nil, p.zstdOptions...)
	if err != nil {
		return nil, fmt.Errorf("max_window_bytes: %w", err)
	}
	p.zstdDecoders = new(sync.Pool)
	p.zstdDecoders.Put(dec)
	return p, nil
}

// decompressPlanner is a built decompress step.
type decompressPlanner struct {
	Decompress
	// zstdDecoders holds decoders built with zstdOptions, the step's window limit.
	zstdDecoders *sync.Pool
	zstdOptions  []zstd.DOption
}

func (d *decompressPlanner) Name() string { return "decompress" }

func (d *decompressPlanner) PreviewSize(*stage.Message) int { return 0 }

// Plan picks the encoding to decode, or passes the body on untouched when auto finds
// no content-encoding.
func (d *decompressPlanner) Plan(m *stage.Message, _ []byte) (stage.Step, error) {
	encoding := d.Encoding
	if encoding == encodingAuto {
		var values []string
		if m != nil {
			values = m.Header.Values("Content-Encoding")
		}
		if len(values) > 1 {
			// Two header lines are a list of codings, like "gzip, br".
			return stage.Step{}, fmt.Errorf("decompress: %w: %q", stage.ErrUnsupportedEncoding, strings.Join(values, ", "))
		}
		var header string
		if len(values) == 1 {
			header = strings.ToLower(strings.TrimSpace(values[0]))
		}
		switch header {
		case "", "identity":
			return stage.Step{}, nil
		case "gzip", "x-gzip":
			encoding = encodingGzip
		case "zstd":
			encoding = encodingZstd
		case "deflate":
			encoding = encodingDeflate
		case "br":
			encoding = encodingBrotli
		default:
			return stage.Step{}, fmt.Errorf("decompress: %w: %q", stage.ErrUnsupportedEncoding, header)
		}
	}
	return stage.Step{
		Transformer: &decompressStage{spec: d, encoding: encoding},
		Edit:        stage.HeaderEdit{ContentEncoding: new(string), ChangesLength: true},
	}, nil
}

// decompressStage decodes one body.
type decompressStage struct {
	spec     *decompressPlanner
	encoding string
}

// decompressBuffers is what one body borrows for its duration: the counted source,
// the read-ahead on it and the copy buffer.
type decompressBuffers struct {
	src compressedCounter
	in  *bufio.Reader
	buf [decompressCopySize]byte
}

var decompressBufferPool = sync.Pool{New: func() any {
	return &decompressBuffers{in: bufio.NewReaderSize(nil, decompressReadSize)}
}}

// Codec state is kept apart from the buffers because it is specific to one format.
// A pooled reader still points at the bufio.Reader it last read from, which is itself
// pooled and reset to no source: it holds no body's input alive.
var (
	gunzipPool   sync.Pool // *gzip.Reader
	unbrotliPool sync.Pool // *brotli.Reader
	zlibPool     sync.Pool // io.ReadCloser implementing zlib.Resetter
	inflatePool  sync.Pool // io.ReadCloser implementing flate.Resetter
)

// compressedCounter counts the compressed bytes read and remembers a failure of the
// source, so that an error of the body's producer is not mistaken for corrupt input.
type compressedCounter struct {
	r   io.Reader
	n   int64
	err error
}

func (c *compressedCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (s *decompressStage) Transform(dst io.Writer, src io.Reader) error {
	bufs := decompressBufferPool.Get().(*decompressBuffers)
	bufs.src = compressedCounter{r: src}
	bufs.in.Reset(&bufs.src)
	defer func() {
		bufs.src = compressedCounter{}
		bufs.in.Reset(nil)
		decompressBufferPool.Put(bufs)
	}()

	// An empty body stays empty whatever its declared encoding: there is no header
	// to check, and HTTP says nothing was sent.
	if _, err := bufs.in.Peek(1); err != nil {
		if err == io.EOF {
			return nil
		}
		return err
	}

	var err error
	switch s.encoding {
	case encodingGzip:
		err = s.gunzip(dst, bufs)
	case encodingZstd:
		err = s.unzstd(dst, bufs)
	case encodingDeflate:
		err = s.inflate(dst, bufs)
	case encodingBrotli:
		err = s.unbrotli(dst, bufs)
	default:
		err = fmt.Errorf("decompress: unknown encoding %q", s.encoding)
	}
	return err
}

func (s *decompressStage) gunzip(dst io.Writer, bufs *decompressBuffers) error {
	zr, _ := gunzipPool.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer gunzipPool.Put(zr)
	// bufs.in is a flate.Reader, so gzip reads through it without a buffer of its own;
	// concatenated members decode as one body (multistream is the default).
	if err := zr.Reset(bufs.in); err != nil {
		return s.decodeError(err, bufs)
	}
	return s.copyLimited(dst, zr, bufs)
}

func (s *decompressStage) unzstd(dst io.Writer, bufs *decompressBuffers) error {
	zd, _ := s.spec.zstdDecoders.Get().(*zstd.Decoder)
	if zd == nil {
		var err error
		if zd, err = zstd.NewReader(nil, s.spec.zstdOptions...); err != nil {
			return fmt.Errorf("decompress zstd: %w", err)
		}
	}
	defer func() {
		// A pooled decoder must not keep this body's source alive.
		_ = zd.Reset(nil)
		s.spec.zstdDecoders.Put(zd)
	}()
	if err := zd.Reset(bufs.in); err != nil {
		return s.decodeError(err, bufs)
	}
	return s.copyLimited(dst, zd, bufs)
}

// unbrotli decodes brotli after checking the window the stream declares: the decoder
// would allocate it, whatever the rest of the stream holds.
func (s *decompressStage) unbrotli(dst io.Writer, bufs *decompressBuffers) error {
	head, _ := bufs.in.Peek(1) // Transform saw at least one byte
	bits, ok := brotliWindowBits(head[0])
	if !ok {
		return s.decodeError(errors.New("brotli: invalid or large-window stream header"), bufs)
	}
	if window := int64(1)<<bits - 16; window > s.spec.MaxBrotliWindowBytes {
		return fmt.Errorf("decompress br: %w: the stream's %d-byte window is over max_brotli_window_bytes %d",
			stage.ErrBodyTooLarge, window, s.spec.MaxBrotliWindowBytes)
	}
	br, _ := unbrotliPool.Get().(*brotli.Reader)
	if br == nil {
		br = brotli.NewReader(bufs.in)
	} else {
		_ = br.Reset(bufs.in) // never fails
	}
	defer func() {
		// A pooled reader must not keep this body's source alive.
		_ = br.Reset(nil)
		unbrotliPool.Put(br)
	}()
	return s.copyLimited(dst, br, bufs)
}

// brotliWindowBits decodes WBITS from the first byte of a brotli stream (RFC 7932
// section 9.1, bits read from the least significant). The pattern 0010001 is the
// large-window extension (RFC 9841), which HTTP does not use: not ok.
func brotliWindowBits(b byte) (bits int, ok bool) {
	if b&1 == 0 {
		return 16, true
	}
	if n := int(b>>1) & 7; n != 0 {
		return 17 + n, true
	}
	switch n := int(b>>4) & 7; n {
	case 0:
		return 17, true
	case 1:
		return 0, false
	default:
		return 8 + n, true
	}
}

// inflate decodes HTTP "deflate", which RFC 9110 defines as zlib (RFC 1950); some
// senders send raw deflate (RFC 1951) instead, so the first two bytes decide.
func (s *decompressStage) inflate(dst io.Writer, bufs *decompressBuffers) error {
	head, _ := bufs.in.Peek(2)
	var fr io.ReadCloser
	var err error
	if isZlibHeader(head) {
		if pooled, ok := zlibPool.Get().(io.ReadCloser); ok {
			fr = pooled
			err = fr.(zlib.Resetter).Reset(bufs.in, nil)
		} else {
			fr, err = zlib.NewReader(bufs.in)
		}
		if fr != nil {
			defer zlibPool.Put(fr)
		}
	} else {
		if pooled, ok := inflatePool.Get().(io.ReadCloser); ok {
			fr = pooled
			err = fr.(flate.Resetter).Reset(bufs.in, nil)
		} else {
			fr = flate.NewReader(bufs.in)
		}
		defer inflatePool.Put(fr)
	}
	if err != nil {
		return s.decodeError(err, bufs)
	}
	if err := s.copyLimited(dst, fr, bufs); err != nil {
		return err
	}
	// A deflate stream ends by itself, and its decoder stops there. Bytes after it
	// are not part of any stream.
	if _, err := bufs.in.Peek(1); err != io.EOF {
		if err == nil {
			err = errors.New("data after the end of the deflate stream")
		}
		return s.decodeError(err, bufs)
	}
	return nil
}

// isZlibHeader reports whether b starts with a zlib header (RFC 1950 section 2.2):
// compression method 8, a window of at most 32 KiB, and a check value making the two
// bytes a multiple of 31. A raw deflate stream starts this way by chance only.
func isZlibHeader(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	return b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// copyLimited copies dec to dst through the pooled buffer, checking both limits
// before each write so that no byte past a limit leaves the stage.
func (s *decompressStage) copyLimited(dst io.Writer, dec io.Reader, bufs *decompressBuffers) error {
	var written int64
	buf := bufs.buf[:]
	for {
		n, readErr := dec.Read(buf)
		if n > 0 {
			if err := s.checkLimits(written+int64(n), bufs.src.n); err != nil {
				return err
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
			written += int64(n)
		}
		if readErr == io.EOF {
			return nil
		}
		if readErr != nil {
			return s.decodeError(readErr, bufs)
		}
	}
}

// checkLimits refuses decoded output of the given size after compressed bytes read.
func (s *decompressStage) checkLimits(decoded, compressed int64) error {
	if decoded > s.spec.MaxOutputBytes {
		return fmt.Errorf("decompress %s: %w: decoded size exceeds max_output_bytes %d",
			s.encoding, stage.ErrBodyTooLarge, s.spec.MaxOutputBytes)
	}
	allowed := int64(math.MaxInt64)
	if compressed <= (math.MaxInt64-ratioAllowance)/s.spec.MaxRatio {
		allowed = s.spec.MaxRatio*compressed + ratioAllowance
	}
	if decoded > allowed {
		return fmt.Errorf("decompress %s: %w: %d compressed bytes decode to more than %d, over max_ratio %d",
			s.encoding, stage.ErrDecompressionBomb, compressed, allowed, s.spec.MaxRatio)
	}
	return nil
}

// decodeError gives a decoder's error its meaning: the source's own failure as it is,
// a zstd window or size refusal as ErrBodyTooLarge, anything else as ErrCorruptInput.
func (s *decompressStage) decodeError(err error, bufs *decompressBuffers) error {
	if bufs.src.err != nil {
		// The decoder saw the source fail; the body's encoding is not at fault.
		return bufs.src.err
	}
	if err == io.EOF {
		// A decoder that needed more bytes and met the end of the body.
		err = io.ErrUnexpectedEOF
	}
	// ErrWindowSizeExceeded also names blocks larger than the frame's window; a
	// frame that lies about its window is refused as too large all the same.
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return fmt.Errorf("decompress %s: %w: over the window limit (max_window_bytes %d): %w",
			s.encoding, stage.ErrBodyTooLarge, s.spec.MaxWindowBytes, err)
	}
	return fmt.Errorf("decompress %s: %w: %w", s.encoding, stage.ErrCorruptInput, err)
}
