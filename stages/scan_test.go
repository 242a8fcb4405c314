package stages

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/textproto"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/stage"
)

// testEICAR is built at run time like the stage's, so this file is not flagged either.
var testEICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + strings.ToUpper(`eicar-standard-antivirus-test-file!$h+h*`)

// scanVariants builds spec and returns it with its automaton dense, and a copy
// whose automaton is forced sparse, so that every test covers both step functions.
func scanVariants(t testing.TB, spec ScanSpec) map[string]*scanMatcher {
	t.Helper()
	dense := scanBuild(t, spec)
	if a := dense.automaton; a != nil && !a.Dense() {
		t.Fatalf("small automaton is not dense")
	}
	sparse := newScanMatcher(dense.rules, dense.reject, 0)
	return map[string]*scanMatcher{"dense": dense, "sparse": sparse}
}

// scanBuild builds spec, failing the test when Build refuses it.
func scanBuild(t testing.TB, spec ScanSpec) *scanMatcher {
	t.Helper()
	return built(t, spec, nil).(*scanMatcher)
}

func scanMessage(contentType string) *stage.Message {
	h := textproto.MIMEHeader{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return &stage.Message{Direction: stage.Request, Header: h}
}

// scanOutcome is what a scan of one body reported.
type scanOutcome struct {
	rule   string // "" when nothing matched
	offset int64  // reject mode only; -1 otherwise
}

// runScan plans spec for contentType and writes chunks, checking the io.Writer
// contract on the way: a reject match consumes the input exactly up to the match's end.
func runScan(t testing.TB, spec *scanMatcher, contentType string, chunks [][]byte) scanOutcome {
	t.Helper()
	step, err := spec.Plan(scanMessage(contentType), nil)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if step.Observer == nil {
		return scanOutcome{offset: -1}
	}
	o := step.Observer
	consumed := int64(0)
	for _, c := range chunks {
		n, err := o.Write(c)
		consumed += int64(n)
		if err != nil {
			var match *stage.ScanMatch
			if !errors.As(err, &match) {
				t.Fatalf("Write: %v", err)
			}
			if !spec.reject {
				t.Fatalf("tag mode returned %v", err)
			}
			if n > len(c) {
				t.Fatalf("Write returned n=%d > len(p)=%d", n, len(c))
			}
			if end := match.Offset + int64(len(patternOf(t, spec, match.Rule))); consumed != end {
				t.Fatalf("consumed %d bytes, match ends at %d", consumed, end)
			}
			if _, again := o.Write(c); again != err {
				t.Fatalf("Write after match returned %v, want the match again", again)
			}
			o.Abort()
			return scanOutcome{rule: match.Rule, offset: match.Offset}
		}
		if n != len(c) {
			t.Fatalf("Write returned n=%d, len(p)=%d without error", n, len(c))
		}
	}
	res, err := o.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	rule := res.Metadata["scan_match"]
	if rule != res.Headers["x-bodystream-scan"] {
		t.Fatalf("metadata %q and header %q disagree", rule, res.Headers["x-bodystream-scan"])
	}
	if spec.reject && rule != "" {
		t.Fatalf("reject mode tagged %q", rule)
	}
	if rule == "" && (res.Metadata != nil || res.Headers != nil || res.Trailers != nil) {
		t.Fatalf("no match but result %+v", res)
	}
	return scanOutcome{rule: rule, offset: -1}
}

func patternOf(t testing.TB, spec *scanMatcher, rule string) []byte {
	for _, r := range spec.rules {
		if r.name == rule {
			return r.pattern
		}
	}
	t.Fatalf("no rule %q", rule)
	return nil
}

// chunkings returns input cut in every way the scanner must not notice: whole, in two
// at every split point, in three at every pair of split points (short inputs), and in
// single bytes.
func chunkings(input []byte) map[string][][]byte {
	out := map[string][][]byte{"whole": {input}}
	for i := 0; i <= len(input); i++ {
		out[fmt.Sprintf("split@%d", i)] = [][]byte{input[:i], input[i:]}
		if len(input) <= 24 {
			for j := i; j <= len(input); j++ {
				out[fmt.Sprintf("split@%d,%d", i, j)] = [][]byte{input[:i], input[i:j], input[j:]}
			}
		}
	}
	bytewise := make([][]byte, len(input))
	for i := range input {
		bytewise[i] = input[i : i+1]
	}
	out["bytewise"] = bytewise
	return out
}

func TestScanMatches(t *testing.T) {
	lit := func(name, pattern string) ScanRule { return ScanRule{Name: name, Literal: pattern} }
	magic := func(name, pattern string) ScanRule { return ScanRule{Name: name, Literal: pattern, Magic: true} }
	only := func(r ScanRule, types ...string) ScanRule { r.ContentTypes = types; return r }
	tests := []struct {
		name        string
		rules       []ScanRule
		eicar       bool
		contentType string
		input       string
		wantRule    string // "" for no match
		wantOffset  int64
	}{
		{name: "literal at start", rules: []ScanRule{lit("r", "abc")}, input: "abcxyz", wantRule: "r", wantOffset: 0},
		{name: "literal in middle", rules: []ScanRule{lit("r", "abc")}, input: "xyabcxy", wantRule: "r", wantOffset: 2},
		{name: "literal at end", rules: []ScanRule{lit("r", "abc")}, input: "xyzabc", wantRule: "r", wantOffset: 3},
		{name: "whole input", rules: []ScanRule{lit("r", "abc")}, input: "abc", wantRule: "r", wantOffset: 0},
		{name: "near misses", rules: []ScanRule{lit("r", "abc")}, input: "ababxabbcab"},
		{name: "empty body", rules: []ScanRule{lit("r", "abc")}, input: ""},
		{name: "hex", rules: []ScanRule{{Name: "mz", Hex: "4d 5a 90 00"}}, input: "ab\x4d\x5a\x90\x00cd", wantRule: "mz", wantOffset: 2},
		{name: "hex with nul and high bytes", rules: []ScanRule{{Name: "h", Hex: "00ff\t00"}}, input: "\xff\x00\xff\x00\xff\x00", wantRule: "h", wantOffset: 1},
		{name: "repeated prefix", rules: []ScanRule{lit("r", "aab")}, input: "aaaab", wantRule: "r", wantOffset: 2},
		// Aho–Corasick's classic: she and he end together; the longer one starts first.
		{name: "he she hers", rules: []ScanRule{lit("he", "he"), lit("she", "she"), lit("hers", "hers")}, input: "ushers", wantRule: "she", wantOffset: 1},
		{name: "his hers", rules: []ScanRule{lit("he", "he"), lit("she", "she"), lit("his", "his"), lit("hers", "hers")}, input: "ahishers", wantRule: "his", wantOffset: 1},
		{name: "failure link", rules: []ScanRule{lit("abcd", "abcd"), lit("bce", "bce")}, input: "abce", wantRule: "bce", wantOffset: 1},
		{name: "dictionary link", rules: []ScanRule{lit("long", "abcde"), lit("cd", "cd")}, input: "abcdx", wantRule: "cd", wantOffset: 2},
		{name: "longer wins on the same end", rules: []ScanRule{lit("bc", "bc"), lit("abc", "abc")}, input: "xabc", wantRule: "abc", wantOffset: 1},
		{name: "same pattern: first rule wins", rules: []ScanRule{lit("one", "dup"), lit("two", "dup")}, input: "a dup", wantRule: "one", wantOffset: 2},
		{name: "earlier end wins over earlier start", rules: []ScanRule{lit("long", "abcdef"), lit("cd", "cd")}, input: "abcdef", wantRule: "cd", wantOffset: 2},
		{name: "magic at 0", rules: []ScanRule{magic("mz", "MZ")}, input: "MZ\x90\x00", wantRule: "mz", wantOffset: 0},
		{name: "magic not at 0", rules: []ScanRule{magic("mz", "MZ")}, input: "xMZ"},
		{name: "magic longer than body", rules: []ScanRule{magic("m", "MZxyz")}, input: "MZx"},
		{name: "magic beats same-end literal", rules: []ScanRule{lit("bc", "bc"), magic("abc", "abc")}, input: "abc", wantRule: "abc", wantOffset: 0},
		{name: "magic ties literal: first rule", rules: []ScanRule{lit("lit", "abc"), magic("mag", "abc")}, input: "abc", wantRule: "lit", wantOffset: 0},
		{name: "literal ends before magic", rules: []ScanRule{magic("mag", "abcdef"), lit("bc", "bc")}, input: "abcdef", wantRule: "bc", wantOffset: 1},
		{name: "two magics", rules: []ScanRule{magic("long", "abcd"), magic("short", "ab")}, input: "abcd", wantRule: "short", wantOffset: 0},
		{name: "magic and literal elsewhere", rules: []ScanRule{magic("mag", "PK"), lit("x", "zz")}, input: "PQzz", wantRule: "x", wantOffset: 2},
		{name: "content type matches with parameters", rules: []ScanRule{only(magic("exe", "MZ"), "video/*")}, contentType: "video/mp4; codecs=avc1", input: "MZ..", wantRule: "exe", wantOffset: 0},
		{name: "content type exact, case-insensitive", rules: []ScanRule{only(lit("exe", "\x7fELF"), "video/mp4")}, contentType: "Video/MP4", input: "\x7fELF", wantRule: "exe", wantOffset: 0},
		{name: "content type does not match", rules: []ScanRule{only(magic("exe", "MZ"), "video/*")}, contentType: "application/octet-stream", input: "MZ.."},
		{name: "content type missing", rules: []ScanRule{only(magic("exe", "MZ"), "*/*")}, input: "MZ.."},
		{name: "inactive rule skipped", rules: []ScanRule{only(lit("ab", "ab"), "image/*"), lit("abc", "abc")}, contentType: "text/html", input: "xabc", wantRule: "abc", wantOffset: 1},
		{name: "inactive own output, active suffix", rules: []ScanRule{only(lit("xbc", "xbc"), "image/*"), lit("bc", "bc")}, contentType: "text/html", input: "xbc", wantRule: "bc", wantOffset: 1},
		{name: "eicar", eicar: true, input: "body " + testEICAR + " tail", wantRule: "eicar", wantOffset: 5},
		{name: "eicar with rules", rules: []ScanRule{lit("r", "zzz")}, eicar: true, input: testEICAR[:20] + "zzz", wantRule: "r", wantOffset: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, action := range []string{"reject", "tag"} {
				spec := ScanSpec{Action: action, Rules: tt.rules, IncludeEICAR: tt.eicar}
				for variant, spec := range scanVariants(t, spec) {
					for cut, chunks := range chunkings([]byte(tt.input)) {
						got := runScan(t, spec, tt.contentType, chunks)
						want := scanOutcome{rule: tt.wantRule, offset: -1}
						if action == "reject" && tt.wantRule != "" {
							want.offset = tt.wantOffset
						}
						if got != want {
							t.Fatalf("%s %s %s: got %+v, want %+v", action, variant, cut, got, want)
						}
					}
				}
			}
		})
	}
}

