package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
)

// Build turns a validated configuration into a Router over ready, immutable
// pipelines: each step is built by its registered kind from its options. It is the
// one place where configuration becomes running parts. Errors name the step's path:
// `pipelines.media[1].gzip: level: must be between 1 and 9, got 12`.
func Build(cfg *config.Config) (*Router, error) {
	built := make(map[string]*Pipeline, len(cfg.Pipelines))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfg.Pipelines)) {
		p, err := New(name, cfg.Pipelines[name], time.Duration(cfg.FlushDelay))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built[name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pair := func(path string, rp config.RoutePipelines) (Pair, error) {
		req, resp := built[rp.Request], built[rp.Response]
		if req == nil || resp == nil {
			return Pair{}, fmt.Errorf("%s: names a pipeline that does not exist (%q, %q): validate the configuration first", path, rp.Request, rp.Response)
		}
		return Pair{Request: req, Response: resp}, nil
	}
	fallback, err := pair("default", cfg.Default)
	if err != nil {
		return nil, err
	}
	fallback.Route = DefaultRoute
	r := &Router{byName: map[string]Pair{}, fallback: fallback}
	for i, route := range cfg.Routes {
		p, err := pair(fmt.Sprintf("routes[%d]", i), route.RoutePipelines)
		if err != nil {
			return nil, err
		}
		p.Route = cmp.Or(route.Name, route.PathPrefix)
		p.RequestHeaders, p.ResponseHeaders = route.RequestHeaders, route.ResponseHeaders
		r.routes = append(r.routes, p)
		if route.Name != "" {
			r.byName[route.Name] = p
		}
		if route.EnvoyRoutePrefix != "" {
			r.envoyPrefixes = append(r.envoyPrefixes, prefixRoute{route.EnvoyRoutePrefix, p})
		}
		if route.PathPrefix != "" {
			r.prefixes = append(r.prefixes, prefixRoute{route.PathPrefix, p})
		}
	}
	return r, nil
}

// New builds one pipeline, named name in the configuration, from its steps.
func New(name string, spec config.PipelineSpec, flushDelay time.Duration) (*Pipeline, error) {
	p := &Pipeline{Name: name, FlushDelay: flushDelay}
	for i, step := range spec {
		path := fmt.Sprintf("pipelines.%s[%d].%s", name, i, step.Kind)
		kind, ok := stage.Lookup(step.Kind)
		if !ok {
			return nil, fmt.Errorf("pipelines.%s[%d]: unknown stage %q (have %s)", name, i, step.Kind, strings.Join(stage.Kinds(), ", "))
		}
		s, err := kind.Build(step.Decode)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		p.Steps = append(p.Steps, s)
	}
	return p, nil
}
