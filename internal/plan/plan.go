// Package plan describes, as a pure value, everything a run will create and
// execute. `command: plan` prints it; deploy follows it.
package plan

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/cloudinit"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/finalize"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/rollout"
)

// Tag keys written on every resource: the azure package's, which writes them.
const (
	TagManagedBy    = azure.TagManagedBy
	ManagedByValue  = azure.ManagedByValue
	TagVMName       = azure.TagVMName
	TagRunURL       = azure.TagRunURL
	TagSSHHostKey   = azure.TagHostKey
	hostKeyTagValue = "<the generated host key>"
)

// Env is what the plan needs from the run's surroundings.
type Env struct {
	RunURL    string // link to the GitHub Actions run, if any
	Workspace string // where facter.json is saved
	Self      string // path of this binary, for the ProxyCommand
}

// Plan is what a run will do.
type Plan struct {
	Command       config.Command
	Cloud         string
	Location      string
	ResourceGroup string
	VMName        string
	UserName      string
	FQDN          string
	Where         string // "in uksouth (AzureCloud), resource group x" or "onto host h:22"
	Resources     []Resource
	CloudInit     string   // rendered cloud-config with secrets redacted
	Lock          []string // the lock step's argument vector
	NixosAnywhere []string // argument vector
	Proxy         string   // what the ProxyCommand runs
	Finalize      []string // steps after the install, in order
	// Switch holds command switch's steps; nil for the other commands.
	Switch []rollout.Step
	DryRun bool
	// OnVM says where the configuration lives on the VM afterwards.
	OnVM []string
}

// Resource is one Azure resource the run creates or reuses.
type Resource struct {
	Kind      string // e.g. "Microsoft.Network/publicIPAddresses"
	Name      string
	Props     []Prop
	DependsOn []string
}

// Prop is one key property of a resource.
type Prop struct{ Key, Value string }

// Names of the resources: the azure package's, which creates them.
var (
	PublicIPName = azure.PublicIPName
	NSGName      = azure.NSGName
	VNetName     = azure.VNetName
	NICName      = azure.NICName
	ScheduleName = azure.ScheduleName
)

// SubnetName is the one subnet of the VNet.
const SubnetName = azure.SubnetName

// FQDN is what the DNS name Azure gives the public IP will look like: the
// label is scoped to the resource group (azure.DNSLabelScope), so Azure puts
// a hash of its own between the VM name and the region. The real name is
// known only from Azure's answer (the fqdn output).
func FQDN(vm, location string) string {
	return fmt.Sprintf("%s.<hash>.%s.cloudapp.azure.com", vm, location)
}

// New builds the plan for a validated configuration.
func New(c config.Config, env Env) Plan {
	cmd := c.Command
	if cmd == config.Plan {
		// The plan shows what deploy would do, or install with target-host.
		cmd = config.Deploy
		if c.Target != nil {
			cmd = config.Install
		}
	}
	p := Plan{
		Command:       cmd,
		Cloud:         c.Azure.Environment,
		Location:      c.Location,
		ResourceGroup: c.ResourceGroup,
		VMName:        c.VMName,
		UserName:      c.UserName,
		FQDN:          FQDN(c.VMName, c.Location),
		Where:         fmt.Sprintf("in %s (%s), resource group %s", c.Location, c.Azure.Environment, c.ResourceGroup),
	}
	p.DryRun = c.DryRun
	if c.Command == config.Switch {
		return switchPlan(p, c)
	}
	if c.Command == config.Destroy {
		p.Resources = []Resource{{
			Kind: "Microsoft.Resources/resourceGroups", Name: c.ResourceGroup,
			Props: []Prop{{"action", "delete, with everything in it, only if tagged " + TagManagedBy + ": " + ManagedByValue}},
		}}
		return p
	}
	if cmd == config.Install {
		p.Resources = installTargets(c)
		p.install(c, env)
		if t := c.Target; t != nil {
			p.FQDN = t.Host
			p.Where = "onto host " + t.Addr()
		}
		return p
	}
	tags := formatTags(azure.Tags(c.VMName, env.RunURL, nil))
	vmTags := formatTags(withHostKeyTag(azure.Tags(c.VMName, env.RunURL, nil)))
	mem := "unknown to this tool (checked by Azure)"
	if gb, ok := config.SizeMemoryGB(c.Size); ok {
		mem = fmt.Sprintf("%g GB", gb)
	}
	p.Resources = []Resource{
		{Kind: "Microsoft.Resources/resourceGroups", Name: c.ResourceGroup, Props: []Prop{{"location", c.Location}, {"tags", tags}}},
		{Kind: "Microsoft.Network/publicIPAddresses", Name: PublicIPName(c.VMName), DependsOn: []string{c.ResourceGroup}, Props: []Prop{
			{"sku", "Standard"}, {"allocation", "Static"}, {"dns label", c.VMName + ", scoped to the resource group (" + p.FQDN + "; Azure's hash, the same whenever this group is deployed)"}, {"tags", tags}}},
		{Kind: "Microsoft.Network/networkSecurityGroups", Name: NSGName(c.VMName), DependsOn: []string{c.ResourceGroup}, Props: []Prop{
			{"inbound", "allow 22/tcp (SSH) from any"}, {"tags", tags}}},
		{Kind: "Microsoft.Network/virtualNetworks", Name: VNetName(c.VMName), DependsOn: []string{c.ResourceGroup}, Props: []Prop{
			{"address space", "10.0.0.0/16"}, {"subnet", SubnetName + " 10.0.0.0/24"}, {"tags", tags}}},
		{Kind: "Microsoft.Network/networkInterfaces", Name: NICName(c.VMName), DependsOn: []string{PublicIPName(c.VMName), NSGName(c.VMName), VNetName(c.VMName)}, Props: []Prop{
			{"ip", "dynamic private, public " + PublicIPName(c.VMName)}, {"tags", tags}}},
		{Kind: "Microsoft.Compute/virtualMachines", Name: c.VMName, DependsOn: []string{NICName(c.VMName)}, Props: []Prop{
			{"size", c.Size + " (memory " + mem + ")"},
			{"image", c.Image},
			{"security", "Standard (Secure Boot off: kernel lockdown would block kexec)"},
			{"boot diagnostics", "on, managed storage (serial log on failure)"},
			{"os disk", fmt.Sprintf("%d GB, deleted with the VM", c.OSDiskSizeGB)},
			{"nic", NICName(c.VMName) + ", deleted with the VM"},
			{"admin user", adminUser(c)},
			{"custom data", "cloud-init (below)"},
			{"tags", vmTags}}},
	}
	if c.AutoShutdown != "" {
		p.Resources = append(p.Resources, Resource{Kind: "Microsoft.DevTestLab/schedules", Name: ScheduleName(c.VMName), DependsOn: []string{c.VMName},
			Props: []Prop{{"daily shutdown", c.AutoShutdown + " UTC"}, {"tags", tags}}})
	}
	p.CloudInit = string(cloudinit.RenderRedacted(cloudinit.Data{
		HostKeyPublic: "ssh-ed25519 <generated per deployment>",
		RootKeys:      []string{"ssh-ed25519 <deploy key, generated per deployment> nixos-cloud-deploy"},
	}))
	p.install(c, env)
	return p
}

