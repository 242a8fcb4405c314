package app

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main runs bodystream with the process's arguments until SIGINT or SIGTERM, and
// exits with status 1 after printing the error that stopped it. The first signal
// starts the drain; a second one kills the process at once.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	if err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bodystream:", err)
		os.Exit(1)
	}
}
