package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/finalize"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/rollout"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Builder evaluates, builds and copies the new system where the action
// runs; *rollout.Nix is one.
type Builder interface {
	Evaluate(ctx context.Context, flake, attr string) (rollout.Toplevel, error)
	Build(ctx context.Context, t rollout.Toplevel) error
	PathInfo(ctx context.Context, path string) ([]rollout.PathInfo, error)
	Copy(ctx context.Context, to rollout.CopyTarget, derivation bool, paths ...string) error
}

// Fetcher gets the configuration to switch to; rollout.Git is one.
type Fetcher interface {
	FetchURL(ctx context.Context, dir, url, ref string, auth rollout.SSHAuth) (rollout.Source, error)
	FetchWorkspace(ctx context.Context, dir, workspace string) (rollout.Source, error)
}

var (
	_ Builder = (*rollout.Nix)(nil)
	_ Fetcher = rollout.Git{}
)

// hostKeyAlias names the machine in the known_hosts file nix copy's ssh
// reads: the tunnel's 127.0.0.1:port must not match anything else.
const hostKeyAlias = "nixos-cloud-deploy-target"

// switchState is what the switch stages share.
type switchState struct {
	sudo  bool
	probe rollout.Probe
	src   rollout.Source
	top   rollout.Toplevel
	noop  bool
	act   rollout.Activation
	// report is what the summary shows.
	report SwitchReport
}

// SwitchReport is what a switch did, for the summary, the outputs and the
// bot's notice.
type SwitchReport struct {
	Repo, Rev          string
	PreviousGeneration int
	PreviousPath       string
	Generation         int    // the system profile's generation at the end (0: unknown)
	Path               string // the system the machine runs at the end
	NewPath            string // the evaluated system
	NoOp, DryRun       bool
	RolledBack         bool
	Diff               *rollout.Diff
	// Transfer is what the machine lacked: paths and their NAR size.
	TransferPaths int
	TransferSize  int64
	// Download is the machine's own estimate when it built (build-on:
	// target): nix-store --realise --dry-run's line.
	Download string
}

// switchStages are command switch's pipeline.
func (s *state) switchStages() []stage {
	afterBuild := func(s *state) string {
		switch {
		case s.sw.noop:
			return fmt.Sprintf("generation %d already runs %s", s.sw.probe.Generation, s.sw.top.Out)
		case s.cfg.DryRun:
			return "dry run"
		}
		return ""
	}
	s.sw.report.DryRun = s.cfg.DryRun
	return []stage{
		{name: "plan", run: (*state).stagePlan},
		{name: "locate", run: (*state).stageLocate},
		{name: "connect", run: (*state).stageSwitchConnect},
		{name: "evaluate", run: (*state).stageEvaluate},
		{name: "build/copy", run: (*state).stageBuildCopy, skip: func(s *state) string {
			if s.sw.noop {
				return afterBuild(s)
			}
			return ""
		}},
		{name: "activate", run: (*state).stageActivate, skip: afterBuild},
		{name: "confirm", run: (*state).stageConfirm, skip: afterBuild},
		{name: "report", run: (*state).stageReport},
	}
}

func (s *state) builder() Builder {
	if s.opts.Builder != nil {
		return s.opts.Builder
	}
	return &rollout.Nix{Log: s.sink.Stream}
}

func (s *state) fetcher() Fetcher {
	if s.opts.Fetcher != nil {
		return s.opts.Fetcher
	}
	return rollout.Git{}
}

func (s *state) switchTarget() sshx.Target {
	return sshx.Target{Addr: s.addr(), User: s.cfg.Switch.User, HostKey: s.pinned, Signer: s.deployKey.Signer}
}

func (s *state) swMachine() rollout.Machine {
	return rollout.Machine{Remote: s.client, Sudo: s.sw.sudo}
}

