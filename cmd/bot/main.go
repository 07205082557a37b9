// Command bot is the nixos-cloud-deploy ChatOps bot: "/deploy az-nixos" in
// an issue comment dispatches the deploy workflow and one status comment
// follows the run. internal/bot has the commands (bot help).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/bot"
)

func main() {
	// GitHub sends SIGTERM when a workflow run is cancelled; a container
	// orchestrator does the same before stopping the server.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bot.Main(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