func TestScanNoRuleApplies(t *testing.T) {
	spec := scanBuild(t, ScanSpec{Rules: []ScanRule{{Name: "exe", Hex: "4d5a", ContentTypes: []string{"video/*"}}}})
	step, err := spec.Plan(scanMessage("text/plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if step.Observer != nil || step.Transformer != nil {
		t.Fatalf("Plan = %+v, want an empty step", step)
	}
}

// naiveFirstMatch is the reference: the match that ends first, then the longest, then
// the rule configured first; each rule's first occurrence is its earliest end.
func naiveFirstMatch(rules []ScanRule, patterns [][]byte, active []bool, data []byte) scanOutcome {
	best := scanOutcome{offset: -1}
	bestEnd, bestRule := int64(-1), -1
	for i, r := range rules {
		if !active[i] {
			continue
		}
		start := int64(bytes.Index(data, patterns[i]))
		if r.Magic && start != 0 {
			start = -1
		}
		if start < 0 {
			continue
		}
		end := start + int64(len(patterns[i])) - 1
		if bestRule < 0 || end < bestEnd || end == bestEnd && start < best.offset {
			best, bestEnd, bestRule = scanOutcome{rule: r.Name, offset: start}, end, i
		}
	}
	return best
}

// randomChunks cuts data at random points, empty chunks included.
func randomChunks(rng *rand.Rand, data []byte) [][]byte {
	var chunks [][]byte
	for len(data) > 0 {
		n := rng.IntN(min(len(data), 16) + 1)
		chunks = append(chunks, data[:n])
		data = data[n:]
	}
	return chunks
}

// TestScanAgainstReference compares the scanner with bytes.Index on random rules and
// bodies over a small alphabet, where matches, overlaps and near misses abound.
func TestScanAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcd"
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	types := []string{"text/plain", "image/png", ""}
	for iter := range 1500 {
		rules := make([]ScanRule, 1+rng.IntN(8))
		patterns := make([][]byte, len(rules))
		for i := range rules {
			patterns[i] = randomBytes(1 + rng.IntN(6))
			rules[i] = ScanRule{Name: fmt.Sprintf("r%d", i), Magic: rng.IntN(5) == 0}
			if rng.IntN(2) == 0 {
				rules[i].Literal = string(patterns[i])
			} else {
				rules[i].Hex = fmt.Sprintf("% x", patterns[i])
			}
			if rng.IntN(4) == 0 {
				rules[i].ContentTypes = []string{"text/*"}
			}
		}
		data := randomBytes(rng.IntN(120))
		contentType := types[rng.IntN(len(types))]
		active := make([]bool, len(rules))
		for i, r := range rules {
			active[i] = len(r.ContentTypes) == 0 || strings.HasPrefix(contentType, "text/")
		}
		want := naiveFirstMatch(rules, patterns, active, data)
		for variant, spec := range scanVariants(t, ScanSpec{Rules: rules}) {
			got := runScan(t, spec, contentType, randomChunks(rng, data))
			if got != want {
				t.Fatalf("iteration %d %s: rules %+v data %q content type %q: got %+v, want %+v",
					iter, variant, rules, data, contentType, got, want)
			}
		}
	}
}

