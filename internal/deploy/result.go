package deploy

import (
	"fmt"
	"strings"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/rollout"
)

// Status is how a stage ended.
type Status string

const (
	StatusOK        Status = "ok"
	StatusFailed    Status = "failed"
	StatusSkipped   Status = "skipped"
	StatusCancelled Status = "cancelled"
	StatusNotRun    Status = "not run"
)

// StageResult is one stage's outcome.
type StageResult struct {
	Name     string
	Status   Status
	Duration time.Duration
	Note     string              // why it was skipped, what it did
	Phases   []nixos.PhaseTiming // nixos-anywhere's phases, for the install stage
}

// Outputs are the action's outputs.
type Outputs struct {
	FQDN          string
	PublicIP      string
	ResourceGroup string
	VMID          string
	SSHHostKey    string // known_hosts line
	SSHCommand    string
	FacterReport  string
	// switch
	Generation         string
	PreviousGeneration string
	SystemPath         string
	// NixpkgsRevision is the nixpkgs commit the lock step pinned.
	NixpkgsRevision string
}

// Map returns the outputs by output name, the names action.yml declares.
func (o Outputs) Map() []([2]string) {
	return [][2]string{
		{"fqdn", o.FQDN}, {"public-ip", o.PublicIP}, {"resource-group", o.ResourceGroup},
		{"vm-id", o.VMID}, {"ssh-host-key", o.SSHHostKey}, {"ssh-command", o.SSHCommand},
		{"facter-report", o.FacterReport},
		{"generation", o.Generation}, {"previous-generation", o.PreviousGeneration}, {"system-path", o.SystemPath},
		{"nixpkgs-revision", o.NixpkgsRevision},
	}
}

// Result is what a run did: the report's single source.
type Result struct {
	Command       string
	VMName        string
	ResourceGroup string
	Location      string
	Stages        []StageResult
	Outputs       Outputs
	// Resources lists what exists in Azure after the run ("" kinds first).
	Resources []string
	// Err is the failure, if any; FailedStage names its stage and Hint says
	// what the user can do.
	Err         error
	FailedStage string
	Hint        string
	// SerialLog is the tail of the VM's serial console, fetched on failure.
	SerialLog string
	// Cleanup says what happened to the resources after a failure.
	Cleanup string
	Total   time.Duration
	// Switch is what command switch did; nil for the others.
	Switch *SwitchReport
}

// Markdown renders the result for the GitHub step summary.
func (r Result) Markdown() string {
	var b strings.Builder
	verdict := "succeeded"
	if r.Err != nil {
		verdict = "failed"
	}
	fmt.Fprintf(&b, "## nixos-cloud-deploy: %s `%s` %s\n\n", r.Command, r.VMName, verdict)
	var details string
	if r.Err != nil {
		first, rest, _ := strings.Cut(r.Err.Error(), "\n")
		details = rest
		fmt.Fprintf(&b, "> [!CAUTION]\n> **%s** failed: %s\n", r.FailedStage, mdLine(first))
		if r.Hint != "" {
			fmt.Fprintf(&b, ">\n> %s\n", mdLine(r.Hint))
		}
		b.WriteString("\n")
	}
	b.WriteString("| stage | status | duration | notes |\n| --- | --- | ---: | --- |\n")
	for _, s := range r.Stages {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.Name, statusIcon(s.Status), dur(s), mdLine(s.Note))
		for _, p := range s.Phases {
			fmt.Fprintf(&b, "| &nbsp;&nbsp;↳ %s | | %s | |\n", mdLine(p.Name), round(p.Duration))
		}
	}
	fmt.Fprintf(&b, "| **total** | | **%s** | |\n", round(r.Total))
	if strings.TrimSpace(details) != "" {
		b.WriteString("\n<details><summary>Last output lines</summary>\n\n```\n" + strings.Trim(details, "\n") + "\n```\n\n</details>\n")
	}
	if r.Switch != nil {
		b.WriteString(r.Switch.markdown(r.Err != nil))
	}
	if r.Outputs.SSHCommand != "" && r.Err == nil {
		b.WriteString("\n### Log in\n\n```sh\n" + r.Outputs.SSHCommand + "\n```\n")
	}
	if r.Outputs.SSHHostKey != "" {
		if r.Err != nil {
			b.WriteString("\nThe VM's pinned host key, for a look by hand:\n\n```\n" + r.Outputs.SSHHostKey + "\n```\n")
		} else {
			b.WriteString("\nAdd the pinned host key to `~/.ssh/known_hosts` (no trust on first use):\n\n```\n" + r.Outputs.SSHHostKey + "\n```\n")
		}
	}
	if len(r.Resources) > 0 {
		if r.Command == "destroy" {
			b.WriteString("\n### Deleted\n\n")
		} else {
			b.WriteString("\n### Resources\n\n")
		}
		for _, res := range r.Resources {
			fmt.Fprintf(&b, "- `%s`\n", res)
		}
	}
	if r.Outputs.FacterReport != "" {
		fmt.Fprintf(&b, "\nHardware report (nixos-facter): `%s`, also `/etc/nixos/facter.json` on the VM. Commit it next to your flake as `nixos-cloud-deploy.facterReport`.\n", r.Outputs.FacterReport)
	}
	if r.Outputs.NixpkgsRevision != "" {
		fmt.Fprintf(&b, "\nInstalled from nixpkgs `%s`: `flake.lock` in the workspace and in `/etc/nixos` on the VM.\n", r.Outputs.NixpkgsRevision)
	}
	if r.Cleanup != "" {
		b.WriteString("\n### Cleanup\n\n" + r.Cleanup + "\n")
	}
	if r.SerialLog != "" {
		b.WriteString("\n<details><summary>Serial console (last lines)</summary>\n\n```\n" + strings.TrimRight(r.SerialLog, "\n") + "\n```\n\n</details>\n")
	}
	return b.String()
}

