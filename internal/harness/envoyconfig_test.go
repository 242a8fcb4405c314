package harness

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sample has the shapes the renderer must handle: flow-style socket addresses, an
// anchor, comments, a cluster with two endpoints, and a port_value elsewhere that
// equals a socket's port and must not change.
const sample = `# Title line.
# More words.
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 9901}
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {address: 127.0.0.1, port_value: 18080}
    per_connection_buffer_limit_bytes: 18081  # not a port
  clusters:
  - name: bodystream
    load_assignment:
      cluster_name: bodystream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: 50051}
  - name: echo
    common: &common {connect_timeout: 1s}
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: 18081}
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: 18081}
  - name: other
    common: *common
`

func TestEnvoyConfigAddresses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     string
		want    Addresses
		wantErr string
	}{
		{"sample", sample, Addresses{Admin: "127.0.0.1:9901",
			Listeners: map[string]string{"ingress": "127.0.0.1:18080"},
			Clusters:  map[string]string{"bodystream": "127.0.0.1:50051", "echo": "127.0.0.1:18081"}}, ""},
		{"no admin", "static_resources: {}\n", Addresses{Listeners: map[string]string{}, Clusters: map[string]string{}}, ""},
		{"endpoints disagree", strings.Replace(sample, "port_value: 18081}\n  - name: other", "port_value: 1}\n  - name: other", 1), Addresses{}, "cluster echo: addresses"},
		{"port missing", strings.Replace(sample, ", port_value: 9901", "", 1), Addresses{}, "admin: socket_address without"},
		{"not a mapping", "- a\n", Addresses{}, "not a YAML mapping"},
		{"not YAML", "a: [\n", Addresses{}, "envoy config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseEnvoyConfig([]byte(tc.src))
			var got Addresses
			if err == nil {
				got, err = cfg.Addresses()
			}
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one about %q", err, tc.wantErr)
			}
			if got.Admin != tc.want.Admin || !maps.Equal(got.Listeners, tc.want.Listeners) || !maps.Equal(got.Clusters, tc.want.Clusters) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEnvoyConfigSetAddresses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     Addresses
		want    []string // lines the output must hold
		keep    []string // lines of the input that must survive
		wantErr string
	}{
		{"free ports", Addresses{Admin: "127.0.0.1:0", Listeners: map[string]string{"ingress": "127.0.0.1:0"},
			Clusters: map[string]string{"bodystream": "127.0.0.1:40001", "echo": "127.0.0.1:40002"}},
			[]string{"socket_address: {address: 127.0.0.1, port_value: 0}", "port_value: 40001}", "port_value: 40002}"},
			[]string{"per_connection_buffer_limit_bytes: 18081 # not a port", "common: &common {connect_timeout: 1s}", "common: *common"}, ""},
		{"service names", Addresses{Clusters: map[string]string{"echo": "echo:18081"}},
			[]string{"socket_address: {address: echo, port_value: 18081}"},
			[]string{"socket_address: {address: 127.0.0.1, port_value: 9901}", "socket_address: {address: 127.0.0.1, port_value: 50051}"}, ""},
		{"both endpoints move", Addresses{Clusters: map[string]string{"echo": "127.0.0.1:7"}},
			[]string{"port_value: 7}\n        - endpoint:"}, nil, ""},
		{"unknown cluster", Addresses{Clusters: map[string]string{"seed": "127.0.0.1:1"}}, nil, nil, `no cluster named "seed"`},
		{"cluster without endpoints", Addresses{Clusters: map[string]string{"other": "127.0.0.1:1"}}, nil, nil, `no cluster named "other"`},
		{"unknown listener", Addresses{Listeners: map[string]string{"egress": "127.0.0.1:1"}}, nil, nil, `no listener named "egress"`},
		{"no port", Addresses{Admin: "127.0.0.1"}, nil, nil, "missing port"},
		{"port out of range", Addresses{Admin: "127.0.0.1:65536"}, nil, nil, "port of 127.0.0.1:65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseEnvoyConfig([]byte(sample))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.SetAddresses(tc.set)
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one about %q", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			out, err := cfg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range append(append(tc.want, tc.keep...), "# Title line.\n# More words.\nadmin:") {
				if !strings.Contains(string(out), s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			// What was set reads back.
			got := addressesOf(t, out)
			for name, addr := range tc.set.Clusters {
				if got.Clusters[name] != addr {
					t.Errorf("cluster %s reads back as %s, want %s", name, got.Clusters[name], addr)
				}
			}
		})
	}
}

