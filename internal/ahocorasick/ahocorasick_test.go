package ahocorasick

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// match is a pattern found in a stream, by the offset of its last byte.
type match struct {
	end     int
	pattern int
}

// modes compiles patterns both ways, so that every test covers both step functions.
func modes(t testing.TB, patterns [][]byte) map[string]*Automaton {
	t.Helper()
	dense, sparse := Compile(patterns, math.MaxInt), Compile(patterns, 0)
	if !dense.Dense() || sparse.Dense() {
		t.Fatalf("Dense() = %v with no limit and %v with a limit of 0", dense.Dense(), sparse.Dense())
	}
	return map[string]*Automaton{"dense": dense, "sparse": sparse}
}

// scanChunks feeds chunks to a as one stream and returns every match, in the order
// Advance and Outputs report them. It checks that Advance stops only at a match and
// always makes progress.
func scanChunks(t testing.TB, a *Automaton, chunks [][]byte) []match {
	t.Helper()
	var got []match
	s, pos := State(0), 0
	for _, c := range chunks {
		for len(c) > 0 {
			next, n := a.Advance(s, c)
			if n <= 0 || n > len(c) || n < len(c) && !a.HasOutputs(next) {
				t.Fatalf("Advance over %d bytes consumed %d, stopping in a state without outputs", len(c), n)
			}
			s, pos, c = next, pos+n, c[n:]
			if a.HasOutputs(s) {
				for p := range a.Outputs(s) {
					got = append(got, match{end: pos - 1, pattern: p})
				}
			}
		}
	}
	return got
}

// naiveMatches is the reference: at each offset, the patterns that end there, the
// longest first, then by index.
func naiveMatches(patterns [][]byte, data []byte) []match {
	var want []match
	for end := range data {
		var here []int
		for i, p := range patterns {
			if bytes.HasSuffix(data[:end+1], p) {
				here = append(here, i)
			}
		}
		slices.SortStableFunc(here, func(i, j int) int { return len(patterns[j]) - len(patterns[i]) })
		for _, p := range here {
			want = append(want, match{end: end, pattern: p})
		}
	}
	return want
}

// chunkings returns data whole, byte by byte, in two at every split point, and cut at
// random points (empty chunks included).
func chunkings(rng *rand.Rand, data []byte) map[string][][]byte {
	out := map[string][][]byte{"whole": {data}}
	bytewise := make([][]byte, len(data))
	for i := range data {
		bytewise[i] = data[i : i+1]
	}
	out["bytewise"] = bytewise
	for i := 0; i <= len(data); i++ {
		out[fmt.Sprintf("split@%d", i)] = [][]byte{data[:i], data[i:]}
	}
	for r := range 8 {
		out[fmt.Sprintf("random%d", r)] = randomChunks(rng, data)
	}
	return out
}

func randomChunks(rng *rand.Rand, data []byte) [][]byte {
	var chunks [][]byte
	for len(data) > 0 {
		n := rng.IntN(min(len(data), 8) + 1)
		chunks = append(chunks, data[:n])
		data = data[n:]
	}
	return chunks
}

func TestMatches(t *testing.T) {
	var everyByte []string
	for b := range 256 {
		everyByte = append(everyByte, string([]byte{byte(b)}))
	}
	tests := []struct {
		name     string
		patterns []string
		input    string
		want     []match // nil: as the reference finds them; spelled out where it matters
	}{
		{name: "empty input", patterns: []string{"abc"}, input: ""},
		{name: "no patterns", patterns: nil, input: "anything at all"},
		{name: "near misses", patterns: []string{"abc"}, input: "ababxabbcab"},
		{name: "at start, middle and end", patterns: []string{"abc"}, input: "abcxabcxabc",
			want: []match{{2, 0}, {6, 0}, {10, 0}}},
		{name: "overlapping occurrences", patterns: []string{"aa"}, input: "aaaa",
			want: []match{{1, 0}, {2, 0}, {3, 0}}},
		{name: "he she his hers", patterns: []string{"he", "she", "his", "hers"}, input: "ahishers",
			want: []match{{3, 2}, {5, 1}, {5, 0}, {7, 3}}},
		{name: "suffixes of each other", patterns: []string{"d", "cd", "bcd", "abcd"}, input: "xabcdabcd",
			want: []match{{4, 3}, {4, 2}, {4, 1}, {4, 0}, {8, 3}, {8, 2}, {8, 1}, {8, 0}}},
		{name: "prefixes of each other", patterns: []string{"abcd", "abc", "ab", "a"}, input: "abcdabc",
			want: []match{{0, 3}, {1, 2}, {2, 1}, {3, 0}, {4, 3}, {5, 2}, {6, 1}}},
		{name: "same pattern twice", patterns: []string{"dup", "x", "dup"}, input: "dupdup",
			want: []match{{2, 0}, {2, 2}, {5, 0}, {5, 2}}},
		{name: "failure link", patterns: []string{"abcd", "bce"}, input: "abce", want: []match{{3, 1}}},
		{name: "dictionary link", patterns: []string{"abcde", "cd"}, input: "abcdx", want: []match{{3, 1}}},
		{name: "repeated prefix", patterns: []string{"aab", "aaab"}, input: "aaaab", want: []match{{4, 1}, {4, 0}}},
		{name: "nul and high bytes", patterns: []string{"\x00\xff\x00", "\xff"}, input: "\xff\x00\xff\x00\xff"},
		// Every byte occurs in a pattern: the table has no class of bytes that lead back
		// to the root.
		{name: "every byte value", patterns: append(everyByte, "\x00\x01", "\xfe\xff"), input: strings.Join(everyByte, "") + "\x00\x01"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			patterns := make([][]byte, len(tt.patterns))
			for i, p := range tt.patterns {
				patterns[i] = []byte(p)
			}
			want := naiveMatches(patterns, []byte(tt.input))
			if tt.want != nil && !slices.Equal(tt.want, want) {
				t.Fatalf("the reference finds %v, the test expects %v", want, tt.want)
			}
			for mode, a := range modes(t, patterns) {
				for cut, chunks := range chunkings(rng, []byte(tt.input)) {
					if got := scanChunks(t, a, chunks); !slices.Equal(got, want) {
						t.Fatalf("%s %s: got %v, want %v", mode, cut, got, want)
					}
				}
			}
		})
	}
}

