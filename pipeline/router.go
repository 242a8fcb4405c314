package pipeline

import (
	"slices"
	"strings"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
)

// Pair is the pipelines of a request's two directions, and the route's fixed header
// edits for each.
type Pair struct {
	Request, Response               *Pipeline
	RequestHeaders, ResponseHeaders config.HeaderEdits
	// Route names the configured route that chose the pair, for metrics and logs: its
	// name, else its path prefix, or DefaultRoute.
	Route string
}

// HeaderEdits returns the route's fixed header edits for dir.
func (p Pair) HeaderEdits(dir stage.Direction) config.HeaderEdits {
	if dir == stage.Response {
		return p.ResponseHeaders
	}
	return p.RequestHeaders
}

// DefaultRoute is the Route of the default pipelines.
const DefaultRoute = "default"

// Router chooses a request's pipelines: by the route name Envoy sends in the gRPC
// metadata, then by Envoy's route name attribute, whole or by its longest matching
// prefix, then by the longest matching path prefix, else the default. Build makes
// one; it is immutable.
type Router struct {
	byName        map[string]Pair
	envoyPrefixes []prefixRoute
	prefixes      []prefixRoute
	fallback      Pair
	routes        []Pair // in configuration order
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
	if envoyRoute != "" {
		if p, ok := r.byName[envoyRoute]; ok {
			return p, unknownName
		}
		if p, ok := longestPrefix(r.envoyPrefixes, envoyRoute); ok {
			return p, unknownName
		}
	}
	if p, ok := longestPrefix(r.prefixes, path); ok {
		return p, unknownName
	}
	return r.fallback, unknownName
}

// longestPrefix returns the route whose prefix is the longest that s starts with.
func longestPrefix(routes []prefixRoute, s string) (best Pair, ok bool) {
	bestLen := -1
	for _, route := range routes {
		if strings.HasPrefix(s, route.prefix) && len(route.prefix) > bestLen {
			best, bestLen = route.pair, len(route.prefix)
		}
	}
	return best, bestLen >= 0
}