// install fills in what deploy and install share: lock, nixos-anywhere,
// finalize, and where the configuration lives on the VM.
func (p *Plan) install(c config.Config, env Env) {
	p.Lock = LockArgs()
	p.NixosAnywhere = NixosAnywhereArgs(c.VMName, c.NixChannel)
	p.Proxy = ProxyLine(env.Self)
	for _, st := range finalize.Steps(c) {
		p.Finalize = append(p.Finalize, st.String())
	}
	p.OnVM = []string{nixos.InstalledDir + ": the installed flake, owned by root (flake.nix, azure.nix, configuration.nix, disk-config.nix, settings.json, " +
		nixos.FacterFile + ", " + nixos.LockFile + "); `sudo nixos-rebuild switch` rebuilds it"}
	if c.ConfigRepo != "" {
		p.OnVM = append(p.OnVM, finalize.ConfigDir(c.UserName)+": config-repo, "+c.UserName+"'s checkout, the running system (#"+c.ConfigFlakeAttr+")")
	}
}

// installTargets describes the machine command: install works on; nothing
// is created.
func installTargets(c config.Config) []Resource {
	access := "authorise the deploy key for root, read the host key, check memory, Secure Boot and whether it already runs NixOS"
	if t := c.Target; t != nil {
		login := t.User + " with target-ssh-key"
		if t.User != "root" {
			login += ", then sudo -n"
		}
		return []Resource{{Kind: "existing host", Name: t.Addr(), Props: []Prop{
			{"host key", ssh.FingerprintSHA256(t.HostKey) + " (target-host-key)"},
			{"first login", login},
			{"over SSH", access},
		}}}
	}
	power := "refused if stopped"
	if c.StartIfStopped {
		power = "started if stopped (start-if-stopped)"
	}
	return []Resource{{Kind: "Microsoft.Compute/virtualMachines (existing)", Name: c.VMName, Props: []Prop{
		{"resource group", c.ResourceGroup},
		{"read over ARM", "public IP, FQDN, size (memory), power state, " + TagSSHHostKey + " tag"},
		{"power", power},
		{"Run Command (RunShellScript)", access},
	}}}
}

