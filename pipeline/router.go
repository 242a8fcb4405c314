package pipeline

import (
	"strings"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
)

// Pair is the pipelines of a request's two directions, and the route's fixed header
// edits for each.
type Pair struct {
	Request, Response               *Pipeline
	RequestHeaders, ResponseHeaders config.HeaderEdits
}

// HeaderEdits returns the route's fixed header edits for dir.
func (p Pair) HeaderEdits(dir stage.Direction) config.HeaderEdits {
	if dir == stage.Response {
		return p.ResponseHeaders
	}
	return p.RequestHeaders
}

// Router chooses a request's pipelines: by the route name Envoy sends in the gRPC
// metadata, then by Envoy's route name attribute, whole or by its longest matching
// prefix, then by the longest matching path prefix, else the default. Build makes
// one; it is immutable.
type Router struct {
	byName        map[string]Pair
	envoyPrefixes []prefixRoute
	prefixes      []prefixRoute
	fallback      Pair
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
