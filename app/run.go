// Package app is the bodystream command as a library: Main and Run are the whole
// program. A binary with stages of its own imports their packages (whose init
// functions call stage.Register) and calls Main:
//
//	package main
//
//	import (
//		"github.com/bodystream/bodystream/app"
//		_ "example.com/mystages"
//	)
//
//	func main() { app.Main() }
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/internal/harness/readyfile"
	"github.com/bodystream/bodystream/pipeline"
	"github.com/bodystream/bodystream/server"
	_ "github.com/bodystream/bodystream/stages" // bodystream's own stage kinds
)

// Run is the whole program: it serves until ctx ends, then stops gracefully.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("bodystream", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "YAML configuration `file` (default: built-in configuration)")
	checkPath := flags.String("check-config", "", "validate the configuration `file` and exit")
	listen := flags.String("listen", "", "gRPC listen `address`, overrides the file's listen")
	metricsListen := flags.String("metrics-listen", "", "metrics listen `address`, overrides the file's metrics_listen (\"off\" disables)")
	readyFile := flags.String("ready-file", "", "once serving, write the gRPC and metrics addresses to this `file`")
	logLevel := flags.String("log-level", "info", "log level: debug, info, warn or error")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *checkPath != "" {
		if _, _, err := load(*checkPath); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", *checkPath)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if os.Getenv("GOGC") == "" {
		// bodystream's live heap is small (codec state, pooled buffers) and its garbage
		// is one copy of each body message: half the default GC headroom keeps RSS near
		// the memory budget for a little more GC CPU (bench/RESULTS.md). GOGC overrides.
		debug.SetGCPercent(50)
	}

	cfg, router, err := load(*configPath)
	if err != nil {
		return err
	}
	setMemoryLimit(cfg, log)
	if *listen != "" {
		cfg.Listen = *listen
	}
	switch *metricsListen {
	case "":
	case "off":
		cfg.MetricsListen = ""
	default:
		cfg.MetricsListen = *metricsListen
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := server.New(server.OptionsFrom(cfg), router, log, server.WithMetrics(registry))

	grpcListener, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	grpcServer := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(grpcServer)

	var metricsListener net.Listener
	var metricsServer *http.Server
	if cfg.MetricsListen != "" {
		if metricsListener, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			grpcListener.Close()
			return fmt.Errorf("metrics_listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		metricsServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := grpcServer.Serve(grpcListener); err != nil {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	if metricsServer != nil {
		g.Go(func() error {
			if err := metricsServer.Serve(metricsListener); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-ctx.Done()
		stopGracefully(grpcServer, 10*time.Second)
		if metricsServer != nil {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			metricsServer.Shutdown(shutdownCtx)
		}
		return nil
	})

	metricsAddr := ""
	if metricsListener != nil {
		metricsAddr = metricsListener.Addr().String()
	}
	log.Info("bodystream serving", "grpc", grpcListener.Addr().String(), "metrics", metricsAddr)
	if *readyFile != "" {
		if err := readyfile.Write(*readyFile, readyfile.Addrs{Addr: grpcListener.Addr().String(), Metrics: metricsAddr}); err != nil {
			return err
		}
	}
	return g.Wait()
}

// load reads and checks the configuration at path (the built-in one if empty) and
// builds its pipelines.
func load(path string) (*config.Config, *pipeline.Router, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	router, err := pipeline.Build(cfg)
	if err != nil {
		if path != "" {
			err = fmt.Errorf("config %s: %w", path, err)
		}
		return nil, nil, err
	}
	return cfg, router, nil
}

// stopGracefully lets running streams finish for a while, then cuts them.
func stopGracefully(g *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		g.Stop()
		<-done
	}
}
