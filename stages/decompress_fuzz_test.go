package stages_test

import (
	"bytes"
	stdflate "compress/flate"
	stdgzip "compress/gzip"
	stdzlib "compress/zlib"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/bodystream/bodystream/stage"
	"github.com/bodystream/bodystream/stages"
)

// Limits for fuzzing: small enough that inputs of a few KiB reach them. An input of
// even length runs under a tight max_output_bytes, an odd one under a tight max_ratio,
// so that the fuzzer reaches both.
const (
	fuzzMaxOutput = 2 << 20
	fuzzTightOut  = 256 << 10
	fuzzMaxRatio  = 2
)

// fuzzDecompress runs the decompress stage with the given fixed encoding over data and
// checks it against reference, a decoder written independently of the stage's (the
// standard library's where there is one) that returns at most limit bytes.
func fuzzDecompress(t *testing.T, spec, tight decBuilt, data []byte,
	reference func(data []byte, limit int64) ([]byte, error)) {
	if len(data)%2 == 0 {
		spec = tight
	}
	step, err := spec.Plan(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = step.Transformer.Transform(&out, bytes.NewReader(data))

	corrupt := errors.Is(err, stage.ErrCorruptInput)
	tooLarge := errors.Is(err, stage.ErrBodyTooLarge)
	if err != nil && corrupt == tooLarge {
		t.Fatalf("error %v is neither ErrCorruptInput nor ErrBodyTooLarge (or both)", err)
	}
	if int64(out.Len()) > spec.options.MaxOutputBytes {
		t.Fatalf("wrote %d bytes, over max_output_bytes %d", out.Len(), spec.options.MaxOutputBytes)
	}
	if bound := spec.options.MaxRatio*int64(len(data)) + decRatioAllowance; int64(out.Len()) > bound {
		t.Fatalf("wrote %d bytes from %d, over the ratio bound %d", out.Len(), len(data), bound)
	}

	// The reference reads one byte past what the stage may write, to tell a body at
	// the limit from one over it.
	refLimit := spec.options.MaxOutputBytes + 1
	want, refErr := reference(data, refLimit)
	refCapped := int64(len(want)) >= refLimit
	switch {
	case err == nil:
		if refErr != nil {
			t.Fatalf("stage decoded %d bytes, reference failed: %v", out.Len(), refErr)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("stage decoded %d bytes, reference %d; they differ", out.Len(), len(want))
		}
	case corrupt:
		if refErr == nil && !refCapped {
			t.Fatalf("stage says corrupt (%v), reference decoded %d bytes", err, len(want))
		}
	case tooLarge:
		// What went out before the refusal is the start of the body.
		if len(want) >= out.Len() && !bytes.HasPrefix(want, out.Bytes()) {
			t.Fatalf("stage wrote %d bytes before refusing the body; they differ from the reference's", out.Len())
		}
	}
}

func fuzzSpecs(t testing.TB, encoding string) (spec, tight decBuilt) {
	spec = decSpec(t, func(d *stages.Decompress) {
		d.Encoding = encoding
		d.MaxOutputBytes = fuzzMaxOutput
		d.MaxRatio = fuzzMaxRatio
	})
	tight = decSpec(t, func(d *stages.Decompress) {
		d.Encoding = encoding
		d.MaxOutputBytes = fuzzTightOut
	})
	return spec, tight
}

// readLimited reads r to its end or to limit bytes, whichever comes first.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := io.Copy(&b, io.LimitReader(r, limit))
	return b.Bytes(), err
}

func FuzzDecompressGzip(f *testing.F) {
	text := decJSON(4 << 10)
	for _, seed := range [][]byte{nil, {'x'}, []byte("hello, world"), text} {
		f.Add(decGzip(f, seed))
	}
	f.Add(append(decGzip(f, []byte("one")), decGzip(f, []byte("two"))...))
	var withHeader bytes.Buffer
	w := gzip.NewWriter(&withHeader)
	w.Name, w.Comment, w.Extra = "body.json", "a comment", []byte("extra")
	_, _ = w.Write(text)
	_ = w.Close()
	f.Add(withHeader.Bytes())
	f.Add(decGzip(f, make([]byte, 3<<20))) // over both limits
	f.Add([]byte{0x1f, 0x8b})

	spec, tight := fuzzSpecs(f, "gzip")
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecompress(t, spec, tight, data, func(data []byte, limit int64) ([]byte, error) {
			if len(data) == 0 {
				return nil, nil
			}
			zr, err := stdgzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return nil, err
			}
			return readLimited(zr, limit)
		})
	})
}

