// Package e2e runs bodystream behind a real Envoy 1.40 with the echo upstream, as
// processes on loopback, and checks what comes out byte for byte.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/internal/harness"
)

// running is the stack all tests of the package share; nil without Envoy, and then
// every test skips (or, under CI, fails) through needStack.
var running *harness.Stack

// archiveDir is where the archive route's file stage writes.
var archiveDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := harness.FindRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := harness.FindEnvoy(root); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: no Envoy, no stack:", err)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "bodystream-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The example configuration, with the archive in a directory of this run.
	archiveDir = dir + "/archive"
	if err := os.Mkdir(archiveDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	example, err := os.ReadFile(root + "/resources/bodystream.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	configPath := dir + "/bodystream.yaml"
	config := strings.ReplaceAll(string(example), "/tmp/bodystream-archive", archiveDir)
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	running, err = harness.Start(context.Background(), harness.Options{Root: root, Dir: dir, Concurrency: 2,
		BodystreamArgs: []string{"-config", configPath}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		code = checkEnvoyCounters(running.Admin)
	}
	if err := running.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stop:", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintln(os.Stderr, running.Logs(400))
	}
	return code
}

func needStack(t *testing.T) *harness.Stack {
	t.Helper()
	harness.RequireEnvoy(t)
	return running
}

// checkEnvoyCounters runs after every test: whatever the tests sent, Envoy must have
// counted no protocol error from bodystream, and must have gone through it at all.
func checkEnvoyCounters(admin *harness.Admin) int {
	const prefix = "http.ingress.ext_proc."
	counters, err := admin.Stats(context.Background(), "^"+regexp.QuoteMeta(prefix))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: Envoy ext_proc counters: %v\n", counters)
	code := 0
	for _, name := range []string{"spurious_msgs_received", "message_timeouts"} {
		if counters[prefix+name] != 0 {
			fmt.Fprintf(os.Stderr, "e2e: Envoy counted %s = %d\n", name, counters[prefix+name])
			code = 1
		}
	}
	if counters[prefix+"streams_started"] == 0 && flag.Lookup("test.run").Value.String() == "" {
		fmt.Fprintln(os.Stderr, "e2e: Envoy started no ext_proc stream: the tests did not go through bodystream")
		code = 1
	}
	return code
}
