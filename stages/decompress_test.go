package stages_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/stage"
	"github.com/bodystream/bodystream/stages"
)

// decRatioAllowance mirrors the documented 1 MiB of output allowed beyond max_ratio.
const decRatioAllowance = 1 << 20

// decCopyBuffer is the documented granularity of the limit checks.
const decCopyBuffer = 32 << 10

// buildKind builds the registered kind name as a configuration would, its options
// (of type O) the registered defaults changed by edit.
func buildKind[O any](name string, edit func(*O)) (stage.Spec, error) {
	kind, ok := stage.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("kind %q is not registered", name)
	}
	return kind.Build(func(options any) error {
		o, ok := options.(*O)
		if !ok {
			return fmt.Errorf("kind %q decodes into %T, want %T", name, options, o)
		}
		if edit != nil {
			edit(o)
		}
		return nil
	})
}

// decBuilt is a built decompress step and the options it was built from, which say
// what limits the step must keep.
type decBuilt struct {
	stage.Spec
	options stages.Decompress
}

// decSpec builds the registered decompress kind from its defaults changed by edit.
func decSpec(t testing.TB, edit func(*stages.Decompress)) decBuilt {
	t.Helper()
	var d decBuilt
	spec, err := buildKind("decompress", func(o *stages.Decompress) {
		if edit != nil {
			edit(o)
		}
		d.options = *o
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	d.Spec = spec
	return d
}

// decMessage is a response whose content-encoding header holds values.
func decMessage(values ...string) *stage.Message {
	h := textproto.MIMEHeader{}
	for _, v := range values {
		h.Add("Content-Encoding", v)
	}
	return &stage.Message{Direction: stage.Response, Header: h}
}

// decRun plans spec for m and runs the stage from src into a buffer.
func decRun(t testing.TB, spec stage.Spec, m *stage.Message, src io.Reader) ([]byte, error) {
	t.Helper()
	step, err := spec.Plan(m, nil)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if step.Transformer == nil {
		t.Fatal("Plan returned no stage")
	}
	var out bytes.Buffer
	err = step.Transformer.Transform(&out, src)
	return out.Bytes(), err
}

func decGzip(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decZstd(t testing.TB, data []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, append([]zstd.EOption{zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decBrotli(t testing.TB, data []byte) []byte {
	return decBrotliOptions(t, data, brotli.WriterOptions{Quality: 5, LGWin: 22})
}

func decBrotliOptions(t testing.TB, data []byte, o brotli.WriterOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	w := brotli.NewWriterOptions(&b, o)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decZlib(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decFlate(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.DefaultCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// decCodec is one way of encoding a body, with the encoding option and header that
// name it.
type decCodec struct {
	name     string
	encoding string // the spec's fixed encoding
	header   string // the content-encoding header for auto
	encode   func(testing.TB, []byte) []byte
}

var decCodecs = []decCodec{
	{"gzip", "gzip", "gzip", decGzip},
	{"zstd", "zstd", "zstd", func(t testing.TB, b []byte) []byte { return decZstd(t, b) }},
	{"brotli", "br", "br", decBrotli},
	{"zlib-deflate", "deflate", "deflate", decZlib},
	{"raw-deflate", "deflate", "deflate", decFlate},
}

func decRandom(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// decJSON is n bytes (roughly) of JSON-like text: compressible, but not trivially.
func decJSON(n int) []byte {
	var b bytes.Buffer
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
	b.WriteString("[")
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"id":%d,"name":%q,"score":%.3f,"tags":[%q,%q],"active":%t}`,
			i, words[r.IntN(len(words))]+fmt.Sprint(r.IntN(1000)), r.Float64()*100,
			words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(2) == 0)
	}
	b.WriteString("]")
	return b.Bytes()
}

var decPayloads = []struct {
	name string
	data []byte
}{
	{"empty", nil},
	{"one byte", []byte{'x'}},
	{"1MiB random", decRandom(1<<20, 1)},
	{"text", decJSON(200 << 10)},
}

func TestDecompressRoundTrip(t *testing.T) {
	for _, c := range decCodecs {
		for _, p := range decPayloads {
			compressed := c.encode(t, p.data)
			t.Run(c.name+"/"+p.name+"/fixed", func(t *testing.T) {
				spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = c.encoding })
				// A fixed encoding decodes whatever the header says.
				out, err := decRun(t, spec, decMessage(), bytes.NewReader(compressed))
				if err != nil {
					t.Fatalf("Transform: %v", err)
				}
				if !bytes.Equal(out, p.data) {
					t.Fatalf("decoded %d bytes, want the %d bytes encoded", len(out), len(p.data))
				}
			})
			t.Run(c.name+"/"+p.name+"/auto", func(t *testing.T) {
				spec := decSpec(t, nil)
				out, err := decRun(t, spec, decMessage(c.header), bytes.NewReader(compressed))
				if err != nil {
					t.Fatalf("Transform: %v", err)
				}
				if !bytes.Equal(out, p.data) {
					t.Fatalf("decoded %d bytes, want the %d bytes encoded", len(out), len(p.data))
				}
			})
		}
	}
}

func TestDecompressEmptyBody(t *testing.T) {
	// An empty body carries nothing to decode, whatever its content-encoding says.
	for _, c := range decCodecs {
		spec := decSpec(t, nil)
		out, err := decRun(t, spec, decMessage(c.header), bytes.NewReader(nil))
		if err != nil || len(out) != 0 {
			t.Errorf("%s: empty body gave %d bytes, %v; want nothing, nil", c.name, len(out), err)
		}
	}
}

func TestDecompressPlan(t *testing.T) {
	text := []byte("hello, decompress")
	tests := []struct {
		name     string
		encoding string   // spec option; "" keeps auto
		headers  []string // content-encoding values
		input    []byte
		pass     bool // Plan returns an empty step
		wantErr  error
	}{
		{name: "gzip", headers: []string{"gzip"}, input: decGzip(t, text)},
		{name: "x-gzip", headers: []string{"x-gzip"}, input: decGzip(t, text)},
		{name: "upper case", headers: []string{"GZIP"}, input: decGzip(t, text)},
		{name: "padded", headers: []string{" Zstd "}, input: decZstd(t, text)},
		{name: "deflate", headers: []string{"Deflate"}, input: decZlib(t, text)},
		{name: "no header", pass: true},
		{name: "empty header", headers: []string{""}, pass: true},
		{name: "identity", headers: []string{"identity"}, pass: true},
		{name: "brotli", headers: []string{"br"}, input: decBrotli(t, text)},
		{name: "brotli upper case", headers: []string{" BR"}, input: decBrotli(t, text)},
		{name: "brotli spelled out", headers: []string{"brotli"}, wantErr: stage.ErrUnsupportedEncoding},
		{name: "list", headers: []string{"gzip, br"}, wantErr: stage.ErrUnsupportedEncoding},
		{name: "two lines", headers: []string{"gzip", "br"}, wantErr: stage.ErrUnsupportedEncoding},
		{name: "compress", headers: []string{"compress"}, wantErr: stage.ErrUnsupportedEncoding},
		{name: "fixed ignores header", encoding: "gzip", headers: []string{"br"}, input: decGzip(t, text)},
		{name: "fixed brotli", encoding: "br", headers: []string{"gzip"}, input: decBrotli(t, text)},
		{name: "fixed without header", encoding: "zstd", input: decZstd(t, text)},
		{name: "fixed despite identity", encoding: "deflate", headers: []string{"identity"}, input: decFlate(t, text)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := decSpec(t, func(d *stages.Decompress) {
				if tt.encoding != "" {
					d.Encoding = tt.encoding
				}
			})
			step, err := spec.Plan(decMessage(tt.headers...), nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Plan error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if tt.pass {
				if step.Transformer != nil || step.Observer != nil || step.Edit != (stage.HeaderEdit{}) {
					t.Fatalf("Plan = %+v, want an empty step", step)
				}
				return
			}
			if step.Edit.ContentEncoding == nil || *step.Edit.ContentEncoding != "" || !step.Edit.ChangesLength {
				t.Errorf("Edit = %+v, want content-encoding removed and length changed", step.Edit)
			}
			var out bytes.Buffer
			if err := step.Transformer.Transform(&out, bytes.NewReader(tt.input)); err != nil {
				t.Fatalf("Transform: %v", err)
			}
			if !bytes.Equal(out.Bytes(), text) {
				t.Fatalf("decoded %q, want %q", out.Bytes(), text)
			}
		})
	}
}

func TestDecompressPlanNilHeader(t *testing.T) {
	spec := decSpec(t, nil)
	for _, m := range []*stage.Message{nil, {Direction: stage.Request}} {
		step, err := spec.Plan(m, nil)
		if err != nil || step.Transformer != nil {
			t.Errorf("Plan(%v) = %+v, %v; want an empty step", m, step, err)
		}
	}
}

func TestDecompressBuild(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*stages.Decompress)
		wantErr string // prefix; "" for valid
	}{
		{"defaults", func(*stages.Decompress) {}, ""},
		{"empty encoding is auto", func(d *stages.Decompress) { d.Encoding = "" }, ""},
		{"encoding upper case", func(d *stages.Decompress) { d.Encoding = "GZIP" }, ""},
		{"encoding unknown", func(d *stages.Decompress) { d.Encoding = "compress" }, "encoding: "},
		{"encoding brotli", func(d *stages.Decompress) { d.Encoding = "BR" }, ""},
		{"max_brotli_window_bytes small", func(d *stages.Decompress) { d.MaxBrotliWindowBytes = 1023 }, "max_brotli_window_bytes: "},
		{"max_brotli_window_bytes minimum", func(d *stages.Decompress) { d.MaxBrotliWindowBytes = 1024 }, ""},
		{"max_brotli_window_bytes over RFC 7932", func(d *stages.Decompress) { d.MaxBrotliWindowBytes = 16<<20 + 1 }, "max_brotli_window_bytes: "},
		{"max_output_bytes zero", func(d *stages.Decompress) { d.MaxOutputBytes = 0 }, "max_output_bytes: "},
		{"max_output_bytes negative", func(d *stages.Decompress) { d.MaxOutputBytes = -1 }, "max_output_bytes: "},
		{"max_ratio zero", func(d *stages.Decompress) { d.MaxRatio = 0 }, "max_ratio: must be at least 1, got 0"},
		{"max_ratio one", func(d *stages.Decompress) { d.MaxRatio = 1 }, ""},
		{"max_window_bytes small", func(d *stages.Decompress) { d.MaxWindowBytes = 1023 }, "max_window_bytes: "},
		{"max_window_bytes minimum", func(d *stages.Decompress) { d.MaxWindowBytes = 1024 }, ""},
		{"max_window_bytes over RFC 9659", func(d *stages.Decompress) { d.MaxWindowBytes = 8<<20 + 1 }, "max_window_bytes: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildKind("decompress", tt.edit)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Build error = %v, want one starting with %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecompressDefaults(t *testing.T) {
	// The options a step without any decodes into are the defaults.
	d := decSpec(t, nil)
	if d.Name() != "decompress" || d.PreviewSize(nil) != 0 {
		t.Errorf("Name, PreviewSize = %q, %d", d.Name(), d.PreviewSize(nil))
	}
	want := stages.Decompress{Encoding: "auto", MaxOutputBytes: 1 << 30, MaxRatio: 100, MaxWindowBytes: 8 << 20,
		MaxBrotliWindowBytes: 16 << 20}
	if d.options != want {
		t.Errorf("defaults = %+v, want %+v", d.options, want)
	}
}

// decFeed writes data into a pipe in the pieces that sizes yields and returns the
// pipe's reader, so that the stage sees the body arrive as a stream would.
func decFeed(t testing.TB, data []byte, next func(remaining int) int) io.Reader {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(data) > 0 {
			n := min(next(len(data)), len(data))
			if _, err := pw.Write(data[:n]); err != nil {
				return // the reader gave up; its error is the test's concern
			}
			data = data[n:]
		}
		pw.Close()
	}()
	t.Cleanup(func() {
		pr.Close()
		<-done
	})
	return pr
}

func TestDecompressChunking(t *testing.T) {
	data := decJSON(64 << 10)
	patterns := []struct {
		name string
		next func() func(int) int
	}{
		{"whole", func() func(int) int { return func(r int) int { return r } }},
		{"one byte", func() func(int) int { return func(int) int { return 1 } }},
		{"random", func() func(int) int {
			r := rand.New(rand.NewPCG(7, 11))
			return func(int) int { return 1 + r.IntN(3000) }
		}},
	}
	for _, c := range decCodecs {
		compressed := c.encode(t, data)
		if c.encoding == "gzip" || c.encoding == "zstd" {
			// Two gzip members or zstd frames in a row must decode the same in pieces;
			// brotli and deflate streams end by themselves.
			compressed = append(c.encode(t, data[:1000]), c.encode(t, data[1000:])...)
		}
		for _, p := range patterns {
			t.Run(c.name+"/"+p.name, func(t *testing.T) {
				spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = c.encoding })
				out, err := decRun(t, spec, nil, decFeed(t, compressed, p.next()))
				if err != nil {
					t.Fatalf("Transform: %v", err)
				}
				if !bytes.Equal(out, data) {
					t.Fatalf("decoded %d bytes, want the %d bytes encoded", len(out), len(data))
				}
			})
		}
	}
}

// decCountingReader counts what the stage reads.
type decCountingReader struct {
	r io.Reader
	n int64
}

func (c *decCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decCountingWriter counts what the stage writes and keeps none of it.
type decCountingWriter struct{ n int64 }

func (c *decCountingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// decZeroBomb is the gzip of 200 MiB of zeros, built by streaming zeros into the
// encoder so that the test never holds the decoded form. BestSpeed compresses zeros
// about as well as BestCompression (207 against 203 KiB) in a tenth of the time.
var decZeroBomb = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if err != nil {
		panic(err)
	}
	zeros := make([]byte, 64<<10)
	for range (200 << 20) / len(zeros) {
		if _, err := w.Write(zeros); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
})

// decBrotliBomb is the brotli of 32 MiB of zeros: a few hundred bytes, a ratio far
// past gzip's 1000:1.
var decBrotliBomb = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	w := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 1, LGWin: 22})
	zeros := make([]byte, 64<<10)
	for range (32 << 20) / len(zeros) {
		if _, err := w.Write(zeros); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
})

func TestDecompressBombByRatio(t *testing.T) {
	for _, tt := range []struct {
		encoding string
		bomb     []byte
		// readAll: the whole bomb fits in the decoder's first read (brotli reads 32
		// KiB at a time), so the stage cannot stop before reading it.
		readAll bool
	}{
		{"gzip", decZeroBomb(), false},
		{"br", decBrotliBomb(), true},
	} {
		t.Run(tt.encoding, func(t *testing.T) {
			t.Logf("bomb: %d bytes", len(tt.bomb))
			spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = tt.encoding })
			step, err := spec.Plan(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			src := &decCountingReader{r: bytes.NewReader(tt.bomb)}
			var dst decCountingWriter
			err = step.Transformer.Transform(&dst, src)
			if !errors.Is(err, stage.ErrBodyTooLarge) {
				t.Fatalf("Transform error = %v, want ErrBodyTooLarge", err)
			}
			if !strings.Contains(err.Error(), "max_ratio") {
				t.Errorf("error %q does not name max_ratio", err)
			}
			// Detected while streaming: the stage stopped early in the input, and wrote
			// no more than the ratio allows for what it had read, give or take one
			// buffer.
			if !tt.readAll && src.n >= int64(len(tt.bomb)) {
				t.Errorf("stage read all %d compressed bytes before failing", src.n)
			}
			if limit := spec.options.MaxRatio*src.n + decRatioAllowance + decCopyBuffer; dst.n > limit {
				t.Errorf("stage wrote %d bytes after reading %d, more than %d", dst.n, src.n, limit)
			}
			t.Logf("stopped after reading %d and writing %d bytes", src.n, dst.n)
		})
	}
}

func TestDecompressBombByOutput(t *testing.T) {
	data := decJSON(512 << 10)
	for _, c := range decCodecs {
		t.Run(c.name, func(t *testing.T) {
			spec := decSpec(t, func(d *stages.Decompress) {
				d.Encoding = c.encoding
				d.MaxOutputBytes = 256 << 10
			})
			step, err := spec.Plan(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var dst decCountingWriter
			err = step.Transformer.Transform(&dst, bytes.NewReader(c.encode(t, data)))
			if !errors.Is(err, stage.ErrBodyTooLarge) {
				t.Fatalf("Transform error = %v, want ErrBodyTooLarge", err)
			}
			if !strings.Contains(err.Error(), "max_output_bytes") {
				t.Errorf("error %q does not name max_output_bytes", err)
			}
			if dst.n > spec.options.MaxOutputBytes {
				t.Errorf("stage wrote %d bytes, more than max_output_bytes %d", dst.n, spec.options.MaxOutputBytes)
			}
		})
	}
}

func TestDecompressOutputAtLimit(t *testing.T) {
	data := decJSON(1 << 20)
	spec := decSpec(t, func(d *stages.Decompress) {
		d.Encoding = "zstd"
		d.MaxOutputBytes = int64(len(data))
	})
	out, err := decRun(t, spec, nil, bytes.NewReader(decZstd(t, data)))
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("body of exactly max_output_bytes: %d bytes, %v", len(out), err)
	}
}

func TestDecompressZstdWindow(t *testing.T) {
	data := decRandom(2<<20, 3)
	data = append(data, data...) // a match 2 MiB back, so a large window is used

	wide := decZstd(t, data, zstd.WithWindowSize(16<<20))
	var h zstd.Header
	if err := h.Decode(wide); err != nil || h.WindowSize != 16<<20 {
		t.Fatalf("test frame header: window %d, %v; want 16 MiB", h.WindowSize, err)
	}
	spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = "zstd" })
	if _, err := decRun(t, spec, nil, bytes.NewReader(wide)); !errors.Is(err, stage.ErrBodyTooLarge) {
		t.Fatalf("16 MiB window: error = %v, want ErrBodyTooLarge", err)
	}

	// A smaller limit refuses the default 8 MiB window and passes one that fits.
	small := decSpec(t, func(d *stages.Decompress) {
		d.Encoding = "zstd"
		d.MaxWindowBytes = 1 << 20
	})
	if _, err := decRun(t, small, nil, bytes.NewReader(decZstd(t, data, zstd.WithWindowSize(8<<20)))); !errors.Is(err, stage.ErrBodyTooLarge) {
		t.Fatalf("8 MiB window over a 1 MiB limit: error = %v, want ErrBodyTooLarge", err)
	}
	out, err := decRun(t, small, nil, bytes.NewReader(decZstd(t, data, zstd.WithWindowSize(1<<20))))
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("1 MiB window: %d bytes, %v", len(out), err)
	}
}

func TestDecompressCorrupt(t *testing.T) {
	text := decJSON(8 << 10)
	gz := decGzip(t, text)
	zs := decZstd(t, text)
	zl := decZlib(t, text)
	br := decBrotli(t, text)
	fl := decFlate(t, text)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 0x55
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name     string
		encoding string
		input    []byte
	}{
		{"gzip truncated in body", "gzip", gz[:len(gz)/2]},
		{"gzip truncated trailer", "gzip", gz[:len(gz)-4]},
		{"gzip truncated header", "gzip", gz[:5]},
		{"gzip flipped CRC", "gzip", flip(gz, -8)},
		{"gzip flipped size", "gzip", flip(gz, -1)},
		{"gzip garbage", "gzip", []byte("this is not gzip at all")},
		{"gzip trailing garbage", "gzip", cat(gz, []byte("garbage after the member"))},
		{"gzip trailing partial header", "gzip", cat(gz, []byte{0x1f, 0x8b})},
		{"zstd truncated", "zstd", zs[:len(zs)-3]},
		{"zstd truncated header", "zstd", zs[:3]},
		{"zstd flipped checksum", "zstd", flip(zs, -1)},
		{"zstd garbage", "zstd", []byte("this is not zstd at all")},
		{"zstd trailing garbage", "zstd", cat(zs, []byte("garbage after the frame"))},
		{"brotli truncated", "br", br[:len(br)/2]},
		{"brotli truncated end", "br", br[:len(br)-1]},
		{"brotli flipped byte", "br", flip(br, len(br)/2)},
		{"brotli garbage", "br", []byte("this is not brotli at all")},
		{"brotli trailing garbage", "br", cat(br, []byte("garbage after the stream"))},
		{"brotli two streams", "br", cat(br, br)},
		{"brotli large-window header", "br", []byte{0x11, 0x00, 0x00}},
		{"zlib flipped adler", "deflate", flip(zl, -1)},
		{"zlib truncated", "deflate", zl[:len(zl)-2]},
		{"zlib trailing garbage", "deflate", cat(zl, []byte("x"))},
		{"raw deflate truncated", "deflate", fl[:len(fl)/2]},
		{"raw deflate trailing garbage", "deflate", cat(fl, []byte("garbage"))},
		{"deflate garbage", "deflate", []byte{0xff, 0xff, 0xff, 0xff}},
		{"one byte", "deflate", []byte{0x78}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = tt.encoding })
			_, err := decRun(t, spec, nil, bytes.NewReader(tt.input))
			if !errors.Is(err, stage.ErrCorruptInput) {
				t.Fatalf("Transform error = %v, want ErrCorruptInput", err)
			}
			if errors.Is(err, stage.ErrBodyTooLarge) {
				t.Fatalf("Transform error %v is also ErrBodyTooLarge", err)
			}
		})
	}
}

func TestDecompressMultistreamGzip(t *testing.T) {
	// Concatenated gzip members are one body (RFC 1952 section 2.2).
	spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = "gzip" })
	input := append(decGzip(t, []byte("first,")), decGzip(t, []byte("second"))...)
	out, err := decRun(t, spec, nil, bytes.NewReader(input))
	if err != nil || string(out) != "first,second" {
		t.Fatalf("two members: %q, %v", out, err)
	}
}

// decFailingReader yields data and then fails with err.
type decFailingReader struct {
	data []byte
	err  error
}

func (r *decFailingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestDecompressSourceError(t *testing.T) {
	// A failing source is the producer's error, not corrupt input.
	errSource := errors.New("upstream stage failed")
	for _, c := range decCodecs {
		compressed := c.encode(t, decJSON(64<<10))
		for _, at := range []int{0, 1, len(compressed) / 2} {
			t.Run(fmt.Sprintf("%s/at %d", c.name, at), func(t *testing.T) {
				spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = c.encoding })
				_, err := decRun(t, spec, nil, &decFailingReader{data: compressed[:at], err: errSource})
				if !errors.Is(err, errSource) {
					t.Fatalf("Transform error = %v, want the source's", err)
				}
				if errors.Is(err, stage.ErrCorruptInput) {
					t.Fatalf("source error %v reported as corrupt input", err)
				}
			})
		}
	}
}

type decFailingWriter struct{ err error }

func (w decFailingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestDecompressWriteError(t *testing.T) {
	errSink := errors.New("downstream closed")
	for _, c := range decCodecs {
		spec := decSpec(t, func(d *stages.Decompress) { d.Encoding = c.encoding })
		step, err := spec.Plan(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = step.Transformer.Transform(decFailingWriter{errSink}, bytes.NewReader(c.encode(t, []byte("some text"))))
		if !errors.Is(err, errSink) {
			t.Errorf("%s: Transform error = %v, want the writer's", c.name, err)
		}
	}
}

func TestDecompressConcurrent(t *testing.T) {
	// Bodies decoded at the same time share pools, not state; the run mixes failures
	// in so that a reader put back after an error is reused.
	spec := decSpec(t, nil)
	data := decJSON(100 << 10)
	type body struct {
		codec   decCodec
		input   []byte
		corrupt bool
	}
	var bodies []body
	for _, c := range decCodecs {
		good := c.encode(t, data)
		bodies = append(bodies, body{c, good, false}, body{c, good[:len(good)-5], true})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(bodies))
	for g := range 4 {
		wg.Go(func() {
			for i := range 3 * len(bodies) {
				b := bodies[(i+g)%len(bodies)]
				step, err := spec.Plan(decMessage(b.codec.header), nil)
				if err != nil {
					errs <- err
					return
				}
				var out bytes.Buffer
				err = step.Transformer.Transform(&out, bytes.NewReader(b.input))
				switch {
				case b.corrupt && !errors.Is(err, stage.ErrCorruptInput):
					errs <- fmt.Errorf("%s truncated: error = %v, want ErrCorruptInput", b.codec.name, err)
				case !b.corrupt && (err != nil || !bytes.Equal(out.Bytes(), data)):
					errs <- fmt.Errorf("%s: %d bytes, %v", b.codec.name, out.Len(), err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func benchmarkDecompress(b *testing.B, encoding string, compressed []byte, size int) {
	spec := decSpec(b, func(d *stages.Decompress) { d.Encoding = encoding })
	step, err := spec.Plan(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if err := step.Transformer.Transform(io.Discard, bytes.NewReader(compressed)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecompressGzip(b *testing.B) {
	data := decJSON(4 << 20)
	benchmarkDecompress(b, "gzip", decGzip(b, data), len(data))
}

func BenchmarkDecompressZstd(b *testing.B) {
	data := decJSON(4 << 20)
	benchmarkDecompress(b, "zstd", decZstd(b, data), len(data))
}

// The brotli decoder allocates the window a stream declares: over the limit it is
// refused before any of it is decoded.
func TestDecompressBrotliWindow(t *testing.T) {
	data := decJSON(64 << 10)
	for _, tt := range []struct {
		bits  int
		limit int64
		ok    bool
	}{
		{24, 16 << 20, true},
		{24, 8 << 20, false},
		{22, 4 << 20, true}, // 2^22 - 16 bytes fit in 4 MiB
		{23, 4 << 20, false},
		{10, 1 << 10, true},
		{11, 1 << 10, false},
	} {
		t.Run(fmt.Sprintf("bits %d limit %d", tt.bits, tt.limit), func(t *testing.T) {
			spec := decSpec(t, func(d *stages.Decompress) {
				d.Encoding = "br"
				d.MaxBrotliWindowBytes = tt.limit
			})
			compressed := decBrotliOptions(t, data, brotli.WriterOptions{Quality: 2, LGWin: tt.bits})
			out, err := decRun(t, spec, nil, bytes.NewReader(compressed))
			if tt.ok {
				if err != nil || !bytes.Equal(out, data) {
					t.Fatalf("%d bytes, %v; want the body", len(out), err)
				}
				return
			}
			if !errors.Is(err, stage.ErrBodyTooLarge) || !strings.Contains(err.Error(), "max_brotli_window_bytes") {
				t.Fatalf("error = %v, want ErrBodyTooLarge naming max_brotli_window_bytes", err)
			}
			if len(out) != 0 {
				t.Fatalf("wrote %d bytes before refusing the window", len(out))
			}
		})
	}
}

func TestDecompressMemoryEstimate(t *testing.T) {
	spec := decSpec(t, nil)
	est := spec.Spec.(stage.MemoryEstimator)
	brotliEst := est.MemoryEstimate(decMessage("br"))
	zstdEst := est.MemoryEstimate(decMessage("zstd"))
	gzipEst := est.MemoryEstimate(decMessage("gzip"))
	if brotliEst < 16<<20 || zstdEst < 8<<20 || gzipEst <= 0 {
		t.Errorf("estimates br %d, zstd %d, gzip %d: under the windows they may allocate", brotliEst, zstdEst, gzipEst)
	}
	if got := est.MemoryEstimate(decMessage()); got != 0 {
		t.Errorf("auto with no content-encoding: estimate %d, want 0", got)
	}
	if got := est.MemoryEstimate(nil); got < brotliEst {
		t.Errorf("auto before the headers: estimate %d, under brotli's %d", got, brotliEst)
	}
}

func BenchmarkDecompressBrotli(b *testing.B) {
	data := decJSON(4 << 20)
	benchmarkDecompress(b, "br", decBrotli(b, data), len(data))
}
