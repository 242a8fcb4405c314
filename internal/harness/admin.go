package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"
)

// Admin reads an Envoy's admin interface: readiness, stats, memory, listeners.
type Admin struct {
	url    string // e.g. http://127.0.0.1:9901
	client *http.Client
}

// adminTimeout bounds one admin call: Envoy's admin runs on its main thread, and a
// call stuck behind it should fail the caller rather than hang it.
const adminTimeout = 10 * time.Second

// NewAdmin returns a client of the admin at url, e.g. http://127.0.0.1:9901.
func NewAdmin(url string) *Admin {
	return &Admin{url: url, client: &http.Client{Timeout: adminTimeout, Transport: &http.Transport{}}}
}

// Close drops the kept-alive connections to the admin.
func (a *Admin) Close() { a.client.CloseIdleConnections() }

// Ready returns nil once Envoy is ready to serve (/ready answers 200).
func (a *Admin) Ready(ctx context.Context) error {
	_, err := fetch(ctx, a, "/ready", func(io.Reader) (struct{}, error) { return struct{}{}, nil })
	return err
}

// Stats reads the counters and gauges whose names match the regular expression
// filter (RE2, as Envoy takes it).
func (a *Admin) Stats(ctx context.Context, filter string) (map[string]int64, error) {
	return fetch(ctx, a, "/stats?format=json&filter="+url.QueryEscape(filter), parseStats)
}

// Stat reads one counter or gauge; one Envoy has not created yet is 0.
func (a *Admin) Stat(ctx context.Context, name string) (int64, error) {
	stats, err := a.Stats(ctx, "^"+regexp.QuoteMeta(name)+"$")
	return stats[name], err
}

// Memory is Envoy's allocator, as /memory reports it.
type Memory struct {
	Allocated int64 // bytes in use by Envoy's objects (server.memory_allocated)
	HeapSize  int64 // bytes the allocator holds from the system (server.memory_heap_size)
}

// Memory reads /memory, which the allocator answers live. The server.memory_* stats
// hold the same figures but are refreshed only at each stats flush (every 5 s by
// default).
func (a *Admin) Memory(ctx context.Context) (Memory, error) {
	return fetch(ctx, a, "/memory", parseMemory)
}

// ServerInfo is what /server_info says of the Envoy attached to.
type ServerInfo struct {
	Version string
	Workers int // --concurrency
}

// ServerInfo reads /server_info.
func (a *Admin) ServerInfo(ctx context.Context) (ServerInfo, error) {
	return fetch(ctx, a, "/server_info", parseServerInfo)
}

// ListenerAddr returns the address the first listener is bound to: with port_value
// 0 in the configuration, only Envoy knows it.
func (a *Admin) ListenerAddr(ctx context.Context) (string, error) {
	return fetch(ctx, a, "/listeners?format=json", parseListenerAddr)
}

// fetch gets path and parses a 200 answer's body.
func fetch[T any](ctx context.Context, a *Admin, path string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url+path, nil)
	if err != nil {
		return zero, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return zero, fmt.Errorf("envoy admin: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return zero, fmt.Errorf("envoy admin: GET %s: %s: %s", path, resp.Status, msg)
	}
	v, err := parse(resp.Body)
	if err != nil {
		return zero, fmt.Errorf("envoy admin: GET %s: %w", path, err)
	}
	return v, nil
}

// parseStats reads /stats?format=json: {"stats": [{"name", "value"}, …]}. Counters
// and gauges have a number for a value; histograms and text readouts do not, and are
// left out.
func parseStats(r io.Reader) (map[string]int64, error) {
	var body struct {
		Stats []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		} `json:"stats"`
	}
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return nil, err
	}
	values := map[string]int64{}
	for _, s := range body.Stats {
		if s.Name == "" || len(s.Value) == 0 {
			continue
		}
		if v, err := strconv.ParseInt(string(s.Value), 10, 64); err == nil {
			values[s.Name] = v
		}
	}
	return values, nil
}

// parseMemory reads /memory, whose figures are decimal strings (64-bit integers in
// protobuf's JSON mapping).
func parseMemory(r io.Reader) (Memory, error) {
	var mem struct {
		Allocated string `json:"allocated"`
		HeapSize  string `json:"heap_size"`
	}
	if err := json.NewDecoder(r).Decode(&mem); err != nil {
		return Memory{}, err
	}
	allocated, err := strconv.ParseInt(mem.Allocated, 10, 64)
	if err != nil {
		return Memory{}, fmt.Errorf("allocated: %w", err)
	}
	heap, err := strconv.ParseInt(mem.HeapSize, 10, 64)
	if err != nil {
		return Memory{}, fmt.Errorf("heap_size: %w", err)
	}
	return Memory{Allocated: allocated, HeapSize: heap}, nil
}

func parseServerInfo(r io.Reader) (ServerInfo, error) {
	var info struct {
		Version            string `json:"version"`
		CommandLineOptions struct {
			Concurrency int `json:"concurrency"`
		} `json:"command_line_options"`
	}
	if err := json.NewDecoder(r).Decode(&info); err != nil {
		return ServerInfo{}, err
	}
	return ServerInfo{Version: info.Version, Workers: info.CommandLineOptions.Concurrency}, nil
}

func parseListenerAddr(r io.Reader) (string, error) {
	var listeners struct {
		ListenerStatuses []struct {
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.NewDecoder(r).Decode(&listeners); err != nil {
		return "", err
	}
	if len(listeners.ListenerStatuses) == 0 {
		return "", fmt.Errorf("envoy has no listener")
	}
	sa := listeners.ListenerStatuses[0].LocalAddress.SocketAddress
	if sa.Address == "" || sa.PortValue == 0 {
		return "", fmt.Errorf("listener has no bound socket address")
	}
	return net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)), nil
}
