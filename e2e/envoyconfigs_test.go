package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestShippedEnvoyConfigsValidate: every Envoy configuration the repository ships
// passes the real Envoy's --mode validate, and those users run (the bundled, compose
// and stress files) bound Envoy's heap with the overload manager: the fixed_heap
// monitor drives shrink_heap and stop_accepting_requests, beside the connection limit.
func TestShippedEnvoyConfigsValidate(t *testing.T) {
	envoy := harness.RequireEnvoy(t)
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "resources", "*envoy*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob(filepath.Join(root, "resources", "*", "envoy*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	overloaded := []string{"envoy.yaml", "envoy.compose.yaml", filepath.Join("stress", "envoy.yaml")}
	// The mTLS config names certificate files where its comment says to put them;
	// Envoy checks that they exist, so it validates with certificates made here.
	certs, err := harness.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	certPaths := strings.NewReplacer(
		"/etc/bodystream/tls/ca.pem", certs.CA,
		"/etc/bodystream/tls/client.pem", certs.ClientCert,
		"/etc/bodystream/tls/client-key.pem", certs.ClientKey)
	checked := 0
	for _, path := range files {
		rel, _ := filepath.Rel(filepath.Join(root, "resources"), path)
		t.Run(rel, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			validated := path
			if text := string(data); strings.Contains(text, "/etc/bodystream/tls/") {
				validated = filepath.Join(t.TempDir(), filepath.Base(path))
				if err := os.WriteFile(validated, []byte(certPaths.Replace(text)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := exec.Command(envoy, "--mode", "validate", "-c", validated, "--disable-hot-restart", "--log-level", "warn").CombinedOutput()
			if err != nil {
				t.Fatalf("envoy --mode validate: %v\n%s", err, out)
			}
			if !slices.Contains(overloaded, rel) {
				return
			}
			checked++
			checkOverloadManager(t, path)
		})
	}
	if checked != len(overloaded) {
		t.Errorf("checked the overload manager of %d files, want %d (%v)", checked, len(overloaded), overloaded)
	}
}

// overloadManager is the part of a bootstrap file checkOverloadManager reads.
type overloadManager struct {
	OverloadManager struct {
		ResourceMonitors []struct {
			Name        string `yaml:"name"`
			TypedConfig struct {
				MaxHeapSizeBytes int64 `yaml:"max_heap_size_bytes"`
			} `yaml:"typed_config"`
		} `yaml:"resource_monitors"`
		Actions []struct {
			Name     string `yaml:"name"`
			Triggers []struct {
				Name      string `yaml:"name"`
				Threshold struct {
					Value float64 `yaml:"value"`
				} `yaml:"threshold"`
			} `yaml:"triggers"`
		} `yaml:"actions"`
	} `yaml:"overload_manager"`
}

func checkOverloadManager(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg overloadManager
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	om := cfg.OverloadManager
	monitors := map[string]int64{}
	for _, m := range om.ResourceMonitors {
		monitors[m.Name] = m.TypedConfig.MaxHeapSizeBytes
	}
	if monitors["envoy.resource_monitors.fixed_heap"] <= 0 {
		t.Errorf("no fixed_heap monitor with a max_heap_size_bytes (monitors %v)", monitors)
	}
	if _, ok := monitors["envoy.resource_monitors.global_downstream_max_connections"]; !ok {
		t.Errorf("no global_downstream_max_connections monitor (monitors %v)", monitors)
	}
	thresholds := map[string]float64{}
	for _, a := range om.Actions {
		for _, tr := range a.Triggers {
			if tr.Name == "envoy.resource_monitors.fixed_heap" {
				thresholds[a.Name] = tr.Threshold.Value
			}
		}
	}
	shrink, stop := thresholds["envoy.overload_actions.shrink_heap"], thresholds["envoy.overload_actions.stop_accepting_requests"]
	// The heap shrinks before requests are refused, and both act before the heap is full.
	if !(0 < shrink && shrink < stop && stop < 1) {
		t.Errorf("fixed_heap thresholds: shrink_heap %v, stop_accepting_requests %v; want 0 < shrink < stop < 1", shrink, stop)
	}
}
