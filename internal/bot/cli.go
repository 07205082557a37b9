package bot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// Exit codes of Main.
const (
	ExitOK      = 0
	ExitFailed  = 1 // handling, reporting or serving failed
	ExitUsage   = 2 // bad command line or configuration
	ExitCrashed = 3 // internal error
)

const usage = `Usage: bot <command>

Commands:
  serve          run the webhook server of a GitHub App (POST /webhook, GET /healthz)
  handle-event   handle the GitHub Actions event in GITHUB_EVENT_PATH (an issue_comment
                 step): answer, or dispatch the deploy workflow, and exit
  report         update the status comment to the end of this run (the last job of
                 chatops-deploy.yml; BOT_DEPLOY_RESULT and the deploy job's outputs)
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
  BOT_PERMISSION_DEPLOY, BOT_PERMISSION_SWITCH, BOT_PERMISSION_STATUS, BOT_PERMISSION_DESTROY
                              repository role needed (default write, write, write, admin)
  BOT_ALLOWED_USERS           optional comma-separated allow-list of logins
  BOT_WORKERS, BOT_QUEUE_SIZE serve: worker count and queue size (default 8, 1000)
  BOT_SHUTDOWN_TIMEOUT        serve: time to drain on SIGTERM (default 30s)
  BOT_REDELIVER_INTERVAL      serve with an App: how often failed deliveries are asked
                              for again (default 2m)
  BOT_DEPLOY_RESULT, BOT_SSH_HOST_KEY, BOT_FQDN
                              report: the deploy job's result and outputs
handle-event and report also read GITHUB_TOKEN, GITHUB_API_URL, GITHUB_REPOSITORY,
GITHUB_EVENT_PATH, GITHUB_EVENT_NAME and GITHUB_RUN_ID as GitHub Actions sets them.
`

var commands = []string{"serve", "handle-event", "report", "help"}

// Main is the bot's command line: args without the program name, the
// environment through lookup. It returns the exit code.
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "bot: internal error: %v\n", r)
			code = ExitCrashed
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	if len(rest) > 0 && cmd != "help" {
		fmt.Fprintf(stderr, "bot: %s takes no arguments (got %q); configuration comes from the environment\n\n%s", cmd, rest, usage)
		return ExitUsage
	}
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	case "serve":
		return serve(ctx, lookup, stderr)
	case "handle-event":
		return handleEvent(ctx, lookup, stdout, stderr)
	case "report":
		return report(ctx, lookup, stdout, stderr)
	}
	hint := ""
	if best := config.Closest(cmd, commands); best != "" {
		hint = fmt.Sprintf("; did you mean %q?", best)
	}
	fmt.Fprintf(stderr, "bot: unknown command %q%s\n\n%s", cmd, hint, usage)
	return ExitUsage
}

// app is what setup wires together.
type app struct {
	cfg Config
	p   *ghapi.Provider
	h   *Handler
}

// setup loads the configuration, learns the bot's own login and builds the
// handler.
func setup(ctx context.Context, mode Mode, lookup func(string) (string, bool), log *slog.Logger, stderr io.Writer) (app, int) {
	cfg, err := LoadConfig(ctx, mode, lookup)
	if err != nil {
		fmt.Fprintf(stderr, "bot: invalid configuration:\n%v\n", err)
		return app{}, ExitUsage
	}
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: cfg.APIURL, Token: cfg.Token, AppID: cfg.AppID, PrivateKey: cfg.AppPrivateKey,
		UserAgent: "nixos-cloud-deploy-bot"})
	if err != nil {
		fmt.Fprintf(stderr, "bot: %v\n", err)
		return app{}, ExitUsage
	}
	self := ghapiActionsLogin
	if !cfg.ActionsToken {
		// GET /user (a token) or GET /app (an App). A workflow's
		// GITHUB_TOKEN is an installation token: GET /user answers 403,
		// and its comments are github-actions[bot]'s.
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		self, err = p.Identity(ictx)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "bot: %v (the bot must know its own login to tell its comments from others')\n", err)
			return app{}, ExitFailed
		}
	}
	o := Options{
		Clients: func(ctx context.Context, inst int64, repo ghapi.Repo) (GitHub, error) {
			return p.Client(ctx, inst, repo)
		},
		Workflow: cfg.Workflow, Ref: cfg.Ref, MaxCommentAge: cfg.MaxCommentAge, Permissions: cfg.Permissions,
		AllowedUsers: cfg.AllowedUsers, Self: self, Logger: log,
	}
	if mode == ModeServe && cfg.AppID != 0 {
		o.FirstAttempt = func(ctx context.Context, delivery string, notBefore time.Time) (time.Time, error) {
			return FirstAttempt(ctx, p, delivery, notBefore)
		}
	}
	h, err := NewHandler(o)
	if err != nil {
		fmt.Fprintf(stderr, "bot: %v\n", err)
		return app{}, ExitCrashed
	}
	log.Info("the bot comments as " + self)
	return app{cfg: cfg, p: p, h: h}, ExitOK
}

