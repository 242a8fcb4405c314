package config

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	_ "github.com/bodystream/bodystream/stages" // the kinds the test files name
)

func TestDefaultsServe(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatalf("built-in configuration is invalid: %v", err)
	}
	for _, name := range []string{"identity", "gzip"} {
		if _, ok := cfg.Pipelines[name]; !ok {
			t.Errorf("built-in pipeline %q missing", name)
		}
	}
	if cfg.ChunkSize != 64<<10 || time.Duration(cfg.FlushDelay) != 2*time.Millisecond {
		t.Errorf("chunk_size %s, flush_delay %s", cfg.ChunkSize, cfg.FlushDelay)
	}
}

func TestParseRefusesWrongValues(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown top-level field", "chunk_sise: 1KiB", "field chunk_sise not found"},
		{"chunk too small", "chunk_size: 10", "chunk_size: must be between 1KiB and 4MiB"},
		{"chunk not a size", "chunk_size: lots", `"lots" is not a size`},
		{"negative delay", "flush_delay: -1ms", "flush_delay: must be between 0 and 1s"},
		{"delay not a duration", "flush_delay: soon", `"soon" is not a duration`},
		{"stream window below HTTP/2's", "grpc: {stream_window: 1KiB}", "grpc.stream_window: must be at least 64KiB"},
		{"conn window below stream window", "grpc: {stream_window: 1MiB, conn_window: 512KiB}", "grpc.conn_window: must be at least grpc.stream_window"},
		{"retry-after too short", "memory: {retry_after: 10ms}", "memory.retry_after: must be at least 1s"},
		{"unknown stage", "pipelines: {p: [gzipp]}", `pipelines.p[0]: unknown stage "gzipp"`},
		{"two kinds in one step", "pipelines: {p: [{gzip: {}, zstd: {}}]}", "a step is a map with one key"},
		{"route to a missing pipeline", "routes: [{name: r, request: nope}]", `routes[0].request: no pipeline named "nope"`},
		{"route without name or prefix", "routes: [{request: gzip}]", "routes[0]: needs a name, an envoy_route_prefix or a path_prefix"},
		{"duplicate route", "routes: [{name: a}, {name: a}]", `routes[1].name: "a" is used twice`},
		{"relative path prefix", "routes: [{path_prefix: up}]", "routes[0].path_prefix: must start with /"},
		{"default to a missing pipeline", "default: {request: nope, response: identity}", `default.request: no pipeline named "nope"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseSizesAndPipelines(t *testing.T) {
	cfg, err := Parse(strings.NewReader(`
chunk_size: 128KiB
max_buffered_body: 1 MB
pipelines:
  media:
    - decompress
    - {hash: {algorithms: [sha256]}}
    - zstd: {level: fastest}
routes:
  - {name: up, request: media}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ChunkSize != 128<<10 || cfg.MaxBufferedBody != 1000*1000 {
		t.Errorf("sizes: chunk %d, buffered %d", cfg.ChunkSize, cfg.MaxBufferedBody)
	}
	p := cfg.Pipelines["media"]
	if len(p) != 3 || p[0].Kind != "decompress" || p[1].Kind != "hash" || p[2].Kind != "zstd" {
		t.Fatalf("pipeline media: %+v", p)
	}
	// A file's pipelines join the built-in ones.
	if _, ok := cfg.Pipelines["gzip"]; !ok {
		t.Error("built-in pipeline gzip gone once the file defines others")
	}
	// A route that names only one direction gets the default for the other.
	if cfg.Routes[0].Response != "identity" {
		t.Errorf("route response pipeline %q, want the default", cfg.Routes[0].Response)
	}
}

// TestExampleFile: the documented example loads, and its routes for the bundled
// envoy.yaml are the built-in ones, so `make run` behaves the same with or without it.
func TestExampleFile(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(file), "..", "resources", "bodystream.yaml")
	text := strings.ReplaceAll(mustRead(t, example), "/tmp/bodystream-archive", t.TempDir())
	cfg, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s: %v", example, err)
	}
	builtin := map[string]RoutePipelines{}
	for _, r := range Defaults().Routes {
		builtin[r.Name] = r.RoutePipelines
	}
	for _, r := range cfg.Routes {
		if want, ok := builtin[r.Name]; ok && want != r.RoutePipelines {
			t.Errorf("route %s: example %+v, built-in %+v", r.Name, r.RoutePipelines, want)
		}
		delete(builtin, r.Name)
	}
	if len(builtin) > 0 {
		t.Errorf("example file lacks built-in routes %v", builtin)
	}
}
