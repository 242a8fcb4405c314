package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("bodystream's module root: %v", err)
	}
	return root
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN...
	args string
}

func readDockerfile(t *testing.T, root string) []instruction {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for line := range strings.Lines(string(text)) {
		line = strings.TrimRight(line, "\r\n")
		if trimmed := strings.TrimSpace(line); cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	return out
}

// dockerfileCopySources are the build-context files the Dockerfile COPYs by name
// (COPY . . and COPY --from=stage aside).
func dockerfileCopySources(t *testing.T, root string) []string {
	t.Helper()
	var srcs []string
	for _, in := range readDockerfile(t, root) {
		if in.cmd != "COPY" || strings.Contains(in.args, "--from=") {
			continue
		}
		fields := strings.Fields(in.args)
		for _, src := range fields[:len(fields)-1] {
			if src != "." && !strings.HasPrefix(src, "--") {
				srcs = append(srcs, strings.TrimPrefix(src, "./"))
			}
		}
	}
	return srcs
}

// TestDockerfile: multi-stage, bases pinned by digest, a static build stamped with
// its version, a non-root user, and a health check that needs no shell.
func TestDockerfile(t *testing.T) {
	root := moduleRoot(t)
	ins := readDockerfile(t, root)
	pinned := regexp.MustCompile(`^\S+:\S+@sha256:[0-9a-f]{64}( AS \S+)?$`)
	var froms, runs []string
	var user string
	var healthcheck, entrypoint string
	args := map[string]bool{}
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
			if !pinned.MatchString(in.args) {
				t.Errorf("FROM %s: not pinned by digest (name:tag@sha256:...)", in.args)
			}
		case "RUN":
			runs = append(runs, in.args)
		case "ENV":
			runs = append(runs, in.args) // an ENV CGO_ENABLED=0 counts for the RUNs after it
		case "ARG":
			name, _, _ := strings.Cut(in.args, "=")
			args[name] = true
		case "USER":
			user = in.args
		case "HEALTHCHECK":
			healthcheck = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		}
	}
	if len(froms) < 2 {
		t.Errorf("%d stages, want a build stage and a runtime stage", len(froms))
	}
	if len(froms) > 0 && !strings.Contains(froms[len(froms)-1], "distroless/static") {
		t.Errorf("runtime stage %q: want a static distroless base (no libc, no shell)", froms[len(froms)-1])
	}
	build := strings.Join(runs, "\n")
	for _, want := range []string{
		"CGO_ENABLED=0", "./cmd/bodystream", "./cmd/echo",
		"-X github.com/bodystream/bodystream/internal/version.Version=${VERSION}",
		"-X github.com/bodystream/bodystream/internal/version.Commit=${COMMIT}",
	} {
		if !strings.Contains(build, want) {
			t.Errorf("the build stage lacks %q", want)
		}
	}
	if !args["VERSION"] || !args["COMMIT"] {
		t.Errorf("build args %v, want VERSION and COMMIT", args)
	}
	if uid, _, _ := strings.Cut(user, ":"); user == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: the image must not run as root", user)
	}
	if !strings.HasPrefix(healthcheck, "--") || !strings.Contains(healthcheck, `CMD ["/usr/local/bin/bodystream", "healthcheck"`) {
		t.Errorf("HEALTHCHECK %q: want the exec form of `bodystream healthcheck` (the image has no shell)", healthcheck)
	}
	if entrypoint != `["/usr/local/bin/bodystream"]` {
		t.Errorf("ENTRYPOINT %s", entrypoint)
	}

	// The Go image is the release go.mod asks for.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || !slices.ContainsFunc(froms, func(f string) bool { return strings.HasPrefix(f, "golang:"+string(goVersion[1])) }) {
		t.Errorf("no build stage FROM golang:%s", goVersion[1])
	}
}
