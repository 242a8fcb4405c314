# The Envoy bench: concurrent uploads through a real Envoy 1.40 with bodystream, side by
# side with Envoy alone, Envoy's own compressor and the seed's conditions. Included
# from the Makefile, which defines GO, ENVOY, BIN and the envoy target.
# How to read its report: bench/README.md. Recorded figures: bench/RESULTS.md.
#
#   make bench                         the default comparison, under five minutes
#   make bench-full                    every kind × 64MiB,1GiB × 1,10,50 × h1,h2 (hours)
#   make bench BENCH_FLAGS='-scenarios fds-gzip -size 1GiB -concurrency 10'
#   make bench-many                    200 and 500 × 64MiB on /full-duplex-streamed (about an hour)
#   make bench BENCH_SCENARIOS=many BENCH_FLAGS='-concurrency 200 -protocol h1'
BENCH_OUT       ?= bench/out
BENCH_SCENARIOS ?= default
BENCH_FLAGS     ?=

.PHONY: bench bench-full bench-many bench-build

bench-build:
	$(GO) build -o $(BIN)/ ./cmd/bench

bench: envoy bench-build
	$(BIN)/bench -envoy "$(ENVOY)" -scenarios $(BENCH_SCENARIOS) -out $(BENCH_OUT) $(BENCH_FLAGS)

bench-full: envoy bench-build
	$(BIN)/bench -envoy "$(ENVOY)" -scenarios full -out $(BENCH_OUT)/full $(BENCH_FLAGS)

bench-many: envoy bench-build
	$(BIN)/bench -envoy "$(ENVOY)" -scenarios many -out $(BENCH_OUT)/many $(BENCH_FLAGS)

# Envoy's windows (bench/RESULTS.md, "Envoy's windows"): STREAMED against
# FULL_DUPLEX_STREAMED at 50 × 64 MiB for each candidate change to resources/envoy.yaml;
# each candidate's report lands in $(BENCH_OUT)/windows/CANDIDATE/.
WINDOW_CANDIDATES ?= ext-proc-stream=256KiB ext-proc-stream=128KiB ext-proc-stream=64KiB ext-proc-stream=64KiB,buffer=32KiB
WINDOW_FLAGS      ?= -scenarios streamed,fds -concurrency 50 -repeat 2

.PHONY: bench-windows
bench-windows: envoy bench-build
	@set -e; for w in $(WINDOW_CANDIDATES); do \
	  echo "== -windows $$w"; \
	  $(BIN)/bench -envoy "$(ENVOY)" $(WINDOW_FLAGS) -windows $$w -out $(BENCH_OUT)/windows/$$(echo $$w | tr ',=' '_-') $(BENCH_FLAGS); \
	done

# The charts of bench/RESULTS.md and the README, drawn again from the run files
# recorded in bench/runs/ (a run's results.json, gzip -9n): NAME.svg (memory over
# time) and NAME-peaks.svg (peak RSS per process and scenario, one scale).
.PHONY: charts
charts: bench-build
	$(BIN)/bench charts -runs bench/runs -out bench/charts
