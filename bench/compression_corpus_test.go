package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/internal/harness"
	"github.com/bodystream/bodystream/stage"
	_ "github.com/bodystream/bodystream/stages" // registers the compressors
)

// corpusEntry is one payload of the compression corpus.
type corpusEntry struct {
	name, contentType string
	data              []byte
}

// compressionCorpus builds the corpus deterministically: generated payloads from fixed
// seeds, and two files of the Go distribution the module pins (go_spec.html as HTML
// and, without its tags, as text; a JPEG from image/testdata).
func compressionCorpus(tb testing.TB) []corpusEntry {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		tb.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	read := func(path string) []byte {
		b, err := os.ReadFile(filepath.Join(goroot, path))
		if err != nil {
			tb.Fatalf("corpus: %v", err)
		}
		return b
	}
	random := func(n int, seed byte) []byte {
		b := make([]byte, n)
		rand.NewChaCha8([32]byte{seed}).Read(b)
		return b
	}
	spec := read("doc/go_spec.html")
	text := regexp.MustCompile(`<[^>]*>`).ReplaceAll(spec, nil)

	jsonBody, err := harness.NewBody(harness.BodyJSON, 1<<20, 1, "")
	if err != nil {
		tb.Fatal(err)
	}
	jsonData, err := io.ReadAll(jsonBody)
	if err != nil {
		tb.Fatal(err)
	}

	var csv bytes.Buffer
	rng := rand.New(rand.NewPCG(5, 6))
	countries := []string{"DE", "FR", "US", "JP", "BR", "IN", "NG", "SE"}
	statuses := []string{"paid", "pending", "refunded", "failed"}
	csv.WriteString("id,timestamp,user,country,amount,currency,status\n")
	for i := 0; csv.Len() < 1<<20; i++ {
		fmt.Fprintf(&csv, "%d,2026-%02d-%02dT%02d:%02d:%02dZ,user%05d,%s,%d.%02d,EUR,%s\n", 100000+i,
			1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(50000),
			countries[rng.IntN(len(countries))], rng.IntN(5000), rng.IntN(100), statuses[rng.IntN(len(statuses))])
	}

	// JSON records that each carry a small file as a data URI: the base64 runs are
	// shorter than a deflate block, between compressible fields.
	var uris bytes.Buffer
	uris.WriteString("[")
	for i := 0; uris.Len() < 1<<20; i++ {
		fmt.Fprintf(&uris, `{"id":%d,"name":"avatar-%d.png","owner":"user%d","avatar":"data:image/png;base64,%s"},`,
			i, i, i%977, base64.StdEncoding.EncodeToString(random(1500+i%7*300, byte(i))))
	}

	return []corpusEntry{
		{"json", "application/json", jsonData},
		{"text", "text/plain; charset=utf-8", text},
		{"html", "text/html; charset=utf-8", spec},
		{"csv", "text/csv", csv.Bytes()[:1<<20]},
		{"base64", "text/plain", []byte(base64.StdEncoding.EncodeToString(random(150_000, 1)))[:200_000]},
		{"hex", "text/plain", []byte(hex.EncodeToString(random(1<<19, 2)))},
		{"json+data-uri", "application/json", uris.Bytes()},
		{"random octets", "application/octet-stream", random(1<<20, 3)},
		{"mp4 (random)", "video/mp4", random(1<<20, 4)},
		{"jpeg", "image/jpeg", read("src/image/testdata/video-001.jpeg")},
	}
}

// corpusPair is a bodystream compressor and Envoy's compressor at the matching level.
type corpusPair struct {
	name string
	// fullOnly pairs run with CORPUS_FULL=1 only: the default run keeps to the
	// stages' default levels, to stay short in make test.
	fullOnly bool
	// slack is how much larger than Envoy's bodystream's body may be, as a fraction
	// of Envoy's: the measured gap where bodystream's library is weaker at that level
	// (see bench/RESULTS.md, "Compression corpus"), so that a regression past it fails.
	slack    float64
	kind     string // bodystream stage kind
	options  string // its options, as YAML
	encoding string // content-encoding both send
	filter   string // Envoy's compressor library config (compressor_library)
}

