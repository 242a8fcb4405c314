# Go benchmarks, recorded in bench/RESULTS.md ("Go benchmarks"):
#   bench-go-throughput  the server over loopback TCP in FULL_DUPLEX_STREAMED beside its
#                        two ceilings (codec alone, bare gRPC echo), and grpc-go's
#                        default codec against server/codec.go
#   bench-go-memory      heap and RSS of a server process with 1, 10 and 100
#                        concurrent 64 MiB and 1 GiB streams
# Raw output goes to $(BENCH_GO_OUT). About 8 minutes on an idle 2-core machine
# (throughput ~2, memory ~6); a loaded machine takes longer and measures less.
#
# Knobs: BENCH_GO_COUNT and BENCH_GO_TIME (runs and iterations per benchmark);
# MEMBENCH_SCENARIOS (pipeline:streamsxsize[@cap],..., empty for the default list,
# see server/memory_bench_test.go); MEMBENCH_CODEC=bodystream runs the memory
# benchmark's server with server/codec.go's codec and pool.
GO                 ?= go
BENCH_GO_OUT       ?= bench/out
BENCH_GO_COUNT     ?= 5
BENCH_GO_TIME      ?= 15x
MEMBENCH_SCENARIOS ?=
MEMBENCH_CODEC     ?=
bench_go_out       := $(abspath $(BENCH_GO_OUT))

.PHONY: bench-go bench-go-throughput bench-go-memory

bench-go: bench-go-throughput bench-go-memory

# The test binary is built once and run BENCH_GO_COUNT times over all the throughput
# benchmarks, rather than with -count, so that each pass measures a pipeline and its
# two ceilings within seconds of each other: on a shared machine the load drifts
# between minutes, and a ratio of figures taken minutes apart measures the drift.
bench-go-throughput:
	@mkdir -p $(bench_go_out)
	@{ nproc; grep -m1 'model name' /proc/cpuinfo; $(GO) version; grep 'google.golang.org/grpc ' go.mod; \
		git rev-parse --short HEAD 2>/dev/null; uptime; } > $(bench_go_out)/go-machine.txt
	$(GO) test -c -o $(bench_go_out)/server.test ./server/
	rm -f $(bench_go_out)/go-throughput.txt
	cd server && for i in $$(seq $(BENCH_GO_COUNT)); do \
		uptime >> $(bench_go_out)/go-throughput.txt; \
		$(bench_go_out)/server.test -test.run '^$$' -test.bench '^Benchmark(Throughput|Codec|GRPCEcho|ServerCodec)$$' \
			-test.benchtime $(BENCH_GO_TIME) -test.timeout 30m >> $(bench_go_out)/go-throughput.txt 2>&1 \
			|| { tail -20 $(bench_go_out)/go-throughput.txt; exit 1; }; \
	done
	@grep -h '^Benchmark' $(bench_go_out)/go-throughput.txt

bench-go-memory:
	@mkdir -p $(bench_go_out)
	BODYSTREAM_MEMBENCH=1 BODYSTREAM_MEMBENCH_SCENARIOS='$(MEMBENCH_SCENARIOS)' BODYSTREAM_MEMBENCH_CODEC='$(MEMBENCH_CODEC)' \
		$(GO) test -count=1 -run '^TestMemoryBench$$' -v -timeout 60m ./server/ \
		> $(bench_go_out)/go-memory$(if $(MEMBENCH_CODEC),-$(MEMBENCH_CODEC)).txt 2>&1; \
		s=$$?; cat $(bench_go_out)/go-memory$(if $(MEMBENCH_CODEC),-$(MEMBENCH_CODEC)).txt; exit $$s
