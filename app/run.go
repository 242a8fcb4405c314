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
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/internal/harness/readyfile"
	"github.com/bodystream/bodystream/internal/version"
	"github.com/bodystream/bodystream/pipeline"
	"github.com/bodystream/bodystream/server"
	_ "github.com/bodystream/bodystream/stages" // bodystream's own stage kinds
)

// Run is the whole program: it serves until ctx ends, then drains and stops. With
// "healthcheck" as its first argument it is the health probe instead.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], stdout, stderr)
	}
	o := newOptions(stderr)
	if err := o.flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h: the usage is out, and asking for it is no failure
		}
		return err
	}
	if o.flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with -; the only subcommand is healthcheck)", o.flags.Arg(0))
	}
	if o.version {
		fmt.Fprintln(stdout, version.Get())
		return nil
	}
	if o.checkPath != "" {
		cfg, _, err := load(o.checkPath, o)
		if err == nil {
			err = checkEnvironment(cfg)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", o.checkPath)
		return nil
	}

	cfg, router, err := load(o.configPath, o)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	if os.Getenv("GOGC") == "" {
		// bodystream's live heap is small (codec state, pooled buffers) and its garbage
		// is one copy of each body message: half the default GC headroom keeps RSS near
		// the memory budget for a little more GC CPU (bench/RESULTS.md). GOGC overrides.
		debug.SetGCPercent(50)
	}
	creds, err := serverCredentials(cfg.TLS)
	if err != nil {
		return err
	}
	setMemoryLimit(cfg, log)

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := server.New(server.OptionsFrom(cfg), router, log, server.WithMetrics(registry))

	grpcOptions := append(srv.GRPCServerOptions(), grpc.ChainStreamInterceptor(srv.StreamInterceptor()))
	if creds != nil {
		grpcOptions = append(grpcOptions, grpc.Creds(creds))
	}
	grpcServer := grpc.NewServer(grpcOptions...)
	srv.Register(grpcServer)
	healthServer := health.NewServer()
	healthServer.SetServingStatus(server.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(grpcServer, healthServer)

	grpcListener, err := listen(cfg.Listen, os.FileMode(cfg.SocketMode))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	st := &state{srv: srv, health: healthServer, budget: srv, budgetSpentFor: time.Duration(cfg.Readiness.BudgetSpentFor)}
	var adminListener net.Listener
	var adminServer *http.Server
	if cfg.AdminListen != "" {
		if adminListener, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			grpcListener.Close()
			return fmt.Errorf("admin_listen: %w", err)
		}
		adminServer = &http.Server{Handler: adminMux(registry, st, cfg.PProf), ReadHeaderTimeout: 5 * time.Second}
	}

	// The listeners are bound: connections wait in their backlogs until Serve.
	grpcAddr := listenerAddr(grpcListener)
	adminAddr := ""
	if adminListener != nil {
		adminAddr = adminListener.Addr().String()
	}
	if o.readyFile != "" {
		if err := readyfile.Write(o.readyFile, readyfile.Addrs{Addr: grpcAddr, Metrics: adminAddr}); err != nil {
			grpcListener.Close()
			if adminListener != nil {
				adminListener.Close()
			}
			return err
		}
	}
	log.Info("bodystream serving", "grpc", grpcAddr, "tls", cfg.TLS.Enabled(), "mtls", cfg.TLS.ClientCA != "",
		"admin", adminAddr, "version", version.Get().Version)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// A signal right after start may stop the server before Serve runs; Serve
		// then closes the listener and reports ErrServerStopped, which is no failure.
		if err := grpcServer.Serve(grpcListener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	if adminServer != nil {
		g.Go(func() error {
			if err := adminServer.Serve(adminListener); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("admin: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil { // a signal, not a failed listener
			st.drain(log, grpcServer, time.Duration(cfg.DrainDelay), time.Duration(cfg.DrainTimeout))
		} else {
			grpcServer.Stop()
		}
		if adminServer != nil {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			adminServer.Shutdown(shutdownCtx)
		}
		return nil
	})

	return g.Wait()
}

// load reads the configuration at path (the built-in one if empty) with the flags
// over it, checks it, and builds its pipelines.
func load(path string, o *options) (*config.Config, *pipeline.Router, error) {
	cfg, err := config.LoadOverride(path, o.apply)
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

// newLogger returns the process's logger: text or JSON lines on w from level on.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, err := config.ParseLogLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log_level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log_format: must be text or json, got %q", format)
}
