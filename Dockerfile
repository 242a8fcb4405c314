# Builds bodystream and the echo upstream into one small image; docker-compose.yaml
# runs each binary as its own service next to the official Envoy 1.40 image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/bodystream ./cmd/echo

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bodystream /out/echo /usr/local/bin/
COPY resources/bodystream.yaml /etc/bodystream/bodystream.example.yaml
USER nonroot
EXPOSE 50051 9464 18081
ENTRYPOINT ["/usr/local/bin/bodystream"]
CMD ["-listen", "0.0.0.0:50051", "-admin-listen", "0.0.0.0:9464"]
