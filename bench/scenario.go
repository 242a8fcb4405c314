package bench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

// Kind is a setup to measure: which Envoy and ext_proc configuration, which route,
// which body. A Scenario is a Kind under one load.
type Kind struct {
	Name  string `json:"name"`
	About string `json:"about"`
	// EnvoyConfig and BodystreamConfig are absolute or relative to the module root;
	// empty means resources/envoy.yaml and bodystream's built-in configuration.
	EnvoyConfig      string `json:"envoy_config,omitempty"`
	BodystreamConfig string `json:"bodystream_config,omitempty"`
	// Seed runs the bench's seed-server as the ext_proc server instead of bodystream.
	Seed bool `json:"seed,omitempty"`
	// Route is the path prefix; uploads go to Route + "/echo".
	Route string           `json:"route"`
	Body  harness.BodyKind `json:"body"`
	// Compresses says the route gzips bodies that compress, so that a JSON upload
	// must come back with content-encoding gzip and a random one without.
	Compresses bool `json:"compresses,omitempty"`
	// Replicas, if set, runs that many bodystream replicas and harness.RunReplicaDrill
	// under a continuous load instead of the scenario's C uploads at once (see
	// runDrill). Only chosen by name: never part of a preset.
	Replicas int `json:"replicas,omitempty"`
}

// kinds are every setup the bench knows, in the order reports list them.
var kinds = []Kind{
	{Name: "direct", About: "Envoy alone, no ext_proc: the floor",
		Route: "/direct", Body: harness.BodyRandom},
	{Name: "streamed", About: "bodystream identity, STREAMED both ways",
		BodystreamConfig: "resources/bench/bodystream-identity.yaml", Route: "/streamed", Body: harness.BodyRandom},
	{Name: "fds", About: "bodystream identity, FULL_DUPLEX_STREAMED both ways",
		BodystreamConfig: "resources/bench/bodystream-identity.yaml", Route: "/full-duplex-streamed", Body: harness.BodyRandom},
	{Name: "fds-gzip", About: "bodystream gzip -1 on the request, FULL_DUPLEX_STREAMED both ways (resources/envoy.yaml as shipped)",
		Route: "/full-duplex-streamed", Body: harness.BodyJSON, Compresses: true},
	{Name: "bodystream-gzip", About: "bodystream gzip -1, FULL_DUPLEX_STREAMED on the request only",
		EnvoyConfig: "resources/bench/envoy-compressor.yaml", Route: "/bodystream-gzip", Body: harness.BodyJSON, Compresses: true},
	{Name: "native-gzip", About: "Envoy's compressor filter, gzip level 1 on the request, no ext_proc",
		EnvoyConfig: "resources/bench/envoy-compressor.yaml", Route: "/native-gzip", Body: harness.BodyJSON, Compresses: true},
	{Name: "native-gzip-2", About: "Envoy's compressor filter at level 2, whose ratio matches bodystream's level 1",
		EnvoyConfig: "resources/bench/envoy-compressor.yaml", Route: "/native-gzip-2", Body: harness.BodyJSON, Compresses: true},
	{Name: "replicas", About: "3 bodystream replicas behind one Envoy under a continuous load (C workers, bodies up to the size, h1 and h2, FULL_DUPLEX_STREAMED and STREAMED), one drained, one killed, both restarted",
		Route: "/full-duplex-streamed", Body: harness.BodyRandom, Replicas: 3},
	{Name: "seed", About: "the seed's conditions: FULL_DUPLEX_STREAMED, Envoy defaults, a server that buffers to end of stream and answers in 1 MiB chunks",
		EnvoyConfig: "resources/bench/envoy-seed.yaml", Seed: true, Route: "/seed", Body: harness.BodyRandom},
}

func kindNamed(name string) (Kind, bool) {
	i := slices.IndexFunc(kinds, func(k Kind) bool { return k.Name == name })
	if i < 0 {
		return Kind{}, false
	}
	return kinds[i], true
}

