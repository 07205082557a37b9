package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/plan"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/report"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/rollout"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Options configure one run of the pipeline.
type Options struct {
	Config config.Config
	Env    plan.Env
	Cloud  Cloud
	Sink   report.Sink
	// Installer runs nixos-anywhere; nil means a nixos.Runner that finds it
	// on PATH.
	Installer Installer
	// Locker locks the flake's inputs before the install; nil means a
	// nixos.Locker that runs the nix on PATH.
	Locker Locker
	// RequireLock makes a missing nix an error instead of a skipped lock
	// step: the action (GitHub Actions) never installs unlocked inputs; a
	// laptop without nix may, with a note.
	RequireLock bool
	// SSHPort is the VM's SSH port: 22 except in tests.
	SSHPort int
	// Rand is the entropy for the per-deployment keys; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TempDir holds the flake directory and the deploy key file for the
	// run, removed at exit; "" means os.TempDir().
	TempDir string
	// CleanupTimeout bounds the resource group deletion after a failure.
	CleanupTimeout time.Duration
	// ProvisionTimeout bounds the provision stage (and locate); zero means
	// 30 minutes. Azure's slowest create is the VM, minutes at worst.
	ProvisionTimeout time.Duration
	// Builder evaluates, builds and copies a switch's system; nil means
	// the nix command from PATH.
	Builder Builder
	// Fetcher gets a switch's configuration; nil means git from PATH.
	Fetcher Fetcher
}

// errDeadline is the cause of the run's overall deadline.
var errDeadline = errors.New("the run's overall deadline passed")

// overallDeadline is what the whole run may take: every stage has its own
// bound (provision, ssh-timeout for each wait, install-timeout), and this
// one catches what is left (disk detection, finalize's nixos-rebuild).
func overallDeadline(o Options) time.Duration {
	d := 2*o.ProvisionTimeout + 3*o.Config.SSHTimeout + o.Config.InstallTimeout
	if sc := o.Config.Switch; sc != nil {
		// A switch builds (install-timeout bounds that too), activates,
		// and may wait for the watchdog.
		d += rollout.ActivationLimit + sc.ConfirmTimeout
	}
	return d
}

// Installer runs nixos-anywhere; *nixos.Runner is one.
type Installer interface {
	Run(ctx context.Context, a nixos.Args) ([]nixos.PhaseTiming, error)
}

// Locker locks a rendered flake's inputs, writing its flake.lock;
// *nixos.Locker is one. It returns nixos.ErrNoNix when it has no nix.
type Locker interface {
	Lock(ctx context.Context, dir string) (*nixos.FlakeLock, error)
}

// skipped is returned by a stage that finds, while running, that it has
// nothing to do; the stage is reported skipped with the reason.
type skipped struct{ why string }

func (e skipped) Error() string { return e.why }

