package deploy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/plan"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// stageLocate finds the machine command: install works on: an existing
// Azure VM read over ARM, or target-host as given.
func (s *state) stageLocate(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ProvisionTimeout)
	defer cancel()
	if t := s.cfg.Target; t != nil {
		s.pinned = t.HostKey
		s.machine = &azure.Result{PublicIP: t.Host}
		return fmt.Sprintf("%s, host key %s (from target-host-key)", t.Addr(), sshx.Fingerprint(t.HostKey)), nil
	}
	rg, vm := s.cfg.ResourceGroup, s.cfg.VMName
	info, err := s.opts.Cloud.LookupVM(ctx, rg, vm)
	if errors.Is(err, azure.ErrNotFound) {
		return "", &StageError{Stage: "locate", Err: fmt.Errorf("virtual machine %q in resource group %q does not exist", vm, rg),
			Hint: s.cfg.Command.String() + " works on a VM that exists; command: deploy creates one"}
	}
	if err != nil {
		return "", err
	}
	if gb, ok := config.SizeMemoryGB(info.Size); ok && gb < config.MinMemoryGB && s.cfg.Command == config.Install {
		return "", &StageError{Stage: "locate", Err: fmt.Errorf("virtual machine %q is a %s with %.2g GB of memory; nixos-anywhere's kexec installer needs at least %.1f GB", vm, info.Size, gb, config.MinMemoryGB),
			Hint: "resize it (az vm resize --size Standard_B2s) and run again"}
	}
	switch info.PowerState {
	case "running", "":
	case "stopped", "deallocated", "stopping", "deallocating":
		if !s.cfg.StartIfStopped {
			return "", &StageError{Stage: "locate", Err: fmt.Errorf("virtual machine %q is %s", vm, info.PowerState),
				Hint: "start it (az vm start), or set start-if-stopped: true"}
		}
		s.sink.Infof("virtual machine %s is %s: starting it (start-if-stopped)", vm, info.PowerState)
		if err := s.opts.Cloud.StartVM(ctx, rg, vm); err != nil {
			return "", err
		}
		s.started = true
		if info, err = s.opts.Cloud.LookupVM(ctx, rg, vm); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("virtual machine %q is %q; wait until it runs", vm, info.PowerState)
	}
	if info.PublicIP == "" {
		return "", &StageError{Stage: "locate", Err: fmt.Errorf("virtual machine %q has no public IP address", vm),
			Hint: "the source system reaches the VM over SSH on its public IP; add one to its NIC"}
	}
	if s.cfg.Command == config.Install {
		// A VM that just started reports its agent ready within a minute or
		// two; one that runs and says otherwise will not.
		for wait := s.now().Add(3 * time.Minute); s.started && agentReady(vm, info.AgentStatus) != nil && s.now().Before(wait); {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(5 * time.Second):
			}
			if info, err = s.opts.Cloud.LookupVM(ctx, rg, vm); err != nil {
				return "", err
			}
		}
		if err := agentReady(vm, info.AgentStatus); err != nil {
			return "", err
		}
	}
	s.machine = &azure.Result{VMID: info.ID, PublicIP: info.PublicIP, FQDN: info.FQDN}
	s.vmExists, s.ours = true, info.Managed
	if info.HostKey != "" {
		k, err := sshx.ParseHostKey(info.HostKey)
		if err != nil {
			return "", fmt.Errorf("failed to parse the %s tag of virtual machine %q: %w", plan.TagSSHHostKey, vm, err)
		}
		s.pinned = k
	}
	return fmt.Sprintf("%s, %s, %s", info.Size, info.PowerState, info.PublicIP), nil
}

// agentReady refuses, at once, a VM whose Azure agent is not ready: Run
// Command, which prepare access uses, runs only through the agent, and
// without it Azure keeps the request until it times out instead of failing
// (Microsoft Learn, "Troubleshoot Run Command": the VM agent must be
// installed and in a ready state). A NixOS VM runs the agent only when its
// configuration says so (nixpkgs nixos/modules/virtualisation/waagent.nix;
// nixosModules.azure enables it). An empty status is one Azure did not
// report: Run Command is tried.
func agentReady(vm, status string) error {
	if status == "" || status == "Ready" {
		return nil
	}
	return &StageError{Stage: "locate",
		Err:  fmt.Errorf("the Azure VM agent on virtual machine %q is %q: Run Command, which install uses to authorise the deploy key for root, runs only through a ready agent and would wait until Azure gives up", vm, status),
		Hint: "a NixOS VM runs the agent only when its configuration enables it (nixosModules.azure does, services.waagent; on the VM: systemctl status waagent); if it just started, run again in a minute; or install over SSH: target-host with target-host-key and target-ssh-key"}
}

// preflightScript runs as root on the target before anything changes it:
// it authorises this run's deploy key for root (what the original scripts
// did with "sudo cp authorized_keys /root/.ssh/") and reports what the
// refusals need. The deploy key is a public key; nothing secret is in it.
func preflightScript(deployKey string) string {
	return `set -eu
key=` + sshx.Quote(deployKey) + `
umask 077
mkdir -p /root/.ssh
touch /root/.ssh/authorized_keys
grep -qxF "$key" /root/.ssh/authorized_keys || printf '%s\n' "$key" >>/root/.ssh/authorized_keys
printf 'hostkey %s\n' "$(cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null || true)"
printf 'memkb %s\n' "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
printf 'lockdown %s\n' "$(cat /sys/kernel/security/lockdown 2>/dev/null || true)"
printf 'secureboot %s\n' "$(mokutil --sb-state 2>/dev/null | head -n 1 || true)"
printf 'os %s\n' "$(. /etc/os-release && echo "${ID:-unknown}")"
`
}

