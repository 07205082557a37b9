// Command bot is the nixos-cloud-deploy ChatOps bot: "/deploy az-nixos" in
// an issue comment dispatches the deploy workflow and one status comment
// follows the run. See run.go for the subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// GitHub sends SIGTERM when a workflow run is cancelled; a container
	// orchestrator does the same before stopping the server.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
