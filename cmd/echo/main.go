// Command echo is the upstream that bodystream's tests and benchmarks send bodies to
// through Envoy. It speaks HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c, as
// Envoy's upstream clusters use it) on one port.
//
// Envoy's routes (/full-duplex-streamed/..., /streamed/..., /buffered/...) forward the
// path unchanged, so the behaviour is chosen by the last path segment alone, whatever
// comes before it:
//
//	.../echo     the request body is sent back as it arrives (the default)
//	.../sink     the body is consumed and described in a JSON answer
//	.../healthz  GET or HEAD answers 200 "ok"
//	.../respond  answers with the status, headers and body its query names (respond.go)
//	.../reset    reads ?after=N body bytes (0 by default), then resets the stream:
//	             an upstream that fails mid-body; with ?echo=1 it first answers 200
//	             and sends those bytes back, so the response breaks off midway
//	.../slow     echoes like echo, reading at most ?rate=N bytes a second (256 KiB
//	             by default): an upstream that reads very slowly
//	anything else behaves like echo
//
// `echo healthcheck [-url URL]` is the container's health probe: it exits 0 when the
// URL (default http://127.0.0.1:18081/healthz) answers 200.
//
// Echo streams full duplex with one fixed 32 KiB buffer per request: each chunk read is
// written and flushed at once, so memory stays constant whatever the body's size. The
// response copies the request's Content-Type and Content-Encoding, has no
// Content-Length, and carries the request's trailers back as response trailers with
// the same names. With -buffered, echo instead reads the whole body (at most
// -max-buffered, else 413) and answers with a Content-Length, like an aggregating
// server would.
//
// Sink hashes the body while reading it and answers
//
//	{"bytes": N, "sha256": "<hex>", "content_encoding": "...", "content_type": "...",
//	 "trailers": {"name": "value"}, "headers": {"x-bodystream-name": "value"}}
//
// where trailers holds the request's trailers and headers those request headers whose
// name starts with x-bodystream-, both with lower-case names.
//
// Over HTTP/2, request trailers reach a Go server only when the request declares them
// in a Trailer header; net/http drops undeclared ones before echo sees them. Over
// HTTP/1.1 every trailer of a chunked request arrives.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		err = Healthcheck(ctx, os.Args[2:], os.Stderr)
	} else {
		err = Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: %v\n", err)
		os.Exit(1)
	}
}
