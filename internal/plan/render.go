package plan

import (
	"fmt"
	"strings"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Text renders the plan for a terminal.
func (p Plan) Text() string {
	var b strings.Builder
	dry := ""
	if p.DryRun {
		dry = " (dry run)"
	}
	fmt.Fprintf(&b, "Plan: %s %s %s%s\n", p.Command, p.VMName, p.Where, dry)
	switch p.Command {
	case config.Switch:
		b.WriteString("\nSwitch (a running NixOS machine; nothing is created in Azure):\n")
	case config.Destroy:
		b.WriteString("\nDelete:\n")
	case config.Install:
		b.WriteString("\nInstall onto (nothing is created in Azure):\n")
	default:
		b.WriteString("\nAzure resources (created, or reused when they exist and are tagged as ours):\n")
	}
	for i, r := range p.Resources {
		fmt.Fprintf(&b, "  %d. %s %s\n", i+1, r.Kind, r.Name)
		if len(r.DependsOn) > 0 {
			fmt.Fprintf(&b, "       after: %s\n", strings.Join(r.DependsOn, ", "))
		}
		for _, pr := range r.Props {
			fmt.Fprintf(&b, "       %s: %s\n", pr.Key, pr.Value)
		}
	}
	if p.Command == config.Destroy {
		return b.String()
	}
	if p.Command == config.Switch {
		b.WriteString("\nSteps:\n")
		for i, st := range p.Switch {
			fmt.Fprintf(&b, "  %d. %s\n", i+1, st)
		}
		return b.String()
	}
	if p.CloudInit != "" {
		b.WriteString("\nCloud-init custom data (secrets redacted):\n")
		for _, l := range strings.Split(strings.TrimRight(p.CloudInit, "\n"), "\n") {
			b.WriteString("  | " + l + "\n")
		}
	}
	b.WriteString("\nLock the flake's inputs (in the container; the install uses this flake.lock, kept in the workspace and on the VM):\n")
	b.WriteString("  " + sshx.Quote(p.Lock...) + "\n")
	b.WriteString("\nInstall NixOS (one argument per line, no shell; --kexec is the installer of the channel's release, aarch64 on an Arm64 VM):\n")
	for _, a := range p.NixosAnywhere {
		b.WriteString("  " + sshx.Quote(a) + "\n")
	}
	b.WriteString("where " + p.Proxy + "\n")
	if p.CloudInit != "" {
		b.WriteString("\nRotate the host key:\n  " + rotateNote + "\n")
	}
	b.WriteString("\nFinalize:\n")
	if len(p.Finalize) == 0 {
		b.WriteString("  nothing: no config-repo given; the VM runs the bundled nix-config\n")
	}
	for i, s := range p.Finalize {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
	}
	b.WriteString("\nOn the VM:\n")
	for _, s := range p.OnVM {
		b.WriteString("  " + s + "\n")
	}
	fmt.Fprintf(&b, "\nThen: ssh %s@%s (host key pinned, printed as output ssh-host-key)\n", p.UserName, p.FQDN)
	return b.String()
}

// Markdown renders the plan for the GitHub step summary.
func (p Plan) Markdown() string {
	var b strings.Builder
	dry := ""
	if p.DryRun {
		dry = " (dry run)"
	}
	fmt.Fprintf(&b, "## Plan: %s `%s`%s\n\n", p.Command, p.VMName, dry)
	fmt.Fprintf(&b, "%s.\n\n", mdEscape(strings.ToUpper(p.Where[:1])+p.Where[1:]))
	b.WriteString("| # | resource | name | after | properties |\n| --- | --- | --- | --- | --- |\n")
	for i, r := range p.Resources {
		var props []string
		for _, pr := range r.Props {
			props = append(props, mdEscape(pr.Key)+": "+mdEscape(pr.Value))
		}
		fmt.Fprintf(&b, "| %d | `%s` | `%s` | %s | %s |\n", i+1, r.Kind, r.Name, mdEscape(strings.Join(r.DependsOn, ", ")), strings.Join(props, "<br>"))
	}
	if p.Command == config.Destroy {
		return b.String()
	}
	if p.Command == config.Switch {
		b.WriteString("\n### Steps\n\n")
		for i, st := range p.Switch {
			fmt.Fprintf(&b, "%d. **%s**: %s\n", i+1, st.Name, mdEscape(st.Detail))
		}
		return b.String()
	}
	if p.CloudInit != "" {
		b.WriteString("\n<details><summary>Cloud-init custom data (secrets redacted)</summary>\n\n```yaml\n")
		b.WriteString(strings.TrimRight(p.CloudInit, "\n"))
		b.WriteString("\n```\n\n</details>\n")
	}
	b.WriteString("\n### Lock\n\nIn the container; the install uses this `flake.lock`, kept in the workspace and on the VM.\n\n```sh\n" + sshx.Quote(p.Lock...) + "\n```\n")
	b.WriteString("\n### Install\n\n`--kexec` is the installer of the channel's release, aarch64 on an Arm64 VM.\n\n```sh\n")
	quoted := make([]string, len(p.NixosAnywhere))
	for i, a := range p.NixosAnywhere {
		quoted[i] = sshx.Quote(a)
	}
	b.WriteString(strings.Join(quoted, " \\\n  "))
	b.WriteString("\n```\n\n" + mdEscape(p.Proxy) + "\n\n")
	if p.CloudInit != "" {
		b.WriteString("### Rotate the host key\n\n" + rotateNote + "\n\n")
	}
	b.WriteString("### Finalize\n\n")
	if len(p.Finalize) == 0 {
		b.WriteString("Nothing: no `config-repo` given; the VM runs the bundled nix-config.\n")
	}
	for i, s := range p.Finalize {
		name, cmd, _ := strings.Cut(s, ": ")
		fmt.Fprintf(&b, "%d. %s: `%s`\n", i+1, name, strings.ReplaceAll(cmd, "`", "'"))
	}
	b.WriteString("\n### On the VM\n\n")
	for _, s := range p.OnVM {
		path, what, _ := strings.Cut(s, ": ")
		fmt.Fprintf(&b, "- `%s`: %s\n", path, mdEscape(what))
	}
	return b.String()
}

// rotateNote says what happens to the host key that custom data carried.
const rotateNote = "the key in custom data (which Azure says is not for secrets) is replaced: the VM makes a new ed25519 key, " +
	"its public half is read over the connection the old key verified, sshd loads it, and the ssh-host-key tag and output name it."

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}
