package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// adminClient reads Envoy's admin interface.
type adminClient struct {
	base   string // e.g. http://127.0.0.1:9901
	client *http.Client
}

func newAdminClient(base string) *adminClient {
	// A short timeout: Envoy's admin runs on its main thread, and a sample that
	// waits longer than this is worth skipping rather than queueing.
	return &adminClient{base: base, client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}}
}

// close drops the kept-alive connection to the admin.
func (a *adminClient) close() { a.client.CloseIdleConnections() }

// statsFilter picks the stats a scenario reports: ext_proc's counters, the native
// compressor's, the side stream's cluster and Envoy's allocator.
const statsFilter = `^(http\.ingress\.ext_proc\.|http\.ingress\.compressor\.|cluster\.(bodystream|seed)\.upstream_(cx|rq)_|server\.memory_)`

// memory reads /memory, which tcmalloc answers live. The server.memory_* stats hold
// the same figures but are refreshed only at each stats flush (every 5 s by default).
func (a *adminClient) memory(ctx context.Context) (EnvoyPoint, error) {
	var mem struct {
		Allocated string `json:"allocated"`
		HeapSize  string `json:"heap_size"`
	}
	if err := a.getJSON(ctx, "/memory", &mem); err != nil {
		return EnvoyPoint{}, err
	}
	allocated, err := strconv.ParseInt(mem.Allocated, 10, 64)
	if err != nil {
		return EnvoyPoint{}, fmt.Errorf("/memory allocated: %w", err)
	}
	heap, err := strconv.ParseInt(mem.HeapSize, 10, 64)
	if err != nil {
		return EnvoyPoint{}, fmt.Errorf("/memory heap_size: %w", err)
	}
	return EnvoyPoint{Allocated: allocated, HeapSize: heap}, nil
}

// serverInfo reads the version and worker count of the Envoy attached to.
func (a *adminClient) serverInfo(ctx context.Context) (version string, workers int, err error) {
	var info struct {
		Version            string `json:"version"`
		CommandLineOptions struct {
			Concurrency int `json:"concurrency"`
		} `json:"command_line_options"`
	}
	if err := a.getJSON(ctx, "/server_info", &info); err != nil {
		return "", 0, err
	}
	return info.Version, info.CommandLineOptions.Concurrency, nil
}

// stats reads the counters and gauges whose names match the regular expression filter.
func (a *adminClient) stats(ctx context.Context, filter string) (map[string]int64, error) {
	var body struct {
		Stats []statEntry `json:"stats"`
	}
	if err := a.getJSON(ctx, "/stats?format=json&filter="+url.QueryEscape(filter), &body); err != nil {
		return nil, err
	}
	return parseStats(body.Stats), nil
}

// statEntry is one element of /stats?format=json: a counter or gauge with a name and
// a numeric value, or an element holding histograms.
type statEntry struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// parseStats keeps the entries with a number for a value; histograms have none.
func parseStats(stats []statEntry) map[string]int64 {
	values := map[string]int64{}
	for _, s := range stats {
		if s.Name == "" || len(s.Value) == 0 {
			continue
		}
		if v, err := strconv.ParseInt(string(s.Value), 10, 64); err == nil {
			values[s.Name] = v
		}
	}
	return values
}

func (a *adminClient) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// statsDelta returns after minus before for every stat in after: the counters a
// scenario added. Gauges (server.memory_*) are kept as they are at the end.
func statsDelta(before, after map[string]int64) map[string]int64 {
	delta := make(map[string]int64, len(after))
	for name, v := range after {
		if isGauge(name) {
			delta[name] = v
		} else {
			delta[name] = v - before[name]
		}
	}
	return delta
}

func isGauge(name string) bool {
	switch name {
	case "server.memory_allocated", "server.memory_heap_size", "server.memory_physical_size",
		"cluster.bodystream.upstream_cx_active", "cluster.seed.upstream_cx_active",
		"cluster.bodystream.upstream_rq_active", "cluster.seed.upstream_rq_active",
		"cluster.bodystream.upstream_cx_rx_bytes_buffered", "cluster.bodystream.upstream_cx_tx_bytes_buffered",
		"cluster.seed.upstream_cx_rx_bytes_buffered", "cluster.seed.upstream_cx_tx_bytes_buffered":
		return true
	}
	return false
}