// TestScanRandomNoFalsePositive scans 1 MiB of random bytes with rules that (as
// bytes.Index confirms) do not occur in it.
func TestScanRandomNoFalsePositive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	rules := benchmarkRules(rng)
	for _, r := range rules {
		if bytes.Contains(data, []byte(r.Literal)) {
			t.Fatalf("rule %s does occur in the random data; change the seed", r.Name)
		}
	}
	for variant, spec := range scanVariants(t, ScanSpec{Rules: rules, IncludeEICAR: true}) {
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(64<<10))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if got := runScan(t, spec, "application/octet-stream", chunks); got.rule != "" {
			t.Fatalf("%s: false positive %+v", variant, got)
		}
	}
}

// benchmarkRules returns ten rules: a few realistic ones and random 8-16 byte signatures.
func benchmarkRules(rng *rand.Rand) []ScanRule {
	rules := []ScanRule{
		{Name: "script", Literal: "<script"},
		{Name: "php", Literal: "<?php"},
		{Name: "elf", Literal: "\x7fELF\x02\x01\x01"},
		{Name: "zip", Literal: "PK\x03\x04\x14\x00"},
	}
	for i := len(rules); i < 10; i++ {
		sig := make([]byte, 8+rng.IntN(9))
		for j := range sig {
			sig[j] = byte(rng.Uint32())
		}
		rules = append(rules, ScanRule{Name: fmt.Sprintf("sig%d", i), Literal: string(sig)})
	}
	return rules
}

