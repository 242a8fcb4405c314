package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"

	"github.com/bodystream/bodystream/internal/stack"
)

// TestComposeFile: no Docker engine runs here, so the compose file is loaded with
// compose-go, checked against the other files it depends on, and the very envoy.yaml
// it mounts is validated by the real Envoy.
func TestComposeFile(t *testing.T) {
	root, err := stack.FindRoot()
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

	// The mounted file is envoy.yaml with the services' names as addresses.
	text, err := os.ReadFile(mounted)
	if err != nil {
		t.Fatal(err)
	}
	local, err := os.ReadFile(filepath.Join(root, "resources", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	regenerated := composeAddresses(string(local))
	if string(text) != regenerated {
		t.Errorf("%s has drifted from resources/envoy.yaml: run `make resources/envoy.compose.yaml`", mounted)
	}
	for service, port := range map[string]string{"bodystream": "50051", "echo": "18081"} {
		if !strings.Contains(string(text), "address: "+service+", port_value: "+port) {
			t.Errorf("envoy config does not reach %s:%s", service, port)
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

	envoyBin, err := stack.FindEnvoy(root)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	out, err := exec.Command(envoyBin, "--mode", "validate", "-c", mounted, "--disable-hot-restart").CombinedOutput()
	if err != nil {
		t.Fatalf("envoy --mode validate %s: %v\n%s", mounted, err, out)
	}
}

// composeAddresses is the Makefile's rule for resources/envoy.compose.yaml.
func composeAddresses(local string) string {
	r := strings.NewReplacer(
		"address: 127.0.0.1, port_value: 18080", "address: 0.0.0.0, port_value: 18080",
		"address: 127.0.0.1, port_value: 9901", "address: 0.0.0.0, port_value: 9901",
		"address: 127.0.0.1, port_value: 50051", "address: bodystream, port_value: 50051",
		"address: 127.0.0.1, port_value: 18081", "address: echo, port_value: 18081",
		"# Envoy 1.40 in front of bodystream (ext_proc) and the echo upstream, on localhost.",
		"# GENERATED from resources/envoy.yaml by `make resources/envoy.compose.yaml`: edit that file.",
	)
	return r.Replace(local)
}
