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
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/dustin/go-humanize"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.yaml.in/yaml/v3"

	"github.com/bodystream/bodystream/config"

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

	checkComposeServices(t, project)
	checkComposeReplicas(t, project, text)

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

// checkComposeServices: both Go services prove their health without a shell, Envoy
// waits for them to be healthy, and every service has a memory limit; bodystream's
// comes from its memory budget.
func checkComposeServices(t *testing.T, project *types.Project) {
	t.Helper()
	for _, name := range []string{"bodystream", "echo"} {
		svc, _ := project.GetService(name)
		hc := svc.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 3 || hc.Test[0] != "CMD" || hc.Test[2] != "healthcheck" ||
			hc.Test[1] != "/usr/local/bin/"+name {
			t.Errorf("service %s healthcheck %+v: want [CMD /usr/local/bin/%s healthcheck ...], the image has no shell", name, hc, name)
		}
		if hc != nil && (hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil) {
			t.Errorf("service %s healthcheck has no interval, timeout or retries", name)
		}
	}
	envoy, _ := project.GetService("envoy")
	for _, dep := range []string{"bodystream", "echo"} {
		if c := envoy.DependsOn[dep].Condition; c != types.ServiceConditionHealthy {
			t.Errorf("envoy depends on %s with condition %q, want %s", dep, c, types.ServiceConditionHealthy)
		}
	}
	for _, svc := range project.Services {
		if memoryLimit(svc) == 0 {
			t.Errorf("service %s has no memory limit", svc.Name)
		}
	}

	// The budget's the configuration's default (compose passes no -config); the limit
	// adds a fixed 64MiB, GOMEMLIMIT half of that.
	bodystream, _ := project.GetService("bodystream")
	if slices.Contains(bodystream.Command, "-config") {
		t.Fatalf("bodystream runs with -config: derive the limit from that file's budget")
	}
	budget := int64(config.Defaults().Memory.Budget)
	if got, want := memoryLimit(bodystream), budget+64<<20; got != want {
		t.Errorf("bodystream memory limit %d, want the budget %d + 64MiB = %d", got, budget, want)
	}
	var goLimit uint64
	if v := bodystream.Environment["GOMEMLIMIT"]; v != nil {
		goLimit, _ = humanize.ParseBytes(*v)
	}
	if int64(goLimit) != budget+32<<20 {
		t.Errorf("bodystream GOMEMLIMIT %d bytes, want the budget + 32MiB = %d", goLimit, budget+32<<20)
	}
}

// memoryLimit is mem_limit or deploy.resources.limits.memory, 0 if neither.
func memoryLimit(svc types.ServiceConfig) int64 {
	if svc.Deploy != nil && svc.Deploy.Resources.Limits != nil && svc.Deploy.Resources.Limits.MemoryBytes > 0 {
		return int64(svc.Deploy.Resources.Limits.MemoryBytes)
	}
	return int64(svc.MemLimit)
}

// checkComposeReplicas: `docker compose up --scale bodystream=3` can run (no
// container_name, no fixed host port), Envoy's mounted config finds every replica
// by DNS and health-checks the ext_proc service over gRPC, and a stopped replica has
// the time to drain.
func checkComposeReplicas(t *testing.T, project *types.Project, envoyYAML []byte) {
	t.Helper()
	bodystream, _ := project.GetService("bodystream")
	bodystream.SetScale(3)
	if bodystream.GetScale() != 3 {
		t.Errorf("scale %d after SetScale(3)", bodystream.GetScale())
	}
	if bodystream.ContainerName != "" {
		t.Errorf("bodystream has container_name %q: replicas need a name each", bodystream.ContainerName)
	}
	for _, p := range bodystream.Ports {
		if p.Published != "" {
			t.Errorf("bodystream publishes host port %s: a second replica could not bind it", p.Published)
		}
	}

	var boot struct {
		StaticResources struct {
			Clusters []struct {
				Name         string `yaml:"name"`
				Type         string `yaml:"type"`
				HealthChecks []struct {
					GRPC *struct {
						ServiceName string `yaml:"service_name"`
					} `yaml:"grpc_health_check"`
				} `yaml:"health_checks"`
			} `yaml:"clusters"`
		} `yaml:"static_resources"`
	}
	if err := yaml.Unmarshal(envoyYAML, &boot); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range boot.StaticResources.Clusters {
		if c.Name != "bodystream" {
			continue
		}
		found = true
		if c.Type != "STRICT_DNS" {
			t.Errorf("bodystream cluster type %q, want STRICT_DNS: one host per replica the service name resolves to", c.Type)
		}
		want := extprocv3.ExternalProcessor_ServiceDesc.ServiceName
		if len(c.HealthChecks) != 1 || c.HealthChecks[0].GRPC == nil || c.HealthChecks[0].GRPC.ServiceName != want {
			t.Errorf("bodystream cluster health checks %+v, want one gRPC check of %s", c.HealthChecks, want)
		}
	}
	if !found {
		t.Error("the mounted Envoy config has no bodystream cluster")
	}

	drain := 5 * time.Minute // bodystream's default drain timeout
	if i := slices.Index(bodystream.Command, "-drain-timeout"); i >= 0 && i+1 < len(bodystream.Command) {
		d, err := time.ParseDuration(bodystream.Command[i+1])
		if err != nil {
			t.Fatalf("bodystream -drain-timeout %q: %v", bodystream.Command[i+1], err)
		}
		drain = d
	}
	if bodystream.StopGracePeriod == nil || time.Duration(*bodystream.StopGracePeriod) <= drain {
		t.Errorf("bodystream stop_grace_period %v, want more than the drain timeout %s", bodystream.StopGracePeriod, drain)
	}
}

// TestComposeEchoHealthcheck runs the echo service's healthcheck command, as compose
// would inside the container, against the echo of the running stack.
func TestComposeEchoHealthcheck(t *testing.T) {
	s := needStack(t)
	root, err := harness.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yaml")}, cli.WithWorkingDirectory(root))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := project.GetService("echo")
	if echo.HealthCheck == nil || len(echo.HealthCheck.Test) < 2 {
		t.Fatalf("echo healthcheck %+v", echo.HealthCheck)
	}
	args := slices.Clone(echo.HealthCheck.Test[2:])
	for i, a := range args {
		args[i] = strings.Replace(a, "127.0.0.1:18081", s.EchoAddr, 1)
	}
	bin := s.Process("echo").Cmd.Path
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	// And it fails where nothing answers (port 1: tcpmux, never served here).
	args = append(args[:len(args):len(args)], "-url", "http://127.0.0.1:1/healthz")
	if err := exec.Command(bin, args...).Run(); err == nil {
		t.Errorf("%s %v succeeded on a URL that does not answer 200", bin, args)
	}
}