var corpusPairs = []corpusPair{
	{"gzip 1", false, 0, "gzip", "level: 1", "gzip", gzipLibrary("COMPRESSION_LEVEL_1")},
	{"gzip 6", true, 0.035, "gzip", "level: 6", "gzip", gzipLibrary("COMPRESSION_LEVEL_6")},
	{"gzip 9", true, 0, "gzip", "level: 9", "gzip", gzipLibrary("COMPRESSION_LEVEL_9")},
	{"zstd fastest / 1", false, 0.01, "zstd", "level: fastest", "zstd", zstdLibrary(1)},
	{"zstd default / 3", true, 0.015, "zstd", "level: default", "zstd", zstdLibrary(3)},
	{"brotli 3 / 18", false, 0.002, "brotli", "quality: 3\nwindow_bits: 18", "br", brotliLibrary(3, 18)},
	{"brotli 9 / 22", true, 0.01, "brotli", "quality: 9\nwindow_bits: 22", "br", brotliLibrary(9, 22)},
}

// Envoy's gzip runs at zlib's own defaults for window and memory (15 and 8), not at
// Envoy's smaller defaults (12 and 5), so that only the level differs.
func gzipLibrary(level string) string {
	return `{name: gzip, typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip, compression_level: ` +
		level + `, window_bits: 15, memory_level: 8}}`
}

func zstdLibrary(level int) string {
	return fmt.Sprintf(`{name: zstd, typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd, compression_level: %d}}`, level)
}

func brotliLibrary(quality, windowBits int) string {
	return fmt.Sprintf(`{name: brotli, typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli, quality: %d, window_bits: %d}}`, quality, windowBits)
}

// corpusEnvoyConfig is Envoy in front of the echo with one compressor filter per pair,
// each disabled but on its own route /pairN. The content types are those of the
// corpus that are not compressed media, as bodystream's default skip list has it.
func corpusEnvoyConfig() string {
	var filters, routes strings.Builder
	for i, p := range corpusPairs {
		fmt.Fprintf(&filters, `
          - name: compressor-%d
            disabled: true
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
              compressor_library: %s
              response_direction_config:
                common_config:
                  min_content_length: 30
                  content_type: [application/json, text/plain, text/html, text/csv, application/octet-stream]`, i, p.filter)
		fmt.Fprintf(&routes, `
              - match: {prefix: /pair%d/}
                route: {cluster: echo, timeout: 0s}
                typed_per_filter_config:
                  compressor-%d:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute
                      overrides: {response_direction_config: {}}`, i, i)
	}
	return `admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 9901}
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {address: 127.0.0.1, port_value: 18080}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: local
              domains: ["*"]
              routes:` + routes.String() + `
          http_filters:` + filters.String() + `
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: echo
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: 18081}
`
}

// corpusStage builds pair's bodystream stage as the configuration would.
func corpusStage(tb testing.TB, p corpusPair) stage.Spec {
	kind, ok := stage.Lookup(p.kind)
	if !ok {
		tb.Fatalf("no stage kind %q", p.kind)
	}
	spec, err := kind.Build(func(v any) error { return yaml.Unmarshal([]byte(p.options), v) })
	if err != nil {
		tb.Fatalf("%s: %v", p.name, err)
	}
	return spec
}

// bodystreamCompress runs spec over e as the server does (plan with the headers and
// the preview, then transform) and returns the body it sends, and whether it encoded.
func bodystreamCompress(tb testing.TB, spec stage.Spec, e corpusEntry) ([]byte, bool) {
	m := &stage.Message{Direction: stage.Response, Header: textproto.MIMEHeader{"Content-Type": {e.contentType}}}
	step, err := spec.Plan(m, e.data[:min(len(e.data), spec.PreviewSize(m))])
	if err != nil {
		tb.Fatal(err)
	}
	if step.Transformer == nil {
		return e.data, false
	}
	var out bytes.Buffer
	if err := step.Transformer.Transform(&out, bytes.NewReader(e.data)); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes(), true
}

