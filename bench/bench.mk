# The Envoy bench: concurrent uploads through a real Envoy 1.40 with bodystream, side by
# side with Envoy alone, Envoy's own compressor and the seed's conditions. Included
# from the Makefile, which defines GO, ENVOY, BIN and the envoy target.
# How to read its report: bench/README.md. Recorded figures: bench/RESULTS.md.
#
#   make bench                         the default comparison, under five minutes
#   make bench-full                    every kind × 64MiB,1GiB × 1,10,50 × h1,h2 (hours)
#   make bench BENCH_FLAGS='-scenarios fds-gzip -size 1GiB -concurrency 10'
BENCH_OUT   ?= bench/out
BENCH_FLAGS ?=

.PHONY: bench bench-full bench-build

bench-build:
	$(GO) build -o $(BIN)/ ./cmd/bench

bench: envoy bench-build
	$(BIN)/bench -envoy "$(ENVOY)" -scenarios default -out $(BENCH_OUT) $(BENCH_FLAGS)

bench-full: envoy bench-build
	$(BIN)/bench -envoy "$(ENVOY)" -scenarios full -out $(BENCH_OUT)/full $(BENCH_FLAGS)
