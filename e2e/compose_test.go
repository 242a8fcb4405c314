package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"

	"github.com/bodystream/bodystream/internal/harness"
)

// TestComposeFile: no Docker engine runs here, so the compose file is loaded with
// compose-go, checked against the other files it depends on, and the very envoy.yaml
// it mounts is validated by the real Envoy. That the mounted file is what
// internal/cmd/envoyconf makes of resources/envoy.yaml is that command's test.
func TestComposeFile(t *testing.T) {
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yaml")},
		cli.WithWorkingDirectory(root), cli.WithOsEnv, cli.WithConsistency(true))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-go refuses docker-compose.yaml: %v", err)
	}
	for _, name := range []string{"echo", "bodystream", "envoy"} {
		if _, err := project.GetService(name); err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
	}
	envoy, _ := project.GetService("envoy")
	if !strings.HasSuffix(envoy.Image, ":v1.40.0") {
		t.Errorf("envoy image %q, want the 1.40.0 release the tests run", envoy.Image)
	}
	var mounted string
	for _, v := range envoy.Volumes {
		if v.Target == "/etc/envoy/envoy.yaml" {
			mounted = v.Source
		}
	}
	if mounted == "" {
		t.Fatal("envoy service mounts no /etc/envoy/envoy.yaml")
	}
	if !slices.Contains(envoy.Command, "/etc/envoy/envoy.yaml") {
		t.Errorf("envoy command %v does not load the mounted file", envoy.Command)
	}
	published := map[string]bool{}
	for _, p := range envoy.Ports {
		published[p.Published] = true
	}
	if !published["18080"] || !published["9901"] {
		t.Errorf("envoy publishes %v, want 18080 and 9901", envoy.Ports)
	}

	// Envoy reaches each cluster at the service of that name, which listens there.
	text, err := os.ReadFile(mounted)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := harness.ParseEnvoyConfig(text)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := cfg.Addresses()
	if err != nil {
		t.Fatal(err)
	}
	if addrs.Admin != "0.0.0.0:9901" || addrs.Listeners["ingress"] != "0.0.0.0:18080" {
		t.Errorf("envoy config: admin on %s, listener on %s; want the published ports on 0.0.0.0", addrs.Admin, addrs.Listeners["ingress"])
	}
	for _, service := range []string{"bodystream", "echo"} {
		host, port, err := net.SplitHostPort(addrs.Clusters[service])
		if err != nil || host != service {
			t.Errorf("envoy config reaches cluster %s at %q, want the service %s", service, addrs.Clusters[service], service)
			continue
		}
		svc, _ := project.GetService(service)
		if !slices.Contains(svc.Command, "0.0.0.0:"+port) {
			t.Errorf("service %s command %v does not listen on 0.0.0.0:%s", service, svc.Command, port)
		}
	}

	// The Dockerfile builds with the go.mod's Go release and ships both binaries.
	dockerfile, _ := os.ReadFile(filepath.Join(root, "Dockerfile"))
	gomod, _ := os.ReadFile(filepath.Join(root, "go.mod"))
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || !strings.Contains(string(dockerfile), "FROM golang:"+string(goVersion[1])) {
		t.Errorf("Dockerfile does not build with go %s", goVersion)
	}
	for _, bin := range []string{"./cmd/bodystream", "./cmd/echo"} {
		if !strings.Contains(string(dockerfile), bin) {
			t.Errorf("Dockerfile does not build %s", bin)
		}
	}
	echo, _ := project.GetService("echo")
	if !slices.Contains(echo.Entrypoint, "/usr/local/bin/echo") {
		t.Errorf("echo entrypoint %v", echo.Entrypoint)
	}

	envoyBin := harness.RequireEnvoy(t)
	out, err := exec.Command(envoyBin, "--mode", "validate", "-c", mounted, "--disable-hot-restart").CombinedOutput()
	if err != nil {
		t.Fatalf("envoy --mode validate %s: %v\n%s", mounted, err, out)
	}
}