// decodeAs decodes body of the given content-encoding ("" for none).
func decodeAs(encoding string, body []byte) ([]byte, error) {
	switch encoding {
	case "":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	case "br":
		return io.ReadAll(brotli.NewReader(bytes.NewReader(body)))
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}

// TestCompressionCorpus compresses every corpus entry with bodystream's compressors
// and, in the same run, with Envoy's compressor filter at the matching level in front
// of the echo, and holds bodystream to sending no more bytes than Envoy on any entry,
// give or take the pair's measured slack.
// By default it runs the stages' default levels; with CORPUS_FULL=1 every pair, and it
// also measures bodystream's compression speed (one core, in-process): the table
// bench/RESULTS.md records.
func TestCompressionCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Envoy")
	}
	harness.RequireEnvoy(t)
	corpus := compressionCorpus(t)

	dir := t.TempDir()
	configPath := filepath.Join(dir, "envoy-compressors.yaml")
	if err := os.WriteFile(configPath, []byte(corpusEnvoyConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	full := os.Getenv("CORPUS_FULL") == "1"
	timeout := 3 * time.Minute
	if full {
		timeout = 30 * time.Minute // the speed of every pair on every entry
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stack, err := harness.Start(ctx, harness.Options{EnvoyConfig: configPath, NoBodystream: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| pair\t entry\t bytes\t bodystream\t Envoy\t bodystream MB/s\t")
	for i, p := range corpusPairs {
		if p.fullOnly && !full {
			continue
		}
		spec := corpusStage(t, p)
		for _, e := range corpus {
			ours, encoded := bodystreamCompress(t, spec, e)
			ourEncoding := ""
			if encoded {
				ourEncoding = p.encoding
			}
			if got, err := decodeAs(ourEncoding, ours); err != nil || !bytes.Equal(got, e.data) {
				t.Fatalf("%s, %s: bodystream's body does not decode to the entry: %v", p.name, e.name, err)
			}

			theirs, theirEncoding := envoyCompress(ctx, t, client, fmt.Sprintf("%s/pair%d/echo", stack.URL, i), p.encoding, e)
			if theirEncoding != "" && theirEncoding != p.encoding {
				t.Fatalf("%s, %s: Envoy answered content-encoding %q", p.name, e.name, theirEncoding)
			}
			if got, err := decodeAs(theirEncoding, theirs); err != nil || !bytes.Equal(got, e.data) {
				t.Fatalf("%s, %s: Envoy's body does not decode to the entry: %v", p.name, e.name, err)
			}
			// Never larger than the body itself, and never larger than Envoy's beyond
			// the pair's measured slack (none for gzip 1 and 9).
			if encoded && len(ours) >= len(e.data) {
				t.Errorf("%s, %s: bodystream encodes %d bytes into %d", p.name, e.name, len(e.data), len(ours))
			}
			if float64(len(ours)) > float64(len(theirs))*(1+p.slack) {
				t.Errorf("%s, %s: bodystream sends %d bytes, Envoy %d: more than %.1f%% larger",
					p.name, e.name, len(ours), len(theirs), 100*p.slack)
			}

			speed := "-"
			if full && encoded {
				speed = fmt.Sprintf("%.0f", corpusThroughput(spec, e))
			}
			fmt.Fprintf(tw, "| %s\t %s\t %d\t %s\t %s\t %s\t\n", p.name, e.name, len(e.data),
				sizeCell(len(ours), len(e.data), encoded), sizeCell(len(theirs), len(e.data), theirEncoding != ""), speed)
		}
	}
	tw.Flush()
	t.Logf("compression corpus (size, ratio to the original; \"as is\" when not encoded):\n%s", table.String())
}

func sizeCell(n, original int, encoded bool) string {
	if !encoded {
		return fmt.Sprintf("%d (as is)", n)
	}
	return fmt.Sprintf("%d (%.3f)", n, float64(n)/float64(original))
}

// envoyCompress sends e through Envoy's route at url, asking for encoding, and
// returns the response body as it came and its content-encoding.
func envoyCompress(ctx context.Context, t *testing.T, client *http.Client, url, encoding string, e corpusEntry) ([]byte, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(e.data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", e.contentType)
	req.Header.Set("Accept-Encoding", encoding)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d, %v", url, resp.StatusCode, err)
	}
	return body, resp.Header.Get("Content-Encoding")
}

// corpusThroughput is bodystream's compression speed on e in MB/s of input, one core.
func corpusThroughput(spec stage.Spec, e corpusEntry) float64 {
	r := testing.Benchmark(func(b *testing.B) {
		b.SetBytes(int64(len(e.data)))
		for b.Loop() {
			bodystreamCompress(b, spec, e)
		}
	})
	return float64(r.Bytes) * float64(r.N) / r.T.Seconds() / 1e6
}
