package harness

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestParseStats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		json    string
		want    map[string]int64
		wantErr bool
	}{
		{"counters and gauges", `{"stats":[{"name":"http.ingress.ext_proc.streams_started","value":12},{"name":"server.memory_allocated","value":7340032}]}`,
			map[string]int64{"http.ingress.ext_proc.streams_started": 12, "server.memory_allocated": 7340032}, false},
		{"histograms and text readouts left out", `{"stats":[{"name":"a","value":1},{"name":"server.version","value":"1.40.0"},{"histograms":{"supported_quantiles":[0,25]}}]}`,
			map[string]int64{"a": 1}, false},
		{"nothing matched", `{"stats":[]}`, map[string]int64{}, false},
		{"no stats key", `{}`, map[string]int64{}, false},
		{"not JSON", `http.ingress.ext_proc.streams_started: 12`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStats(strings.NewReader(tc.json))
			if (err != nil) != tc.wantErr || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		json    string
		want    Memory
		wantErr string
	}{
		{"envoy 1.40", `{"allocated":"7340032","heap_size":"16777216","pageheap_unmapped":"0","pageheap_free":"0","total_thread_cache":"1","total_physical_bytes":"20000000"}`,
			Memory{Allocated: 7340032, HeapSize: 16777216}, ""},
		{"numbers where strings are due", `{"allocated":1,"heap_size":2}`, Memory{}, "cannot unmarshal"},
		{"allocated missing", `{"heap_size":"2"}`, Memory{}, "allocated"},
		{"heap_size not a number", `{"allocated":"1","heap_size":"lots"}`, Memory{}, "heap_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemory(strings.NewReader(tc.json))
			if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %+v, %v; want %+v, error about %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseListenerAddr(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"bound", `{"listener_statuses":[{"name":"ingress","local_address":{"socket_address":{"address":"127.0.0.1","port_value":40123}}}]}`, "127.0.0.1:40123"},
		{"ipv6", `{"listener_statuses":[{"local_address":{"socket_address":{"address":"::1","port_value":1}}}]}`, "[::1]:1"},
		{"no listener", `{"listener_statuses":[]}`, ""},
		{"not bound", `{"listener_statuses":[{"local_address":{"socket_address":{"address":"127.0.0.1"}}}]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseListenerAddr(strings.NewReader(tc.json))
			if got != tc.want || (err == nil) != (tc.want != "") {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestAdminClient runs the client against a stand-in admin: the requests it makes
// are the ones Envoy's admin answers.
func TestAdminClient(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") != "json" {
			http.Error(w, "want format=json", http.StatusBadRequest)
			return
		}
		filter, err := regexp.Compile(r.URL.Query().Get("filter"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var out []string
		for name, v := range map[string]int{"cluster.echo.upstream_rq_tx_reset": 3, "aXb": 5} {
			if filter.MatchString(name) {
				out = append(out, fmt.Sprintf(`{"name":%q,"value":%d}`, name, v))
			}
		}
		fmt.Fprintf(w, `{"stats":[%s]}`, strings.Join(out, ","))
	})
	mux.HandleFunc("/server_info", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"version":"abc/1.40.0/Clean/RELEASE/BoringSSL","command_line_options":{"concurrency":2}}`)
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a := NewAdmin(srv.URL)
	defer a.Close()
	ctx := context.Background()

	if v, err := a.Stat(ctx, "cluster.echo.upstream_rq_tx_reset"); err != nil || v != 3 {
		t.Errorf("Stat: %d, %v", v, err)
	}
	// The filter is a regular expression: a name's dots must not match other names.
	if v, err := a.Stat(ctx, "a.b"); err != nil || v != 0 {
		t.Errorf(`Stat("a.b") = %d, %v; want 0, not aXb's value`, v, err)
	}
	if info, err := a.ServerInfo(ctx); err != nil || info.Workers != 2 || !strings.Contains(info.Version, "1.40.0") {
		t.Errorf("ServerInfo: %+v, %v", info, err)
	}
	if err := a.Ready(ctx); err == nil || !strings.Contains(err.Error(), "PRE_INITIALIZING") {
		t.Errorf("Ready on a 503: %v", err)
	}
	if _, err := a.Memory(ctx); err == nil {
		t.Error("Memory from an admin without /memory succeeded")
	}
}
