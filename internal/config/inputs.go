// Package config defines every input of the action once, reads it from the
// GitHub Actions environment or from command-line flags, and validates it.
package config

import (
	"reflect"
	"slices"
	"strings"
	"sync"
)

// Inputs holds the raw, unvalidated input values as strings. Every input of
// the action is one field here and nowhere else: the env tag gives its name
// (VM_NAME is the input "vm-name", the flag --vm-name and the variable
// INPUT_VM-NAME) and default, the other tags what a user reads about it.
// action.yml, the README tables and the flags are checked against or derived
// from this struct.
//
// Tags: short is the one-letter flag the original scripts had; secret inputs
// are masked before anything prints and never echoed in errors; fallback names
// the environment variable read when the input is empty.
type Inputs struct {
	Command           string `env:"COMMAND, default=deploy" desc:"What to do: plan (print the plan and stop, no credentials needed), deploy (create the VM and install NixOS), install (install NixOS onto an existing Azure VM, or onto target-host), switch (move a running NixOS VM to a new revision of config-repo, rolled back by the VM itself unless confirmed), or destroy (delete the resource group, only when it is tagged as ours)."`
	DryRun            string `env:"DRY_RUN, default=false" desc:"Show what the command would do and change nothing. For switch: evaluate and build the new system and show the closure diff and the download size; nothing is activated (nothing is copied either, except the derivations with build-on: target)."`
	VMName            string `env:"VM_NAME, default=az-nixos" short:"n" desc:"Name of the VM; also its host name and the DNS label of its public IP."`
	ResourceGroup     string `env:"RESOURCE_GROUP" short:"g" desc:"Azure resource group holding everything this deployment creates. Defaults to the vm-name."`
	Location          string `env:"LOCATION, default=uksouth" short:"l" desc:"Azure region, lower-case (for example uksouth, westeurope, eastus2)."`
	Size              string `env:"SIZE, default=Standard_B4ms" short:"s" desc:"Azure VM size. Sizes with less than 1.5 GB of memory are refused: nixos-anywhere's kexec installer needs it."`
	Image             string `env:"IMAGE, default=Canonical:ubuntu-24_04-lts:server:latest" short:"i" desc:"Image URN publisher:offer:sku:version of the system that is replaced by NixOS. It must allow kexec."`
	OSDiskSizeGB      string `env:"OS_DISK_SIZE_GB, default=64" desc:"OS disk size in GB (30-4095)."`
	UserName          string `env:"USER_NAME, default=nixos" short:"u" desc:"Your user on the VM: in wheel, passwordless sudo, logs in with ssh-public-keys."`
	SSHPublicKeys     string `env:"SSH_PUBLIC_KEYS" desc:"Your SSH public keys, one authorized_keys line each (required for deploy)."`
	NixChannel        string `env:"NIX_CHANNEL, default=nixos-26.05" desc:"NixOS channel the installed system follows: nixos-YY.MM or nixos-unstable."`
	ConfigRepo        string `env:"CONFIG_REPO" desc:"Git URL of your own NixOS configuration flake, switched to after the install (optional; required for switch). For switch, . is the workflow's own checkout."`
	ConfigFlakeAttr   string `env:"CONFIG_FLAKE_ATTR" desc:"nixosConfigurations attribute of config-repo to switch to. Defaults to the vm-name."`
	ConfigRef         string `env:"CONFIG_REF" desc:"switch: branch, tag or full commit hash of config-repo to switch to. Default: its default branch."`
	BuildOn           string `env:"BUILD_ON, default=local" desc:"switch: where the new system is built: local (in the action's container, then copied to the VM, which fetches what it can from its own substituters) or target (on the VM)."`
	GitHubSSHKey      string `env:"GITHUB_SSH_KEY" secret:"true" desc:"Private SSH key for config-repo (a deploy key): the VM clones with it after the install; switch fetches with it. Secret."`
	DeployKey         string `env:"DEPLOY_KEY" secret:"true" desc:"Private key root on the VM accepts (a secret, the same every run). Default: a new key per deployment, so a re-run of an existing VM cannot log in and skips install and finalize."`
	AutoShutdown      string `env:"AUTO_SHUTDOWN" desc:"Daily auto-shutdown time HH:MM in UTC (optional)."`
	CleanupOnFailure  string `env:"CLEANUP_ON_FAILURE, default=false" desc:"Delete the resource group when the deployment fails (only when it is tagged as ours)."`
	ForceReinstall    string `env:"FORCE_REINSTALL, default=false" desc:"Install NixOS again even when the VM already runs NixOS with our pinned host key."`
	StartIfStopped    string `env:"START_IF_STOPPED, default=false" desc:"install: start an existing Azure VM that is stopped or deallocated instead of refusing."`
	TargetHost        string `env:"TARGET_HOST" desc:"install, switch: any Linux host reachable over SSH, as address or address:port, instead of an Azure VM. No Azure credentials needed."`
	TargetHostKey     string `env:"TARGET_HOST_KEY" desc:"install, switch: target-host's SSH host key, a known_hosts line or a public key (ssh-keyscan is trust on first use; read it on the host: cat /etc/ssh/ssh_host_ed25519_key.pub)."`
	TargetUser        string `env:"TARGET_USER, default=root" desc:"install, switch: the user who logs in: root, or a user with passwordless sudo (install: the first login on target-host)."`
	TargetSSHKey      string `env:"TARGET_SSH_KEY" secret:"true" desc:"install, switch: private key of target-user (install: for the first login on target-host; switch: instead of deploy-key). Secret."`
	AzureClientID     string `env:"AZURE_CLIENT_ID" fallback:"AZURE_CLIENT_ID" desc:"Client (application) id of the Entra app or managed identity. Falls back to $AZURE_CLIENT_ID."`
	AzureTenantID     string `env:"AZURE_TENANT_ID" fallback:"AZURE_TENANT_ID" desc:"Entra tenant id. Falls back to $AZURE_TENANT_ID."`
	AzureSubID        string `env:"AZURE_SUBSCRIPTION_ID" fallback:"AZURE_SUBSCRIPTION_ID" desc:"Azure subscription id. Falls back to $AZURE_SUBSCRIPTION_ID."`
	AzureSecret       string `env:"AZURE_CLIENT_SECRET" fallback:"AZURE_CLIENT_SECRET" secret:"true" desc:"Client secret. When given it is used, even where GitHub OIDC would work (as azure/login does); leave it empty to use OIDC. Falls back to $AZURE_CLIENT_SECRET. Secret."`
	AzureEnvironment  string `env:"AZURE_ENVIRONMENT, default=AzureCloud" desc:"Azure cloud: AzureCloud, AzureChinaCloud, AzureUSGovernment or AzureStack."`
	ARMEndpoint       string `env:"ARM_ENDPOINT" desc:"Resource Manager endpoint (https URL); required for AzureStack, whose login and token audience it names (a public-cloud login or audience is refused)."`
	AzureOIDCAudience string `env:"AZURE_OIDC_AUDIENCE" desc:"Audience of the GitHub OIDC token exchanged with Entra ID; the app's federated credential must name the same. Default: the cloud's, api://AzureADTokenExchange (AzureUSGovernment: api://AzureADTokenExchangeUSGov, AzureChinaCloud: api://AzureADTokenExchangeChina)."`
	SSHTimeout        string `env:"SSH_TIMEOUT, default=10m" desc:"How long to wait for SSH on the VM (Go duration)."`
	InstallTimeout    string `env:"INSTALL_TIMEOUT, default=45m" desc:"How long nixos-anywhere may take (Go duration)."`
	ConfirmTimeout    string `env:"CONFIRM_TIMEOUT, default=60s" desc:"switch: how long the VM waits after activating for the action to confirm over a new SSH connection before it rolls back by itself (Go duration, 10s to 1h)."`
}

