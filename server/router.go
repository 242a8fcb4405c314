package server

import (
	"strings"

	"github.com/bodystream/bodystream/config"
)

const (
	// routeMetadataKey is the gRPC initial metadata an envoy.yaml route sets
	// (grpc_initial_metadata) to name its bodystream route.
	routeMetadataKey = "x-bodystream-route"
	// attributesKey is where Envoy puts the configured request_attributes.
	attributesKey = "envoy.filters.http.ext_proc"
)

// router chooses a request's pipelines: by the route name in the gRPC metadata, then
// by Envoy's route name attribute, then by the longest matching path prefix.
type router struct {
	byName   map[string]config.RoutePipelines
	prefixes []config.Route
	fallback config.RoutePipelines
}

func newRouter(cfg *config.Config) *router {
	r := &router{byName: map[string]config.RoutePipelines{}, fallback: cfg.Default}
	for _, route := range cfg.Routes {
		if route.Name != "" {
			r.byName[route.Name] = route.RoutePipelines
		}
		if route.PathPrefix != "" {
			r.prefixes = append(r.prefixes, route)
		}
	}
	return r
}

func (r *router) choose(metadataRoute, envoyRoute, path string) config.RoutePipelines {
	for _, name := range []string{metadataRoute, envoyRoute} {
		if p, ok := r.byName[name]; ok && name != "" {
			return p
		}
	}
	best, bestLen := r.fallback, -1
	for _, route := range r.prefixes {
		if strings.HasPrefix(path, route.PathPrefix) && len(route.PathPrefix) > bestLen {
			best, bestLen = route.RoutePipelines, len(route.PathPrefix)
		}
	}
	return best
}
