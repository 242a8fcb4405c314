package bench

// statsFilter picks the stats a scenario reports: ext_proc's counters, the native
// compressor's, the side stream's and the upstream's clusters and Envoy's allocator.
const statsFilter = `^(http\.ingress\.ext_proc\.|http\.ingress\.compressor\.|cluster\.(bodystream|seed|echo)\.upstream_(cx|rq)_|server\.memory_)`

// statsDelta returns after minus before for every stat in after: the counters a
// scenario added. Gauges (server.memory_*) are kept as they are at the end.
func statsDelta(before, after map[string]int64) map[string]int64 {
	delta := make(map[string]int64, len(after))
	for name, v := range after {
		if isGauge(name) {
			delta[name] = v
		} else {
			delta[name] = v - before[name]
		}
	}
	return delta
}

func isGauge(name string) bool {
	switch name {
	case "server.memory_allocated", "server.memory_heap_size", "server.memory_physical_size",
		"cluster.bodystream.upstream_cx_active", "cluster.seed.upstream_cx_active",
		"cluster.bodystream.upstream_rq_active", "cluster.seed.upstream_rq_active",
		"cluster.bodystream.upstream_cx_rx_bytes_buffered", "cluster.bodystream.upstream_cx_tx_bytes_buffered",
		"cluster.seed.upstream_cx_rx_bytes_buffered", "cluster.seed.upstream_cx_tx_bytes_buffered":
		return true
	}
	return false
}
