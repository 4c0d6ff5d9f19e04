// Command picluster estimates π by Monte Carlo on every core of as many
// machines as you have, pooled through Redis. See README.md, or run
// "picluster help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // after the first signal, a second one ends the process at once
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		code := explain(os.Stderr, err)
		stop()
		os.Exit(code)
	}
}
