package sshx_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// runProxyEnv makes the test binary act as the action binary's proxy subcommand, so the real ssh
// client can use it as ProxyCommand without a separate build.
const runProxyEnv = "SSHX_TEST_RUN_PROXY"

func TestMain(m *testing.M) {
	if os.Getenv(runProxyEnv) == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "proxy" {
			args = args[1:]
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := sshx.RunProxy(ctx, args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// target returns a Target for s with its pinned host key and client key.
func target(s *sshtest.Server) sshx.Target {
	return sshx.Target{Addr: s.Addr, User: s.User, HostKey: s.HostKey, Signer: s.ClientSigner}
}

// dial connects to s and closes the client in t.Cleanup.
func dial(t testing.TB, s *sshtest.Server) *sshx.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sshx.Dial(ctx, target(s))
	if err != nil {
		t.Fatalf("Dial(%s): %v", s.Addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testCtx is a context that ends well before the test binary's own timeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