// switchPlan describes command switch: the machine it moves, and how.
func switchPlan(p Plan, c config.Config) Plan {
	sc := c.Switch
	login := sc.User + " with deploy-key"
	if sc.User != "root" || c.Target != nil && len(c.Target.Key) > 0 {
		login = sc.User + " with target-ssh-key"
	}
	if sc.User != "root" {
		login += ", then sudo -n"
	}
	repo := c.ConfigRepo
	ref := c.ConfigRef
	if ref == "" && repo != config.WorkspaceRepo {
		ref = "its default branch"
	}
	if repo == config.WorkspaceRepo {
		repo = "the workflow's checkout (.)"
		ref = "the commit checked out"
	}
	if t := c.Target; t != nil {
		p.FQDN = t.Host
		p.Where = "onto host " + t.Addr()
		p.Resources = []Resource{{Kind: "existing NixOS host", Name: t.Addr(), Props: []Prop{
			{"host key", ssh.FingerprintSHA256(t.HostKey) + " (target-host-key)"},
			{"login", login},
			{"switch to", repo + " at " + ref + ", attribute " + c.ConfigFlakeAttr},
		}}}
	} else {
		p.Where = fmt.Sprintf("in %s (%s), resource group %s", c.Location, c.Azure.Environment, c.ResourceGroup)
		power := "refused if stopped"
		if c.StartIfStopped {
			power = "started if stopped (start-if-stopped)"
		}
		p.Resources = []Resource{{Kind: "Microsoft.Compute/virtualMachines (existing)", Name: c.VMName, Props: []Prop{
			{"resource group", c.ResourceGroup},
			{"read over ARM", "public IP, FQDN, power state, " + TagSSHHostKey + " tag (the pinned host key)"},
			{"power", power},
			{"login", login},
			{"switch to", repo + " at " + ref + ", attribute " + c.ConfigFlakeAttr},
		}}}
	}
	p.Switch = rollout.Plan{
		Repo: c.ConfigRepo, Ref: c.ConfigRef, Attr: c.ConfigFlakeAttr, User: sc.User,
		BuildOn: sc.BuildOn, Confirm: sc.ConfirmTimeout, DryRun: c.DryRun,
	}.Steps()
	return p
}

func withHostKeyTag(t map[string]string) map[string]string {
	t[TagSSHHostKey] = hostKeyTagValue
	return t
}

// Placeholders for what is only known during the run. They hold no
// whitespace, like the real values (nixos-anywhere splits ssh options at
// spaces).
const (
	WorkDirPlaceholder  = "$WORKDIR"
	PublicIPPlaceholder = "$PUBLIC_IP"
)

// flakePlaceholder is where the run renders the flake: inside the extra
// files, at the path it gets on the VM.
const flakePlaceholder = WorkDirPlaceholder + "/extra" + nixos.InstalledDir

// LockArgs is the nix command line the lock step runs, with placeholders.
func LockArgs() []string {
	return append([]string{"nix"}, nixos.LockArgs(flakePlaceholder)...)
}

// NixosAnywhereArgs is the nixos-anywhere command line the install runs,
// built by the same code as the real one, with placeholders.
func NixosAnywhereArgs(attr, channel string) []string {
	a := nixos.Args{
		Flake:        "path:" + flakePlaceholder + "#" + attr,
		FacterReport: flakePlaceholder + "/" + nixos.FacterFile,
		IdentityFile: WorkDirPlaceholder + "/deploy-key",
		ProxyCommand: WorkDirPlaceholder + "/proxy",
		Host:         PublicIPPlaceholder,
		KexecURL:     nixos.KexecImageURL(channel, "x86_64-linux"),
		ExtraFiles:   WorkDirPlaceholder + "/extra",
	}
	argv, err := a.Argv()
	if err != nil {
		panic("plan: placeholder arguments rejected: " + err.Error()) // a bug, caught by the tests
	}
	return append([]string{"nixos-anywhere"}, argv...)
}

// ProxyLine describes the proxy script that nixos-anywhere's ssh runs.
func ProxyLine(self string) string {
	if self == "" {
		self = "nixos-cloud-deploy"
	}
	return WorkDirPlaceholder + "/proxy runs: " + self + " proxy --addr " + PublicIPPlaceholder + ":22 --host-key '<pinned host key>' --identity " + WorkDirPlaceholder + "/deploy-key --user root"
}

func formatTags(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + t[k]
	}
	return strings.Join(parts, ", ")
}

// adminUser says which keys the VM's osProfile gets: Azure takes only ssh-rsa
// of 2048 bits or more and ssh-ed25519 there (azure.AcceptsSSHKey); the
// installed NixOS gets every key of ssh-public-keys through settings.json.
func adminUser(c config.Config) string {
	accepted, refused := azure.SSHKeysAzureAccepts(c.SSHPublicKeys)
	switch {
	case len(accepted) == 0 && len(refused) == 0:
		return c.UserName + ", the deploy key only (Azure needs one; no ssh-public-keys given), no password"
	case len(accepted) == 0:
		return fmt.Sprintf("%s, the deploy key only (Azure needs one and takes none of your %d key(s); all reach the installed NixOS), no password", c.UserName, len(refused))
	case len(refused) == 0:
		return fmt.Sprintf("%s, %d SSH key(s), no password", c.UserName, len(accepted))
	default:
		return fmt.Sprintf("%s, %d SSH key(s) (%d more of types Azure refuses reach the installed NixOS only), no password", c.UserName, len(accepted), len(refused))
	}
}
