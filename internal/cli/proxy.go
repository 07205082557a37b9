package cli

import (
	"context"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// runProxy is the `proxy` subcommand, nixos-anywhere's ProxyCommand: it
// reaches the VM only through a connection that verified the pinned host key.
func runProxy(ctx context.Context, env Env) int {
	return sshx.RunProxy(ctx, env.Args[1:], env.Getenv, env.Stdin, env.Stdout, env.Stderr)
}