// stageSwitchConnect logs in once, with the pinned host key, and reads the
// system profile.
func (s *state) stageSwitchConnect(ctx context.Context) (string, error) {
	if s.pinned == nil {
		return "", &StageError{Stage: "connect", Err: fmt.Errorf("virtual machine %q has no %s tag, so its host key cannot be verified", s.cfg.VMName, "ssh-host-key"),
			Hint: "give target-host (its address) and target-host-key (read it on the VM: cat /etc/ssh/ssh_host_ed25519_key.pub)"}
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.SSHTimeout)
	defer cancel()
	var (
		c   *sshx.Client
		err error
	)
	if s.started {
		// A VM start-if-stopped started is still booting.
		c, err = sshx.WaitReady(dctx, s.switchTarget(), sshx.WaitOptions{})
	} else {
		c, err = sshx.Dial(dctx, s.switchTarget())
	}
	if err != nil {
		var mm *sshx.HostKeyMismatchError
		var ae *sshx.AuthError
		switch {
		case errors.As(err, &mm):
			return "", &StageError{Stage: "connect", Err: err, Hint: "the address answers with another host key than the pinned one: a wrong address, a reinstalled machine or an attack; nothing was copied or changed"}
		case errors.As(err, &ae):
			return "", &StageError{Stage: "connect", Err: err, Hint: fmt.Sprintf("%s does not accept the key: your flake decides who may log in (root often may not, PermitRootLogin no); give target-user and target-ssh-key of a user with passwordless sudo, or authorise deploy-key for root in the flake", s.cfg.Switch.User)}
		}
		return "", err
	}
	s.client = c
	s.sw.sudo = s.cfg.Switch.User != "root"
	p, err := s.swMachine().Probe(ctx)
	if err != nil {
		if s.sw.sudo {
			err = fmt.Errorf("%w (switch needs passwordless sudo for %s)", err, s.cfg.Switch.User)
		}
		return "", err
	}
	if !p.Systemd {
		return "", &StageError{Stage: "connect", Err: errors.New("the machine does not run systemd"), Hint: "switch arms its watchdog as a transient systemd unit; it works on NixOS booted normally, not in a container without systemd"}
	}
	if p.Watchdog {
		return "", &StageError{Stage: "connect", Err: fmt.Errorf("another switch is waiting for its confirmation on the machine (%s)", describeState(p.State)),
			Hint: "wait for it to be confirmed or rolled back (confirm-timeout), then run again"}
	}
	s.sw.probe = p
	s.sw.report.PreviousGeneration, s.sw.report.PreviousPath = p.Generation, p.Current
	s.sw.report.Generation, s.sw.report.Path = p.Generation, p.Current
	note := fmt.Sprintf("host key %s verified; generation %d, %s", sshx.Fingerprint(s.pinned), p.Generation, p.Current)
	if p.State.Phase == "rolled-back" {
		s.sink.Warningf("the machine's last switch was rolled back to generation %d: %s", p.State.Previous, p.State.Reason)
	}
	return note, nil
}

func describeState(st rollout.State) string {
	switch st.Phase {
	case "armed":
		return fmt.Sprintf("%s runs, the machine goes back to generation %d unless confirmed", st.Path, st.Previous)
	case "":
		return "no state recorded"
	}
	return st.Phase
}

