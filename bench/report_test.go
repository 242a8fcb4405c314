package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

// fakeResult is a scenario result with made-up samples: processes whose RSS rises
// during a 10-second load.
func fakeResult(kind string, size int64, proto harness.Protocol, throughput, ratio float64, envoyPeak int64) *Result {
	k, _ := kindNamed(kind)
	sc := Scenario{Kind: k, Size: size, Concurrency: 10, Protocol: proto}
	r := &Result{Scenario: sc, Title: sc.Title(), LoadStart: 0.3, LoadEnd: 10.3}
	for i := range 10 {
		r.Uploads = append(r.Uploads, UploadResult{Index: i, Sent: size, Wire: int64(float64(size) / ratio), Seconds: 9 + float64(i)/10})
	}
	peaks := map[string]int64{"envoy": envoyPeak, "bodystream": 80 << 20, "echo": 12 << 20, clientProcess: 30 << 20}
	for _, name := range []string{"envoy", "bodystream", "echo", clientProcess} {
		s := Series{Process: name, Pid: 1}
		for i := range 107 {
			t := float64(i) / 10
			rss := peaks[name] / 2
			if t > 0.3 && t <= 10.3 {
				rss = peaks[name] - int64(i%5)<<20
			}
			s.Points = append(s.Points, Point{T: t, RSS: rss, Anon: rss / 2, CPU: t / 2})
		}
		r.Series = append(r.Series, s)
	}
	for i := range 107 {
		r.EnvoyMemory = append(r.EnvoyMemory, EnvoyPoint{T: float64(i) / 10, Allocated: 11 << 20, HeapSize: 22 << 20})
	}
	summarize(r)
	// summarize derives throughput from the load's span; set the figure the test wants.
	r.Throughput = throughput
	return r
}

func fakeReport() *Report {
	return &Report{
		Machine:      Machine{CPUs: 2, CPUModel: "Test CPU", Memory: 24 << 30, Kernel: "6.0", Go: "go1.26"},
		Envoy:        "abc/1.40.0/Clean/RELEASE/BoringSSL",
		EnvoyWorkers: 2,
		Interval:     "100ms",
		Results: []*Result{
			fakeResult("fds-gzip", 1<<30, harness.H1, 120<<20, 3.88, 78<<20),
			fakeResult("bodystream-gzip", 64<<20, harness.H1, 132<<20, 3.88, 77<<20),
			fakeResult("native-gzip", 64<<20, harness.H1, 144<<20, 2.83, 72<<20),
			fakeResult("native-gzip-2", 64<<20, harness.H1, 104<<20, 3.83, 71<<20),
			fakeResult("fds", 64<<20, harness.H1, 89<<20, 1, 140<<20),
			fakeResult("streamed", 64<<20, harness.H1, 122<<20, 1, 78<<20),
		},
	}
}

