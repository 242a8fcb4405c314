package pipeline

import "strings"

// Pair is the pipelines of a request's two directions.
type Pair struct {
	Request, Response *Pipeline
}

// Router chooses a request's pipelines: by the route name Envoy sends in the gRPC
// metadata, then by Envoy's route name attribute, then by the longest matching path
// prefix, else the default. Build makes one; it is immutable.
type Router struct {
	byName   map[string]Pair
	prefixes []prefixRoute
	fallback Pair
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