func kindNames() string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// Scenario is one measurement: a kind under a load, on a fresh stack.
type Scenario struct {
	Kind        `json:"kind"`
	Size        int64            `json:"size"`
	Concurrency int              `json:"concurrency"`
	Protocol    harness.Protocol `json:"protocol"`
}

// Title names the scenario in tables and charts, e.g. "fds-gzip h1 10×1GiB".
func (s Scenario) Title() string {
	return fmt.Sprintf("%s %s %d×%s", s.Kind.Name, s.Protocol, s.Concurrency, sizeName(s.Size))
}

// wantEncoding returns the content-encoding the response must carry, and false when
// either is right (a file body may or may not compress).
func (s Scenario) wantEncoding() (string, bool) {
	switch {
	case !s.Compresses:
		return "", true
	case s.Body == harness.BodyJSON:
		return "gzip", true
	case s.Body == harness.BodyRandom:
		return "", true
	}
	return "", false
}

// sizeName writes a size the short way: 64MiB, 1GiB, 1.5MiB.
func sizeName(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return strings.ReplaceAll(humanize.IBytes(uint64(n)), " ", "")
}

// manyUploads are the "many" preset's concurrencies, manyKinds its kinds.
var (
	manyUploads = []int{200, 500}
	manyKinds   = []string{"fds", "fds-gzip", "streamed"}
)

// seedMaxTotal bounds what one seed scenario makes its server hold: it keeps every
// body whole, so 50 uploads of 1 GiB would need 50 GiB of this machine's memory.
const seedMaxTotal = 4 << 30

// The presets. "default" answers the questions in under five minutes on 2
// CPUs: every kind side by side at ten 64 MiB uploads, the goal's ten 1 GiB gzip
// uploads (memory must not grow with size), and HTTP/2 on the main routes. "full" is
// every kind at every size, concurrency and protocol the issue names: hours. "many" is
// hundreds of concurrent 64 MiB uploads on /full-duplex-streamed, identity and gzip,
// h1 and h2, with STREAMED beside them for Envoy's growth per upload: the budget's
// refusals and Envoy's windows under load.
func preset(name string) ([]Scenario, bool) {
	const mib64, gib1 = 64 << 20, 1 << 30
	var list []Scenario
	add := func(kind string, size int64, concurrency int, proto harness.Protocol) {
		k, ok := kindNamed(kind)
		if !ok {
			panic("bench: preset names unknown kind " + kind)
		}
		list = append(list, Scenario{Kind: k, Size: size, Concurrency: concurrency, Protocol: proto})
	}
	switch name {
	case "default":
		for _, k := range presetKinds() {
			add(k.Name, mib64, 10, harness.H1)
		}
		add("fds-gzip", gib1, 10, harness.H1)
		for _, k := range []string{"fds", "fds-gzip"} {
			add(k, mib64, 10, harness.H2)
		}
	case "full":
		for _, proto := range []harness.Protocol{harness.H1, harness.H2} {
			for _, size := range []int64{mib64, gib1} {
				for _, c := range []int{1, 10, 50} {
					for _, k := range presetKinds() {
						if k.Seed && size*int64(c) > seedMaxTotal {
							continue
						}
						add(k.Name, size, c, proto)
					}
				}
			}
		}
	case "many":
		for _, proto := range []harness.Protocol{harness.H1, harness.H2} {
			for _, c := range manyUploads {
				for _, k := range manyKinds {
					add(k, mib64, c, proto)
				}
			}
		}
	default:
		return nil, false
	}
	return list, true
}

// presetKinds are the kinds the presets run: all but the replica drill, which
// measures a deployment's events rather than a steady load.
func presetKinds() []Kind {
	return slices.DeleteFunc(slices.Clone(kinds), func(k Kind) bool { return k.Replicas > 0 })
}
