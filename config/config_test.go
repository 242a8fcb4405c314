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
	for _, name := range []string{"identity", "gzip", "compress"} {
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
		{"listen not an address", `listen: "not an address"`, `listen: "not an address" is not an address like 127.0.0.1:50051`},
		{"listen empty", `listen: ""`, "listen: must be an address like"},
		{"listen port not a number", "listen: 127.0.0.1:http2", `listen: "127.0.0.1:http2": port "http2" is not a number`},
		{"listen port too large", "listen: 127.0.0.1:70000", `port "70000" is not a number from 0 to 65535`},
		{"listen relative socket", "listen: unix://run/b.sock", "listen: \"unix://run/b.sock\": a Unix socket path must be absolute"},
		{"admin on a socket", "admin_listen: unix:///tmp/a.sock", `admin_listen: must be host:port`},
		{"admin not an address", "admin_listen: localhost", `admin_listen: "localhost" is not an address`},
		{"socket mode not octal", `socket_mode: "rw"`, `"rw" is not an octal file mode`},
		{"socket mode locks bodystream out", `socket_mode: "0060"`, "socket_mode: must be permission bits that let bodystream read and write"},
		{"tls key without cert", "tls: {key: k.pem}", "tls.cert: required with tls.key"},
		{"tls cert without key", "tls: {cert: c.pem}", "tls.key: required with tls.cert"},
		{"client CA without TLS", "tls: {client_ca: ca.pem}", "tls.client_ca: needs tls.cert and tls.key"},
		{"negative drain delay", "drain_delay: -1s", "drain_delay: must be between 0 and 1h"},
		{"negative drain timeout", "drain_timeout: -1s", "drain_timeout: must not be negative"},
		{"unknown log format", "log_format: xml", `log_format: must be text or json, got "xml"`},
		{"unknown log level", "log_level: loud", `log_level: must be debug, info, warn or error, got "loud"`},
		{"negative readiness window", "readiness: {budget_spent_for: -1s}", "readiness.budget_spent_for: must not be negative"},
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

func TestParseOperatingFields(t *testing.T) {
	cases := []struct {
		name, yaml string
		check      func(*Config) bool
	}{
		{"defaults", "", func(c *Config) bool {
			return c.AdminListen == "127.0.0.1:9464" && !c.PProf && time.Duration(c.DrainTimeout) == 5*time.Minute &&
				c.DrainDelay > 0 && c.LogFormat == "text" && c.LogLevel == "info" && c.SocketMode == 0o660 && !c.TLS.Enabled()
		}},
		{"unix socket", "listen: unix:///run/b.sock\nsocket_mode: \"0666\"", func(c *Config) bool {
			n, a := SplitListenAddress(c.Listen)
			return n == "unix" && a == "/run/b.sock" && c.SocketMode == 0o666
		}},
		{"socket mode with 0o", "socket_mode: 0o600", func(c *Config) bool { return c.SocketMode == 0o600 }},
		{"every interface", "listen: :50051", func(c *Config) bool { n, a := SplitListenAddress(c.Listen); return n == "tcp" && a == ":50051" }},
		{"IPv6", "listen: \"[::1]:50051\"", func(c *Config) bool { return c.Listen == "[::1]:50051" }},
		{"admin off", `admin_listen: ""`, func(c *Config) bool { return c.AdminListen == "" }},
		{"mTLS", "tls: {cert: c.pem, key: k.pem, client_ca: ca.pem}", func(c *Config) bool { return c.TLS.Enabled() && c.TLS.ClientCA == "ca.pem" }},
		{"json logs", "log_format: json\nlog_level: debug", func(c *Config) bool { return c.LogFormat == "json" && c.LogLevel == "debug" }},
		{"drain", "drain_delay: 0s\ndrain_timeout: 30s", func(c *Config) bool {
			return c.DrainDelay == 0 && time.Duration(c.DrainTimeout) == 30*time.Second
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Fatalf("parsed %+v", cfg)
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

func TestWarnings(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"defaults", "", ""},
		{"connection window covers every stream's", "grpc: {stream_window: 128KiB, conn_window: 32MiB, max_concurrent_streams: 256}", ""},
		{"connection window binds first", "grpc: {stream_window: 64KiB, conn_window: 1MiB}", "grpc.conn_window: 1.0 MiB is less than grpc.stream_window × grpc.max_concurrent_streams (64 MiB)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(cfg.Warnings(), "\n")
			if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
				t.Errorf("warnings %q, want %q", got, tc.want)
			}
		})
	}
}
