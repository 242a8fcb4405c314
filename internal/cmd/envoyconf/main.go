// Command envoyconf writes resources/envoy.compose.yaml, docker compose's Envoy
// configuration, from resources/envoy.yaml: Envoy listens on all interfaces and
// reaches each cluster at the compose service of the same name, on the same port.
// The bodystream cluster finds every replica of `docker compose up --scale
// bodystream=N` by DNS and health-checks each over gRPC.
// `make resources/envoy.compose.yaml` runs it from the module root.
package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/bodystream/bodystream/internal/atomicfile"
	"github.com/bodystream/bodystream/internal/harness"
)

const (
	source = "resources/envoy.yaml"
	target = "resources/envoy.compose.yaml"
)

// replicas is what the bodystream cluster gains under compose. Docker's DNS answers
// a service name with the address of every replica; STRICT_DNS makes each one a host,
// re-resolved often enough to notice a scale change within seconds. Envoy balances
// ext_proc streams (one per HTTP request) over the hosts that pass the gRPC health
// check of the ext_proc service, which a draining replica fails at once.
const replicas = `
type: STRICT_DNS
dns_refresh_rate: 2s
dns_lookup_family: V4_ONLY
health_checks:
- timeout: 1s
  interval: 2s
  no_traffic_interval: 2s
  unhealthy_threshold: 2
  healthy_threshold: 1
  grpc_health_check:
    service_name: envoy.service.ext_proc.v3.ExternalProcessor
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "envoyconf:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := harness.FindRoot()
	if err != nil {
		return err
	}
	out, err := compose(root)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(root, target), out)
}

// compose renders the compose variant of root's envoy.yaml.
func compose(root string) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join(root, source))
	if err != nil {
		return nil, err
	}
	cfg, err := harness.ParseEnvoyConfig(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	addrs, err := cfg.Addresses()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	// Published ports reach a container's 0.0.0.0, not its loopback.
	if addrs.Admin, err = onHost("0.0.0.0", addrs.Admin); err != nil {
		return nil, fmt.Errorf("%s: admin: %w", source, err)
	}
	for name, addr := range addrs.Listeners {
		if addrs.Listeners[name], err = onHost("0.0.0.0", addr); err != nil {
			return nil, fmt.Errorf("%s: listener %s: %w", source, name, err)
		}
	}
	for name, addr := range addrs.Clusters {
		if addrs.Clusters[name], err = onHost(name, addr); err != nil {
			return nil, fmt.Errorf("%s: cluster %s: %w", source, name, err)
		}
	}
	if err := cfg.SetAddresses(addrs); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if err := cfg.SetClusterFields("bodystream", []byte(replicas)); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	cfg.AddNotice("GENERATED from " + source + " by `make " + target + "`\n" +
		"(go run ./internal/cmd/envoyconf): edit that file, not this one. Here Envoy listens\n" +
		"on 0.0.0.0 and reaches each cluster at the docker compose service of that name;\n" +
		"the bodystream cluster finds and health-checks every replica.")
	return cfg.Marshal()
}

// onHost returns addr with its host replaced.
func onHost(host, addr string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, port), nil
}
