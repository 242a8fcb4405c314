package harness

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"testing"
)

func TestBodySizesAndDeterminism(t *testing.T) {
	for _, kind := range []BodyKind{BodyRandom, BodyJSON} {
		for _, size := range []int64{0, 1, 2, 3, 7, 100, 1000, 64 << 10, 1<<20 + 13} {
			a := readBody(t, kind, size, 1)
			if int64(len(a)) != size {
				t.Errorf("%s %d: got %d bytes", kind, size, len(a))
				continue
			}
			if b := readBody(t, kind, size, 1); !bytes.Equal(a, b) {
				t.Errorf("%s %d: the same seed gave different bodies", kind, size)
			}
			if size >= 1000 { // shorter JSON bodies hold no record, only brackets and spaces
				if c := readBody(t, kind, size, 2); bytes.Equal(a, c) {
					t.Errorf("%s %d: different seeds gave the same body", kind, size)
				}
			}
			if kind == BodyJSON && size >= 2 && !json.Valid(a) {
				t.Errorf("json %d: not valid JSON: %q…%q", size, a[:min(len(a), 40)], a[max(0, len(a)-40):])
			}
		}
	}
}

func TestBodyHashesWhatItSent(t *testing.T) {
	b, err := NewBody(BodyJSON, 300<<10, 7, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, sum := b.Sent(); sum != nil {
		t.Fatal("a sum before anything was sent")
	}
	// Small reads, as a transport with a small buffer would make.
	var all bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := b.Read(buf)
		all.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	n, sum := b.Sent()
	want := sha256.Sum256(all.Bytes())
	if n != 300<<10 || !bytes.Equal(sum, want[:]) {
		t.Errorf("sent %d bytes with sum %x, want %d and %x", n, sum, 300<<10, want)
	}
}

func TestRandomBodyDoesNotCompress(t *testing.T) {
	data := readBody(t, BodyRandom, 1<<20, 3)
	var counts [256]int
	for _, c := range data {
		counts[c]++
	}
	// A uniform byte distribution: each value near 4096 times in 1 MiB.
	for v, n := range counts {
		if n < 3500 || n > 4700 {
			t.Fatalf("byte %d occurs %d times in 1 MiB of random body", v, n)
		}
	}
}

func readBody(t *testing.T, kind BodyKind, size int64, seed uint64) []byte {
	t.Helper()
	b, err := NewBody(kind, size, seed, "")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("%s %d: %v", kind, size, err)
	}
	return data
}
