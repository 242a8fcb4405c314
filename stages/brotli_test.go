package stages

import (
	"bytes"
	"fmt"
	"testing"
)

func TestBrotliBuild(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Brotli)
		want string // error; "" for none
	}{
		{"defaults", func(*Brotli) {}, ""},
		{"fastest", func(b *Brotli) { b.Quality = 0 }, ""},
		{"smallest", func(b *Brotli) { b.Quality = 11 }, ""},
		{"quality under 0", func(b *Brotli) { b.Quality = -1 }, "quality: must be between 0 and 11, got -1"},
		{"quality over 11", func(b *Brotli) { b.Quality = 12 }, "quality: must be between 0 and 11, got 12"},
		{"smallest window", func(b *Brotli) { b.WindowBits = 10 }, ""},
		{"largest window", func(b *Brotli) { b.WindowBits = 24 }, ""},
		{"window under 10 bits", func(b *Brotli) { b.WindowBits = 9 }, "window_bits: must be between 10 and 24, got 9"},
		{"large-window extension", func(b *Brotli) { b.WindowBits = 30 }, "window_bits: must be between 10 and 24, got 30"},
		{"bad skip type", func(b *Brotli) { b.SkipContentTypes = []string{"nonsense"} }, "skip_content_types: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrotli()
			tt.edit(&b)
			_, err := b.Build()
			got := fmt.Sprint(err)
			if (tt.want == "" && err != nil) || (tt.want != "" && (err == nil || got[:min(len(got), len(tt.want))] != tt.want)) {
				t.Fatalf("Build() = %v, want %q", err, tt.want)
			}
		})
	}
}

// The stream declares the configured window, which is what every decoder of the
// output allocates.
func TestBrotliWindowInStream(t *testing.T) {
	data := append(codecJSON(16<<10), codecRandom(16<<10, 9)...)
	for bits := minBrotliWindowBits; bits <= maxBrotliWindowBits; bits++ {
		spec := built(t, newBrotli(), func(b *Brotli) { b.WindowBits = bits; b.Quality = 2 })
		var out bytes.Buffer
		if err := codecStage(t, spec).Transform(&out, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if got, ok := brotliWindowBits(out.Bytes()[0]); !ok || got != bits {
			t.Errorf("window_bits %d: stream declares %d (ok %v)", bits, got, ok)
		}
		if got, err := unbrotli(out.Bytes()); err != nil || !bytes.Equal(got, data) {
			t.Errorf("window_bits %d: decode error %v, equal %v", bits, err, bytes.Equal(got, data))
		}
	}
}

func TestBrotliWindowBits(t *testing.T) {
	// RFC 7932 section 9.1, the bit patterns written most significant first.
	patterns := map[string]int{
		"0100001": 10, "0110001": 11, "1000001": 12, "1010001": 13, "1100001": 14, "1110001": 15,
		"0": 16, "0000001": 17, "0011": 18, "0101": 19, "0111": 20, "1001": 21, "1011": 22, "1101": 23, "1111": 24,
	}
	for pattern, want := range patterns {
		var b byte
		for _, c := range pattern {
			b = b<<1 | byte(c-'0')
		}
		// The bits after the pattern belong to the first meta-block: any value.
		for high := range 1 << (8 - len(pattern)) {
			first := b | byte(high<<len(pattern))
			if got, ok := brotliWindowBits(first); !ok || got != want {
				t.Errorf("first byte %08b: window bits %d (ok %v), want %d", first, got, ok, want)
			}
		}
	}
	if _, ok := brotliWindowBits(0b0010001); ok {
		t.Error("the large-window marker 0010001 is accepted")
	}
}

// The estimate counts at least what a writer held when measured (see
// brotliEncoderState), for every quality class at the windows measured.
func TestBrotliMemoryEstimate(t *testing.T) {
	measured := []struct {
		quality, bits int
		kib           int64
	}{
		{0, 24, 401}, {1, 24, 977}, {3, 18, 1369}, {3, 22, 9049}, {3, 24, 33625},
		{6, 18, 4317}, {6, 22, 16566}, {6, 24, 47604}, {9, 18, 37979}, {9, 24, 78680},
		{11, 18, 7360}, {11, 20, 15356},
	}
	for _, m := range measured {
		spec := built(t, newBrotli(), func(b *Brotli) { b.Quality, b.WindowBits = m.quality, m.bits })
		if got := spec.(*brotliPlanner).MemoryEstimate(nil); got < m.kib<<10 {
			t.Errorf("quality %d, window bits %d: estimate %d KiB under the %d KiB measured", m.quality, m.bits, got>>10, m.kib)
		}
	}
}

func BenchmarkBrotli(b *testing.B) { benchmarkCompress(b, built(b, newBrotli(), nil)) }
