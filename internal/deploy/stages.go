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

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/cloudinit"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/finalize"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/plan"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// deployKeyLine is the deploy key as root's authorized_keys line, wherever
// it is authorised: cloud-init, settings.json, the preflight script.
func (s *state) deployKeyLine() string {
	return keys.AuthorizedKey(s.deployKey.Public, "nixos-cloud-deploy")
}

// adminKeys are the keys the VM is created with: those of ssh-public-keys
// Azure takes in osProfile (ssh-rsa >= 2048 bits, ssh-ed25519; any other
// fails the whole create), or, when none is, the deploy key, since Azure
// wants one. Every key of ssh-public-keys reaches user-name on the installed
// NixOS through settings.json.
func (s *state) adminKeys() []string {
	accepted, _ := azure.SSHKeysAzureAccepts(s.cfg.SSHPublicKeys)
	if len(accepted) == 0 {
		return []string{s.deployKeyLine()}
	}
	return accepted
}

func (s *state) spec() azure.Spec {
	sp := azure.Spec{
		ResourceGroup: s.cfg.ResourceGroup,
		Location:      s.cfg.Location,
		VMName:        s.cfg.VMName,
		Size:          s.cfg.Size,
		ImageURN:      s.cfg.Image,
		OSDiskSizeGB:  s.cfg.OSDiskSizeGB,
		AdminUser:     s.cfg.UserName,
		AdminKeys:     s.adminKeys(),
		RunURL:        s.opts.Env.RunURL,
		AutoShutdown:  s.cfg.AutoShutdown,
		HostKeyPublic: keys.AuthorizedKey(s.pinned, ""),
	}
	if s.hostKey != nil {
		sp.CustomData = cloudinit.Render(cloudinit.Data{
			HostKeyPrivate: s.hostKey.PrivatePEM,
			HostKeyPublic:  keys.AuthorizedKey(s.hostKey.Public, ""),
			RootKeys:       []string{s.deployKeyLine()},
		})
	}
	return sp
}

func (s *state) stageProvision(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.ProvisionTimeout, fmt.Errorf("provisioning did not finish within %s", s.opts.ProvisionTimeout))
	defer cancel()
	info, err := s.opts.Cloud.LookupVM(ctx, s.cfg.ResourceGroup, s.cfg.VMName)
	switch {
	case errors.Is(err, azure.ErrNotFound):
		// A new VM: its host key is made here and handed over in custom data.
		if s.hostKey, err = keys.New(s.opts.Rand, ""); err != nil {
			return "", err
		}
		s.sink.Mask(string(s.hostKey.PrivatePEM))
		s.pinned = s.hostKey.Public
		s.ours = true
	case err != nil:
		return "", err
	default:
		if !info.Managed {
			return "", &StageError{Stage: "provision", Err: fmt.Errorf("virtual machine %q in resource group %q exists and is not tagged %s=%s", s.cfg.VMName, s.cfg.ResourceGroup, plan.TagManagedBy, plan.ManagedByValue),
				Hint: "it was not made by nixos-cloud-deploy and is never modified; pick another vm-name or resource-group"}
		}
		if strings.EqualFold(info.ProvisioningState, "Failed") {
			// Its creation failed: nothing to install onto. The failure
			// path shows its serial log and cleans up as asked.
			s.machine = &azure.Result{VMID: info.ID, PublicIP: info.PublicIP, FQDN: info.FQDN}
			msg := fmt.Sprintf("virtual machine %q exists but its creation failed (provisioning state Failed)", s.cfg.VMName)
			if info.StatusMessage != "" {
				msg += ": " + info.StatusMessage
			}
			return "", &StageError{Stage: "provision", Err: errors.New(msg), Hint: azure.FailedVMHint}
		}
		if info.HostKey == "" {
			return "", &StageError{Stage: "provision", Err: fmt.Errorf("virtual machine %q exists but has no %s tag, so its host key cannot be verified", s.cfg.VMName, plan.TagSSHHostKey),
				Hint: "destroy it (command: destroy) and deploy again"}
		}
		k, err := sshx.ParseHostKey(info.HostKey)
		if err != nil {
			return "", fmt.Errorf("failed to parse the %s tag of virtual machine %q: %w", plan.TagSSHHostKey, s.cfg.VMName, err)
		}
		s.pinned = k
		s.vmExists, s.ours = true, true
		s.sink.Infof("virtual machine %s exists (power state %q): reusing it, host key pinned from its %s tag", s.cfg.VMName, info.PowerState, plan.TagSSHHostKey)
	}
	if _, refused := azure.SSHKeysAzureAccepts(s.cfg.SSHPublicKeys); len(refused) > 0 {
		types := make([]string, 0, len(refused))
		for _, k := range refused {
			types = append(types, strings.Fields(k)[0])
		}
		s.sink.Infof("ssh-public-keys: %d key(s) of a kind Azure does not take in a VM's osProfile (%s) reach %s on the installed NixOS only, not the Ubuntu that runs before it", len(refused), strings.Join(types, ", "), s.cfg.UserName)
	}
	res, err := s.opts.Cloud.Provision(ctx, s.spec(), func(e azure.Event) {
		switch e.Phase {
		case azure.PhaseStart:
			s.sink.Infof("%s %s: started", e.Kind, e.Name)
		case azure.PhaseDone:
			s.sink.Infof("%s %s: %s in %s", e.Kind, e.Name, e.Action, round(e.Elapsed))
		case azure.PhaseFailed:
			s.sink.Infof("%s %s: failed after %s", e.Kind, e.Name, round(e.Elapsed))
		}
	})
	s.machine = res
	if res != nil {
		for _, n := range res.Notes {
			s.sink.Warningf("%s", n)
		}
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return "", fmt.Errorf("%w: %w", cause, err)
		}
		return "", err
	}
	created := 0
	for _, r := range res.Resources {
		if r.Action == azure.ActionCreated {
			created++
		}
	}
	return fmt.Sprintf("%d created, %d reused; %s", created, len(res.Resources)-created, res.PublicIP), nil
}

