// Package config is bodystream's YAML configuration schema: one file, every field with
// a default that serves (defaults.yaml), and a wrong value refused at start-up with the
// field's path. It builds nothing: pipeline.Build turns a validated Config into ready
// pipelines.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/stage"
)

// Config is the whole configuration file. See resources/bodystream.yaml for an
// annotated example and README.md for every field.
type Config struct {
	// Listen is the gRPC ext_proc address: host:port, or unix:///path/to.sock.
	Listen string `yaml:"listen"`
	// SocketMode is the file mode of a unix:// listener's socket, in octal ("0660").
	SocketMode FileMode `yaml:"socket_mode"`
	// TLS turns on TLS (and, with a client CA, mTLS) on the gRPC listener.
	TLS TLS `yaml:"tls"`
	// AdminListen serves /metrics, /healthz, /readyz and, with PProf, /debug/pprof/;
	// empty disables it.
	AdminListen string `yaml:"admin_listen"`
	// PProf adds Go's profiler to the admin listener.
	PProf bool `yaml:"pprof"`
	// DrainDelay is how long, after SIGTERM, new streams are still accepted while
	// readiness and the gRPC health service already say not serving, so that Envoy's
	// health checks and the orchestrator move traffic away first.
	DrainDelay Duration `yaml:"drain_delay"`
	// DrainTimeout is how long the streams in flight may take to finish after the drain
	// delay before they are cut.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// LogFormat is text or json; LogLevel debug, info, warn or error.
	LogFormat string `yaml:"log_format"`
	LogLevel  string `yaml:"log_level"`
	// Readiness says when /readyz answers 503 besides draining.
	Readiness Readiness `yaml:"readiness"`
	// ChunkSize bounds every body message bodystream cuts for Envoy
	// (FULL_DUPLEX_STREAMED): the whole gRPC message, protobuf framing included, so
	// that Envoy's max_receive_message_length may equal it. At least 1KiB, so that
	// framing (under 32 bytes) and the last message's dynamic metadata leave room.
	ChunkSize ByteSize `yaml:"chunk_size"`
	// FlushDelay is how long output may wait for more before a partial message goes out.
	FlushDelay Duration `yaml:"flush_delay"`
	// MaxBufferedBody is the largest body accepted in one message (BUFFERED modes);
	// it sets the gRPC receive limit.
	MaxBufferedBody ByteSize `yaml:"max_buffered_body"`
	GRPC            GRPC     `yaml:"grpc"`
	Memory          Memory   `yaml:"memory"`
	// Pipelines are named step lists, e.g. `gzip: [{gzip: {level: 1}}]`.
	Pipelines map[string]PipelineSpec `yaml:"pipelines"`
	// Routes choose the pipelines of a request and its response.
	Routes []Route `yaml:"routes"`
	// Default applies when no route matches.
	Default RoutePipelines `yaml:"default"`
}

// GRPC holds the knobs that bound what Envoy can push into one stream.
type GRPC struct {
	// StreamWindow is the fixed HTTP/2 stream window (no automatic growth): the most
	// body bytes Envoy can have in flight towards one stream that bodystream has not read.
	StreamWindow ByteSize `yaml:"stream_window"`
	// ConnWindow is the fixed HTTP/2 connection window. Below StreamWindow ×
	// MaxConcurrentStreams it can bind before the streams' windows do, and then Envoy
	// chooses which streams send: with hundreds of uploads on a connection some get
	// nothing until Envoy's idle timeout (bench/RESULTS.md, "Many uploads").
	ConnWindow           ByteSize `yaml:"conn_window"`
	MaxConcurrentStreams uint32   `yaml:"max_concurrent_streams"`
	// KeepaliveTime pings an idle connection so dead Envoys are noticed.
	KeepaliveTime Duration `yaml:"keepalive_time"`
}

// Memory is the global budget all streams draw their buffers from.
type Memory struct {
	// Budget is the total of bytes the streams' buffers may hold; 0 means unlimited.
	Budget ByteSize `yaml:"budget"`
	// AdmissionWait is how long a new stream waits for budget before it is refused with 503.
	AdmissionWait Duration `yaml:"admission_wait"`
	// RetryAfter is the retry-after value (seconds) sent with 503.
	RetryAfter Duration `yaml:"retry_after"`
}