func statusIcon(s Status) string {
	switch s {
	case StatusOK:
		return "✅ ok"
	case StatusFailed:
		return "❌ failed"
	case StatusSkipped:
		return "⏭️ skipped"
	case StatusCancelled:
		return "🛑 cancelled"
	}
	return "· not run"
}

func dur(s StageResult) string {
	if s.Status == StatusNotRun || s.Status == StatusSkipped && s.Duration == 0 {
		return ""
	}
	return round(s.Duration)
}

func round(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func mdLine(s string) string {
	return strings.NewReplacer("|", "\\|", "\r", "", "\n", " ").Replace(s)
}

func (r *SwitchReport) markdown(failed bool) string {
	var b strings.Builder
	b.WriteString("\n### Switch\n\n")
	if r.Rev != "" {
		fmt.Fprintf(&b, "Configuration: `%s` at `%s`.\n\n", mdLine(r.Repo), r.Rev)
	}
	b.WriteString("| | generation | system |\n| --- | ---: | --- |\n")
	if r.PreviousGeneration != 0 {
		fmt.Fprintf(&b, "| before | %d | `%s` |\n", r.PreviousGeneration, r.PreviousPath)
	}
	switch {
	case r.NoOp:
		fmt.Fprintf(&b, "| after | %d | unchanged: the configuration evaluates to the running system |\n", r.Generation)
	case r.DryRun:
		fmt.Fprintf(&b, "| would run | new | `%s` |\n", r.NewPath)
	case r.Generation != 0:
		label := "after"
		if r.RolledBack {
			label = "after (rolled back)"
		}
		fmt.Fprintf(&b, "| %s | %d | `%s` |\n", label, r.Generation, r.Path)
	}
	if r.RolledBack && r.NewPath != "" {
		fmt.Fprintf(&b, "| refused | | `%s` |\n", r.NewPath)
	}
	if r.Diff != nil {
		fmt.Fprintf(&b, "\nClosure: %s (%s).", r.Diff.Summary(), rollout.RenderSize(r.Diff.SizeDelta))
		if r.Download != "" {
			fmt.Fprintf(&b, " %s.", upperFirst(r.Download))
		} else {
			fmt.Fprintf(&b, " The machine lacked %d paths (%s), copied from here or fetched from its substituters.", r.TransferPaths, rollout.RenderBytes(r.TransferSize))
		}
		b.WriteString("\n")
		if lines := r.Diff.Lines(); len(lines) > 0 {
			b.WriteString("\n<details><summary>Closure diff (as <code>nix store diff-closures</code>)</summary>\n\n```\n" + strings.Join(lines, "\n") + "\n```\n\n</details>\n")
		}
	} else if r.Download != "" {
		fmt.Fprintf(&b, "\n%s.\n", upperFirst(r.Download))
	}
	if r.DryRun {
		b.WriteString("\nDry run: nothing was activated.\n")
	}
	if prev := r.PreviousGeneration; prev != 0 && !r.NoOp && !r.DryRun && (r.RolledBack || !failed) {
		fmt.Fprintf(&b, "\nRoll back by hand (on the machine): `sudo nix-env -p %s --switch-generation %d && sudo %s/bin/switch-to-configuration switch`.\n", rollout.ProfilePath, prev, rollout.ProfilePath)
	}
	return b.String()
}

// Notice is the switch in one line, for the run's notice annotation (the
// bot's status comment reads it through the API).
func (r *SwitchReport) Notice() string {
	switch {
	case r.NoOp:
		return fmt.Sprintf("no change: generation %d already runs %s", r.Generation, shortRev(r.Rev))
	case r.DryRun:
		s := fmt.Sprintf("dry run: %s would replace generation %d", shortRev(r.Rev), r.PreviousGeneration)
		if r.Diff != nil {
			s += fmt.Sprintf("; %s; %d paths (%s) to copy or fetch", r.Diff.Summary(), r.TransferPaths, rollout.RenderBytes(r.TransferSize))
		} else if r.Download != "" {
			s += "; " + r.Download
		}
		return s
	}
	s := fmt.Sprintf("generation %d (was %d) runs %s", r.Generation, r.PreviousGeneration, shortRev(r.Rev))
	if r.Diff != nil {
		s += "; " + r.Diff.Summary()
	}
	return s
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