func (s *state) addr() string {
	return net.JoinHostPort(s.machine.PublicIP, strconv.Itoa(s.sshPort))
}

func (s *state) target() sshx.Target {
	return sshx.Target{Addr: s.addr(), User: "root", HostKey: s.pinned, Signer: s.deployKey.Signer}
}

func (s *state) connect(ctx context.Context) error {
	if s.client != nil {
		_ = s.client.Close()
		s.client = nil
	}
	c, err := sshx.WaitReady(ctx, s.target(), sshx.WaitOptions{Timeout: s.cfg.SSHTimeout})
	if err != nil {
		var mm *sshx.HostKeyMismatchError
		if errors.As(err, &mm) {
			return &StageError{Stage: "wait for SSH", Err: err, Hint: "the address answers with another host key: a wrong address, a recreated VM or an attack; nothing was sent to it"}
		}
		if s.vmExists {
			return &StageError{Stage: "wait for SSH", Err: err, Hint: "the VM exists from an earlier run and root accepts only that run's deploy key; remove it with command: destroy and deploy again"}
		}
		return err
	}
	s.client = c
	return nil
}

func (s *state) stageWaitSSH(ctx context.Context) (string, error) {
	if s.vmExists {
		if note, err := s.reachExisting(ctx); err != nil || s.noRoot {
			return note, err
		}
	} else if err := s.connect(ctx); err != nil {
		return "", err
	}
	out, err := s.client.Output(ctx, "cat /etc/os-release")
	if err != nil {
		return "", fmt.Errorf("failed to read /etc/os-release: %w", err)
	}
	s.isNixOS = nixos.OSReleaseID(out) == "nixos"
	return fmt.Sprintf("host key %s verified", sshx.Fingerprint(s.pinned)), nil
}