// Input describes one input of the action.
type Input struct {
	Name        string // action input and long flag: "vm-name"
	Env         string // go-envconfig key: "VM_NAME"
	Short       string // one-letter flag, if any
	Default     string // static default; "" when none or derived
	Description string
	Secret      bool
	Fallback    string // environment variable read when the input is empty
	field       int
}

// Definitions lists every input in declaration order.
func Definitions() []Input { return slices.Clone(definitions()) }

// definitions reads the struct tags once.
var definitions = sync.OnceValue(func() []Input {
	t := reflect.TypeFor[Inputs]()
	defs := make([]Input, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		key, opts, _ := strings.Cut(f.Tag.Get("env"), ",")
		in := Input{
			Name:        strings.ToLower(strings.ReplaceAll(key, "_", "-")),
			Env:         key,
			Short:       f.Tag.Get("short"),
			Description: f.Tag.Get("desc"),
			Secret:      f.Tag.Get("secret") == "true",
			Fallback:    f.Tag.Get("fallback"),
			field:       i,
		}
		for _, o := range strings.Split(opts, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(o), "default="); ok {
				in.Default = v
			}
		}
		defs = append(defs, in)
	}
	return defs
})

// Get returns the raw value of the input with the given name.
func (in *Inputs) Get(name string) string {
	for _, d := range definitions() {
		if d.Name == name {
			return reflect.ValueOf(in).Elem().Field(d.field).String()
		}
	}
	return ""
}

// Set sets the raw value of the input with the given name; it reports
// whether such an input exists.
func (in *Inputs) Set(name, value string) bool {
	for _, d := range definitions() {
		if d.Name == name {
			reflect.ValueOf(in).Elem().Field(d.field).SetString(value)
			return true
		}
	}
	return false
}

// Secrets returns the non-empty values of the secret inputs, for masking.
func (in *Inputs) Secrets() []string {
	var out []string
	for _, d := range definitions() {
		if !d.Secret {
			continue
		}
		if v := reflect.ValueOf(in).Elem().Field(d.field).String(); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Output describes one output of the action.
type Output struct {
	Name        string
	Description string
}

// Outputs lists every output of the action (a contract, like the inputs).
func Outputs() []Output {
	return []Output{
		{"fqdn", "Fully qualified domain name of the VM as Azure answers it (<vm>.<hash>.<location>.cloudapp.azure.com: the DNS label is scoped to the resource group)."},
		{"public-ip", "Public IP address of the VM."},
		{"resource-group", "Resource group that holds the deployment."},
		{"vm-id", "Azure resource id of the VM."},
		{"ssh-host-key", "The VM's pinned SSH host key as a known_hosts line."},
		{"ssh-command", "Command to log in as user-name with host-key checking on."},
		{"facter-report", "Path of the saved nixos-facter hardware report (facter.json), relative to the workspace."},
		{"generation", "switch: the system generation the VM runs after the run (the new one, or the one it rolled back to)."},
		{"previous-generation", "switch: the generation the VM ran before the switch."},
		{"system-path", "switch: the Nix store path of the system the VM runs after the run."},
		{"nixpkgs-revision", "The nixpkgs commit the install locked (flake.lock, saved next to facter.json); empty when nothing was installed."},
	}
}