// ActionsDeadline bounds handle-event and report: a rate limit waited out
// included, the bot ends (and says so) before the workflows' 15-minute job
// timeouts kill it (internal/repotest checks that they agree).
const ActionsDeadline = 10 * time.Minute

// ghapiActionsLogin is the author of what a workflow's GITHUB_TOKEN writes.
const ghapiActionsLogin = "github-actions[bot]"

func serve(ctx context.Context, lookup func(string) (string, bool), stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	a, code := setup(ctx, ModeServe, lookup, log, stderr)
	if code != ExitOK {
		return code
	}
	srv, err := NewServer(a.h, ServerOptions{Secret: a.cfg.WebhookSecret, Workers: a.cfg.Workers, QueueSize: a.cfg.QueueSize, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "bot: %v\n", err)
		return ExitUsage
	}
	ln, err := net.Listen("tcp", a.cfg.ListenAddr)
	if err != nil {
		_ = srv.Drain(context.Background())
		fmt.Fprintf(stderr, "bot: failed to listen on %q: %v (is BOT_LISTEN_ADDR free?)\n", a.cfg.ListenAddr, err)
		return ExitFailed
	}
	if a.cfg.AppID != 0 {
		// GitHub does not redeliver what the bot failed to take (a 503
		// while the queue was full or the server stopping, a crash).
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		r := NewRedeliverer(a.p, RedelivererOptions{Every: a.cfg.RedeliverEvery, Logger: log})
		go r.Run(rctx)
	} else {
		log.Warn("no GitHub App: failed webhook deliveries are not asked for again (set BOT_GITHUB_APP_ID)")
	}
	if err := srv.Serve(ctx, ln, a.cfg.ShutdownAfter); err != nil {
		log.Error("server stopped", "err", err)
		return ExitFailed
	}
	return ExitOK
}

func handleEvent(ctx context.Context, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, ActionsDeadline)
	defer cancel()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	a, code := setup(ctx, ModeHandleEvent, lookup, log, stderr)
	if code != ExitOK {
		return code
	}
	payload, err := os.ReadFile(a.cfg.EventPath)
	if err != nil {
		fmt.Fprintf(stderr, "bot: failed to read the event payload: %v (GITHUB_EVENT_PATH)\n", err)
		return ExitUsage
	}
	out, err := a.h.HandleEvent(ctx, a.cfg.EventName, payload, log)
	if err != nil {
		fmt.Fprintf(stderr, "bot: failed to handle the %s event: %v\n", a.cfg.EventName, err)
		return ExitFailed
	}
	switch {
	case out.Ignored != "":
		fmt.Fprintf(stdout, "bot: %s\n", out.Ignored)
	case out.RunID != 0:
		// The run reports its own end (chatops-deploy.yml's report job):
		// nothing to wait for here.
		fmt.Fprintf(stdout, "bot: dispatched run %d of %s; its last job updates the status comment\n", out.RunID, out.Repo)
	default:
		fmt.Fprintln(stdout, "bot: done")
	}
	return ExitOK
}

func report(ctx context.Context, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, ActionsDeadline)
	defer cancel()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	a, code := setup(ctx, ModeReport, lookup, log, stderr)
	if code != ExitOK {
		return code
	}
	repo, _ := ghapi.ParseRepo(a.cfg.Repository)
	out, err := a.h.Report(ctx, Report{Repo: repo, RunID: a.cfg.RunID, Result: a.cfg.Result,
		Facts: HostFacts{HostKey: strings.TrimSpace(a.cfg.HostKey), FQDN: strings.TrimSpace(a.cfg.FQDN)}}, log)
	if err != nil {
		fmt.Fprintf(stderr, "bot: failed to report run %d: %v\n", a.cfg.RunID, err)
		return ExitFailed
	}
	if out.Ignored != "" {
		fmt.Fprintf(stdout, "bot: %s\n", out.Ignored)
		return ExitOK
	}
	fmt.Fprintf(stdout, "bot: run %d reported: %s\n", a.cfg.RunID, a.cfg.Result)
	return ExitOK
}
