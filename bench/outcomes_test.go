package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/internal/harness"
)

// manyResult is a 200-upload fds result in which refused uploads were turned away,
// and Envoy counted upstream requests to the echo.
func manyResult(t *testing.T, refused, upstream int) *Result {
	t.Helper()
	r := fakeResult("fds", 64<<20, harness.H1, 1, 1, 100<<20)
	r.Scenario.Concurrency = len(r.Uploads)
	for i := range refused {
		r.Uploads[i] = UploadResult{Index: i, Sent: 1 << 10, Status: 503, Refused: true, RetryAfter: "1"}
	}
	r.EnvoyStats = map[string]int64{"cluster.echo.upstream_rq_total": int64(upstream)}
	r.Errors, r.Refused, r.Verified, r.Bytes, r.WireBytes, r.Processes = 0, 0, 0, 0, 0, nil
	summarize(r)
	return r
}

// TestRefusalsAreOutcomes: a clean refusal (503 with retry-after that never reached
// the upstream) is counted apart from errors and left out of throughput; a refusal
// the echo's request count shows went upstream is an error.
func TestRefusalsAreOutcomes(t *testing.T) {
	clean := manyResult(t, 3, 7)
	if clean.Refused != 3 || clean.Errors != 0 || clean.LeakedRefusals != 0 {
		t.Errorf("clean refusals: refused %d errors %d leaked %d; want 3, 0, 0", clean.Refused, clean.Errors, clean.LeakedRefusals)
	}
	if clean.Verified != 7*64<<20 || clean.Bytes != 7*64<<20+3<<10 {
		t.Errorf("verified %d of %d bytes; want the 7 byte-exact uploads' only", clean.Verified, clean.Bytes)
	}
	leaked := manyResult(t, 3, 9)
	if leaked.LeakedRefusals != 2 || leaked.Errors != 2 || leaked.byteExact() != 7 {
		t.Errorf("two refusals after the upstream saw them: leaked %d errors %d byte-exact %d; want 2, 2, 7", leaked.LeakedRefusals, leaked.Errors, leaked.byteExact())
	}
	rep := fakeReport()
	rep.Results = []*Result{leaked}
	var b strings.Builder
	if err := rep.writeText(&b); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{
		"fds h1 10×64MiB 10 7 3 2 9", // uploads, byte-exact, refused, failed, upstream requests
		"2× refused (503, retry-after) after the upstream had the request: Envoy sent the echo 9 requests for 7 byte-exact uploads and 3 refusals",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// TestReportCountsOutcomes: the outcome table and the goals of a many-upload run.
func TestReportCountsOutcomes(t *testing.T) {
	fds := manyResult(t, 3, 7)
	fds.Budget = 256 << 20
	streamed := fakeResult("streamed", 64<<20, harness.H1, 1, 1, 90<<20)
	streamed.Scenario.Concurrency = fds.Scenario.Concurrency
	rep := fakeReport()
	rep.Results = []*Result{fds, streamed}
	// The goals judge loads of hundreds of uploads; the fakes have ten.
	saved := manyUploads
	manyUploads = []int{10}
	defer func() { manyUploads = saved }()
	var b strings.Builder
	if err := rep.writeText(&b); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(b.String()), " ") // the tables' padding aside
	for _, want := range []string{
		"fds h1 10×64MiB 10 7 3 0 7 80.0 MiB 320.0 MiB 5.0 MiB",
		"bodystream peak RSS 80.0 MiB, goal at most budget + 64 MiB = 320.0 MiB: met (3 of 10 uploads refused cleanly)",
		"fds h1 10×64MiB 10 7 3 0 7", // outcomes: uploads, byte-exact, refused, failed, upstream requests
		"Envoy grows 5.0 MiB per FULL_DUPLEX_STREAMED upload vs 4.5 MiB per STREAMED upload: MISSED",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestPresetMany(t *testing.T) {
	many, ok := preset("many")
	if !ok {
		t.Fatal("no many preset")
	}
	if len(many) != 12 {
		t.Errorf("%d scenarios, want 3 kinds × 200, 500 × h1, h2", len(many))
	}
	for _, s := range many {
		if s.Size != 64<<20 || (s.Concurrency != 200 && s.Concurrency != 500) {
			t.Errorf("%s: want 200 or 500 × 64MiB", s.Title())
		}
	}
	// Load flags narrow the preset to its kinds, not to every kind.
	custom, err := chooseScenarios("many", nil, []int{200}, []harness.Protocol{harness.H1})
	if err != nil || len(custom) != 3 {
		t.Errorf("-scenarios many -concurrency 200 -protocol h1: %d scenarios (%v), want 3", len(custom), err)
	}
}

// TestApplyWindows: -windows changes the ext_proc cluster's HTTP/2 windows and every
// buffer limit of the shipped envoy.yaml (the ext_proc cluster's its own when
// ext-proc-buffer is given), and nothing else.
func TestApplyWindows(t *testing.T) {
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	w, err := parseWindows("ext-proc-stream=64KiB,ext-proc-conn=512KiB,buffer=32KiB,ext-proc-buffer=16KiB")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := applyWindows(filepath.Join(root, "resources", "envoy.yaml"), dst, w); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		StaticResources struct {
			Listeners []struct {
				Buffer int `yaml:"per_connection_buffer_limit_bytes"`
			} `yaml:"listeners"`
			Clusters []struct {
				Name    string `yaml:"name"`
				Buffer  int    `yaml:"per_connection_buffer_limit_bytes"`
				Options map[string]struct {
					Explicit struct {
						H2 struct {
							Stream int `yaml:"initial_stream_window_size"`
							Conn   int `yaml:"initial_connection_window_size"`
						} `yaml:"http2_protocol_options"`
					} `yaml:"explicit_http_config"`
				} `yaml:"typed_extension_protocol_options"`
			} `yaml:"clusters"`
		} `yaml:"static_resources"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, l := range cfg.StaticResources.Listeners {
		if l.Buffer != 32<<10 {
			t.Errorf("listener buffer limit %d, want 32768", l.Buffer)
		}
	}
	for _, c := range cfg.StaticResources.Clusters {
		h2 := c.Options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Explicit.H2
		wantBuffer := 32 << 10
		if c.Name == "bodystream" {
			wantBuffer = 16 << 10
		}
		if c.Buffer != wantBuffer {
			t.Errorf("cluster %s buffer limit %d, want %d", c.Name, c.Buffer, wantBuffer)
		}
		switch c.Name {
		case "bodystream":
			if h2.Stream != 64<<10 || h2.Conn != 512<<10 {
				t.Errorf("ext_proc windows %d/%d, want 65536/524288", h2.Stream, h2.Conn)
			}
		case "echo":
			if h2.Stream == 64<<10 && h2.Conn == 512<<10 {
				t.Error("the echo cluster's windows changed too")
			}
		}
	}
	for _, bad := range []string{"ext-proc-stream=1KiB", "window=64KiB", "buffer=lots", "ext-proc-buffer=100"} {
		if _, err := parseWindows(bad); err == nil {
			t.Errorf("parseWindows(%q): want an error", bad)
		}
	}
}