// TLS is the gRPC listener's certificate and, for mTLS, the CA its clients'
// certificates must chain to. Files are PEM.
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.Cert != "" }

// Readiness bounds what /readyz tolerates.
type Readiness struct {
	// BudgetSpentFor turns readiness false once the memory budget has had no room for
	// a new stream for this long, so that a load balancer sends new uploads to another
	// replica; 0 never does.
	BudgetSpentFor Duration `yaml:"budget_spent_for"`
}

// PipelineSpec is a pipeline's list of steps as written in YAML.
type PipelineSpec []StepSpec

// StepSpec is one step: a single-key map from kind to options, e.g. `gzip: {level: 1}`
// or just `identity`.
type StepSpec struct {
	Kind    string
	Options yaml.Node
}

func (s *StepSpec) UnmarshalYAML(node *yaml.Node) error {
	switch node.Kind {
	case yaml.ScalarNode:
		s.Kind = node.Value
		return nil
	case yaml.MappingNode:
		if len(node.Content) != 2 {
			return fmt.Errorf("line %d: a step is a map with one key, the stage kind (one of %s)", node.Line, strings.Join(stage.Kinds(), ", "))
		}
		s.Kind = node.Content[0].Value
		s.Options = *node.Content[1]
		return nil
	}
	return fmt.Errorf("line %d: a step is a stage kind or a map {kind: options}", node.Line)
}

// Route maps requests to the pipelines of both directions.
type Route struct {
	// Name is matched against the gRPC initial metadata x-bodystream-route (set per
	// route in envoy.yaml) and then against Envoy's xds.route_name attribute.
	Name string `yaml:"name"`
	// EnvoyRoutePrefix, when set, matches the start of Envoy's xds.route_name
	// attribute, for control planes that name routes themselves: Envoy Gateway names
	// them httproute/<namespace>/<name>/rule/<i>/match/<j>/<host>.
	EnvoyRoutePrefix string `yaml:"envoy_route_prefix"`
	// PathPrefix, when set, matches the request path as a last resort.
	PathPrefix     string `yaml:"path_prefix"`
	RoutePipelines `yaml:",inline"`
	// RequestHeaders and ResponseHeaders are fixed header edits for each direction.
	RequestHeaders  HeaderEdits `yaml:"request_headers"`
	ResponseHeaders HeaderEdits `yaml:"response_headers"`
}

// RoutePipelines names the pipeline of each direction.
type RoutePipelines struct {
	Request  string `yaml:"request"`
	Response string `yaml:"response"`
}

//go:embed defaults.yaml
var defaultsYAML []byte

// Defaults returns the built-in configuration (defaults.yaml): what runs when no file
// is given, and what a file's fields override.
func Defaults() *Config {
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(defaultsYAML))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		panic(fmt.Sprintf("config: defaults.yaml: %v", err)) // fixed at build time; a test reads it
	}
	return cfg
}

// Load reads and validates the file at path. An empty path gives the defaults.
func Load(path string) (*Config, error) { return LoadOverride(path, nil) }

// LoadOverride reads the file at path (the defaults if empty), lets override change
// it (command-line flags), then validates the result: a flag can mend a file's field
// and a wrong flag is refused with the field's path like a wrong field.
func LoadOverride(path string, override func(*Config)) (*Config, error) {
	cfg := Defaults()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		defer f.Close()
		if err := decode(f, cfg); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if override != nil {
		override(cfg)
	}
	if err := cfg.Validate(); err != nil {
		if path != "" {
			err = fmt.Errorf("config %s: %w", path, err)
		}
		return nil, err
	}
	return cfg, nil
}