// preflight is what preflightScript reported.
type preflight struct {
	hostKey    string
	memKB      int
	lockdown   string
	secureBoot string
	os         string
}

func parsePreflight(out string) preflight {
	var p preflight
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch k {
		case "hostkey":
			p.hostKey = strings.TrimSpace(v)
		case "memkb":
			p.memKB, _ = strconv.Atoi(strings.TrimSpace(v))
		case "lockdown":
			p.lockdown = strings.TrimSpace(v)
		case "secureboot":
			p.secureBoot = strings.TrimSpace(v)
		case "os":
			p.os = strings.TrimSpace(v)
		}
	}
	return p
}

// refusal is the first reason not to install onto this machine, or nil.
func (p preflight) refusal(force bool) *StageError {
	switch {
	case p.os == "nixos" && !force:
		return &StageError{Stage: "prepare access", Err: errors.New("the target already runs NixOS"),
			Hint: "set force-reinstall: true to wipe its disk and install again"}
	case p.memKB > 0 && float64(p.memKB) < config.MinMemoryGB*1000*1000:
		return &StageError{Stage: "prepare access", Err: fmt.Errorf("the target has %.2g GB of memory; nixos-anywhere's kexec installer needs at least %.1f GB", float64(p.memKB)/1e6, config.MinMemoryGB),
			Hint: "give it more memory (on Azure: az vm resize) and run again"}
	case strings.Contains(p.lockdown, "[integrity]") || strings.Contains(p.lockdown, "[confidentiality]") || strings.Contains(strings.ToLower(p.secureBoot), "secureboot enabled"):
		return &StageError{Stage: "prepare access", Err: fmt.Errorf("the target cannot kexec: Secure Boot is on (lockdown %q, %q)", p.lockdown, p.secureBoot),
			Hint: "turn Secure Boot off (on Azure: az vm update --enable-secure-boot false, with the VM deallocated; Trusted Launch may stay) and run again"}
	}
	return nil
}

// stagePrepareAccess authorises the deploy key for root and checks the
// target, over Azure Run Command (no SSH credentials needed) or over SSH
// with target-user's key and the pinned host key.
func (s *state) stagePrepareAccess(ctx context.Context) (string, error) {
	script := preflightScript(s.deployKeyLine())
	var out string
	if t := s.cfg.Target; t != nil {
		signer, err := ssh.ParsePrivateKey(t.Key)
		if err != nil {
			return "", errors.New("target-ssh-key: failed to parse the private key")
		}
		c, err := sshx.Dial(ctx, sshx.Target{Addr: t.Addr(), User: t.User, HostKey: t.HostKey, Signer: signer})
		if err != nil {
			var mm *sshx.HostKeyMismatchError
			if errors.As(err, &mm) {
				return "", &StageError{Stage: "prepare access", Err: err, Hint: "target-host answers with another key than target-host-key: a wrong address or an attack; nothing was sent to it"}
			}
			return "", err
		}
		defer c.Close()
		cmd := "sh -c " + sshx.Quote(script)
		if t.User != "root" {
			cmd = "sudo -n " + cmd
		}
		b, err := c.Output(ctx, cmd)
		if err != nil {
			return "", fmt.Errorf("failed to prepare root access as %s (root, or passwordless sudo, is needed): %w", t.User, err)
		}
		out = string(b)
	} else {
		var err error
		if out, err = s.opts.Cloud.RunShellScript(ctx, s.cfg.ResourceGroup, s.cfg.VMName, script); err != nil {
			var rce *azure.RunCommandError
			if errors.As(err, &rce) {
				// The agent says "succeeded" whatever a script does; this
				// is the script's own status, or its absence.
				return "", &StageError{Stage: "prepare access", Err: err,
					Hint: "the preparation script runs as root through Azure Run Command (the VM agent); its last lines are above. Check the agent is Ready (az vm get-instance-view) and run again"}
			}
			return "", err
		}
	}
	p := parsePreflight(out)
	if s.pinned == nil {
		// Learnt over the authenticated control plane, never from the network.
		k, err := sshx.ParseHostKey(p.hostKey)
		if err != nil {
			return "", fmt.Errorf("the VM reported no usable ed25519 host key (%q): %w", p.hostKey, err)
		}
		s.pinned = k
	} else if p.hostKey != "" {
		if k, err := sshx.ParseHostKey(p.hostKey); err == nil && string(k.Marshal()) != string(s.pinned.Marshal()) {
			return "", &StageError{Stage: "prepare access", Err: fmt.Errorf("the VM's host key %s is not the pinned one %s", sshx.Fingerprint(k), sshx.Fingerprint(s.pinned)),
				Hint: "its ssh-host-key tag is stale or the address is wrong; nothing was installed"}
		}
	}
	if r := p.refusal(s.cfg.ForceReinstall); r != nil {
		return "", r
	}
	s.isNixOS = false // a forced reinstall installs regardless
	return fmt.Sprintf("root authorised; %s, %.1f GB, host key %s", p.os, float64(p.memKB)/1e6, sshx.Fingerprint(s.pinned)), nil
}
