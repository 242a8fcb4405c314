package pipeline

import (
	"slices"
	"strings"
)

// Pair is the pipelines of a request's two directions.
type Pair struct {
	Request, Response *Pipeline
	// Route names the configured route that chose the pair, for metrics and logs: its
	// name, else its path prefix, or DefaultRoute.
	Route string
}

// DefaultRoute is the Route of the default pipelines.
const DefaultRoute = "default"

// Router chooses a request's pipelines: by the route name Envoy sends in the gRPC
// metadata, then by Envoy's route name attribute, then by the longest matching path
// prefix, else the default. Build makes one; it is immutable.
type Router struct {
	byName   map[string]Pair
	prefixes []prefixRoute
	fallback Pair
	routes   []Pair // in configuration order
}

// Routes lists every pair Choose can return: the configured routes in order, then
// the default. It is what bounds the route and pipeline labels of bodystream's
// metrics.
func (r *Router) Routes() []Pair {
	return append(slices.Clip(r.routes), r.fallback)
}

type prefixRoute struct {
	prefix string
	pair   Pair
}

// Choose returns the pipelines for a request. unknownName reports that
// metadataRoute is set but names no route: a typo in envoy.yaml that the caller
// should make visible, since the request then falls through to the other rules.
func (r *Router) Choose(metadataRoute, envoyRoute, path string) (p Pair, unknownName bool) {
	if metadataRoute != "" {
		if p, ok := r.byName[metadataRoute]; ok {
			return p, false
		}
		unknownName = true
	}
	if p, ok := r.byName[envoyRoute]; ok && envoyRoute != "" {
		return p, unknownName
	}
	best, bestLen := r.fallback, -1
	for _, route := range r.prefixes {
		if strings.HasPrefix(path, route.prefix) && len(route.prefix) > bestLen {
			best, bestLen = route.pair, len(route.prefix)
		}
	}
	return best, unknownName
}
