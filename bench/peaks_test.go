package bench

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestPeaksShareOneScale: the summary chart has one bar per process and scenario
// (the client left out), and every bar's height is its peak on the same scale, so a
// 780 MiB bar is 780/44 times as tall as a 44 MiB one.
func TestPeaksShareOneScale(t *testing.T) {
	rep := fakeReport()
	seed := fakeResult("seed", 64<<20, harness.H1, 1, 1, 340<<20)
	for i := range seed.Processes {
		if seed.Processes[i].Name == "bodystream" {
			seed.Processes[i].Name, seed.Processes[i].PeakRSS = "seed-server", 780<<20
		}
	}
	rep.Results = append(rep.Results, seed)
	var b bytes.Buffer
	if err := writePeaksSVG(&b, "Peaks", rep.Results); err != nil {
		t.Fatal(err)
	}
	type bar struct {
		mib, height float64
	}
	bars := map[string][]bar{}
	dec := xml.NewDecoder(&b)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		el, ok := tok.(xml.StartElement)
		if !ok || el.Name.Local != "rect" {
			continue
		}
		attrs := map[string]string{}
		for _, a := range el.Attr {
			attrs[a.Name.Local] = a.Value
		}
		if attrs["class"] != "bar" {
			continue
		}
		mib, _ := strconv.ParseFloat(attrs["data-mib"], 64)
		height, _ := strconv.ParseFloat(attrs["height"], 64)
		bars[attrs["data-process"]] = append(bars[attrs["data-process"]], bar{mib, height})
	}
	if len(bars[clientProcess]) != 0 {
		t.Error("the client has bars; it is not part of the stack")
	}
	if len(bars["envoy"]) != len(rep.Results) || len(bars["seed-server"]) != 1 || len(bars["bodystream"]) != len(rep.Results)-1 {
		t.Errorf("bars: envoy %d, bodystream %d, seed-server %d; want one per scenario that ran the process",
			len(bars["envoy"]), len(bars["bodystream"]), len(bars["seed-server"]))
	}
	var scale float64
	for name, list := range bars {
		for _, b := range list {
			if b.mib <= 0 || b.height <= 0 {
				t.Fatalf("%s: bar of %.1f MiB, %.1f px", name, b.mib, b.height)
			}
			if scale == 0 {
				scale = b.height / b.mib
			}
			if got := b.height / b.mib; math.Abs(got-scale) > 0.01*scale {
				t.Errorf("%s: %.1f MiB drawn at %.3f px/MiB, another bar at %.3f: not one scale", name, b.mib, got, scale)
			}
		}
	}
}

// TestChartsFromRecordedRuns: "bench charts" draws both charts of every run file, a
// gzip-compressed one included.
func TestChartsFromRecordedRuns(t *testing.T) {
	runs, out := t.TempDir(), t.TempDir()
	var data bytes.Buffer
	if err := fakeReport().writeJSON(&data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runs, "plain.json"), data.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(runs, "packed.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(data.Bytes())
	if err := errors.Join(zw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
	if err := Main(t.Context(), []string{"charts", "-runs", runs, "-out", out}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"plain.svg", "plain-peaks.svg", "packed.svg", "packed-peaks.svg"} {
		svg, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Contains(svg, []byte("fds-gzip h1 10×1GiB")) {
			t.Errorf("%s does not chart the run", name)
		}
	}
}