// reachExisting connects to a VM an earlier run made. Its host key is
// pinned from its tag; root may only accept that earlier run's deploy key.
// The SSH server's identification, read after the key exchange proved the
// host key, tells a finished install (NixOS) from an unfinished one.
func (s *state) reachExisting(ctx context.Context) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.SSHTimeout)
	defer cancel()
	var id sshx.Identity
	for {
		var err error
		if id, err = sshx.Identify(wctx, s.addr(), s.pinned); err == nil {
			break
		}
		var mm *sshx.HostKeyMismatchError
		if errors.As(err, &mm) {
			return "", &StageError{Stage: "wait for SSH", Err: err, Hint: "the address answers with another host key than the VM's ssh-host-key tag: a wrong address or an attack; nothing was sent to it"}
		}
		select {
		case <-wctx.Done():
			return "", fmt.Errorf("the existing VM did not answer SSH within %s: %w (is it stopped? start it in the portal or with az vm start)", s.cfg.SSHTimeout, err)
		case <-time.After(time.Second):
		}
	}
	c, err := sshx.Dial(wctx, s.target())
	var ae *sshx.AuthError
	switch {
	case err == nil:
		s.client = c
		return "", nil
	case !errors.As(err, &ae):
		return "", err
	case id.Distribution() != "":
		return "", &StageError{Stage: "wait for SSH", Err: fmt.Errorf("the VM exists and still runs %s (%s): an earlier install did not finish, and root refuses this run's deploy key", id.Distribution(), id.Version),
			Hint: "remove it with command: destroy and deploy again, or give the deploy-key input the earlier run used"}
	case s.cfg.ForceReinstall:
		return "", &StageError{Stage: "wait for SSH", Err: errors.New("force-reinstall needs root on the VM, and root refuses this run's deploy key"),
			Hint: "give the deploy-key input (the key root accepts), or remove the VM with command: destroy and deploy again"}
	}
	s.noRoot = true
	s.isNixOS = true
	s.sink.Warningf("virtual machine %s runs NixOS (%s, host key verified) but root does not accept this run's deploy key: install and finalize are skipped; give the deploy-key input to converge fully", s.cfg.VMName, id.Version)
	return fmt.Sprintf("host key %s verified; NixOS (%s); no root access", sshx.Fingerprint(s.pinned), id.Version), nil
}

func (s *state) stageDetectDisk(ctx context.Context) (string, error) {
	disk, err := nixos.DetectDisk(ctx, s.commander())
	if err != nil {
		return "", err
	}
	s.disk = disk
	// The kexec installer must match the CPU (Azure has Arm64 sizes too).
	if s.system, err = nixos.DetectSystem(ctx, s.commander()); err != nil {
		return "", err
	}
	return disk, nil
}

