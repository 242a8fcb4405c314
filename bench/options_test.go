package bench

import (
	"io"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int64
	}{
		{"64MiB", []int64{64 << 20}},
		{"1GiB", []int64{1 << 30}},
		{"64MiB, 1GiB", []int64{64 << 20, 1 << 30}},
		{"1 MB", []int64{1_000_000}},
		{"4096", []int64{4096}},
	} {
		got, err := parseSizes(tc.in)
		if err != nil {
			t.Errorf("parseSizes(%q): %v", tc.in, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("parseSizes(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("parseSizes(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
	for _, bad := range []string{"", "lots", "0", "-1MiB", "64MiB,"} {
		if got, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) = %v, want an error", bad, got)
		}
	}
}

func TestSizeName(t *testing.T) {
	for n, want := range map[int64]string{64 << 20: "64MiB", 1 << 30: "1GiB", 70 << 20: "70MiB", 1536 << 10: "1536KiB", 1000: "1000B"} {
		if got := sizeName(n); got != want {
			t.Errorf("sizeName(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParsePids(t *testing.T) {
	got, err := parsePids("envoy=12, bodystream=34,echo=56")
	if err != nil {
		t.Fatal(err)
	}
	if got["envoy"] != 12 || got["bodystream"] != 34 || got["echo"] != 56 || len(got) != 3 {
		t.Errorf("parsePids = %v", got)
	}
	for _, bad := range []string{"envoy", "envoy=", "=12", "envoy=x", "envoy=0"} {
		if _, err := parsePids(bad); err == nil {
			t.Errorf("parsePids(%q): want an error", bad)
		}
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	def, _ := preset("default")
	if len(o.Scenarios) != len(def) {
		t.Errorf("no flags: %d scenarios, want the default preset's %d", len(o.Scenarios), len(def))
	}

	o, err = parseOptions([]string{"-scenarios", "direct,fds-gzip", "-size", "1MiB,2MiB", "-concurrency", "1,3", "-protocol", "both"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Scenarios) != 2*2*2*2 {
		t.Errorf("2 kinds × 2 sizes × 2 concurrencies × 2 protocols: got %d scenarios", len(o.Scenarios))
	}
	titles := map[string]bool{}
	for _, s := range o.Scenarios {
		titles[s.Title()] = true
	}
	for _, want := range []string{"direct h1 1×1MiB", "fds-gzip h2 3×2MiB"} {
		if !titles[want] {
			t.Errorf("no scenario %q in %v", want, titles)
		}
	}

	o, err = parseOptions([]string{"-scenarios", "fds", "-body", "json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Scenarios) != 1 || o.Scenarios[0].Body != harness.BodyJSON || o.Scenarios[0].Size != 64<<20 || o.Scenarios[0].Concurrency != 10 {
		t.Errorf("-scenarios fds -body json: %+v", o.Scenarios)
	}

	for _, bad := range [][]string{
		{"-scenarios", "nosuch"},
		{"-protocol", "h3"},
		{"-body", "file"},
		{"-pids", "envoy=1"},
		{"-scenarios", "seed", "-size", "1GiB", "-concurrency", "50"},
		{"-envoy-concurrency", "0"},
	} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("parseOptions(%q): want an error", strings.Join(bad, " "))
		}
	}
}

func TestPresetFull(t *testing.T) {
	full, ok := preset("full")
	if !ok {
		t.Fatal("no full preset")
	}
	seen := map[string]bool{}
	for _, s := range full {
		if seen[s.Title()] {
			t.Errorf("%s twice", s.Title())
		}
		seen[s.Title()] = true
		if s.Seed && s.Size*int64(s.Concurrency) > seedMaxTotal {
			t.Errorf("%s: beyond the seed's bound", s.Title())
		}
	}
	for _, want := range []string{"fds-gzip h1 10×1GiB", "native-gzip h2 50×64MiB", "direct h1 1×64MiB", "seed h1 50×64MiB"} {
		if !seen[want] {
			t.Errorf("full preset lacks %q", want)
		}
	}
}
