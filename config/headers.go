package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// HeaderEdits are the fixed header changes a route makes to one direction's headers,
// sent in the answer to Envoy's headers message whatever the body mode.
type HeaderEdits struct {
	// Set replaces a header (or adds it when absent).
	Set map[string]string `yaml:"set"`
	// Append adds a value, keeping the ones already there.
	Append map[string]string `yaml:"append"`
	// Remove deletes a header.
	Remove []string `yaml:"remove"`
}

// Empty says the edits change nothing.
func (e HeaderEdits) Empty() bool {
	return len(e.Set) == 0 && len(e.Append) == 0 && len(e.Remove) == 0
}

// hopByHop are the headers one connection owns (RFC 9110 section 7.6.1, plus the
// legacy proxy-connection): Envoy removes or regenerates them per hop.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "proxy-authenticate": true,
	"proxy-authorization": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
}

// refusedHeader says why a route may not edit name, or "" when it may. Beyond
// pseudo- and hop-by-hop headers, it refuses what Envoy's default ext_proc
// mutation_rules reject (counting rejected_header_mutations): host, the routing
// headers, and x-envoy-* (the default header_prefix); and the two headers
// bodystream's pipelines set from what they do to the body.
func refusedHeader(name string) string {
	switch {
	case name == "":
		return "a header name must not be empty"
	case strings.HasPrefix(name, ":"):
		return "pseudo-headers cannot be edited: Envoy derives them from the request line and status"
	case name != strings.ToLower(name):
		return "write header names in lower case, as HTTP/2 and Envoy do"
	case !isToken(name):
		return "not a valid header name (RFC 9110 token)"
	case hopByHop[name]:
		return "a hop-by-hop header belongs to one connection; Envoy manages it"
	case name == "host":
		return "Envoy's default mutation_rules refuse routing headers (host, :authority, :scheme, :method)"
	case strings.HasPrefix(name, "x-envoy-"):
		return "Envoy's default mutation_rules refuse x-envoy-* headers"
	case name == "content-length" || name == "content-encoding":
		return "bodystream's pipeline sets it from what it does to the body"
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token, the syntax of a header name.
func isToken(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// validHeaderValue refuses what HTTP cannot carry in a value: control characters
// other than tab, and leading or trailing white space, which Envoy would strip.
func validHeaderValue(v string) string {
	for _, c := range []byte(v) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return "a header value must not hold control characters (CR, LF, NUL...)"
		}
	}
	if strings.TrimSpace(v) != v {
		return "a header value must not start or end with white space"
	}
	return ""
}

// validate reports every refused edit with its path, e.g.
// `routes[0].request_headers.set.connection: ...`.
func (e HeaderEdits) validate(path string, fail func(path, format string, args ...any)) {
	edited := map[string]string{}
	note := func(op, name string) {
		if prev, ok := edited[name]; ok {
			fail(path+"."+op+"."+name, "also in %s: a header takes one kind of edit", prev)
		}
		edited[name] = op
	}
	for _, op := range []struct {
		name   string
		values map[string]string
	}{{"set", e.Set}, {"append", e.Append}} {
		for _, name := range slices.Sorted(maps.Keys(op.values)) {
			if why := refusedHeader(name); why != "" {
				fail(fmt.Sprintf("%s.%s.%s", path, op.name, name), "%s", why)
			}
			if why := validHeaderValue(op.values[name]); why != "" {
				fail(fmt.Sprintf("%s.%s.%s", path, op.name, name), "%s", why)
			}
			note(op.name, name)
		}
	}
	for i, name := range e.Remove {
		if why := refusedHeader(name); why != "" {
			fail(fmt.Sprintf("%s.remove[%d]", path, i), "%q: %s", name, why)
		}
		note("remove", name)
	}
}