// TestAgainstReference compares both modes with the reference on random patterns and
// inputs over a small alphabet, where overlaps and near misses abound.
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "abcd"
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	for iter := range 1000 {
		patterns := make([][]byte, 1+rng.IntN(8))
		for i := range patterns {
			patterns[i] = randomBytes(1 + rng.IntN(6))
		}
		data := randomBytes(rng.IntN(150))
		want := naiveMatches(patterns, data)
		for mode, a := range modes(t, patterns) {
			if got := scanChunks(t, a, randomChunks(rng, data)); !slices.Equal(got, want) {
				t.Fatalf("iteration %d %s: patterns %q data %q: got %v, want %v", iter, mode, patterns, data, got, want)
			}
		}
	}
}

// TestDenseLimit checks that denseLimit counts table entries: "ab" has three states
// (root, a, ab) and three byte classes (a, b and every other byte).
func TestDenseLimit(t *testing.T) {
	patterns := [][]byte{[]byte("ab")}
	if !Compile(patterns, 9).Dense() {
		t.Errorf("9 entries allowed: sparse")
	}
	if Compile(patterns, 8).Dense() {
		t.Errorf("8 entries allowed: dense")
	}
}

func TestEmptyPatternPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Compile accepted an empty pattern")
		}
	}()
	Compile([][]byte{[]byte("a"), {}}, math.MaxInt)
}

// TestNoAllocations checks that a stream costs no allocation, matches included.
func TestNoAllocations(t *testing.T) {
	patterns := [][]byte{[]byte("ab"), []byte("b")}
	data := bytes.Repeat([]byte("xxabxxb"), 100)
	for mode, a := range modes(t, patterns) {
		found := 0
		allocs := testing.AllocsPerRun(100, func() {
			s := State(0)
			for p := data; len(p) > 0; {
				var n int
				s, n = a.Advance(s, p)
				p = p[n:]
				for range a.Outputs(s) {
					found++
				}
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per stream", mode, allocs)
		}
		if found == 0 {
			t.Errorf("%s: no match found", mode)
		}
	}
}

// benchmarkText returns about 1 MiB of words with, now and then, one of the patterns
// benchmarkPatterns looks for.
func benchmarkText(rng *rand.Rand) []byte {
	words := strings.Fields("the quick brown fox jumps over a lazy dog while some script " +
		"scripts describe eval of password fields in a form submitted over http")
	planted := []string{"<script", "eval(", "password=", "\x7fELF"}
	var b bytes.Buffer
	for b.Len() < 1<<20 {
		if rng.IntN(2000) == 0 {
			b.WriteString(planted[rng.IntN(len(planted))])
		} else {
			b.WriteString(words[rng.IntN(len(words))])
		}
		b.WriteByte(' ')
	}
	return b.Bytes()[:1<<20]
}

func benchmarkPatterns() [][]byte {
	return [][]byte{
		[]byte("<script"), []byte("<?php"), []byte("eval("), []byte("password="),
		[]byte("\x7fELF\x02\x01\x01"), []byte("PK\x03\x04\x14\x00"),
	}
}

func BenchmarkAdvance(b *testing.B) {
	data := benchmarkText(rand.New(rand.NewPCG(5, 6)))
	for _, mode := range []string{"dense", "sparse"} {
		a := modes(b, benchmarkPatterns())[mode]
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				s, found := State(0), 0
				for p := data; len(p) > 0; {
					var n int
					s, n = a.Advance(s, p)
					p = p[n:]
					if a.HasOutputs(s) {
						found++
					}
				}
				if found == 0 {
					b.Fatal("no match in the text")
				}
			}
		})
	}
}
