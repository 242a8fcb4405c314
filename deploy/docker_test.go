package deploy

import (
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// buildContext returns the files `docker build` would send from root, by size,
// applying root's .dockerignore with the matcher Docker itself uses.
func buildContext(t *testing.T, root string) (*patternmatcher.PatternMatcher, map[string]int64) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]int64{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		switch {
		case excluded && d.IsDir() && !pm.Exclusions():
			return filepath.SkipDir // as Docker does when no ! pattern can bring a file back
		case excluded || d.IsDir():
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[rel] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pm, files
}

// TestDockerBuildContext: the context holds every file the image's build reads (the
// sources of both commands' packages, go.mod, go.sum, what the Dockerfile COPYs) and
// little else: no VCS data, tools, binaries or bench output.
func TestDockerBuildContext(t *testing.T) {
	root := moduleRoot(t)
	pm, files := buildContext(t, root)

	var total int64
	for _, size := range files {
		total += size
	}
	t.Logf("build context: %d files, %d bytes", len(files), total)
	const maxContext = 2 << 20
	if total > maxContext {
		t.Errorf("build context is %d bytes, want at most %d", total, maxContext)
	}

	// Whatever the working tree holds now, these never go.
	for _, path := range []string{
		".git/HEAD", ".git", ".tools/envoy/envoy/_bin/envoy", "bin/bodystream", "bench/out/run-1/report.json",
		"server/server.test", "cpu.out", ".worktrees/x/go.mod", "wt-deploy/go.mod", "deploy/go.mod", "e2e/core_test.go",
	} {
		if excluded, err := pm.MatchesOrParentMatches(path); err != nil || !excluded {
			t.Errorf("%s would be in the build context (err %v)", path, err)
		}
	}

	for _, need := range neededByBuild(t, root) {
		if _, ok := files[need]; !ok {
			t.Errorf("the build needs %s, which .dockerignore leaves out", need)
		}
	}
}

// neededByBuild lists, relative to root, the files the Dockerfile's build reads.
func neededByBuild(t *testing.T, root string) []string {
	t.Helper()
	need := []string{"go.mod", "go.sum"}
	need = append(need, dockerfileCopySources(t, root)...)
	cmd := exec.Command("go", "list", "-deps", "-json", "./cmd/bodystream", "./cmd/echo")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var pkg struct {
			Dir                         string
			Standard                    bool
			GoFiles, EmbedFiles, SFiles []string
		}
		if err := dec.Decode(&pkg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(root, pkg.Dir)
		if err != nil || strings.HasPrefix(rel, "..") || pkg.Standard {
			continue // the standard library or the module cache
		}
		for _, list := range [][]string{pkg.GoFiles, pkg.EmbedFiles, pkg.SFiles} {
			for _, f := range list {
				need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	return need
}
