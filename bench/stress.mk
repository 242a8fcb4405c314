# The stress run: the real stack (Envoy 1.40, a -race bodystream, echo) under CPU
# starvation, random uploads for STRESS_TIME, and a failure for any body that reached
# the upstream or the client cut short yet ended as if whole. Included from the
# Makefile. What it checks and how to read a failure: bench/README.md, "Stress".
#
#   make stress                                  10 minutes
#   make stress STRESS_TIME=30m
#   make stress STRESS_FLAGS='-seed 42 -workers 8 -gomaxprocs 2'
STRESS_TIME  ?= 10m
STRESS_FLAGS ?=

.PHONY: stress

stress: envoy
	$(GO) build -o $(BIN)/ ./cmd/stress
	$(BIN)/stress -envoy "$(ENVOY)" -time $(STRESS_TIME) $(STRESS_FLAGS)
