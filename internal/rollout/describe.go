package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Placeholders for what only the run knows, in the plan.
const (
	WorkDirPlaceholder = "$WORKDIR"
	RevPlaceholder     = "$REV"
	DrvPlaceholder     = "$DRV"
	SystemPlaceholder  = "$SYSTEM"
)

// Build places.
const (
	BuildLocal  = "local"
	BuildTarget = "target"
)

// Plan is what a switch will do, for the plan.
type Plan struct {
	Repo    string // config-repo; "." is the workflow's checkout
	Ref     string // "" is the default branch
	Attr    string
	User    string // the login user; not root means sudo -n
	BuildOn string
	Confirm time.Duration
	DryRun  bool
}

// Step is one step of the switch as the plan shows it.
type Step struct {
	Name   string
	Detail string
}

// ActivationLimit is how long switch-to-configuration may run before the
// watchdog rolls back anyway.
const ActivationLimit = 15 * time.Minute

// Steps describes the switch, with the commands the run uses (built by the
// same functions) and placeholders for what only the run knows.
func (p Plan) Steps() []Step {
	sudo := ""
	if p.User != "root" {
		sudo = ", then sudo -n for each command"
	}
	flake := "git+file://" + WorkDirPlaceholder + "/config?rev=" + RevPlaceholder + "&shallow=1"
	fetch := "git fetch --depth=1 -- " + p.Repo + " " + refOrHead(p.Ref) + ", into a repository this run owns (" + WorkDirPlaceholder + "/config)"
	if p.Repo == "." {
		fetch = "the commit checked out in the workspace (git fetch --depth=1 file://$GITHUB_WORKSPACE HEAD, safe.directory for that directory only), into a repository this run owns; uncommitted changes are not part of it"
	}
	steps := []Step{
		{"connect", "one SSH connection as " + p.User + sudo + ", host key pinned; read the system profile's generation (" + ProfilePath + "), the running system and any switch still waiting for its confirmation"},
		{"fetch", fetch},
		{"evaluate", "nix " + sshx.Quote(EvaluateArgs(flake, p.Attr)...) + "; the running system's own path means nothing to do"},
	}
	copyTo := "ssh-ng://" + p.User + "@127.0.0.1"
	tunnel := ", through a tunnel on the verified connection (NIX_SSHOPTS: StrictHostKeyChecking=yes against the pinned key only)"
	if p.BuildOn == BuildTarget {
		steps = append(steps,
			Step{"copy", "nix " + sshx.Quote(CopyArgs(copyTo, true, DrvPlaceholder)...) + tunnel},
			Step{"build", "on the VM: nix-store --realise " + DrvPlaceholder})
	} else {
		steps = append(steps,
			Step{"build", "in the action's container: nix " + sshx.Quote(append(append([]string(nil), FlakeFlags...), "build", "--no-link", "--print-out-paths", DrvPlaceholder+"^*")...)},
			Step{"copy", "nix " + sshx.Quote(CopyArgs(copyTo, false, SystemPlaceholder)...) + tunnel})
	}
	if p.DryRun && p.BuildOn == BuildTarget {
		steps[len(steps)-1] = Step{"build", "dry run on the VM: nix-store --realise --dry-run " + DrvPlaceholder + " (what it would build and fetch, and the download size; the package diff needs the build)"}
		return append(steps, Step{"stop", "dry run: only the derivations are copied; nothing is built or activated"})
	}
	steps = append(steps, Step{"diff", "the closure diff against the running system (as nix store diff-closures) and what the VM lacks (nix-store --check-validity --print-invalid)"})
	if p.DryRun {
		steps[len(steps)-2].Detail = "skipped: dry run"
		steps[len(steps)-1], steps[len(steps)-2] = steps[len(steps)-2], steps[len(steps)-1]
		return append(steps, Step{"stop", "dry run: nothing is copied to the VM or activated"})
	}
	return append(steps,
		Step{"activate", fmt.Sprintf("arm the watchdog: systemd-run --unit=%s (activates the previous generation again unless confirmed within %s of the activation, or when the activation fails or takes more than %s); then systemd-run --unit=%s --wait %s/bin/switch-to-configuration test: the new system runs, the system profile and the boot loader still say the previous generation, so a reboot before the confirmation boots that",
			WatchdogUnit, Human(p.Confirm), Human(ActivationLimit), ActivationUnit, SystemPlaceholder)},
		Step{"confirm", fmt.Sprintf("a new SSH connection, host key pinned, stops the watchdog and makes the system a generation and the boot default (nix-env -p %s --set %s; %s/bin/switch-to-configuration boot); a VM that refuses the connection rolls back by itself after %s and the run fails with \"rolled back to generation N\"",
			ProfilePath, SystemPlaceholder, SystemPlaceholder, Human(p.Confirm))},
	)
}

// Human renders a duration without trailing zero units: 1m, 1m30s, 15m.
func Human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func refOrHead(ref string) string {
	if ref == "" {
		return "HEAD"
	}
	return ref
}

// String renders a step for a terminal.
func (s Step) String() string { return s.Name + ": " + strings.TrimSpace(s.Detail) }