func TestEnvoyConfigSetClusterFields(t *testing.T) {
	cfg, err := ParseEnvoyConfig([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetClusterFields("bodystream", []byte("type: STRICT_DNS\nhealth_checks: [{timeout: 1s}]\n")); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetClusterFields("other", []byte("common: {connect_timeout: 2s}\n")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, fields, want string }{
		{"missing", "type: STATIC\n", `no cluster named "missing"`},
		{"echo", "- not a mapping\n", "not a YAML mapping"},
		{"echo", "common: {connect_timeout: 2s}\n", "common holds the anchor &common"},
	} {
		if err := cfg.SetClusterFields(bad.name, []byte(bad.fields)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SetClusterFields(%q, %q) = %v, want %q", bad.name, bad.fields, err, bad.want)
		}
	}
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{
		"  - name: bodystream\n", "    type: STRICT_DNS\n    health_checks: [{timeout: 1s}]\n  - name: echo\n",
		"    common: &common {connect_timeout: 1s}\n",
		"  - name: other\n    common: {connect_timeout: 2s}\n", // an alias is replaced in place
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// The addresses are untouched.
	addrs, err := cfg.Addresses()
	if err != nil || addrs.Clusters["bodystream"] != "127.0.0.1:50051" {
		t.Errorf("addresses %v, %v", addrs, err)
	}
}

func TestEnvoyConfigAddNotice(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"above the leading comment", sample, "# GENERATED from x.\n# Edit x.\n#\n# Title line.\n# More words.\nadmin:\n"},
		{"leading comment apart from the first key", "# Title.\n\nadmin: {}\n", "# GENERATED from x.\n# Edit x.\n#\n# Title.\n"},
		{"no leading comment", "admin: {}\n", "# GENERATED from x.\n# Edit x.\nadmin: {}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseEnvoyConfig([]byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			cfg.AddNotice("GENERATED from x.\nEdit x.\n")
			out, err := cfg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(out), tc.want) {
				t.Errorf("got\n%s\nwant it to start with\n%s", out, tc.want)
			}
		})
	}
}

// TestEnvoyConfigsOfTheRepository: every Envoy config the stack runs can be moved to
// free ports, and keeps each of its comment lines.
func TestEnvoyConfigsOfTheRepository(t *testing.T) {
	root, err := FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"envoy.yaml", "envoy.compose.yaml", "bench/envoy-compressor.yaml", "bench/envoy-seed.yaml", "stress/envoy.yaml"} {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(root, "resources", name))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "envoy.yaml")
			clusters := map[string]string{"echo": "127.0.0.1:40002"}
			if strings.Contains(name, "seed") {
				clusters["seed"] = "127.0.0.1:40003"
			} else {
				clusters["bodystream"] = "127.0.0.1:40001"
			}
			if err := renderOnLoopback(filepath.Join(root, "resources", name), dst, clusters, nil, ""); err != nil {
				t.Fatal(err)
			}
			out, _ := os.ReadFile(dst)
			for line := range strings.Lines(string(src)) {
				if c := strings.TrimSpace(line); strings.HasPrefix(c, "#") && !strings.Contains(string(out), c) {
					t.Errorf("comment lost: %s", c)
				}
			}
			if got := addressesOf(t, out); got.Admin != "127.0.0.1:0" || got.Listeners["ingress"] != "127.0.0.1:0" || !maps.Equal(got.Clusters, clusters) {
				t.Errorf("addresses %+v", got)
			}
		})
	}
}

func addressesOf(t *testing.T, src []byte) Addresses {
	t.Helper()
	cfg, err := ParseEnvoyConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cfg.Addresses()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEnvoyConfigSetClusterEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name, cluster string
		addrs         []string
		wantErr       string
	}{
		{"three replicas", "bodystream", []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, ""},
		{"replaces two endpoints", "echo", []string{"127.0.0.1:4"}, ""},
		{"no such cluster", "nope", []string{"127.0.0.1:1"}, `no cluster named "nope"`},
		{"cluster without endpoints", "other", []string{"127.0.0.1:1"}, "want one locality with endpoints"},
		{"bad address", "bodystream", []string{"nowhere"}, "missing port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseEnvoyConfig([]byte(sample))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.SetClusterEndpoints(tc.cluster, tc.addrs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range cfg.clusterSockets()[tc.cluster] {
				addr, err := socketAddress(s)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, addr)
			}
			if strings.Join(got, " ") != strings.Join(tc.addrs, " ") {
				t.Errorf("endpoints %v, want %v", got, tc.addrs)
			}
			// The other clusters keep theirs.
			if tc.cluster != "echo" && len(cfg.clusterSockets()["echo"]) != 2 {
				t.Errorf("echo's endpoints changed")
			}
		})
	}
}
