// Package cli is the action binary's front end: it reads the inputs from the
// GitHub Actions environment or from flags, masks secrets, validates, runs the
// command and turns the result into an exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/plan"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/report"
)

// Exit codes. A workflow can tell a bad input from a failed deployment.
const (
	ExitOK           = 0
	ExitDeployFailed = 1 // the cloud or the machine said no; see the error
	ExitBadInput     = 2 // an input or flag is invalid; nothing was touched
	ExitInternal     = 3 // a bug or an unexpected local failure
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1.2.3".
var Version = "dev"

// Env is the process boundary, injected so tests run in parallel without
// touching the real environment.
type Env struct {
	Args   []string // without the program name
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Self is the path of this executable, used in nixos-anywhere's
	// ProxyCommand. Workdir is the current directory.
	Self    string
	Workdir string
}

// Run runs the action binary and returns its exit code.
func Run(ctx context.Context, env Env) int {
	args := env.Args
	if len(args) > 0 {
		switch args[0] {
		case "proxy":
			return runProxy(ctx, env)
		case "version", "--version":
			fmt.Fprintf(env.Stdout, "nixos-cloud-deploy %s\n", Version)
			return ExitOK
		}
	}
	actionMode := env.Getenv("GITHUB_ACTIONS") == "true" && len(args) == 0
	var (
		in   config.Inputs
		err  error
		sink report.Sink
	)
	if actionMode {
		a := report.NewActions(env.Getenv, env.Stdout)
		defer a.Close() // the step's log ends with workflow commands on
		sink = a
		in, err = config.ReadAction(ctx, env.Getenv)
	} else {
		sink = report.NewTerminal(env.Stderr)
		in, err = config.ReadFlags(ctx, args, env.Getenv, env.Stderr)
		if errors.Is(err, config.ErrHelp) {
			return ExitOK
		}
	}
	if err != nil {
		sink.Errorf("invalid input", "%v", err)
		return ExitBadInput
	}
	// Mask before anything can print a secret, before validation even.
	for _, s := range in.Secrets() {
		sink.Mask(s)
	}
	cfg, err := config.Parse(in)
	if err != nil {
		return badInput(sink, err)
	}
	for _, w := range cfg.Warnings {
		sink.Warningf("%s", w)
	}
	r := &runner{env: env, sink: sink, actionMode: actionMode, cfg: cfg}
	return r.run(ctx)
}

func badInput(sink report.Sink, err error) int {
	fes := config.FieldErrors(err)
	var md strings.Builder
	md.WriteString("## Invalid inputs\n\nNothing was created. Fix these and run again:\n\n")
	for _, fe := range fes {
		sink.Errorf("invalid input", "%s", fe.Error())
		fmt.Fprintf(&md, "- %s\n", fe.Error())
	}
	if len(fes) == 0 {
		sink.Errorf("invalid input", "%v", err)
		fmt.Fprintf(&md, "- %v\n", err)
	}
	sink.Summary(md.String())
	return ExitBadInput
}

type runner struct {
	env        Env
	sink       report.Sink
	actionMode bool
	cfg        config.Config
}

func (r *runner) planEnv() plan.Env {
	g := r.env.Getenv
	pe := plan.Env{Self: r.env.Self, Workspace: g("GITHUB_WORKSPACE")}
	if pe.Workspace == "" {
		pe.Workspace = r.env.Workdir
	}
	if server, repo, id := g("GITHUB_SERVER_URL"), g("GITHUB_REPOSITORY"), g("GITHUB_RUN_ID"); server != "" && repo != "" && id != "" {
		pe.RunURL = fmt.Sprintf("%s/%s/actions/runs/%s", server, repo, id)
	}
	return pe
}

func (r *runner) run(ctx context.Context) int {
	switch r.cfg.Command {
	case config.Plan:
		return r.plan()
	case config.Deploy, config.Destroy, config.Install:
		if r.cfg.DryRun {
			return r.plan()
		}
		return r.execute(ctx)
	case config.Switch:
		// A dry run of switch reaches the machine: the diff needs it.
		return r.execute(ctx)
	}
	r.sink.Errorf("internal error", "command %q has no implementation", r.cfg.Command)
	return ExitInternal
}

func (r *runner) plan() int {
	p := plan.New(r.cfg, r.planEnv())
	if r.actionMode {
		r.sink.Group("Plan")
		for _, l := range strings.Split(strings.TrimRight(p.Text(), "\n"), "\n") {
			r.sink.Infof("%s", l)
		}
		r.sink.EndGroup()
		r.sink.Summary(p.Markdown())
		return ExitOK
	}
	fmt.Fprint(r.env.Stdout, p.Text())
	return ExitOK
}