func TestScanBuild(t *testing.T) {
	long := strings.Repeat("x", maxScanPatternLen+1)
	tests := []struct {
		name    string
		spec    ScanSpec
		wantErr string // prefix; "" for valid
	}{
		{name: "minimal", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: "x"}}}},
		{name: "eicar only", spec: ScanSpec{IncludeEICAR: true}},
		{name: "no rules", spec: ScanSpec{}, wantErr: "rules: "},
		{name: "bad action", spec: ScanSpec{Action: "drop", Rules: []ScanRule{{Name: "a", Literal: "x"}}}, wantErr: "action: "},
		{name: "no name", spec: ScanSpec{Rules: []ScanRule{{Literal: "x"}}}, wantErr: "rules[0].name: required"},
		{name: "duplicate name", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: "x"}, {Name: "a", Literal: "y"}}}, wantErr: "rules[1].name: "},
		{name: "eicar name taken", spec: ScanSpec{IncludeEICAR: true, Rules: []ScanRule{{Name: "eicar", Literal: "x"}}}, wantErr: "include_eicar: "},
		{name: "no pattern", spec: ScanSpec{Rules: []ScanRule{{Name: "a"}}}, wantErr: "rules[0]: one of literal and hex"},
		{name: "both patterns", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: "x", Hex: "78"}}}, wantErr: "rules[0]: set only one"},
		{name: "invalid hex", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: "x"}, {Name: "b", Literal: "y"}, {Name: "c", Hex: "4g"}}}, wantErr: "rules[2].hex: invalid hex: "},
		{name: "odd hex", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Hex: "4d 5"}}}, wantErr: "rules[0].hex: invalid hex: "},
		{name: "blank hex", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Hex: "  "}}}, wantErr: "rules[0].hex: empty pattern"},
		{name: "long literal", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: long}}}, wantErr: "rules[0].literal: "},
		{name: "long hex", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Hex: strings.Repeat("00", maxScanPatternLen+1)}}}, wantErr: "rules[0].hex: "},
		{name: "max length", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: long[1:]}}}},
		{name: "bad content type", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: "x", ContentTypes: []string{"video/*", "video"}}}}, wantErr: "rules[0].content_types[1]: "},
		{name: "content type with parameters", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: "x", ContentTypes: []string{"text/plain; charset=utf-8"}}}}, wantErr: "rules[0].content_types[0]: "},
		{name: "wildcard type", spec: ScanSpec{Rules: []ScanRule{{Name: "a", Literal: "x", ContentTypes: []string{"*/plain"}}}}, wantErr: "rules[0].content_types[0]: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := tt.spec.Build()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Build: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("Build = %v, want an error starting with %q", err, tt.wantErr)
			case tt.wantErr == "" && !spec.(*scanMatcher).reject:
				t.Fatalf("an unset action does not reject")
			}
		})
	}
}