// render writes the flake for this machine into <work>/extra/etc/nixos:
// nixos-anywhere installs from it and copies <work>/extra to the new
// system's / (--extra-files), so the VM keeps it, root-owned, in
// /etc/nixos.
func (s *state) render() error {
	if s.flakeRef != "" {
		return nil
	}
	s.extraDir = filepath.Join(s.workDir, "extra")
	s.flakeDir = filepath.Join(s.extraDir, filepath.FromSlash(strings.TrimPrefix(nixos.InstalledDir, "/")))
	ref, err := nixos.Render(s.flakeDir, nixos.Settings{
		HostName:           s.cfg.VMName,
		UserName:           s.cfg.UserName,
		AuthorizedKeys:     s.cfg.SSHPublicKeys,
		RootAuthorizedKeys: []string{s.deployKeyLine()},
		DiskDevice:         s.disk,
		StateVersion:       nixos.StateVersion(s.cfg.NixChannel),
	}, s.cfg.NixChannel)
	if err != nil {
		return err
	}
	// tar copies the directories' modes too (nixos-anywhere's extra
	// files): the work directory is 0700, the VM's / and /etc are not.
	for _, d := range []string{s.extraDir, filepath.Dir(s.flakeDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	s.flakeRef = ref
	return nil
}

// stageLock locks the flake's inputs in the container (which reaches
// GitHub) before the install, which then uses exactly this lock:
// nixos-anywhere evaluates with --no-write-lock-file and would otherwise
// resolve the inputs itself and keep no record of them.
func (s *state) stageLock(ctx context.Context) (string, error) {
	if err := s.render(); err != nil {
		return "", err
	}
	locker := s.opts.Locker
	if locker == nil {
		locker = &nixos.Locker{Line: func(l string) { s.sink.Infof("%s", l) }}
	}
	lock, err := locker.Lock(ctx, s.flakeDir)
	if errors.Is(err, nixos.ErrNoNix) {
		if s.opts.RequireLock {
			return "", &StageError{Stage: "lock", Err: fmt.Errorf("%w: the flake's inputs cannot be locked, and the action never installs unlocked inputs", err),
				Hint: "the action's container has nix; a custom image must have it on PATH"}
		}
		return "", skipped{fmt.Sprintf("%v: the inputs are not locked in advance; nixos-anywhere resolves them itself and nothing records which nixpkgs was installed (the action always locks)", err)}
	}
	if err != nil {
		return "", &StageError{Stage: "lock", Err: err, Hint: "nix flake lock fetches the inputs from GitHub: check the network, or a nix-channel that does not exist"}
	}
	s.lock = lock
	ws := s.opts.Env.Workspace
	if ws == "" {
		ws = "."
	}
	if err := os.WriteFile(filepath.Join(ws, nixos.LockFile), lock.Data, 0o644); err != nil {
		return "", fmt.Errorf("failed to write %s to the workspace: %w", nixos.LockFile, err)
	}
	return lock.String(), nil
}

func (s *state) stageInstall(ctx context.Context) (string, error) {
	if err := s.render(); err != nil {
		return "", err
	}
	ref := s.flakeRef
	// nixos-anywhere's own ssh does not verify host keys (it passes
	// StrictHostKeyChecking=no first). Every connection it makes goes
	// through our proxy, which does, with the pinned key.
	opt, err := sshx.WriteProxyScript(filepath.Join(s.workDir, "proxy"), s.opts.Env.Self, sshx.ProxyConfig{Addr: s.addr(), User: "root", HostKey: s.pinned, IdentityFile: s.keyFile})
	if err != nil {
		return "", err
	}
	proxy := strings.TrimPrefix(opt, "ProxyCommand=")
	// kexec ends this connection; the verify stage connects again.
	_ = s.client.Close()
	s.client = nil

	inst := s.opts.Installer
	if inst == nil {
		inst = &nixos.Runner{}
	}
	if r, ok := inst.(*nixos.Runner); ok {
		r.Timeout = s.cfg.InstallTimeout
		r.Line = s.sink.Stream // the VM and nixos-anywhere wrote it: no workflow commands
		// Each "### phase ###" gets its own log group (GitHub's groups do
		// not nest, so the stage's group gives way to the phases').
		r.Phase = func(p string) {
			s.sink.EndGroup()
			s.sink.Group("install: " + p)
		}
	}
	facter := filepath.Join(s.flakeDir, nixos.FacterFile)
	s.phases, err = inst.Run(ctx, nixos.Args{Flake: ref, FacterReport: facter, IdentityFile: s.keyFile, ProxyCommand: proxy, Host: s.machine.PublicIP,
		KexecURL: nixos.KexecImageURL(s.cfg.NixChannel, s.system), ExtraFiles: s.extraDir})
	if err != nil {
		var re *nixos.RunError
		switch {
		case errors.As(err, &re) && re.TimedOut:
			return "", &StageError{Stage: "install", Err: err, Hint: "kexec on Azure can hang (nixos-anywhere issue 400); see the serial log below, and raise install-timeout if the build was just slow"}
		case errors.As(err, &re) && strings.Contains(strings.ToLower(re.Phase+re.Aborted), "kexec"):
			return "", &StageError{Stage: "install", Err: err, Hint: "kexec failed: is Secure Boot on (kernel lockdown)? The VM is created with Secure Boot off; for your own image check /sys/kernel/security/lockdown. The serial log below shows what the VM did"}
		}
		return "", &StageError{Stage: "install", Err: err, Hint: "the serial log below shows what the VM did; re-run to try again (resources are reused)"}
	}
	ws := s.opts.Env.Workspace
	if ws == "" {
		ws = "."
	}
	if s.facter, err = nixos.CopyFacterReport(facter, ws); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d phases", len(s.phases)), nil
}

func (s *state) stageVerify(ctx context.Context) (string, error) {
	if s.client == nil {
		if err := s.connect(ctx); err != nil {
			return "", err
		}
	}
	if err := nixos.Verify(ctx, s.commander()); err != nil {
		return "", err
	}
	s.isNixOS = true
	return "NixOS, host key unchanged", nil
}

func (s *state) stageFinalize(ctx context.Context) (string, error) {
	steps := finalize.Steps(s.cfg)
	log := sshx.WithLog(func(_ string, line string) { s.sink.Stream("  " + line) })
	for i, st := range steps {
		s.sink.Infof("(%d/%d) %s", i+1, len(steps), st.Name)
		if err := s.runStep(ctx, st, log); err != nil {
			return "", fmt.Errorf("step %q failed: %w", st.Name, err)
		}
	}
	// A switch may restart sshd or reboot, and root's access is now
	// whatever the user's flake says (often PermitRootLogin "no"): prove
	// the machine answers with the pinned host key without logging in.
	_ = s.client.Close()
	s.client = nil
	if _, err := s.identify(ctx); err != nil {
		return "", fmt.Errorf("the VM did not come back after nixos-rebuild switch: %w", err)
	}
	return fmt.Sprintf("%d steps; host key %s verified after the switch", len(steps), sshx.Fingerprint(s.pinned)), nil
}

// identify waits, up to ssh-timeout, for the VM to prove it holds the
// pinned host key in a key exchange, without logging in.
func (s *state) identify(ctx context.Context) (sshx.Identity, error) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.SSHTimeout)
	defer cancel()
	for {
		id, err := sshx.Identify(wctx, s.addr(), s.pinned)
		if err == nil {
			return id, nil
		}
		var mm *sshx.HostKeyMismatchError
		if errors.As(err, &mm) {
			return id, &StageError{Stage: "finalize", Err: err, Hint: "the address answers with another host key than the pinned one: a wrong address or an attack"}
		}
		select {
		case <-wctx.Done():
			return id, fmt.Errorf("no SSH server with the pinned host key within %s: %w", s.cfg.SSHTimeout, err)
		case <-time.After(time.Second):
		}
	}
}

