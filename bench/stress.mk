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
# The soak: the same uploads at an even pace, no busy loops and no race detector,
# sampled every 5 s; it fails when RSS, goroutines or the budget drift (bench/soak.go).
#
#   make soak                                    5 minutes
#   make soak SOAK_TIME=30m
SOAK_TIME    ?= 5m
SOAK_FLAGS   ?=

.PHONY: stress soak

stress: envoy
	$(GO) build -o $(BIN)/ ./cmd/stress
	$(BIN)/stress -envoy "$(ENVOY)" -time $(STRESS_TIME) $(STRESS_FLAGS)

soak: envoy
	$(GO) build -o $(BIN)/ ./cmd/stress
	$(BIN)/stress -envoy "$(ENVOY)" -time $(SOAK_TIME) -busy 0 -race=false -gomaxprocs 2 -soak-every 5s -progress 1m $(SOAK_FLAGS)
