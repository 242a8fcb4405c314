package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestSmoke runs a tiny bench through the real stack: two 1 MiB uploads per scenario,
// over both protocols, on the floor, the gzip route and the seed's conditions.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Envoy")
	}
	harness.RequireEnvoy(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	err := Main(ctx, []string{"-scenarios", "direct,fds-gzip,seed", "-size", "1MiB", "-concurrency", "2",
		"-protocol", "both", "-out", out, "-interval", "20ms"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}

	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 6 {
		t.Fatalf("%d results, want 6", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Errors > 0 || r.Bytes != 2<<20 || len(r.Uploads) != 2 {
			t.Errorf("%s: %d errors, %d bytes, %d uploads: %v", r.Title, r.Errors, r.Bytes, len(r.Uploads), errorSummary(r.Uploads, 3))
		}
		want := []string{"envoy", "bodystream", "echo", clientProcess}
		if r.Scenario.Seed {
			want[1] = "seed-server"
		}
		for _, name := range want {
			if p, ok := r.process(name); !ok || p.PeakRSS == 0 {
				t.Errorf("%s: no samples of %s", r.Title, name)
			}
		}
		if len(r.EnvoyMemory) == 0 || r.EnvoyPeakAllocated == 0 {
			t.Errorf("%s: no Envoy allocator figures", r.Title)
		}
		switch r.Scenario.Kind.Name {
		case "fds-gzip":
			if r.Ratio < 2 || r.Uploads[0].Encoding != "gzip" {
				t.Errorf("%s: ratio %.2f, encoding %q: the body was not compressed", r.Title, r.Ratio, r.Uploads[0].Encoding)
			}
			if r.EnvoyStats["http.ingress.ext_proc.streams_started"] != 2 {
				t.Errorf("%s: ext_proc streams_started %d, want 2", r.Title, r.EnvoyStats["http.ingress.ext_proc.streams_started"])
			}
		case "seed":
			if r.EnvoyStats["http.ingress.ext_proc.streams_started"] != 2 {
				t.Errorf("%s: the seed-server saw %d streams, want 2", r.Title, r.EnvoyStats["http.ingress.ext_proc.streams_started"])
			}
		}
	}
	for _, name := range []string{"report.txt", "memory.svg"} {
		if info, err := os.Stat(filepath.Join(out, name)); err != nil || info.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !strings.Contains(stdout.String(), "Throughput and latency") {
		t.Errorf("no table on stdout:\n%s", stdout.String())
	}
}
