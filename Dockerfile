# syntax=docker/dockerfile:1
# bodystream and the echo upstream in one small static image; docker-compose.yaml
# runs each binary as its own service next to the official Envoy 1.40 image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) -t bodystream .
#   docker run --rm bodystream -version
#
# Base images are pinned by digest (tag kept beside it for humans). The digests were
# current for these tags when written; refresh them with
#   docker buildx imagetools inspect golang:1.26-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
FROM golang:1.26-bookworm@sha256:9fdc884aacc3bec89b20ffc69f4bb369c78210e3e4f600387b5128b12c199f81 AS build
# go.mod names a patch release; an older 1.26 image fetches that toolchain.
ENV CGO_ENABLED=0 GOTOOLCHAIN=auto GOFLAGS=-trimpath
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=""
ARG COMMIT=""
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w \
      -X github.com/bodystream/bodystream/internal/version.Version=${VERSION} \
      -X github.com/bodystream/bodystream/internal/version.Commit=${COMMIT}" \
      -o /out/ ./cmd/bodystream ./cmd/echo

# Static binaries need no libc: distroless/static has CA certificates, tzdata and a
# nonroot user (65532), and no shell.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
COPY --from=build /out/bodystream /out/echo /usr/local/bin/
COPY resources/bodystream.yaml /etc/bodystream/bodystream.example.yaml
USER 65532:65532
# 50051 gRPC ext_proc, 9464 admin (/metrics, /healthz, /readyz), 18081 echo.
EXPOSE 50051 9464 18081
# No shell in the image: the binary probes its own gRPC health service.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/bodystream", "healthcheck", "-addr", "127.0.0.1:50051"]
ENTRYPOINT ["/usr/local/bin/bodystream"]
CMD ["-listen", "0.0.0.0:50051", "-admin-listen", "0.0.0.0:9464"]