func (s *state) runStep(ctx context.Context, st finalize.Step, log sshx.RunOption) error {
	if u := st.Upload; u != nil {
		if err := s.client.UploadAs(ctx, u.Owner, u.Data, u.Path, u.Mode); err != nil {
			return err
		}
	}
	if st.Command == "" {
		return nil
	}
	return s.client.Run(ctx, st.Command, log)
}

func (s *state) outputs() (o Outputs) {
	o = Outputs{FacterReport: s.facter}
	defer s.switchOutputs(&o) // o is the named result: the defer fills it
	if s.lock != nil {
		o.NixpkgsRevision = s.lock.Nixpkgs().Rev
	}
	if s.cfg.Target == nil {
		o.ResourceGroup = s.cfg.ResourceGroup
	}
	// A container action sees the workspace at another path than the
	// steps after it; relative to the workspace, the path works in both.
	if ws := s.opts.Env.Workspace; ws != "" && s.facter != "" {
		if rel, err := filepath.Rel(ws, s.facter); err == nil && !strings.HasPrefix(rel, "..") {
			o.FacterReport = rel
		}
	}
	if s.machine != nil {
		o.FQDN, o.PublicIP, o.VMID = s.machine.FQDN, s.machine.PublicIP, s.machine.VMID
	}
	if s.pinned != nil && o.PublicIP != "" {
		port := strconv.Itoa(s.sshPort)
		var hosts []string
		if o.FQDN != "" {
			hosts = append(hosts, net.JoinHostPort(o.FQDN, port))
		}
		o.SSHHostKey = keys.KnownHostsLine(append(hosts, net.JoinHostPort(o.PublicIP, port)), s.pinned)
		host := o.FQDN
		if host == "" {
			host = o.PublicIP
		}
		o.SSHCommand = fmt.Sprintf("ssh %s@%s", s.cfg.UserName, host)
		if s.sshPort != 22 {
			o.SSHCommand = fmt.Sprintf("ssh -p %d %s@%s", s.sshPort, s.cfg.UserName, host)
		}
	}
	return o
}

