package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/bodystream/bodystream/config"
)

// healthcheck is `bodystream healthcheck`: one grpc.health.v1 Check against a running
// bodystream, for container health checks that have no shell or curl. It returns nil
// when the service is SERVING and an error saying why not otherwise.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := flag.NewFlagSet("bodystream healthcheck", flag.ContinueOnError)
	f.SetOutput(stderr)
	addr := f.String("addr", "127.0.0.1:50051", "bodystream's gRPC `address`: host:port or unix:///path/to.sock")
	service := f.String("service", "", "service `name` to check: \"\" (the whole server) or envoy.service.ext_proc.v3.ExternalProcessor")
	timeout := f.Duration("timeout", 2*time.Second, "give up after this long")
	caFile := f.String("tls-ca", "", "PEM CA `file` to verify the server's certificate with; turns TLS on")
	certFile := f.String("tls-cert", "", "PEM client certificate `file`, for a listener that requires mTLS")
	keyFile := f.String("tls-key", "", "PEM private key `file` of -tls-cert")
	serverName := f.String("tls-server-name", "", "`name` the server's certificate must carry (default: the address's host)")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := config.CheckListenAddress(*addr, true); err != nil {
		return fmt.Errorf("healthcheck -addr: %w", err)
	}
	creds := insecure.NewCredentials()
	if *caFile != "" || *certFile != "" {
		tc := &tls.Config{ServerName: *serverName, MinVersion: tls.VersionTLS12}
		if *caFile != "" {
			pool, err := loadCertPool(*caFile)
			if err != nil {
				return fmt.Errorf("healthcheck -tls-ca: %w", err)
			}
			tc.RootCAs = pool
		}
		if *certFile != "" {
			cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				return fmt.Errorf("healthcheck -tls-cert, -tls-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		creds = credentials.NewTLS(tc)
	}
	target := *addr
	if network, _ := config.SplitListenAddress(target); network == "tcp" {
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", *addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", *addr, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("healthcheck %s: service %q is %s", *addr, *service, resp.GetStatus())
	}
	fmt.Fprintln(stdout, "SERVING")
	return nil
}
