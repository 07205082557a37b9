// Command action is the nixos-cloud-deploy GitHub Action and its command-line
// twin: go run ./cmd/action plan.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/cli"
)

func main() {
	// GitHub sends SIGTERM when a run is cancelled: cancel the running stage.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	self, _ := os.Executable()
	wd, _ := os.Getwd()
	code := cli.Run(ctx, cli.Env{Args: os.Args[1:], Getenv: os.Getenv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Self: self, Workdir: wd})
	stop()
	os.Exit(code)
}