func (s *state) stageReport(context.Context) (string, error) {
	s.result.Outputs = s.outputs()
	s.result.Resources = s.resources()
	return "", nil
}

// switchOutputs fills the switch's outputs from what the machine said last.
func (s *state) switchOutputs(o *Outputs) {
	if s.cfg.Command != config.Switch {
		return
	}
	r := s.sw.report
	s.result.Switch = &r
	if r.PreviousGeneration != 0 {
		o.PreviousGeneration = strconv.Itoa(r.PreviousGeneration)
	}
	if r.Generation != 0 {
		o.Generation = strconv.Itoa(r.Generation)
	}
	o.SystemPath = r.Path
}

func (s *state) resources() []string {
	if s.machine == nil {
		return nil
	}
	var out []string
	vmListed := false
	for _, r := range s.machine.Resources {
		out = append(out, fmt.Sprintf("%s %s (%s)", r.Kind, r.Name, r.Action))
		vmListed = vmListed || r.Kind == azure.KindVM
	}
	if s.machine.VMID != "" && !vmListed && s.cfg.Command == config.Deploy {
		// A VM whose creation failed (AllocationFailed) still exists.
		out = append(out, fmt.Sprintf("%s %s (exists, creation failed)", azure.KindVM, s.cfg.VMName))
	}
	return out
}

// fail fills in the failure: the serial log when a VM exists, and the
// cleanup the user asked for, or how to clean up by hand.
func (s *state) fail(ctx context.Context, se *StageError) {
	s.result.Err, s.result.FailedStage, s.result.Hint = se.Err, se.Stage, se.Hint
	s.result.Outputs = s.outputs()
	s.result.Resources = s.resources()
	// The run's context may be cancelled (SIGTERM); cleanup still gets its
	// own bounded time.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CleanupTimeout)
	defer cancel()
	if s.machine != nil && s.machine.VMID != "" && s.opts.Cloud != nil {
		logCtx, cancelLog := context.WithTimeout(bg, time.Minute)
		tail, err := s.opts.Cloud.SerialLog(logCtx, s.cfg.ResourceGroup, s.cfg.VMName, 40)
		cancelLog()
		if err != nil {
			s.sink.Warningf("could not fetch the serial log: %v", err)
		} else {
			s.result.SerialLog = tail
		}
	}
	if s.machine == nil && !s.vmExists || s.cfg.Command == config.Install || s.cfg.Command == config.Switch {
		// install and switch never create anything: there is nothing to clean up.
		return
	}
	if !s.cfg.CleanupOnFailure {
		s.result.Cleanup = fmt.Sprintf("Resource group `%s` was left as it is (cleanup-on-failure is false). Remove it with `command: destroy` (or `go run ./cmd/action destroy -g %s -n %s`).", s.cfg.ResourceGroup, s.cfg.ResourceGroup, s.cfg.VMName)
		return
	}
	s.sink.Group("cleanup: delete resource group " + s.cfg.ResourceGroup)
	defer s.sink.EndGroup()
	dr, err := s.opts.Cloud.Destroy(bg, s.cfg.ResourceGroup)
	switch {
	case err != nil:
		s.result.Cleanup = fmt.Sprintf("cleanup-on-failure: deleting resource group `%s` failed: %v", s.cfg.ResourceGroup, err)
	case dr.Deleted:
		s.result.Cleanup = fmt.Sprintf("cleanup-on-failure: deleted resource group `%s` with %d resources.", s.cfg.ResourceGroup, len(dr.Resources))
		s.result.Resources = nil
	default:
		s.result.Cleanup = "cleanup-on-failure: " + dr.Note
	}
	s.sink.Infof("%s", s.result.Cleanup)
}
