package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bodystream/bodystream/internal/harness"
)

// stack is one test's running stack and what its leak check compares against.
type stack struct {
	*harness.Stack
	archive        string // the archive route's directory
	metricsURL     string
	baseGoroutines float64
	transports     map[harness.Protocol]*http.Transport
}

// stackOptions say how a test's stack differs from the default one.
type stackOptions struct {
	config     string            // bodystream's configuration under testdata/ (default bodystream.yaml)
	envoyEdits map[string]string // text of resources/envoy.yaml to replace, each found once
	bodystream []string          // extra bodystream flags
}

// Leak bounds: what may remain once every stream has ended. The gRPC connection from
// Envoy and its keepalive own a few goroutines, counted in the baseline; a goroutine
// per failed stream would soon pass the slack.
const (
	goroutineSlack = 8
	settleTimeout  = 30 * time.Second
)

var requestIDs atomic.Int64

// newRequestID names an upload in every process's log.
func newRequestID(t *testing.T) string {
	return fmt.Sprintf("faults-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), requestIDs.Add(1))
}

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("the fault suite starts a stack per test: not with -short (make test runs it)")
	}
	harness.RequireEnvoy(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive")
	if err := os.Mkdir(archive, 0o755); err != nil {
		t.Fatal(err)
	}
	if o.config == "" {
		o.config = "bodystream.yaml"
	}
	config, err := os.ReadFile(filepath.Join("testdata", o.config))
	if err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(dir, "bodystream.yaml")
	if err := os.WriteFile(configPath, []byte(strings.ReplaceAll(string(config), "ARCHIVE_DIR", archive)), 0o644); err != nil {
		t.Fatal(err)
	}
	envoyConfig := ""
	if len(o.envoyEdits) > 0 {
		data, err := os.ReadFile(filepath.Join(root, "resources", "envoy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for old, edit := range o.envoyEdits {
			if n := strings.Count(text, old); n != 1 {
				t.Fatalf("resources/envoy.yaml has %q %d times, want once", old, n)
			}
			text = strings.Replace(text, old, edit, 1)
		}
		envoyConfig = filepath.Join(dir, "envoy-in.yaml")
		if err := os.WriteFile(envoyConfig, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := harness.Start(t.Context(), harness.Options{
		Root: root, BinDir: binDir, Dir: dir, EnvoyConfig: envoyConfig,
		BodystreamArgs: append([]string{"-config", configPath}, o.bodystream...),
		EchoArgs:       []string{"-digest"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{Stack: hs, archive: archive, metricsURL: "http://" + hs.MetricsAddr + "/metrics",
		transports: map[harness.Protocol]*http.Transport{}}
	for _, proto := range protocols {
		tr := harness.NewTransport(proto)
		// 150 HTTP/1.1 connections at once from a starved process may wait long to
		// connect; a failed dial would be the test's, not the stack's.
		tr.DialContext = (&net.Dialer{Timeout: 2 * time.Minute}).DialContext
		s.transports[proto] = tr
	}
	t.Cleanup(func() {
		for _, tr := range s.transports {
			tr.CloseIdleConnections()
		}
		if err := hs.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			t.Logf("logs:\n%s", hs.Logs(60))
		}
	})
	// The baseline counts what the first streams set up for good: Envoy's gRPC
	// connection, its keepalive, pooled workers. The default route goes through
	// bodystream (headers only) whatever its configuration's pipelines.
	for _, proto := range []harness.Protocol{harness.H1, harness.H2} {
		s.exact(t, "/echo", proto, 4<<10)
	}
	s.baseGoroutines = s.settle(t)["go_goroutines"]
	return s
}

// gauges reads bodystream's metrics; the names are written as the exposition has them.
func (s *stack) gauges(t *testing.T, names ...string) map[string]float64 {
	t.Helper()
	g, err := harness.ScrapeGauges(context.Background(), s.metricsURL, names...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// waitGauge polls a metric until ok says yes; a gauge that never gets there fails.
func (s *stack) waitGauge(t *testing.T, name string, what string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		v := s.gauges(t, name)[name]
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %s: want %s", name, v, settleTimeout, what)
		}
		waitPoll()
	}
}

const (
	streamsActive = "bodystream_streams_active"
	budgetInUse   = "bodystream_memory_budget_in_use_bytes"
	goroutines    = "go_goroutines"
	// requestMessages counts request body messages from Envoy, whatever the route.
	requestMessages = `bodystream_stream_messages_received_total{message="request_body"}`
)

// settle waits until no stream is active and no budget reserved, and returns the gauges.
func (s *stack) settle(t *testing.T) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		g := s.gauges(t, streamsActive, budgetInUse, goroutines)
		if g[streamsActive] == 0 && g[budgetInUse] == 0 {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s %v, %s %v: want 0 and 0", settleTimeout, streamsActive, g[streamsActive], budgetInUse, g[budgetInUse])
		}
		waitPoll()
	}
}

// checkNoLeak is every test's last word: no stream, budget or goroutine left in
// bodystream, no temporary file in the archive, no race, panic or broken invariant
// in any log.
func (s *stack) checkNoLeak(t *testing.T) {
	t.Helper()
	s.settle(t)
	var last float64
	s.waitGauge(t, goroutines, fmt.Sprintf("at most the baseline %v + %d", s.baseGoroutines, goroutineSlack),
		func(v float64) bool { last = v; return v <= s.baseGoroutines+goroutineSlack })
	t.Logf("bodystream settled: no stream, no budget, %v goroutines (baseline %v)", last, s.baseGoroutines)
	s.checkDiskAndLogs(t)
}

// checkDiskAndLogs: no temporary file in the archive, no race, panic or broken
// invariant in any process's log.
func (s *stack) checkDiskAndLogs(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(s.archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left in the archive: %s", e.Name())
		}
	}
	for _, p := range s.Processes() {
		harness.ScanLines(p.LogPath, func(line string) {
			for _, mark := range harness.ProblemMarks {
				if strings.Contains(line, mark) {
					t.Errorf("%s: %s", p.Name, line)
				}
			}
		})
	}
}

// upload sends size bytes of kind to path and reads the whole answer.
func (s *stack) upload(ctx context.Context, t *testing.T, path string, proto harness.Protocol, kind harness.BodyKind, size int64, header http.Header) (*harness.Body, harness.Result, error) {
	t.Helper()
	body, err := harness.NewBody(kind, size, uint64(requestIDs.Add(1)), "")
	if err != nil {
		t.Fatal(err)
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", body.ContentType())
	}
	if h.Get("X-Request-Id") == "" {
		h.Set("X-Request-Id", newRequestID(t))
	}
	res, err := harness.Upload(ctx, s.transports[proto], harness.Request{URL: s.URL + path, Body: body, Length: size, Header: h})
	return body, res, err
}

// exact uploads random bytes and requires them back byte for byte with a 200.
func (s *stack) exact(t *testing.T, path string, proto harness.Protocol, size int64) {
	t.Helper()
	body, res, err := s.upload(t.Context(), t, path, proto, harness.BodyRandom, size, nil)
	if err != nil {
		t.Fatalf("%s over %s: %v", path, proto, err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("%s over %s: status %d %q, want 200", path, proto, res.Status, res.Head)
	}
	if err := res.Verify(body.Sent()); err != nil {
		t.Fatalf("%s over %s: %v", path, proto, err)
	}
}

// upstreamLine is what the echo (-digest) logged for a request id: how its body
// ended and its SHA-256 as received; ok is false when the request never reached it.
type upstreamLine struct {
	ok             bool
	bodyEnd, sum   string
	status, length string
}

func (s *stack) upstreamSaw(t *testing.T, id string) upstreamLine {
	t.Helper()
	var got upstreamLine
	harness.ScanLines(s.Process("echo").LogPath, func(line string) {
		f := harness.ParseLogfmt(line)
		if f["request_id"] == id {
			got = upstreamLine{ok: true, bodyEnd: f["body_end"], sum: f["sha256"], status: f["status"], length: f["bytes_in"]}
		}
	})
	return got
}

// checkNoCleanTruncation: whatever reached the upstream for id either ended with an
// error or is exactly the body sent (sha256 sum): a clean end on fewer or other bytes
// would pass a truncated body off as complete.
func (s *stack) checkNoCleanTruncation(t *testing.T, id string, sum []byte) upstreamLine {
	t.Helper()
	saw := s.upstreamSaw(t, id)
	if saw.ok && saw.bodyEnd == "eof" && (sum == nil || saw.sum != hex.EncodeToString(sum)) {
		t.Errorf("request %s: the upstream got a body that ended cleanly with %s bytes, sha256 %s: not the upload", id, saw.length, saw.sum)
	}
	return saw
}

// gatedBody sends the first pauseAt bytes of src, then waits until gate is closed
// (and sends the rest), ctx ends or the transport closes the body (and fails the
// body, which hangs the client up). The HTTP/2 transport closes a request body to
// stop its writer once the stream is reset, and waits for the Read to return.
type gatedBody struct {
	src     io.Reader
	pauseAt int64
	n       int64
	gate    <-chan struct{}
	ctx     context.Context
	closed  chan struct{}
	once    sync.Once
}

func newGatedBody(ctx context.Context, src io.Reader, pauseAt int64, gate <-chan struct{}) *gatedBody {
	return &gatedBody{src: src, pauseAt: pauseAt, gate: gate, ctx: ctx, closed: make(chan struct{})}
}

func (g *gatedBody) Read(p []byte) (int, error) {
	if g.n >= g.pauseAt {
		select {
		case <-g.gate:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		case <-g.closed:
			return 0, errBodyClosed
		}
	} else if left := g.pauseAt - g.n; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := g.src.Read(p)
	g.n += int64(n)
	return n, err
}

func (g *gatedBody) Close() error {
	g.once.Do(func() { close(g.closed) })
	return nil
}

var errBodyClosed = errors.New("request body closed by the transport")

// checkArchived: a file the archive holds for request id is the whole body sent (n
// bytes of SHA-256 sum), as the file stage promises (complete files only). There may
// be none, when the body failed before its end reached bodystream, unless want.
func (s *stack) checkArchived(t *testing.T, id string, n int64, sum []byte, want bool) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(s.archive, id+".*"))
	if err != nil {
		t.Fatal(err)
	}
	if want && len(matches) != 1 {
		t.Errorf("request %s: archived as %v, want one file", id, matches)
	}
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(data)
		if int64(len(data)) != n || !bytes.Equal(got[:], sum) {
			t.Errorf("archived %s has %d bytes, sha256 %x: not the %d bytes sent", filepath.Base(m), len(data), got, n)
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// waitPoll paces a loop that polls another process's metrics: they change with no
// event this process could wait on.
func waitPoll() { time.Sleep(10 * time.Millisecond) }
