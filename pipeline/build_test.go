package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
)

func build(t *testing.T, yamlText string) (*Router, error) {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(yamlText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return Build(cfg)
}

func TestBuildRefusesWrongOptions(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"bad stage option", "pipelines: {p: [{gzip: {level: 12}}]}", "pipelines.p[0].gzip: level: must be between 1 and 9, got 12"},
		{"bad compress level", "pipelines: {p: [{compress: {encodings: [{name: gzip}, {name: zstd, level: 30}]}}]}", "pipelines.p[0].compress: encodings[1].level: zstd takes 1 to 22, got 30"},
		{"bad compress etag", "pipelines: {p: [{compress: {etag: drop}}]}", `pipelines.p[0].compress: etag: must be weaken, remove or skip, got "drop"`},
		{"unknown compress field", "pipelines: {p: [{compress: {encoding: [gzip]}}]}", "field encoding not found"},
		{"unknown stage option", "pipelines: {p: [{gzip: {levle: 1}}]}", "field levle not found in type stages.Gzip"},
		{"options not a map", "pipelines: {p: [{gzip: 3}]}", "pipelines.p[0].gzip: options must be a map"},
		{"second step wrong", "pipelines: {p: [gzip, {zstd: {window: 3}}]}", "pipelines.p[1].zstd: window: must be a power of two"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestBuildRoutes(t *testing.T) {
	r, err := build(t, `
pipelines:
  up: [{gzip: {level: 2}}]
  down: [zstd]
routes:
  - {name: named, request: up, response: down}
  - {path_prefix: /up, request: up}
  - {path_prefix: /up/longer, request: identity, response: down}
  - {envoy_route_prefix: httproute/default/uploads/, request: up, response: down}
  - {envoy_route_prefix: httproute/default/uploads/rule/1/, request: identity, response: down}
`)
	if err != nil {
		t.Fatal(err)
	}
	kinds := func(p *Pipeline) string {
		var names []string
		for _, s := range p.Steps {
			names = append(names, s.Name())
		}
		return strings.Join(names, ",")
	}
	tests := []struct {
		metadata, envoyRoute, path string
		wantReq, wantResp          string
		wantUnknown                bool
	}{
		{"named", "", "/", "gzip", "zstd", false},
		{"", "named", "/", "gzip", "zstd", false},
		{"", "", "/up/x", "gzip", "identity", false},
		{"", "", "/up/longer/x", "identity", "zstd", false},
		{"", "", "/elsewhere", "identity", "identity", false},
		{"typo", "", "/up/x", "gzip", "identity", true},
		{"typo", "named", "/", "gzip", "zstd", true},
		// Envoy Gateway's route names, by the longest prefix, before the path.
		{"", "httproute/default/uploads/rule/0/match/0/*", "/up/longer", "gzip", "zstd", false},
		{"", "httproute/default/uploads/rule/1/match/0/*", "/", "identity", "zstd", false},
		{"", "httproute/default/other/rule/0/match/0/*", "/up/x", "gzip", "identity", false},
	}
	for _, tt := range tests {
		p, unknown := r.Choose(tt.metadata, tt.envoyRoute, tt.path)
		if got := kinds(p.Request) + "|" + kinds(p.Response); got != tt.wantReq+"|"+tt.wantResp || unknown != tt.wantUnknown {
			t.Errorf("Choose(%q, %q, %q) = %s, unknown %v; want %s|%s, %v", tt.metadata, tt.envoyRoute, tt.path, got, unknown, tt.wantReq, tt.wantResp, tt.wantUnknown)
		}
	}
}

// TestBuildRouteHeaderEdits: each route carries its own header edits, by direction.
func TestBuildRouteHeaderEdits(t *testing.T) {
	r, err := build(t, `
routes:
  - {name: asm, request_headers: {set: {x-ext-proc-header: hello-to-asm}}, response_headers: {remove: [x-internal]}}
  - {name: plain}
`)
	if err != nil {
		t.Fatal(err)
	}
	asm, _ := r.Choose("asm", "", "/")
	if asm.HeaderEdits(stage.Request).Set["x-ext-proc-header"] != "hello-to-asm" || len(asm.HeaderEdits(stage.Response).Remove) != 1 {
		t.Errorf("route asm edits: request %+v, response %+v", asm.HeaderEdits(stage.Request), asm.HeaderEdits(stage.Response))
	}
	plain, _ := r.Choose("plain", "", "/")
	if !plain.HeaderEdits(stage.Request).Empty() || !plain.HeaderEdits(stage.Response).Empty() {
		t.Errorf("route plain has edits: %+v", plain)
	}
}

// TestBuildShippedConfigurations: the built-in configuration, the documented example
// and the stress run's build.
func TestBuildShippedConfigurations(t *testing.T) {
	for _, path := range []string{"", "../resources/bodystream.yaml", "../resources/stress/bodystream.yaml"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			text := "{}"
			if path != "" {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				text = strings.ReplaceAll(string(data), "/tmp/bodystream-archive", t.TempDir())
			}
			if _, err := build(t, text); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestKindsRegistered(t *testing.T) {
	want := []string{"brotli", "compress", "decompress", "file", "gzip", "hash", "identity", "limit", "scan", "zstd"}
	if got := strings.Join(stage.Kinds(), ","); got != strings.Join(want, ",") {
		t.Errorf("kinds %s, want %s", got, strings.Join(want, ","))
	}
}

// TestRoutesListEveryChoice: Routes names every pair Choose can return, with its
// route label and pipeline names, the default last.
func TestRoutesListEveryChoice(t *testing.T) {
	r, err := build(t, `
pipelines:
  zip: [gzip]
routes:
  - {name: named, request: zip, response: identity}
  - {path_prefix: /up, request: identity, response: zip}
  - {name: both, path_prefix: /both, request: zip, response: zip}
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Routes() {
		got = append(got, p.Route+":"+p.Request.Name+"/"+p.Response.Name)
	}
	want := []string{"named:zip/identity", "/up:identity/zip", "both:zip/zip", "default:identity/identity"}
	if !slices.Equal(got, want) {
		t.Errorf("Routes() = %v, want %v", got, want)
	}
	for _, c := range []struct{ name, path, want string }{
		{"named", "/", "named"}, {"", "/up/x", "/up"}, {"", "/both", "both"}, {"", "/other", "default"},
	} {
		if p, _ := r.Choose(c.name, "", c.path); p.Route != c.want {
			t.Errorf("Choose(%q, %q) chose route %q, want %q", c.name, c.path, p.Route, c.want)
		}
	}
}