func TestScanTotalPatternLimit(t *testing.T) {
	var rules []ScanRule
	for i := 0; i <= maxScanTotalBytes/maxScanPatternLen; i++ {
		rules = append(rules, ScanRule{Name: fmt.Sprint(i), Literal: strings.Repeat("x", maxScanPatternLen)})
	}
	if _, err := (ScanSpec{Rules: rules}).Build(); err == nil || !strings.HasPrefix(err.Error(), "rules: ") {
		t.Fatalf("Build = %v, want a rules: error", err)
	}
}

// TestScanLargeAutomatonIsSparse checks that Build keeps the dense table bounded.
func TestScanLargeAutomatonIsSparse(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var rules []ScanRule
	for i := range 64 {
		sig := make([]byte, maxScanPatternLen)
		for j := range sig {
			sig[j] = byte(rng.Uint32())
		}
		rules = append(rules, ScanRule{Name: fmt.Sprint(i), Literal: string(sig)})
	}
	spec := scanBuild(t, ScanSpec{Rules: rules})
	if spec.automaton.Dense() {
		t.Fatalf("the automaton of %d patterns of %d bytes is dense", len(rules), maxScanPatternLen)
	}
	body := append([]byte("prefix"), rules[40].Literal...)
	got := runScan(t, spec, "", [][]byte{body[:500], body[500:]})
	if want := (scanOutcome{rule: "40", offset: 6}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestScanYAML(t *testing.T) {
	const doc = `
action: tag
include_eicar: true
rules:
  - name: exe-as-video
    hex: "4d 5a"
    magic: true
    content_types: [video/*]
  - name: script
    literal: "<script"
`
	spec, err := buildKind(t, "scan", yamlOptions(doc))
	if err != nil {
		t.Fatal(err)
	}
	scan := spec.(*scanMatcher)
	if got := runScan(t, scan, "video/webm", [][]byte{[]byte("MZ<script")}); got.rule != "exe-as-video" {
		t.Fatalf("video: got %+v", got)
	}
	if got := runScan(t, scan, "text/html", [][]byte{[]byte("MZ<script")}); got.rule != "script" {
		t.Fatalf("html: got %+v", got)
	}
	if got := runScan(t, scan, "text/html", [][]byte{[]byte(testEICAR)}); got.rule != "eicar" {
		t.Fatalf("eicar: got %+v", got)
	}
}

// FuzzScan compares the scanner's first match with the naive reference on fuzzed rules
// and bodies. rulesBlob is a list of length-prefixed patterns; flags picks magic rules.
func FuzzScan(f *testing.F) {
	f.Add([]byte("\x02he\x03she\x04hers"), []byte("ushers"), uint8(0), uint16(3))
	f.Add([]byte("\x04abcd\x03bce"), []byte("abce"), uint8(0), uint16(1))
	f.Add([]byte("\x02MZ\x02ZZ"), []byte("MZZZ"), uint8(1), uint16(1))
	f.Add([]byte("\x01a\x02aa\x03aaa"), []byte("baaab"), uint8(2), uint16(2))
	f.Add([]byte("\x05\x00\x01\x02\x03\x04"), []byte("\x00\x01\x02\x00\x01\x02\x03\x04"), uint8(0), uint16(7))
	f.Fuzz(func(t *testing.T, rulesBlob, data []byte, flags uint8, chunk uint16) {
		var rules []ScanRule
		var patterns [][]byte
		for len(rulesBlob) > 0 && len(rules) < 8 {
			n := int(rulesBlob[0]%16) + 1
			rulesBlob = rulesBlob[1:]
			if n > len(rulesBlob) {
				break
			}
			p := rulesBlob[:n]
			rulesBlob = rulesBlob[n:]
			rules = append(rules, ScanRule{
				Name:  fmt.Sprint(len(rules)),
				Hex:   fmt.Sprintf("%x", p),
				Magic: flags&(1<<len(rules)) != 0,
			})
			patterns = append(patterns, p)
		}
		if len(rules) == 0 {
			return
		}
		active := make([]bool, len(rules))
		for i := range active {
			active[i] = true
		}
		want := naiveFirstMatch(rules, patterns, active, data)
		size := int(chunk%64) + 1
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := min(size, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		for variant, spec := range scanVariants(t, ScanSpec{Rules: rules}) {
			if got := runScan(t, spec, "", chunks); got != want {
				t.Fatalf("%s: rules %+v data %q chunk %d: got %+v, want %+v", variant, rules, data, size, got, want)
			}
		}
	})
}

func BenchmarkScan(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	rules := benchmarkRules(rng)
	for variant, spec := range scanVariants(b, ScanSpec{Rules: rules}) {
		b.Run(variant, func(b *testing.B) {
			const chunk = 64 << 10
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				step, err := spec.Plan(scanMessage("application/octet-stream"), nil)
				if err != nil {
					b.Fatal(err)
				}
				for rest := data; len(rest) > 0; rest = rest[chunk:] {
					if _, err := step.Observer.Write(rest[:chunk]); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := step.Observer.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestScanWriteDoesNotAllocate checks the hot path: a chunk costs no allocation.
func TestScanWriteDoesNotAllocate(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	chunk := make([]byte, 16<<10)
	for i := range chunk {
		chunk[i] = byte(rng.Uint32())
	}
	rules := append(benchmarkRules(rng), ScanRule{Name: "magic", Literal: "\x00\x01\x02\x03", Magic: true})
	for variant, spec := range scanVariants(t, ScanSpec{Rules: rules}) {
		step, err := spec.Plan(scanMessage(""), nil)
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := step.Observer.Write(chunk); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Write", variant, allocs)
		}
	}
}