// Parse reads a configuration over the defaults, refusing unknown fields, and validates it.
func Parse(r io.Reader) (*Config, error) {
	cfg := Defaults()
	if err := decode(r, cfg); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func decode(r io.Reader, cfg *Config) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Warnings are values that work but that an operator should know the cost of, each
// starting with the field's path like Validate's errors.
func (c *Config) Warnings() []string {
	var w []string
	if need := int64(c.GRPC.StreamWindow) * int64(c.GRPC.MaxConcurrentStreams); int64(c.GRPC.ConnWindow) < need {
		w = append(w, fmt.Sprintf("grpc.conn_window: %s is less than grpc.stream_window × grpc.max_concurrent_streams (%s): with many streams on one Envoy connection it binds before their windows, Envoy then chooses which streams send, and some may send nothing until Envoy's stream idle timeout",
			c.GRPC.ConnWindow, ByteSize(need)))
	}
	return w
}

// Validate checks every field, that every step names a registered stage kind and that
// every route names a pipeline. Its errors start with the field's path, e.g.
// `routes[2].request: no pipeline named "zip"`. A step's own options are checked when
// pipeline.Build builds it.
func (c *Config) Validate() error {
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if err := CheckListenAddress(c.Listen, true); err != nil {
		fail("listen", "%v", err)
	}
	if c.SocketMode&^0o777 != 0 || c.SocketMode&0o600 != 0o600 {
		fail("socket_mode", "must be permission bits that let bodystream read and write its socket (0600..0777), got %s", c.SocketMode)
	}
	if c.AdminListen != "" {
		if err := CheckListenAddress(c.AdminListen, false); err != nil {
			fail("admin_listen", "%v", err)
		}
	}
	switch {
	case c.TLS.Cert == "" && c.TLS.Key != "":
		fail("tls.cert", "required with tls.key")
	case c.TLS.Cert != "" && c.TLS.Key == "":
		fail("tls.key", "required with tls.cert")
	case c.TLS.Cert == "" && c.TLS.ClientCA != "":
		fail("tls.client_ca", "needs tls.cert and tls.key: mTLS is TLS with client certificates")
	}
	if c.DrainDelay < 0 || c.DrainDelay > Duration(time.Hour) {
		fail("drain_delay", "must be between 0 and 1h, got %s", c.DrainDelay)
	}
	if c.DrainTimeout < 0 {
		fail("drain_timeout", "must not be negative, got %s", c.DrainTimeout)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		fail("log_format", "must be text or json, got %q", c.LogFormat)
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		fail("log_level", "%v", err)
	}
	if c.Readiness.BudgetSpentFor < 0 {
		fail("readiness.budget_spent_for", "must not be negative (0 disables), got %s", c.Readiness.BudgetSpentFor)
	}
	if c.ChunkSize < 1<<10 || c.ChunkSize > 4<<20 {
		fail("chunk_size", "must be between 1KiB and 4MiB (a whole gRPC message, framing included), got %s", c.ChunkSize)
	}
	if c.FlushDelay < 0 || c.FlushDelay > Duration(time.Second) {
		fail("flush_delay", "must be between 0 and 1s, got %s", c.FlushDelay)
	}
	if c.MaxBufferedBody < 1<<10 {
		fail("max_buffered_body", "must be at least 1KiB, got %s", c.MaxBufferedBody)
	}
	if c.GRPC.StreamWindow < 64<<10 {
		fail("grpc.stream_window", "must be at least 64KiB (HTTP/2's initial window), got %s", c.GRPC.StreamWindow)
	}
	if c.GRPC.ConnWindow < c.GRPC.StreamWindow {
		fail("grpc.conn_window", "must be at least grpc.stream_window (%s), got %s", c.GRPC.StreamWindow, c.GRPC.ConnWindow)
	}
	if c.GRPC.MaxConcurrentStreams == 0 {
		fail("grpc.max_concurrent_streams", "must be at least 1")
	}
	if c.GRPC.KeepaliveTime < 0 {
		fail("grpc.keepalive_time", "must not be negative")
	}
	if c.Memory.AdmissionWait < 0 {
		fail("memory.admission_wait", "must not be negative")
	}
	if c.Memory.RetryAfter < Duration(time.Second) {
		fail("memory.retry_after", "must be at least 1s, got %s", c.Memory.RetryAfter)
	}

	for _, name := range slices.Sorted(maps.Keys(c.Pipelines)) {
		for i, step := range c.Pipelines[name] {
			if _, ok := stage.Lookup(step.Kind); !ok {
				fail(fmt.Sprintf("pipelines.%s[%d]", name, i), "unknown stage %q (have %s)", step.Kind, strings.Join(stage.Kinds(), ", "))
			}
		}
	}

	checkPipelines := func(path string, rp RoutePipelines) {
		if _, ok := c.Pipelines[rp.Request]; !ok {
			fail(path+".request", "no pipeline named %q (have %s)", rp.Request, strings.Join(slices.Sorted(maps.Keys(c.Pipelines)), ", "))
		}
		if _, ok := c.Pipelines[rp.Response]; !ok {
			fail(path+".response", "no pipeline named %q (have %s)", rp.Response, strings.Join(slices.Sorted(maps.Keys(c.Pipelines)), ", "))
		}
	}
	checkPipelines("default", c.Default)
	seen := map[string]bool{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r.Name == "" && r.PathPrefix == "" && r.EnvoyRoutePrefix == "" {
			fail(path, "needs a name, an envoy_route_prefix or a path_prefix")
		}
		if r.Name != "" && seen[r.Name] {
			fail(path+".name", "%q is used twice", r.Name)
		}
		seen[r.Name] = true
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			fail(path+".path_prefix", "must start with /, got %q", r.PathPrefix)
		}
		if r.Request == "" {
			c.Routes[i].Request = c.Default.Request
		}
		if r.Response == "" {
			c.Routes[i].Response = c.Default.Response
		}
		checkPipelines(path, c.Routes[i].RoutePipelines)
		r.RequestHeaders.validate(path+".request_headers", fail)
		r.ResponseHeaders.validate(path+".response_headers", fail)
	}
	return errors.Join(errs...)
}

