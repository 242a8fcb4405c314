package config

import (
	"strings"
	"testing"
)

func TestRouteHeaderEditsRefused(t *testing.T) {
	route := func(edits string) string { return "routes: [{name: r, " + edits + "}]" }
	cases := []struct{ name, yaml, want string }{
		{"pseudo-header set", route(`request_headers: {set: {":path": /x}}`), `routes[0].request_headers.set.:path: pseudo-headers cannot be edited`},
		{"pseudo-header removed", route(`response_headers: {remove: [":status"]}`), `routes[0].response_headers.remove[0]: ":status": pseudo-headers`},
		{"hop-by-hop set", route(`request_headers: {set: {connection: close}}`), `routes[0].request_headers.set.connection: a hop-by-hop header`},
		{"hop-by-hop appended", route(`response_headers: {append: {transfer-encoding: gzip}}`), `routes[0].response_headers.append.transfer-encoding: a hop-by-hop header`},
		{"hop-by-hop removed", route(`request_headers: {remove: [x-ok, te]}`), `routes[0].request_headers.remove[1]: "te": a hop-by-hop header`},
		{"host", route(`request_headers: {set: {host: example.com}}`), `routes[0].request_headers.set.host: Envoy's default mutation_rules refuse routing headers`},
		{"x-envoy", route(`request_headers: {set: {x-envoy-retry-on: 5xx}}`), `routes[0].request_headers.set.x-envoy-retry-on: Envoy's default mutation_rules refuse x-envoy-*`},
		{"content-encoding", route(`response_headers: {remove: [content-encoding]}`), `routes[0].response_headers.remove[0]: "content-encoding": bodystream's pipeline sets it`},
		{"upper case", route(`request_headers: {set: {X-Tag: a}}`), `routes[0].request_headers.set.X-Tag: write header names in lower case`},
		{"not a token", route(`request_headers: {set: {"a b": c}}`), `routes[0].request_headers.set.a b: not a valid header name`},
		{"empty name", route(`request_headers: {remove: [""]}`), `routes[0].request_headers.remove[0]: "": a header name must not be empty`},
		{"newline in value", route(`request_headers: {set: {x-a: "one\r\nx-b: two"}}`), `routes[0].request_headers.set.x-a: a header value must not hold control characters`},
		{"set and removed", route(`request_headers: {set: {x-a: "1"}, remove: [x-a]}`), `routes[0].request_headers.remove.x-a: also in set`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRouteHeaderEditsAccepted(t *testing.T) {
	cfg, err := Parse(strings.NewReader(`
routes:
  - name: asm
    request_headers:
      set: {x-ext-proc-header: hello-to-asm}
      append: {x-trace-tag: bodystream}
      remove: [x-internal]
    response_headers:
      set: {x-ext-proc-header: hello-from-asm}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if r.RequestHeaders.Set["x-ext-proc-header"] != "hello-to-asm" || r.RequestHeaders.Append["x-trace-tag"] != "bodystream" ||
		len(r.RequestHeaders.Remove) != 1 || r.ResponseHeaders.Set["x-ext-proc-header"] != "hello-from-asm" {
		t.Errorf("edits parsed as %+v / %+v", r.RequestHeaders, r.ResponseHeaders)
	}
	if r.RequestHeaders.Empty() || !(HeaderEdits{}).Empty() {
		t.Error("Empty is wrong")
	}
}
