// Command bodystream is an Envoy ext_proc server that streams HTTP bodies through
// configurable transform pipelines with bounded memory.
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
	defer stop()
	if err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bodystream:", err)
		os.Exit(1)
	}
}