func TestSummarize(t *testing.T) {
	r := fakeResult("fds", 64<<20, harness.H1, 1, 1, 100<<20)
	envoy, ok := r.process("envoy")
	if !ok {
		t.Fatal("no envoy")
	}
	if envoy.PeakRSS != 100<<20 || envoy.IdleRSS != 50<<20 || envoy.PeakAnon != 50<<20 {
		t.Errorf("envoy %+v: want peak 100 MiB, idle 50 MiB, anon peak 50 MiB", envoy)
	}
	if envoy.MeanRSS >= envoy.PeakRSS || envoy.MeanRSS < 95<<20 {
		t.Errorf("mean %d: want between 95 and 100 MiB", envoy.MeanRSS)
	}
	// 10 s of load at half a CPU second per second, over 640 MiB.
	if got := envoy.CPUPerGiB; got < 7.9 || got > 8.2 {
		t.Errorf("CPU per GiB %.2f, want about 8", got)
	}
	if r.P50 != 9.4 || r.P99 != 9.9 {
		t.Errorf("p50 %.2f p99 %.2f, want 9.4 and 9.9", r.P50, r.P99)
	}
	if r.Bytes != 640<<20 || r.Ratio != 1 || r.Errors != 0 {
		t.Errorf("bytes %d ratio %.2f errors %d", r.Bytes, r.Ratio, r.Errors)
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 99: 10, 100: 10, 10: 1, 0: 1} {
		if got := percentile(v, p); got != want {
			t.Errorf("percentile(%v) = %v, want %v", p, got, want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestReportText(t *testing.T) {
	rep := fakeReport()
	rep.Results[4].Uploads[3].Err = "response differs from the upload: sha256 00, sent 11"
	summarize(rep.Results[4])
	var b strings.Builder
	if err := rep.writeText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"Machine: 2 CPUs, Test CPU, 24 GiB memory",
		"fds-gzip h1 10×1GiB",
		"120 MiB/s",
		"3.88",
		"78.0 / ",                             // envoy's peak in the memory table
		"fds-gzip h1 10×1GiB: envoy peak RSS", // goals
		"goal under 128.0 MiB: met",
		"bodystream peak RSS 80.0 MiB, goal under 96.0 MiB: met",
		"vs native-gzip-2: throughput 132 MiB/s vs 104 MiB/s (+27%): met; ratio 3.88 vs 3.83 (+1.3%): equal within 5%: met",
		"vs native-gzip: throughput 132 MiB/s vs 144 MiB/s (-8%): MISSED; ratio 3.88 vs 2.83 (+37.1%): better than equal",
		"FAILED fds h1 10×64MiB: 1 of 10 uploads",
		"1× response differs from the upload",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	// A failed scenario does not count towards a goal.
	if strings.Contains(text, "in FULL_DUPLEX_STREAMED vs") {
		t.Errorf("the failed fds scenario was judged against streamed:\n%s", text)
	}
}

func TestReportJSONHoldsTheSamples(t *testing.T) {
	var b bytes.Buffer
	if err := fakeReport().writeJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 6 || len(back.Results[0].Series) != 4 || len(back.Results[0].Series[0].Points) != 107 {
		t.Errorf("results.json lost samples: %d results", len(back.Results))
	}
}

func TestSVGIsXMLWithEverySeries(t *testing.T) {
	rep := fakeReport()
	var b bytes.Buffer
	if err := writeSVG(&b, "Memory <test> & more", rep.Results); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	panels, series := 0, map[string]int{}
	var texts []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			for _, a := range el.Attr {
				if el.Name.Local == "g" && a.Name.Local == "class" && a.Value == "panel" {
					panels++
				}
				if el.Name.Local == "polyline" && a.Name.Local == "data-process" {
					series[a.Value]++
				}
			}
		case xml.CharData:
			texts = append(texts, string(el))
		}
	}
	if panels != len(rep.Results) {
		t.Errorf("%d panels, want one per scenario (%d)", panels, len(rep.Results))
	}
	for _, name := range []string{"envoy", "bodystream", "echo", clientProcess, "envoy-allocated"} {
		if series[name] != len(rep.Results) {
			t.Errorf("%d lines for %s, want %d", series[name], name, len(rep.Results))
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"Memory <test> & more", "fds-gzip h1 10×1GiB", "envoy 78.0", "peak MiB:", "seconds"} {
		if !strings.Contains(all, want) {
			t.Errorf("chart text lacks %q", want)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct {
		max  float64
		n    int
		want float64
	}{{100, 4, 50}, {97, 4, 50}, {1017, 4, 500}, {8, 5, 2}, {3.5, 5, 1}, {0, 4, 1}, {0.3, 4, 0.1}} {
		if got := niceStep(tc.max, tc.n); got != tc.want {
			t.Errorf("niceStep(%v, %d) = %v, want %v", tc.max, tc.n, got, tc.want)
		}
	}
}

func TestAggregateRounds(t *testing.T) {
	var results []*Result
	for round, throughput := range []float64{100 << 20, 300 << 20, 200 << 20} {
		r := fakeResult("bodystream-gzip", 64<<20, harness.H1, throughput, 3.88, int64(70+10*round)<<20)
		r.Round = round + 1
		results = append(results, r)
	}
	results[1].Uploads[0].Err = "broken"
	summarize(results[1])
	results[1].Throughput = 300 << 20
	agg := aggregate(results)
	if len(agg) != 1 {
		t.Fatalf("%d aggregated results, want 1", len(agg))
	}
	a := agg[0]
	if a.Throughput != 200<<20 {
		t.Errorf("throughput %v, want the median 200 MiB/s", a.Throughput)
	}
	if envoy, _ := a.process("envoy"); envoy.PeakRSS != 90<<20 {
		t.Errorf("envoy peak %d, want the largest of the rounds (90 MiB)", envoy.PeakRSS)
	}
	if a.Errors != 1 || a.Title != "bodystream-gzip h1 10×64MiB" {
		t.Errorf("errors %d, title %q", a.Errors, a.Title)
	}
	rep := fakeReport()
	rep.Results = results
	var b strings.Builder
	if err := rep.writeText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Over 3 rounds") {
		t.Errorf("no table of medians:\n%s", b.String())
	}
}

func TestDecimateKeepsPeaks(t *testing.T) {
	var points []Point
	for i := range 10_000 {
		points = append(points, Point{T: float64(i), RSS: int64(i % 97)})
	}
	points[5_555].RSS = 1_000
	got := decimate(points, 300)
	if len(got) > 2*300+2 {
		t.Errorf("%d points, want at most about 600", len(got))
	}
	var peak int64
	for i, p := range got {
		peak = max(peak, p.RSS)
		if i > 0 && p.T <= got[i-1].T {
			t.Fatalf("point %d out of time order", i)
		}
	}
	if peak != 1_000 {
		t.Errorf("peak %d lost", peak)
	}
	if short := points[:100]; len(decimate(short, 300)) != 100 {
		t.Error("a short series was thinned")
	}
}
