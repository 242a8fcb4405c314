package stages

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/textproto"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/stage"
)

// The tests in this file run for every compressor, gzip, zstd and brotli, whose stages
// share their shape; zstd_test.go and brotli_test.go hold what is particular to each.

type codec struct {
	name     string
	kind     string // the stage's kind and Name
	encoding string // the content-encoding it sets
	// build builds the codec's defaults with edit applied to their skip options.
	build  func(edit func(*SkipOptions)) (stage.Spec, error)
	decode func([]byte) ([]byte, error)
}

var codecs = []codec{
	{"gzip", "gzip", "gzip", func(edit func(*SkipOptions)) (stage.Spec, error) {
		g := newGzip()
		edit(&g.SkipOptions)
		return g.Build()
	}, gunzip},
	{"zstd", "zstd", "zstd", func(edit func(*SkipOptions)) (stage.Spec, error) {
		z := newZstd()
		edit(&z.SkipOptions)
		return z.Build()
	}, unzstd},
	{"brotli", "brotli", "br", func(edit func(*SkipOptions)) (stage.Spec, error) {
		b := newBrotli()
		edit(&b.SkipOptions)
		return b.Build()
	}, unbrotli},
	// Parallel compression, in blocks small enough that the inputs span several.
	{"gzip-concurrency-3", "gzip", "gzip", func(edit func(*SkipOptions)) (stage.Spec, error) {
		g := newGzip()
		g.Concurrency = 3
		edit(&g.SkipOptions)
		return g.Build()
	}, gunzip},
	{"zstd-concurrency-3", "zstd", "zstd", func(edit func(*SkipOptions)) (stage.Spec, error) {
		z := newZstd()
		z.Concurrency, z.Window = 3, 32<<10 // sections of 512 KiB
		edit(&z.SkipOptions)
		return z.Build()
	}, unzstd},
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(zr)
}

func unbrotli(b []byte) ([]byte, error) {
	return io.ReadAll(brotli.NewReader(bytes.NewReader(b)))
}

func unzstd(b []byte) ([]byte, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	return dec.DecodeAll(b, nil)
}

// codecSpec returns the codec's built default spec, with edit (if any) applied to its
// skip options first.
func codecSpec(t testing.TB, c codec, edit func(*SkipOptions)) stage.Spec {
	t.Helper()
	if edit == nil {
		edit = func(*SkipOptions) {}
	}
	spec, err := c.build(edit)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return spec
}

// codecStage plans spec for a message with no headers and no preview, which no
// compressor skips.
func codecStage(t testing.TB, spec stage.Spec) stage.Transformer {
	t.Helper()
	step, err := spec.Plan(&stage.Message{Header: textproto.MIMEHeader{}}, nil)
	if err != nil || step.Transformer == nil {
		t.Fatalf("Plan = %+v, %v; want a stage", step, err)
	}
	return step.Transformer
}

func codecRandom(n int, seed byte) []byte {
	b := make([]byte, n)
	var key [32]byte
	key[0] = seed
	rand.NewChaCha8(key).Read(b)
	return b
}

// codecJSON returns n bytes of JSON-like text that compresses about as well as an API
// response does.
func codecJSON(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"user-%d","email":"u%d@example.com","active":%t,"score":%d.%d},`,
			i, i*7919%10007, i, i%3 == 0, i*31%97, i%10)
	}
	return b.Bytes()[:n]
}

func TestCompressRoundTrip(t *testing.T) {
	inputs := []struct {
		name     string
		data     []byte
		maxRatio float64 // largest acceptable output/input size
	}{
		{"empty", nil, 0},
		{"one byte", []byte{'x'}, 0},
		{"random 1 MiB", codecRandom(1<<20, 1), 1.01},
		{"JSON 256 KiB", codecJSON(256 << 10), 0.25},
		{"JSON 1.5 MiB", codecJSON(3 << 19), 0.25},
		{"text", bytes.Repeat([]byte("It was the best of times, it was the worst of times. "), 2000), 0.05},
	}
	for _, c := range codecs {
		spec := codecSpec(t, c, nil)
		for _, in := range inputs {
			t.Run(c.name+"/"+in.name, func(t *testing.T) {
				var out bytes.Buffer
				if err := codecStage(t, spec).Transform(&out, bytes.NewReader(in.data)); err != nil {
					t.Fatalf("Transform: %v", err)
				}
				got, err := c.decode(out.Bytes())
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if !bytes.Equal(got, in.data) {
					t.Fatalf("decoded %d bytes that differ from the %d bytes put in", len(got), len(in.data))
				}
				if ratio := float64(out.Len()) / float64(len(in.data)); in.maxRatio > 0 && ratio > in.maxRatio {
					t.Errorf("%d bytes compressed to %d, ratio %.3f > %.3f", len(in.data), out.Len(), ratio, in.maxRatio)
				}
			})
		}
	}
}

func TestCompressEdit(t *testing.T) {
	for _, c := range codecs {
		spec := codecSpec(t, c, nil)
		step, err := spec.Plan(&stage.Message{}, codecJSON(100))
		if err != nil {
			t.Fatal(err)
		}
		if e := step.Edit; e.ContentEncoding == nil || *e.ContentEncoding != c.encoding || !e.ChangesLength || step.Observer != nil {
			t.Errorf("%s: Plan = %+v, want a stage setting content-encoding %s and changing the length", c.name, step, c.encoding)
		}
		if spec.Name() != c.kind {
			t.Errorf("Name() = %q, want %q", spec.Name(), c.kind)
		}
	}
}

// codecFeed returns a reader that yields data through an io.Pipe, in the writes that
// next cuts, and a function that ends the writer and waits for it.
func codecFeed(data []byte, next func(remaining int) int) (io.Reader, func()) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(data) > 0 {
			n := next(len(data))
			if _, err := pw.Write(data[:n]); err != nil {
				return
			}
			data = data[n:]
		}
		pw.Close()
	}()
	return pr, func() {
		pr.Close()
		<-done
	}
}

func TestCompressChunking(t *testing.T) {
	// Long enough for the parallel codecs to cut it into several blocks or sections.
	mixed := append(codecJSON(400<<10), codecRandom(300<<10, 2)...)
	patterns := []struct {
		name string
		data []byte
		next func(rng *rand.Rand) func(int) int
	}{
		{"one piece", mixed, func(*rand.Rand) func(int) int { return func(n int) int { return n } }},
		{"one byte at a time", codecJSON(20 << 10), func(*rand.Rand) func(int) int { return func(int) int { return 1 } }},
		{"random pieces", mixed, func(rng *rand.Rand) func(int) int {
			return func(n int) int { return 1 + rng.IntN(min(n, 70<<10)) }
		}},
		{"small random pieces", mixed, func(rng *rand.Rand) func(int) int {
			return func(n int) int { return 1 + rng.IntN(min(n, 100)) }
		}},
	}
	for _, c := range codecs {
		spec := codecSpec(t, c, nil)
		for _, p := range patterns {
			t.Run(c.name+"/"+p.name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(3, 4))
				src, wait := codecFeed(p.data, p.next(rng))
				var out bytes.Buffer
				err := codecStage(t, spec).Transform(&out, src)
				wait()
				if err != nil {
					t.Fatalf("Transform: %v", err)
				}
				got, err := c.decode(out.Bytes())
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if !bytes.Equal(got, p.data) {
					t.Fatalf("decoded %d bytes that differ from the %d bytes put in", len(got), len(p.data))
				}
			})
		}
	}
}

// Text over a small alphabet has no matches for the fast levels to find but codes in
// fewer bits a byte: every compressor shrinks it as zlib and libzstd do, rather than
// store it.
func TestCompressSmallAlphabet(t *testing.T) {
	raw := codecRandom(150_000, 8)
	inputs := []struct {
		name     string
		data     []byte
		maxRatio float64
	}{
		// The case: 200,000 bytes of base64 left gzip level 1 at 200,040.
		{"base64", []byte(base64.StdEncoding.EncodeToString(raw))[:200_000], 0.76},
		{"hex", []byte(hex.EncodeToString(raw))[:200_000], 0.52},
		{"data URI in JSON", fmt.Appendf(nil, `{"name":"a.bin","data":"data:application/octet-stream;base64,%s"}`,
			base64.StdEncoding.EncodeToString(raw)), 0.76},
		// Compressible text keeps the level's matches.
		{"JSON", codecJSON(200_000), 0.25},
	}
	for _, c := range codecs {
		spec := codecSpec(t, c, nil)
		for _, in := range inputs {
			t.Run(c.name+"/"+in.name, func(t *testing.T) {
				m := &stage.Message{Header: textproto.MIMEHeader{}}
				preview := in.data[:min(len(in.data), spec.PreviewSize(m))]
				step, err := spec.Plan(m, preview)
				if err != nil || step.Transformer == nil {
					t.Fatalf("Plan = %+v, %v; want a stage", step, err)
				}
				var out bytes.Buffer
				if err := step.Transformer.Transform(&out, bytes.NewReader(in.data)); err != nil {
					t.Fatal(err)
				}
				if got, err := c.decode(out.Bytes()); err != nil || !bytes.Equal(got, in.data) {
					t.Fatalf("decode error %v, equal %v", err, bytes.Equal(got, in.data))
				}
				if ratio := float64(out.Len()) / float64(len(in.data)); ratio > in.maxRatio {
					t.Errorf("%d bytes compressed to %d, ratio %.3f > %.3f", len(in.data), out.Len(), ratio, in.maxRatio)
				}
			})
		}
	}
}

// Levels 7 to 9 do not store blocks without matches, and need no trial: with or
// without it, every level shrinks base64.
func TestGzipLevelsSmallAlphabet(t *testing.T) {
	data := []byte(base64.StdEncoding.EncodeToString(codecRandom(30_000, 9)))
	for level := gzip.BestSpeed; level <= gzip.BestCompression; level++ {
		spec := built(t, newGzip(), func(g *Gzip) { g.Level = level })
		step, err := spec.Plan(&stage.Message{}, data[:8<<10])
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := step.Transformer.Transform(&out, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if ratio := float64(out.Len()) / float64(len(data)); ratio > 0.76 {
			t.Errorf("level %d: ratio %.3f", level, ratio)
		}
	}
}

type codecFailingWriter struct{ err error }

func (w codecFailingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestCompressErrors(t *testing.T) {
	errIn := errors.New("stream reset")
	errOut := errors.New("client gone")
	data := codecRandom(300<<10, 5)
	for _, c := range codecs {
		spec := codecSpec(t, c, nil)
		t.Run(c.name, func(t *testing.T) {
			src := io.MultiReader(bytes.NewReader(data), iotestErrReader{errIn})
			if err := codecStage(t, spec).Transform(io.Discard, src); !errors.Is(err, errIn) {
				t.Errorf("input error: Transform returned %v, want %v", err, errIn)
			}
			if err := codecStage(t, spec).Transform(codecFailingWriter{errOut}, bytes.NewReader(data)); !errors.Is(err, errOut) {
				t.Errorf("output error: Transform returned %v, want %v", err, errOut)
			}
			// The pooled coder that failed is reset for the next body.
			var out bytes.Buffer
			if err := codecStage(t, spec).Transform(&out, bytes.NewReader(data)); err != nil {
				t.Fatalf("Transform after failures: %v", err)
			}
			if got, err := c.decode(out.Bytes()); err != nil || !bytes.Equal(got, data) {
				t.Errorf("after failures: decode error %v, equal %v", err, bytes.Equal(got, data))
			}
		})
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestGzipBuild(t *testing.T) {
	tests := []struct {
		level int
		want  string
	}{
		{1, ""},
		{9, ""},
		{0, "level: must be between 1 and 9, got 0"},
		{12, "level: must be between 1 and 9, got 12"},
		{-2, "level: must be between 1 and 9, got -2"},
	}
	for _, tt := range tests {
		g := newGzip()
		g.Level = tt.level
		_, err := g.Build()
		if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
			t.Errorf("level %d: Build() = %v, want %q", tt.level, err, tt.want)
		}
	}
}

func TestCompressConcurrencyBuild(t *testing.T) {
	for _, tt := range []struct {
		concurrency int
		want        string
	}{
		{1, ""},
		{64, ""},
		{0, "concurrency: must be between 1 and 64, got 0"},
		{65, "concurrency: must be between 1 and 64, got 65"},
	} {
		g := newGzip()
		g.Concurrency = tt.concurrency
		_, gerr := g.Build()
		z := newZstd()
		z.Concurrency = tt.concurrency
		_, zerr := z.Build()
		for _, err := range []error{gerr, zerr} {
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
				t.Errorf("concurrency %d: Build() = %v, want %q", tt.concurrency, err, tt.want)
			}
		}
	}
}

// Parallel gzip writes one member, which a decoder that stops after the first member
// reads whole: blocks are not separate gzip streams.
func TestGzipConcurrencyOneMember(t *testing.T) {
	data := codecJSON(1 << 20) // four blocks
	spec := built(t, newGzip(), func(g *Gzip) { g.Concurrency = 3 })
	var out bytes.Buffer
	if err := codecStage(t, spec).Transform(&out, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	src := bytes.NewReader(out.Bytes())
	zr, err := gzip.NewReader(src)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first member: %d bytes, %v; want the whole body", len(got), err)
	}
	if src.Len() != 0 {
		t.Errorf("%d bytes after the first member", src.Len())
	}
}

func benchmarkCompress(b *testing.B, spec stage.Spec) {
	inputs := []struct {
		name string
		data []byte
	}{
		{"json", codecJSON(1 << 20)},
		{"random", codecRandom(1<<20, 6)},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			stage := codecStage(b, spec)
			src := bytes.NewReader(in.data)
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(in.data)
				if err := stage.Transform(io.Discard, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGzip(b *testing.B) { benchmarkCompress(b, built(b, newGzip(), nil)) }
