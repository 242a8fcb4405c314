package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness/readyfile"
)

const (
	// readHeaderTimeout bounds how long a connection may take to send request headers.
	// There is no read, write or idle timeout: bodies stream for as long as they take,
	// and Envoy keeps upstream connections open for reuse; closing them from this side
	// would race with Envoy sending the next request on them.
	readHeaderTimeout = 10 * time.Second
	// shutdownTimeout is how long in-flight requests get to finish once ctx is
	// cancelled before their connections are closed under them.
	shutdownTimeout = 5 * time.Second

	// An HTTP/2 stream whose handler is blocked on writing its echo leaves what it was
	// sent unread, and that stays counted against the connection's receive window as
	// well as the stream's. net/http's defaults make both 1 MiB, so one such stream
	// stops every other upload on the connection: with hundreds of uploads from Envoy
	// on one connection, most then wait for Envoy's stream idle timeout. The
	// connection's window therefore covers every stream's, as in Envoy's own listener
	// (resources/envoy.yaml); what echo holds per stream stays bounded by the stream's.
	h2StreamWindow     = 64 << 10
	h2MaxStreams       = 1024
	h2ConnectionWindow = h2MaxStreams * h2StreamWindow
)

// config is what the flags say.
type config struct {
	listen      string
	buffered    bool
	maxBuffered int64
	readyFile   string
	verbose     bool
	digest      bool // -digest: -v with body digests
}

// Run parses args, listens, and serves until ctx is cancelled; then it shuts the
// server down gracefully and returns nil. It writes the listen address to stdout once
// listening, and errors (and with -v one line per request) to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr := ln.Addr().String()

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:   newHandler(cfg, stderr),
		Protocols: &protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          h2MaxStreams,
			MaxReceiveBufferPerStream:     h2StreamWindow,
			MaxReceiveBufferPerConnection: h2ConnectionWindow,
		},
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          log.New(stderr, "echo: http: ", log.LstdFlags),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	if cfg.readyFile != "" {
		if err := readyfile.Write(cfg.readyFile, readyfile.Addrs{Addr: addr}); err != nil {
			_ = srv.Close() // the write error is the one worth reporting
			<-served
			return err
		}
		// A stale ready file would tell the next harness that a server is up.
		defer os.Remove(cfg.readyFile)
	}
	fmt.Fprintf(stdout, "echo: listening on %s\n", addr)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Requests still streaming after the grace period are cut off: being asked
		// to stop is not a failure of the server, so this is reported, not returned.
		fmt.Fprintf(stderr, "echo: graceful shutdown: %v; closing remaining connections\n", err)
		if err := srv.Close(); err != nil {
			return fmt.Errorf("close: %w", err)
		}
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// parseFlags turns args into a config, writing usage and flag errors to output.
func parseFlags(args []string, output io.Writer) (config, error) {
	cfg := config{maxBuffered: 256 << 20}
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:18081", "`address` to listen on (port 0 picks a free port)")
	fs.BoolVar(&cfg.buffered, "buffered", false, "echo reads the whole body, then answers with a Content-Length")
	fs.Var((*byteSize)(&cfg.maxBuffered), "max-buffered", "largest body -buffered echo accepts (e.g. 256MiB, 1GB); larger gets 413")
	fs.StringVar(&cfg.readyFile, "ready-file", "", "once listening, write addr=ADDRESS to this `file`")
	fs.BoolVar(&cfg.verbose, "v", false, "log one line per request to stderr")
	fs.BoolVar(&cfg.digest, "digest", false, "like -v, and each line also has the request id, how the body ended and its SHA-256, decoded too for gzip and zstd")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if cfg.maxBuffered <= 0 {
		return config{}, fmt.Errorf("-max-buffered must be positive, got %d", cfg.maxBuffered)
	}
	return cfg, nil
}

// byteSize is a flag.Value holding a size written the way humans write it.
type byteSize int64

func (s *byteSize) String() string { return humanize.IBytes(uint64(*s)) }

func (s *byteSize) Set(text string) error {
	n, err := humanize.ParseBytes(text)
	if err != nil {
		return err
	}
	if n > 1<<62 {
		return fmt.Errorf("%s is too large", text)
	}
	*s = byteSize(n)
	return nil
}