func FuzzDecompressZstd(f *testing.F) {
	text := decJSON(4 << 10)
	for _, seed := range [][]byte{nil, {'x'}, []byte("hello, world"), text} {
		f.Add(decZstd(f, seed))
	}
	f.Add(append(decZstd(f, []byte("one")), decZstd(f, []byte("two"))...))
	f.Add(decZstd(f, text, zstd.WithEncoderCRC(false), zstd.WithWindowSize(1<<10)))
	// A skippable frame (magic 0x184D2A5?, little-endian size) before a frame.
	skippable := binary.LittleEndian.AppendUint32(nil, 0x184D2A50)
	skippable = binary.LittleEndian.AppendUint32(skippable, 3)
	f.Add(append(append(skippable, "abc"...), decZstd(f, []byte("after"))...))
	f.Add(decZstd(f, make([]byte, 3<<20)))

	spec, tight := fuzzSpecs(f, "zstd")
	// The reference is the asynchronous stream decoder (concurrency above 1), a code
	// path apart from the synchronous one the stage uses, under the same window limit.
	ref, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(2),
		zstd.WithDecoderMaxWindow(uint64(spec.options.MaxWindowBytes)))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(ref.Close)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecompress(t, spec, tight, data, func(data []byte, limit int64) ([]byte, error) {
			if err := ref.Reset(bytes.NewReader(data)); err != nil {
				return nil, err
			}
			return readLimited(ref, limit)
		})
	})
}

func FuzzDecompressDeflate(f *testing.F) {
	text := decJSON(4 << 10)
	for _, seed := range [][]byte{nil, {'x'}, []byte("hello, world"), text} {
		f.Add(decZlib(f, seed))
		f.Add(decFlate(f, seed))
	}
	for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, flate.BestCompression} {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, level)
		_, _ = w.Write(text)
		_ = w.Close()
		f.Add(b.Bytes())
	}
	f.Add(decZlib(f, make([]byte, 3<<20)))

	spec, tight := fuzzSpecs(f, "deflate")
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecompress(t, spec, tight, data, func(data []byte, limit int64) ([]byte, error) {
			if len(data) == 0 {
				return nil, nil
			}
			// Read from a bytes.Reader, the standard decoders stop at the end of the
			// stream, so what remains is trailing data.
			src := bytes.NewReader(data)
			var dec io.Reader
			if len(data) >= 2 && data[0]&0x0f == 8 && data[0]>>4 <= 7 && binary.BigEndian.Uint16(data)%31 == 0 {
				zr, err := stdzlib.NewReader(src)
				if err != nil {
					return nil, err
				}
				dec = zr
			} else {
				dec = stdflate.NewReader(src)
			}
			out, err := readLimited(dec, limit)
			if err == nil && int64(len(out)) < limit && src.Len() > 0 {
				err = errors.New("trailing data")
			}
			return out, err
		})
	})
}

// FuzzDecompressBrotli's seeds are the streams below and the files in
// testdata/fuzz/FuzzDecompressBrotli (streams from other windows and qualities,
// metadata and uncompressed meta-blocks).
func FuzzDecompressBrotli(f *testing.F) {
	text := decJSON(4 << 10)
	for _, seed := range [][]byte{nil, {'x'}, []byte("hello, world"), text} {
		f.Add(decBrotli(f, seed))
	}
	for _, o := range []brotli.WriterOptions{{Quality: 0, LGWin: 10}, {Quality: 11, LGWin: 24}} {
		f.Add(decBrotliOptions(f, text, o))
	}
	f.Add(decBrotliOptions(f, make([]byte, 3<<20), brotli.WriterOptions{Quality: 1, LGWin: 16}))

	spec, tight := fuzzSpecs(f, "br")
	f.Fuzz(func(t *testing.T, data []byte) {
		// The reference is the library's reader used directly: no window check, no
		// limits, no read-ahead in front of it.
		fuzzDecompress(t, spec, tight, data, func(data []byte, limit int64) ([]byte, error) {
			if len(data) == 0 {
				return nil, nil
			}
			return readLimited(brotli.NewReader(bytes.NewReader(data)), limit)
		})
	})
}