// Decode decodes the step's options into v, refusing unknown fields; a step written
// as a bare kind leaves v as it is. yaml.Node.Decode has no strict mode, so the node
// goes through a strict decoder.
func (s StepSpec) Decode(v any) error {
	if s.Options.Kind == 0 {
		return nil
	}
	if s.Options.Kind != yaml.MappingNode {
		return fmt.Errorf("options must be a map, got %q", s.Options.Value)
	}
	text, err := yaml.Marshal(&s.Options)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// unixScheme prefixes a Unix-socket listen address: unix:///run/bodystream.sock.
const unixScheme = "unix://"

// SplitListenAddress returns the network ("tcp" or "unix") and address of a listen
// address as written in the configuration.
func SplitListenAddress(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, unixScheme); ok {
		return "unix", path
	}
	return "tcp", addr
}

// CheckListenAddress refuses what net.Listen would: an address must be host:port with
// a numeric port (the host may be empty for every interface) or, where unixOK,
// unix:// and an absolute path.
func CheckListenAddress(addr string, unixOK bool) error {
	example := "an address like 127.0.0.1:50051"
	if unixOK {
		example += " or unix:///run/bodystream.sock"
	}
	if addr == "" {
		return fmt.Errorf("must be %s", example)
	}
	if network, path := SplitListenAddress(addr); network == "unix" {
		if !unixOK {
			return fmt.Errorf("must be host:port, got %q", addr)
		}
		if !filepath.IsAbs(path) {
			return fmt.Errorf("%q: a Unix socket path must be absolute (unix:///path/to.sock)", addr)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not %s: %w", addr, example, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// ParseLogLevel reads debug, info, warn or error.
func ParseLogLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return level, nil
}

// FileMode is a file's permission bits written in octal, e.g. "0660".
type FileMode os.FileMode

func (m *FileMode) UnmarshalYAML(node *yaml.Node) error {
	v, err := strconv.ParseUint(strings.TrimPrefix(node.Value, "0o"), 8, 32)
	if err != nil {
		return fmt.Errorf("line %d: %q is not an octal file mode like 0660", node.Line, node.Value)
	}
	*m = FileMode(v)
	return nil
}

func (m FileMode) String() string { return fmt.Sprintf("%#o", uint32(m)) }

// ByteSize is a number of bytes written with human units ("64KiB", "1 MB", 4096).
type ByteSize int64

func (b *ByteSize) UnmarshalYAML(node *yaml.Node) error {
	n, err := humanize.ParseBytes(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a size like 64KiB: %w", node.Line, node.Value, err)
	}
	*b = ByteSize(n)
	return nil
}

func (b ByteSize) String() string { return humanize.IBytes(uint64(b)) }

// Duration is a time.Duration written like "2ms" or "1m".
type Duration time.Duration

func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	v, err := time.ParseDuration(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 2ms: %w", node.Line, node.Value, err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }
