package server

import (
	"strings"
	"testing"
	"time"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/pipeline"
	_ "github.com/bodystream/bodystream/stages" // the stage kinds the test configurations name
)

// newServer returns a Server assembled from a configuration written in YAML, the way
// the command assembles it.
func newServer(t testing.TB, yamlText string) (*Server, *config.Config) {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(yamlText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	router, err := pipeline.Build(cfg)
	if err != nil {
		t.Fatalf("pipelines: %v", err)
	}
	return New(OptionsFrom(cfg), router, nil), cfg
}

// pipelineNamed builds one pipeline of a configuration written in YAML.
func pipelineNamed(t testing.TB, yamlText, name string) *pipeline.Pipeline {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(yamlText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	p, err := pipeline.New(name, cfg.Pipelines[name], time.Duration(cfg.FlushDelay))
	if err != nil {
		t.Fatalf("pipeline %s: %v", name, err)
	}
	return p
}