// stageEvaluate fetches the configuration and evaluates the system: its
// output path alone tells whether anything changes.
func (s *state) stageEvaluate(ctx context.Context) (string, error) {
	dir := filepath.Join(s.workDir, "config")
	var (
		src rollout.Source
		err error
	)
	if s.cfg.ConfigRepo == config.WorkspaceRepo {
		ws := s.opts.Env.Workspace
		if ws == "" {
			ws = "."
		}
		src, err = s.fetcher().FetchWorkspace(ctx, dir, ws)
	} else {
		auth, aerr := s.gitAuth()
		if aerr != nil {
			return "", aerr
		}
		src, err = s.fetcher().FetchURL(ctx, dir, s.cfg.ConfigRepo, s.cfg.ConfigRef, auth)
	}
	if err != nil {
		return "", err
	}
	s.sw.src = src
	s.sw.report.Repo, s.sw.report.Rev = s.cfg.ConfigRepo, src.Rev
	s.sink.Infof("configuration: %s at %s", s.cfg.ConfigRepo, src.Rev)
	top, err := s.builder().Evaluate(ctx, src.Flake, s.cfg.ConfigFlakeAttr)
	if err != nil {
		return "", err
	}
	s.sw.top = top
	s.sw.report.NewPath = top.Out
	if top.Out == s.sw.probe.Current && top.Out == s.sw.probe.Profile {
		s.sw.noop = true
		s.sw.report.NoOp = true
		return fmt.Sprintf("%s: no change, generation %d already runs it", shortRev(src.Rev), s.sw.probe.Generation), nil
	}
	return fmt.Sprintf("%s: %s", shortRev(src.Rev), top.Out), nil
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// gitAuth writes what git needs for an ssh URL: github.com's published
// host keys (the only host whose keys the action knows without trusting
// the network) and github-ssh-key.
func (s *state) gitAuth() (rollout.SSHAuth, error) {
	host := rollout.SSHHost(s.cfg.ConfigRepo)
	if host == "" {
		return rollout.SSHAuth{}, nil
	}
	if host != "github.com" {
		return rollout.SSHAuth{}, &StageError{Stage: "evaluate", Err: fmt.Errorf("config-repo %q is on %s, whose SSH host keys the action cannot verify", s.cfg.ConfigRepo, host),
			Hint: "use an https URL for it, or check the repository out in the workflow and give config-repo: ."}
	}
	auth := rollout.SSHAuth{KnownHostsFile: filepath.Join(s.workDir, "github_known_hosts")}
	if err := os.WriteFile(auth.KnownHostsFile, []byte(strings.Join(finalize.GitHubKnownHosts, "\n")+"\n"), 0o600); err != nil {
		return auth, err
	}
	if len(s.cfg.GitHubSSHKey) > 0 {
		auth.KeyFile = filepath.Join(s.workDir, "github-key")
		if err := os.WriteFile(auth.KeyFile, s.cfg.GitHubSSHKey, 0o600); err != nil {
			return auth, err
		}
	}
	return auth, nil
}

// copyTarget opens the tunnel nix copy's ssh goes through and writes the
// known_hosts file it checks against.
func (s *state) copyTarget() (rollout.CopyTarget, func(), error) {
	fwd, err := sshx.Forward(s.client, net.JoinHostPort("127.0.0.1", strconv.Itoa(s.sshPort)))
	if err != nil {
		return rollout.CopyTarget{}, nil, err
	}
	kh := filepath.Join(s.workDir, "known_hosts")
	if err := os.WriteFile(kh, []byte(hostKeyAlias+" "+keys.AuthorizedKey(s.pinned, "")+"\n"), 0o600); err != nil {
		_ = fwd.Close()
		return rollout.CopyTarget{}, nil, err
	}
	opts, err := rollout.SSHOptions(fwd.Port(), kh, hostKeyAlias, s.keyFile)
	if err != nil {
		_ = fwd.Close()
		return rollout.CopyTarget{}, nil, err
	}
	return rollout.CopyTarget{URI: "ssh-ng://" + s.cfg.Switch.User + "@127.0.0.1", SSHOpts: opts}, func() { _ = fwd.Close() }, nil
}

// stageBuildCopy builds the system (here, or on the machine) and gets it
// into the machine's store, with the closure diff on the way.
func (s *state) stageBuildCopy(ctx context.Context) (string, error) {
	if s.cfg.Switch.BuildOn == config.BuildTarget {
		return s.buildOnTarget(ctx)
	}
	b := s.builder()
	if err := b.Build(ctx, s.sw.top); err != nil {
		return "", err
	}
	after, err := b.PathInfo(ctx, s.sw.top.Out)
	if err != nil {
		return "", err
	}
	m := s.swMachine()
	before, err := m.Closure(ctx, s.sw.probe.Current)
	if err != nil {
		return "", err
	}
	d := rollout.DiffClosures(before, after)
	s.sw.report.Diff = &d
	paths := make([]string, len(after))
	size := map[string]int64{}
	for i, p := range after {
		paths[i], size[p.Path] = p.Path, p.NarSize
	}
	missing, err := m.Missing(ctx, paths)
	if err != nil {
		return "", err
	}
	s.sw.report.TransferPaths = len(missing)
	for _, p := range missing {
		s.sw.report.TransferSize += size[p]
	}
	s.logDiff()
	summary := fmt.Sprintf("%s; %d paths (%s) to copy or substitute", d.Summary(), len(missing), rollout.RenderBytes(s.sw.report.TransferSize))
	if s.cfg.DryRun {
		return summary + "; dry run: nothing copied", nil
	}
	to, done, err := s.copyTarget()
	if err != nil {
		return "", err
	}
	defer done()
	if err := b.Copy(ctx, to, false, s.sw.top.Out); err != nil {
		return "", s.copyError(err)
	}
	return summary, nil
}

func (s *state) buildOnTarget(ctx context.Context) (string, error) {
	to, done, err := s.copyTarget()
	if err != nil {
		return "", err
	}
	err = s.builder().Copy(ctx, to, true, s.sw.top.Drv)
	done()
	if err != nil {
		return "", s.copyError(err)
	}
	m := s.swMachine()
	dry, err := m.RealiseDryRun(ctx, s.sw.top.Drv)
	if err != nil {
		return "", err
	}
	s.sw.report.Download = dry.Summary()
	if s.cfg.DryRun {
		return dry.Summary() + "; dry run: nothing built", nil
	}
	out, err := m.Realise(ctx, s.sw.top.Drv, s.sink.Stream)
	if err != nil {
		return "", err
	}
	if out != s.sw.top.Out {
		return "", fmt.Errorf("the machine built %s, not the evaluated %s", out, s.sw.top.Out)
	}
	before, err := m.Closure(ctx, s.sw.probe.Current)
	if err != nil {
		return "", err
	}
	after, err := m.Closure(ctx, out)
	if err != nil {
		return "", err
	}
	d := rollout.DiffClosures(before, after)
	s.sw.report.Diff = &d
	s.logDiff()
	return d.Summary() + "; " + dry.Summary(), nil
}

// copyError adds what the user can do when the machine's Nix refused the
// copy: paths from a user it does not trust must be signed
// (NixOS/nix src/libstore/daemon.cc; nix.conf trusted-users).
func (s *state) copyError(err error) error {
	if strings.Contains(err.Error(), "lacks a signature by a trusted key") {
		return &StageError{Stage: "build/copy", Err: err,
			Hint: fmt.Sprintf("nix copy goes as %s, whom the machine's Nix does not trust: add nix.settings.trusted-users = [ \"@wheel\" ] (or %q) to the flake, or switch as root with deploy-key; nothing was activated", s.cfg.Switch.User, s.cfg.Switch.User)}
	}
	return err
}

func (s *state) logDiff() {
	d := s.sw.report.Diff
	s.sink.Infof("closure diff (%s, %s):", d.Summary(), rollout.RenderSize(d.SizeDelta))
	for _, l := range d.Lines() {
		// Package names come from the machine's store: outside text.
		s.sink.Stream("  " + l)
	}
}

// stageActivate arms the watchdog and activates the new system
// (switch-to-configuration test); the profile waits for the confirmation.
func (s *state) stageActivate(ctx context.Context) (string, error) {
	sc := s.cfg.Switch
	a, err := s.swMachine().Activate(ctx, s.sw.top.Out, rollout.ActivateOptions{
		Expect: s.sw.probe.Generation, Confirm: sc.ConfirmTimeout, Limit: rollout.ActivationLimit,
		Log: s.sink.Stream,
	})
	s.sw.act = a
	if errors.Is(err, rollout.ErrRefused) {
		return "", &StageError{Stage: "activate", Err: err, Hint: "nothing was changed on the machine"}
	}
	if !a.Armed {
		if err == nil {
			err = errors.New("the machine did not say its watchdog runs")
		}
		return "", &StageError{Stage: "activate", Err: fmt.Errorf("lost the machine before the watchdog was armed: %w", err),
			Hint: "the system profile was not changed; run again (a run stops while another switch waits on the machine)"}
	}
	// The new system runs (or is starting); generation and boot default
	// are still the previous one's until the confirmation.
	s.sw.report.Path = s.sw.top.Out
	if a.Ended && a.ExitStatus != 0 {
		// The watchdog rolls back at once; wait for it, over a new
		// connection, to report what the machine runs.
		s.sink.Warningf("switch-to-configuration exited with status %d; the machine activates generation %d again", a.ExitStatus, s.sw.probe.Generation)
		_, cerr := s.awaitConfirmation(ctx, "activate")
		if cerr == nil {
			cerr = fmt.Errorf("switch-to-configuration exited with status %d", a.ExitStatus)
		}
		return "", cerr
	}
	if err != nil {
		s.sink.Warningf("the connection ended during the activation (%v); confirming over a new connection", err)
		return "connection lost during the activation; the watchdog is armed", nil
	}
	return fmt.Sprintf("activated (switch-to-configuration test); watchdog armed for %s", rollout.Human(sc.ConfirmTimeout)), nil
}

// awaitConfirmation confirms over new connections until the machine
// confirmed or rolled back, within the time the watchdog needs; stage
// names the stage its errors belong to.
func (s *state) awaitConfirmation(ctx context.Context, stage string) (rollout.Outcome, error) {
	sc := s.cfg.Switch
	// The watchdog acts confirm-timeout after the activation ended (or
	// after ActivationLimit); then SSH may take ssh-timeout to come back.
	wait := sc.ConfirmTimeout + s.cfg.SSHTimeout
	if !s.sw.act.Ended {
		wait += rollout.ActivationLimit
	}
	ctx, cancel := context.WithTimeoutCause(ctx, wait, fmt.Errorf("the machine answered no confirmation within %s", wait))
	defer cancel()
	if s.client != nil {
		// The old connection proves nothing about new logins.
		_ = s.client.Close()
		s.client = nil
	}
	dial := func(ctx context.Context) (rollout.Remote, func() error, error) {
		c, err := sshx.WaitReady(ctx, s.switchTarget(), sshx.WaitOptions{Logf: s.sink.Infof})
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	}
	prev := s.sw.probe.Generation
	out, err := rollout.AwaitConfirmation(ctx, dial, prev, s.sw.top.Out, rollout.ConfirmOptions{Sudo: s.sw.sudo, Logf: s.sink.Infof})
	if out.Generation != 0 {
		s.sw.report.Generation, s.sw.report.Path = out.Generation, out.Current
	}
	if rb, ok := rollout.IsRolledBack(err); ok {
		s.sw.report.RolledBack = true
		return out, &StageError{Stage: stage, Err: rb,
			Hint: fmt.Sprintf("the machine runs generation %d again (%s); fix the configuration and switch again", rb.Generation, out.Current)}
	}
	var mm *sshx.HostKeyMismatchError
	if errors.As(err, &mm) {
		return out, &StageError{Stage: stage, Err: err, Hint: "the machine now answers with another host key; it was not confirmed, so its watchdog rolls it back"}
	}
	var us *rollout.UnknownStateError
	if errors.As(err, &us) {
		return out, &StageError{Stage: stage, Err: err, Hint: fmt.Sprintf("the machine runs generation %d; this switch was not confirmed and is not its boot default: run again to switch", us.Generation)}
	}
	if err != nil {
		return out, &StageError{Stage: stage, Err: err,
			Hint: fmt.Sprintf("the machine's watchdog rolls back to generation %d %s after the activation unless confirmed; if it stays unreachable, look at its serial console", prev, rollout.Human(sc.ConfirmTimeout))}
	}
	return out, nil
}

func (s *state) stageConfirm(ctx context.Context) (string, error) {
	t0 := time.Now()
	out, err := s.awaitConfirmation(ctx, "confirm")
	if err != nil {
		return "", err
	}
	if out.NotDefault {
		s.sink.Warningf("the new system runs, but it could not be made a generation of the system profile and the boot default: the machine boots generation %d until that is done (nixos-rebuild switch on it)", s.sw.probe.Generation)
		return fmt.Sprintf("confirmed over a new connection in %s; not the boot default", round(time.Since(t0))), nil
	}
	return fmt.Sprintf("generation %d confirmed over a new connection in %s, the boot default", out.Generation, round(time.Since(t0))), nil
}
