package stages

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestZstdBuild(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Zstd)
		want   string // error; "" for none
		wantLv string // Level of the built spec
	}{
		{"defaults", func(*Zstd) {}, "", "fastest"},
		{"level in capitals", func(z *Zstd) { z.Level = "Best" }, "", "best"},
		{"unknown level", func(z *Zstd) { z.Level = "max" }, `level: must be one of fastest, default, better, best, got "max"`, ""},
		{"smallest window", func(z *Zstd) { z.Window = 1 << 10 }, "", "fastest"},
		{"largest window", func(z *Zstd) { z.Window = 8 << 20 }, "", "fastest"},
		{"window under 1 KiB", func(z *Zstd) { z.Window = 512 }, "window: must be a power of two between 1024 and 8388608, got 512", ""},
		{"window over 8 MiB", func(z *Zstd) { z.Window = 16 << 20 }, "window: must be a power of two between 1024 and 8388608, got 16777216", ""},
		{"window not a power of two", func(z *Zstd) { z.Window = 3000 }, "window: must be a power of two between 1024 and 8388608, got 3000", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := newZstd()
			tt.edit(&z)
			spec, err := z.Build()
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
				t.Fatalf("Build() = %v, want %q", err, tt.want)
			}
			if err == nil && spec.(*zstdPlanner).Level != tt.wantLv {
				t.Errorf("built Level = %q, want %q", spec.(*zstdPlanner).Level, tt.wantLv)
			}
		})
	}
}

// The window is what every decoder of the output must hold: the frame must not ask for
// more than the configured one.
func TestZstdWindowBoundsFrame(t *testing.T) {
	data := append(codecRandom(1<<20, 7), codecJSON(1<<20)...)
	for _, window := range []int{1 << 10, 64 << 10, 1 << 20} {
		spec := built(t, newZstd(), func(z *Zstd) { z.Window = window })
		var out bytes.Buffer
		if err := codecStage(t, spec).Transform(&out, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		var h zstd.Header
		if err := h.Decode(out.Bytes()); err != nil {
			t.Fatal(err)
		}
		if h.WindowSize == 0 || h.WindowSize > uint64(window) {
			t.Errorf("window %d: frame asks for a %d-byte window", window, h.WindowSize)
		}
		if got, err := unzstd(out.Bytes()); err != nil || !bytes.Equal(got, data) {
			t.Errorf("window %d: decode error %v, equal %v", window, err, bytes.Equal(got, data))
		}
	}
}

func BenchmarkZstd(b *testing.B) { benchmarkCompress(b, built(b, newZstd(), nil)) }
