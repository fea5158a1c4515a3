// Command server runs the job service: the GraphQL API, the REST endpoints
// kept from the original service, the worker pool and the live broker.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := command(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// command runs the subcommand args name ("token new"), or else the
// server.
func command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return tokenCommand(args[1:], rand.Reader, stdout, stderr)
	}
	return run(ctx, args, getenv, stdout, stderr)
}
