package e2e

import (
	"bufio"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// scrape reads bodystream's /metrics: every series, keyed as the exposition writes it
// (name{label="value",...}, labels sorted).
func scrape(t *testing.T, s *harness.Stack) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestE2EMetricsCountTheUpload: one upload through the real Envoy moves its route's
// byte counters by what the client sent and what the upstream received, ends as an ok
// stream, and bodystream's stream and message counters agree with Envoy's ext_proc
// statistics.
func TestE2EMetricsCountTheUpload(t *testing.T) {
	s := needStack(t)
	const size = 1 << 20
	const bytes = `bodystream_body_bytes_total{direction="request",pipeline="gzip",route="full-duplex-streamed",side="%s"}`
	in, out := strings.Replace(bytes, "%s", "in", 1), strings.Replace(bytes, "%s", "out", 1)
	const ok = `bodystream_streams_total{result="ok"}`
	envoyBefore := envoyExtProcStats(t, s)
	before := scrape(t, s)
	for _, key := range []string{in, out, ok} {
		if _, exported := before[key]; !exported {
			t.Fatalf("%s is not exported", key)
		}
	}

	report := sink(t, s.URL+"/full-duplex-streamed/sink", h2, harness.BodyJSON, size)

	after := scrape(t, s)
	if got := after[in] - before[in]; got != size {
		t.Errorf("request bytes in grew by %v, want the %d the client sent", got, size)
	}
	if got := after[out] - before[out]; got != float64(report.Bytes) {
		t.Errorf("request bytes out grew by %v, want the %d the upstream received", got, report.Bytes)
	}
	// The client has its answer before Envoy closes the ext_proc stream: wait, bounded,
	// for bodystream to see the end.
	for deadline := time.Now().Add(10 * time.Second); after[ok]-before[ok] < 1; after = scrape(t, s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not grow within 10 s", ok)
		}
		time.Sleep(10 * time.Millisecond)
	}

	envoyAfter := envoyExtProcStats(t, s)
	for _, pair := range []struct{ ours, envoys string }{
		{"bodystream_streams_started_total", "streams_started"},
		{"bodystream_stream_messages_received_total", "stream_msgs_sent"},
		{"bodystream_stream_messages_sent_total", "stream_msgs_received"},
	} {
		ours := sumFamily(after, pair.ours) - sumFamily(before, pair.ours)
		envoys := envoyAfter[extProcPrefix+pair.envoys] - envoyBefore[extProcPrefix+pair.envoys]
		if ours != float64(envoys) || ours == 0 {
			t.Errorf("%s grew by %v, Envoy's %s by %d: want the same, above 0", pair.ours, ours, pair.envoys, envoys)
		}
	}
}

const extProcPrefix = "http.ingress.ext_proc."

func envoyExtProcStats(t *testing.T, s *harness.Stack) map[string]int64 {
	t.Helper()
	stats, err := s.Admin.Stats(t.Context(), "^"+regexp.QuoteMeta(extProcPrefix))
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

// sumFamily adds up every series of one metric.
func sumFamily(series map[string]float64, name string) float64 {
	total := 0.0
	for key, v := range series {
		if key == name || strings.HasPrefix(key, name+"{") {
			total += v
		}
	}
	return total
}