// StageError is a failed stage, with what the user can do about it.
type StageError struct {
	Stage string
	Err   error
	Hint  string
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

// state is what the stages share as the run goes.
type state struct {
	opts      Options
	cfg       config.Config
	sink      report.Sink
	now       func() time.Time
	hostKey   *keys.Pair    // generated this run; nil when the VM existed
	pinned    ssh.PublicKey // the host key every connection verifies
	deployKey *keys.Pair
	workDir   string
	keyFile   string
	machine   *azure.Result
	vmExists  bool
	// ours is set for an Azure VM this action created (tagged managed-by):
	// its host key travelled in custom data and is rotated after the install.
	ours   bool
	client *sshx.Client
	disk   string
	// flakeDir is the rendered flake, inside extraDir (nixos-anywhere's
	// --extra-files) at the path it gets on the VM; flakeRef points at it.
	flakeDir, extraDir, flakeRef string
	lock                         *nixos.FlakeLock
	// system is the target's Nix system ("x86_64-linux"), for the kexec image.
	system  string
	isNixOS bool
	// noRoot is set when an existing VM answers with the pinned host key
	// but root refuses this run's deploy key.
	noRoot bool
	// sshPort is the target's SSH port: opts.SSHPort, or target-host's.
	sshPort int
	phases  []nixos.PhaseTiming
	facter  string
	result  *Result
	// started is set when locate started a stopped VM.
	started bool
	// sw is command switch's state.
	sw switchState
}

type stage struct {
	name string
	run  func(s *state, ctx context.Context) (note string, err error)
	// skip returns a reason to skip the stage, or "".
	skip func(s *state) string
}

// stages are the pipeline for the run's command: deploy creates the VM,
// install finds an existing machine and prepares root access; from "wait
// for SSH" on, both are the same code.
func (s *state) stages() []stage {
	if s.cfg.Command == config.Switch {
		return s.switchStages()
	}
	head := []stage{{name: "plan", run: (*state).stagePlan}}
	if s.cfg.Command == config.Install {
		head = append(head,
			stage{name: "locate", run: (*state).stageLocate},
			stage{name: "prepare access", run: (*state).stagePrepareAccess})
	} else {
		head = append(head, stage{name: "provision", run: (*state).stageProvision})
	}
	return append(head, []stage{
		{name: "wait for SSH", run: (*state).stageWaitSSH},
		{name: "detect disk", run: (*state).stageDetectDisk, skip: skipInstalled},
		{name: "lock", run: (*state).stageLock, skip: skipInstalled},
		{name: "install", run: (*state).stageInstall, skip: skipInstalled},
		{name: "verify", run: (*state).stageVerify, skip: skipNoRoot},
		{name: "rotate host key", run: (*state).stageRotateHostKey, skip: skipRotate},
		{name: "finalize", run: (*state).stageFinalize, skip: func(s *state) string {
			if s.cfg.ConfigRepo == "" {
				return "no config-repo given"
			}
			return skipNoRoot(s)
		}},
		{name: "report", run: (*state).stageReport},
	}...)
}

func skipNoRoot(s *state) string {
	if s.noRoot {
		return "root on the existing VM does not accept this run's deploy key (give the deploy-key input to converge fully)"
	}
	return ""
}

func skipInstalled(s *state) string {
	if s.noRoot {
		return "the existing VM runs NixOS (its SSH server says so) and root does not accept this run's deploy key"
	}
	if s.isNixOS && !s.cfg.ForceReinstall {
		return "the VM already runs NixOS with the pinned host key (force-reinstall: true installs again)"
	}
	return ""
}

// Deploy runs the pipeline for opts.Config.Command, deploy or install. The
// Result is complete even on failure: it says which stage failed, what
// exists and what was cleaned up.
func Deploy(ctx context.Context, opts Options) *Result {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SSHPort == 0 {
		opts.SSHPort = 22
	}
	if opts.CleanupTimeout == 0 {
		opts.CleanupTimeout = 15 * time.Minute
	}
	if opts.ProvisionTimeout == 0 {
		opts.ProvisionTimeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeoutCause(ctx, overallDeadline(opts), errDeadline)
	defer cancel()
	s := &state{opts: opts, cfg: opts.Config, sink: opts.Sink, now: opts.Now, sshPort: opts.SSHPort}
	if t := opts.Config.Target; t != nil {
		s.sshPort = t.Port
	}
	s.result = &Result{Command: s.cfg.Command.String(), VMName: s.cfg.VMName, ResourceGroup: s.cfg.ResourceGroup, Location: s.cfg.Location}
	start := s.now()
	defer s.close()

	stages := s.stages()
	var failed *StageError
	for i, st := range stages {
		sr := StageResult{Name: st.name, Status: StatusNotRun}
		if failed != nil {
			s.result.Stages = append(s.result.Stages, sr)
			continue
		}
		if st.skip != nil {
			if why := st.skip(s); why != "" {
				sr.Status, sr.Note = StatusSkipped, why
				s.sink.Infof("%s: skipped: %s", st.name, why)
				s.result.Stages = append(s.result.Stages, sr)
				continue
			}
		}
		s.sink.Group(fmt.Sprintf("[%d/%d] %s", i+1, len(stages), st.name))
		t0 := s.now()
		note, err := st.run(s, ctx)
		sr.Duration = s.now().Sub(t0)
		sr.Note = note
		if st.name == "install" {
			sr.Phases = s.phases
		}
		var skip skipped
		switch {
		case err == nil:
			sr.Status = StatusOK
		case errors.As(err, &skip):
			sr.Status, sr.Note = StatusSkipped, skip.why
		case errors.Is(context.Cause(ctx), errDeadline):
			sr.Status = StatusFailed
			failed = &StageError{Stage: st.name, Err: fmt.Errorf("%w (%s): %w", errDeadline, overallDeadline(opts), err), Hint: "raise ssh-timeout or install-timeout if the machine was just slow; re-run to converge"}
		case ctx.Err() != nil:
			sr.Status = StatusCancelled
			failed = &StageError{Stage: st.name, Err: fmt.Errorf("cancelled: %w", context.Cause(ctx)), Hint: "the run was cancelled; re-run to converge, or destroy to remove what exists"}
		default:
			sr.Status = StatusFailed
			failed = asStageError(st.name, err)
		}
		s.sink.Infof("%s: %s in %s", st.name, sr.Status, round(sr.Duration))
		s.sink.EndGroup()
		s.result.Stages = append(s.result.Stages, sr)
	}
	if failed != nil {
		s.fail(ctx, failed)
	}
	s.result.Total = s.now().Sub(start)
	return s.result
}

func asStageError(stage string, err error) *StageError {
	var se *StageError
	if errors.As(err, &se) {
		return se
	}
	se = &StageError{Stage: stage, Err: err}
	var he *azure.HintError
	if errors.As(err, &he) && he.Hint != "" {
		// The hint goes in its own place; the error without it.
		se.Err, se.Hint = he.Err, he.Hint
	}
	return se
}

// commander runs one command over the current connection, for the nixos
// package's disk detection and verification.
func (s *state) commander() nixos.Commander {
	c := s.client
	return nixos.CommanderFunc(func(ctx context.Context, cmd string) ([]byte, error) { return c.Output(ctx, cmd) })
}

func (s *state) close() {
	if s.client != nil {
		_ = s.client.Close()
	}
	if s.workDir != "" {
		// The deploy key file and the flake directory go with it.
		_ = os.RemoveAll(s.workDir)
	}
}

func (s *state) stagePlan(ctx context.Context) (string, error) {
	p := plan.New(s.cfg, s.opts.Env)
	for _, l := range strings.Split(strings.TrimRight(p.Text(), "\n"), "\n") {
		s.sink.Infof("%s", l)
	}
	var err error
	switch {
	case s.cfg.Switch != nil:
		// The key the running machine accepts: deploy-key or target-ssh-key.
		s.deployKey, err = keys.FromPEM(s.cfg.Switch.Key)
	case s.cfg.DeployKey != nil:
		s.deployKey, err = keys.FromPEM(s.cfg.DeployKey)
	default:
		s.deployKey, err = keys.New(s.opts.Rand, "nixos-cloud-deploy")
	}
	if err != nil {
		return "", err
	}
	s.sink.Mask(string(s.deployKey.PrivatePEM))
	if s.workDir, err = os.MkdirTemp(s.opts.TempDir, "nixos-cloud-deploy-"); err != nil {
		return "", fmt.Errorf("failed to create work directory: %w", err)
	}
	if err := os.Chmod(s.workDir, 0o700); err != nil {
		return "", err
	}
	// nixos-anywhere, the proxy and nix copy's ssh read the key from this file;
	// it never appears on a command line and is removed at exit.
	s.keyFile = filepath.Join(s.workDir, "deploy-key")
	if err := os.WriteFile(s.keyFile, s.deployKey.PrivatePEM, 0o600); err != nil {
		return "", fmt.Errorf("failed to write deploy key file: %w", err)
	}
	if s.cfg.Command == config.Switch {
		return fmt.Sprintf("%d steps", len(p.Switch)), nil
	}
	return fmt.Sprintf("%d resources", len(p.Resources)), nil
}
