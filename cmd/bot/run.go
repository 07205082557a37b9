package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/bot"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the deploy run failed, or handling/serving failed
	exitUsage   = 2 // bad command line or configuration
	exitCrashed = 3 // internal error
)

const usage = `Usage: bot <command>

Commands:
  serve          run the webhook server of a GitHub App (POST /webhook, GET /healthz)
  handle-event   handle the GitHub Actions event in GITHUB_EVENT_PATH (an issue_comment
                 step), then follow the dispatched run until it completes
  help           show this text

Configuration (environment):
  BOT_LISTEN_ADDR             serve: listen address (default :8080)
  BOT_WEBHOOK_SECRET          serve: webhook secret (required)
  BOT_GITHUB_TOKEN            a token; or
  BOT_GITHUB_APP_ID           a GitHub App id with
  BOT_GITHUB_APP_PRIVATE_KEY  its PEM private key (installation tokens)
  BOT_GITHUB_API_URL          REST API URL (GitHub Enterprise Server: https://HOST/api/v3)
  BOT_WORKFLOW                deploy workflow file (default deploy.yml)
  BOT_REF                     ref to run it at (default: the repository's default branch)
  BOT_MAX_COMMENT_AGE         older comments are refused (default 10m)
  BOT_PERMISSION_DEPLOY, BOT_PERMISSION_STATUS, BOT_PERMISSION_DESTROY
                              permission needed (default write, write, admin)
  BOT_ALLOWED_USERS           optional comma-separated allow-list of logins
  BOT_WORKERS, BOT_QUEUE_SIZE serve: worker count and queue size (default 8, 1000)
  BOT_POLL_INTERVAL, BOT_POLL_TIMEOUT
                              handle-event: how often and how long to follow the run (15s, 6h)
  BOT_SHUTDOWN_TIMEOUT        serve: time to drain on SIGTERM (default 30s)
handle-event also reads GITHUB_TOKEN, GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH
and GITHUB_EVENT_NAME as GitHub Actions sets them.
`

var commands = []string{"serve", "handle-event", "help"}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "bot: internal error: %v\n", r)
			code = exitCrashed
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	if len(rest) > 0 && cmd != "help" {
		fmt.Fprintf(stderr, "bot: %s takes no arguments (got %q); configuration comes from the environment\n\n%s", cmd, rest, usage)
		return exitUsage
	}
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "serve":
		return serve(ctx, lookup, stderr)
	case "handle-event":
		return handleEvent(ctx, lookup, stdout, stderr)
	}
	hint := ""
	if best := config.Closest(cmd, commands); best != "" {
		hint = fmt.Sprintf("; did you mean %q?", best)
	}
	fmt.Fprintf(stderr, "bot: unknown command %q%s\n\n%s", cmd, hint, usage)
	return exitUsage
}

// setup loads the configuration and builds the handler.
func setup(ctx context.Context, mode bot.Mode, lookup func(string) (string, bool), log *slog.Logger, stderr io.Writer) (bot.Config, *ghapi.Provider, *bot.Handler, int) {
	cfg, err := bot.LoadConfig(ctx, mode, lookup)
	if err != nil {
		fmt.Fprintf(stderr, "bot: invalid configuration:\n%v\n", err)
		return cfg, nil, nil, exitUsage
	}
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: cfg.APIURL, Token: cfg.Token, AppID: cfg.AppID, PrivateKey: cfg.AppPrivateKey,
		UserAgent: "nixos-cloud-deploy-bot"})
	if err != nil {
		fmt.Fprintf(stderr, "bot: %v\n", err)
		return cfg, nil, nil, exitUsage
	}
	self := ""
	if mode == bot.ModeServe {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		self, err = p.Identity(ictx)
		cancel()
		if err != nil {
			// Not fatal: bots (user.type Bot) and the bot's own comments
			// (they carry its marker) are ignored anyway.
			log.Warn("could not learn the bot's login", "err", err)
		}
	}
	h, err := bot.NewHandler(bot.Options{
		Clients: func(ctx context.Context, inst int64, repo ghapi.Repo) (bot.GitHub, error) {
			return p.Client(ctx, inst, repo)
		},
		Workflow: cfg.Workflow, Ref: cfg.Ref, MaxCommentAge: cfg.MaxCommentAge, Permissions: cfg.Permissions,
		AllowedUsers: cfg.AllowedUsers, Self: self, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "bot: %v\n", err)
		return cfg, nil, nil, exitCrashed
	}
	return cfg, p, h, exitOK
}

func serve(ctx context.Context, lookup func(string) (string, bool), stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, _, h, code := setup(ctx, bot.ModeServe, lookup, log, stderr)
	if code != exitOK {
		return code
	}
	srv, err := bot.NewServer(h, bot.ServerOptions{Secret: cfg.WebhookSecret, Workers: cfg.Workers, QueueSize: cfg.QueueSize, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "bot: %v\n", err)
		return exitUsage
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		_ = srv.Drain(context.Background())
		fmt.Fprintf(stderr, "bot: failed to listen on %q: %v (is BOT_LISTEN_ADDR free?)\n", cfg.ListenAddr, err)
		return exitFailed
	}
	if err := srv.Serve(ctx, ln, cfg.ShutdownAfter); err != nil {
		log.Error("server stopped", "err", err)
		return exitFailed
	}
	return exitOK
}

func handleEvent(ctx context.Context, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, _, h, code := setup(ctx, bot.ModeHandleEvent, lookup, log, stderr)
	if code != exitOK {
		return code
	}
	payload, err := os.ReadFile(cfg.EventPath)
	if err != nil {
		fmt.Fprintf(stderr, "bot: failed to read the event payload: %v (GITHUB_EVENT_PATH)\n", err)
		return exitUsage
	}
	out, err := h.HandleEvent(ctx, cfg.EventName, payload, log)
	if err != nil {
		fmt.Fprintf(stderr, "bot: failed to handle the %s event: %v\n", cfg.EventName, err)
		return exitFailed
	}
	if out.RunID == 0 || cfg.EventName != "issue_comment" {
		msg := out.Ignored
		if msg == "" {
			msg = "done"
		}
		fmt.Fprintf(stdout, "bot: %s\n", msg)
		return exitOK
	}
	// No workflow_run webhooks reach a workflow step: poll the run.
	fctx, cancel := context.WithTimeout(ctx, cfg.PollTimeout)
	defer cancel()
	fmt.Fprintf(stdout, "bot: following run %d of %s\n", out.RunID, out.Repo)
	r, err := h.Follow(fctx, out, cfg.PollInterval, log)
	if err != nil {
		fmt.Fprintf(stderr, "bot: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "bot: run %s ended: %s\n", r.HTMLURL, r.Conclusion)
	if r.Conclusion != "success" {
		return exitFailed
	}
	return exitOK
}
