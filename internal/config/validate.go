package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
)

// Command is what the action does. The zero value is Unknown, never a command
// with side effects.
type Command int

const (
	Unknown Command = iota
	Plan
	Deploy
	Destroy
	Install
	Switch
)

var commandNames = map[Command]string{Plan: "plan", Deploy: "deploy", Destroy: "destroy", Install: "install", Switch: "switch"}

// commandList is the order the commands are named in messages.
var commandList = []string{"plan", "deploy", "install", "switch", "destroy"}

// Where switch builds the new system.
const (
	BuildLocal  = "local"  // in the action's container, then copied to the VM
	BuildTarget = "target" // on the VM itself
)

// WorkspaceRepo is the config-repo value that means the workflow's own
// checkout (switch only).
const WorkspaceRepo = "."

func (c Command) String() string {
	if s, ok := commandNames[c]; ok {
		return s
	}
	return "unknown"
}

// Azure environments.
const (
	AzureCloud        = "AzureCloud"
	AzureChinaCloud   = "AzureChinaCloud"
	AzureUSGovernment = "AzureUSGovernment"
	AzureStack        = "AzureStack"
)

// Config is the validated configuration of one run.
type Config struct {
	Command          Command
	VMName           string
	ResourceGroup    string
	Location         string
	Size             string
	Image            string
	OSDiskSizeGB     int32
	UserName         string
	SSHPublicKeys    []string // normalised authorized_keys lines
	NixChannel       string
	ConfigRepo       string // a git URL, or WorkspaceRepo
	ConfigFlakeAttr  string
	ConfigRef        string // switch: branch, tag or commit; "" is the default branch
	GitHubSSHKey     []byte // private key, LF line endings; secret
	DeployKey        []byte // private key for root, LF line endings; secret; nil: generate one
	AutoShutdown     string // "HH:MM" UTC or ""
	CleanupOnFailure bool
	ForceReinstall   bool
	StartIfStopped   bool
	Target           *Target // install onto any host; nil: an Azure VM
	Azure            Azure
	SSHTimeout       time.Duration
	InstallTimeout   time.Duration
	DryRun           bool
	// Switch holds what only command switch uses; nil for the others.
	Switch *SwitchConfig
	// Warnings are about inputs that are used but look wrong (a location
	// this version does not know); the caller prints them.
	Warnings []string
}

// SwitchConfig is how switch reaches the machine and moves it to the new
// system.
type SwitchConfig struct {
	// User logs in (root, or a user with passwordless sudo) with Key:
	// target-ssh-key when given, else deploy-key.
	User string
	Key  []byte // secret
	// BuildOn is BuildLocal or BuildTarget.
	BuildOn string
	// ConfirmTimeout is how long the VM waits for the confirmation after
	// activating before it rolls back by itself.
	ConfirmTimeout time.Duration
}

// Target is a host that install reaches by address, without Azure.
type Target struct {
	Host    string // host name or IP
	Port    int
	HostKey ssh.PublicKey
	User    string
	Key     []byte // private key for the first login; secret
}

// Addr is host:port.
func (t *Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Azure holds the Azure identity and cloud.
type Azure struct {
	ClientID       string
	TenantID       string
	SubscriptionID string
	ClientSecret   string // secret
	Environment    string
	ARMEndpoint    string
	OIDCAudience   string // "" means the cloud's default
}

// Parse validates raw inputs into a Config. It reports every invalid input at
// once (errors.Join of *FieldError), each naming the input, the value and the
// rule; secret values are never part of an error.
func Parse(in Inputs) (Config, error) {
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c := Config{
		VMName:          in.VMName,
		ResourceGroup:   in.ResourceGroup,
		Location:        in.Location,
		Size:            in.Size,
		Image:           in.Image,
		UserName:        in.UserName,
		NixChannel:      in.NixChannel,
		ConfigRepo:      strings.TrimSpace(in.ConfigRepo),
		ConfigFlakeAttr: in.ConfigFlakeAttr,
		AutoShutdown:    in.AutoShutdown,
		Azure: Azure{
			ClientID:       strings.TrimSpace(in.AzureClientID),
			TenantID:       strings.TrimSpace(in.AzureTenantID),
			SubscriptionID: strings.TrimSpace(in.AzureSubID),
			ClientSecret:   in.AzureSecret,
			Environment:    in.AzureEnvironment,
			ARMEndpoint:    strings.TrimRight(strings.TrimSpace(in.ARMEndpoint), "/"),
			OIDCAudience:   strings.TrimSpace(in.AzureOIDCAudience),
		},
	}
	var err error
	c.Command, err = ParseCommand(in.Command)
	check(err)
	check(CheckVMName(c.VMName))
	if c.ResourceGroup == "" {
		c.ResourceGroup = c.VMName
	} else {
		check(CheckResourceGroup(c.ResourceGroup))
	}
	check(CheckLocation(c.Location))
	if w := LocationWarning(c.Location); w != "" {
		c.Warnings = append(c.Warnings, w)
	}
	check(CheckSize(c.Size))
	check(CheckImage(c.Image))
	c.OSDiskSizeGB, err = parseDiskSize(in.OSDiskSizeGB)
	check(err)
	check(CheckUserName(c.UserName))
	c.SSHPublicKeys, err = ParseAuthorizedKeys("ssh-public-keys", in.SSHPublicKeys)
	check(err)
	if strings.TrimSpace(in.SSHPublicKeys) == "" && (c.Command == Deploy || c.Command == Install) {
		check(&FieldError{Input: "ssh-public-keys", Rule: "required for " + c.Command.String() + ": give at least one authorized_keys line (for example the contents of ~/.ssh/id_ed25519.pub), or you could not log in"})
	}
	check(CheckChannel(c.NixChannel))
	if c.ConfigRepo == WorkspaceRepo {
		if c.Command != Switch {
			check(&FieldError{Input: "config-repo", Value: c.ConfigRepo, Rule: "the workflow's own checkout is only used by switch; deploy and install clone config-repo on the VM, so give its git URL"})
		}
	} else if c.ConfigRepo != "" {
		check(checkGitURL(c.ConfigRepo))
	}
	c.ConfigRef = strings.TrimSpace(in.ConfigRef)
	check(checkConfigRef(c.ConfigRef, c.ConfigRepo, c.Command))
	if c.ConfigFlakeAttr == "" {
		c.ConfigFlakeAttr = c.VMName
	} else {
		check(checkFlakeAttr(c.ConfigFlakeAttr))
	}
	if in.GitHubSSHKey != "" {
		c.GitHubSSHKey, err = ParsePrivateKey("github-ssh-key", in.GitHubSSHKey)
		check(err)
		if c.ConfigRepo == "" {
			check(&FieldError{Input: "github-ssh-key", Secret: true, Rule: "given without config-repo; it is only used to clone config-repo"})
		}
	}
	if in.DeployKey != "" {
		c.DeployKey, err = ParsePrivateKey("deploy-key", in.DeployKey)
		check(err)
	}
	if c.AutoShutdown != "" {
		check(checkClock(c.AutoShutdown))
	}
	c.CleanupOnFailure, err = parseBool("cleanup-on-failure", in.CleanupOnFailure)
	check(err)
	c.ForceReinstall, err = parseBool("force-reinstall", in.ForceReinstall)
	check(err)
	c.StartIfStopped, err = parseBool("start-if-stopped", in.StartIfStopped)
	check(err)
	c.Target, err = parseTarget(in, c.Command)
	check(err)
	c.DryRun, err = parseBool("dry-run", in.DryRun)
	check(err)
	c.Switch, err = parseSwitch(in, c)
	check(err)
	check(checkGUID("azure-client-id", c.Azure.ClientID))
	check(checkTenant(c.Azure.TenantID))
	check(checkGUID("azure-subscription-id", c.Azure.SubscriptionID))
	if c.Azure.SubscriptionID == "" && (c.Command == Deploy || c.Command == Destroy || (c.Command == Install || c.Command == Switch) && c.Target == nil) {
		check(&FieldError{Input: "azure-subscription-id", Rule: "required for " + c.Command.String() + ": the subscription to create the VM in (or set AZURE_SUBSCRIPTION_ID)"})
	}
	check(checkEnvironment(c.Azure.Environment, c.Azure.ARMEndpoint))
	check(checkAudience(c.Azure.OIDCAudience))
	c.SSHTimeout, err = parseTimeout("ssh-timeout", in.SSHTimeout)
	check(err)
	c.InstallTimeout, err = parseTimeout("install-timeout", in.InstallTimeout)
	check(err)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// ParseCommand accepts plan, deploy, install, switch and destroy.
func ParseCommand(s string) (Command, error) {
	for c, name := range commandNames {
		if s == name {
			return c, nil
		}
	}
	return Unknown, &FieldError{Input: "command", Value: s, Rule: "must be plan, deploy, install, switch or destroy" + didYouMean(s, commandList)}
}

// parseSwitch reads what only switch uses. A new per-run key cannot log in
// to a running machine, so switch needs a key the machine already accepts.
func parseSwitch(in Inputs, c Config) (*SwitchConfig, error) {
	buildOn := strings.TrimSpace(in.BuildOn)
	var errs []error
	if buildOn != BuildLocal && buildOn != BuildTarget {
		errs = append(errs, &FieldError{Input: "build-on", Value: buildOn, Rule: "must be local (build in the action's container) or target (build on the VM)"})
	}
	timeout, err := parseTimeout("confirm-timeout", in.ConfirmTimeout)
	if err == nil && (timeout < 10*time.Second || timeout > time.Hour) {
		err = &FieldError{Input: "confirm-timeout", Value: in.ConfirmTimeout, Rule: "must be from 10s to 1h: the action needs a new SSH connection to confirm within it"}
	}
	if err != nil {
		errs = append(errs, err)
	}
	if c.Command != Switch {
		return nil, errors.Join(errs...)
	}
	if c.ConfigRepo == "" {
		errs = append(errs, &FieldError{Input: "config-repo", Rule: "required for switch: the flake to switch to, a git URL or . for the workflow's own checkout (the GitOps case)"})
	}
	sc := &SwitchConfig{User: strings.TrimSpace(in.TargetUser), BuildOn: buildOn, ConfirmTimeout: timeout}
	if sc.User == "" {
		sc.User = "root"
	}
	if err := CheckUserName(sc.User); err != nil && sc.User != "root" && c.Target == nil {
		// With target-host, parseTarget reported it already.
		errs = append(errs, &FieldError{Input: "target-user", Value: sc.User, Rule: "must be root or a Linux user name"})
	}
	switch {
	case strings.TrimSpace(in.TargetSSHKey) != "":
		if sc.Key, err = ParsePrivateKey("target-ssh-key", in.TargetSSHKey); err != nil && c.Target == nil {
			// With target-host, parseTarget reported it already.
			errs = append(errs, err)
		}
	case in.DeployKey != "":
		sc.Key, _ = ParsePrivateKey("deploy-key", in.DeployKey) // reported by Parse
		if sc.User != "root" {
			errs = append(errs, &FieldError{Input: "target-user", Value: sc.User, Rule: "switch logs in with deploy-key as root; give target-ssh-key to log in as another user"})
		}
	default:
		errs = append(errs, &FieldError{Input: "deploy-key", Rule: "switch needs a key the machine accepts: deploy-key (root) or target-ssh-key (target-user, with passwordless sudo); a new key per run could not log in"})
	}
	return sc, errors.Join(errs...)
}

// refComponentRE is one component of a git ref name, as git
// check-ref-format(1) allows it: no control characters, space, ~ ^ : ? * [
// or backslash, not starting with '.', not ending with ".lock".
var refComponentRE = regexp.MustCompile(`^[^\x00-\x20\x7f~^:?*\[\\.][^\x00-\x20\x7f~^:?*\[\\]*$`)

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// checkConfigRef applies git's ref name rules (git check-ref-format(1);
// Nix's fetcher refuses what they refuse, libfetchers/git.cc) or takes a
// full commit hash, which Nix needs as rev= (a short one is ambiguous).
func checkConfigRef(ref, repo string, cmd Command) error {
	if ref == "" {
		return nil
	}
	if cmd != Switch && cmd != Plan {
		return &FieldError{Input: "config-ref", Value: ref, Rule: "only used with command switch; deploy and install clone config-repo's default branch"}
	}
	if repo == WorkspaceRepo || repo == "" {
		return &FieldError{Input: "config-ref", Value: ref, Rule: "selects a revision of a config-repo URL; with config-repo . the checkout is used as it is (choose the revision with actions/checkout's ref)"}
	}
	return CheckConfigRef(ref)
}

// CheckConfigRef checks a branch or tag name by git's rules, or a full
// commit hash (the bot's /switch --ref uses it too).
func CheckConfigRef(ref string) error {
	if commitRE.MatchString(ref) {
		return nil
	}
	ok := !strings.HasPrefix(ref, "-") && !strings.HasSuffix(ref, "/") && !strings.HasSuffix(ref, ".") &&
		!strings.Contains(ref, "..") && !strings.Contains(ref, "@{") && ref != "@"
	for _, comp := range strings.Split(ref, "/") {
		ok = ok && refComponentRE.MatchString(comp) && !strings.HasSuffix(comp, ".lock")
	}
	if !ok {
		return &FieldError{Input: "config-ref", Value: ref, Rule: "must be a branch or tag name (git check-ref-format rules) or a full 40-character commit hash"}
	}
	return nil
}

// parseTarget reads target-host and its companions. There is no way to
// verify a host key learnt over the network itself, so target-host-key is
// required, and so is a key for the first login.
func parseTarget(in Inputs, cmd Command) (*Target, error) {
	host := strings.TrimSpace(in.TargetHost)
	if host == "" {
		var errs []error
		for name, v := range map[string]string{"target-host-key": in.TargetHostKey, "target-ssh-key": in.TargetSSHKey} {
			if name == "target-ssh-key" && cmd == Switch {
				continue // switch logs in to an Azure VM with it too
			}
			if strings.TrimSpace(v) != "" {
				errs = append(errs, &FieldError{Input: name, Secret: name == "target-ssh-key", Rule: "only used with target-host"})
			}
		}
		return nil, errors.Join(errs...)
	}
	var errs []error
	if cmd != Install && cmd != Switch && cmd != Plan {
		errs = append(errs, &FieldError{Input: "target-host", Value: host, Rule: "only used with command install or switch (or plan): deploy creates an Azure VM"})
	}
	t := &Target{User: in.TargetUser}
	var err error
	if t.Host, t.Port, err = parseHostPort("target-host", host); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(in.TargetHostKey) == "" {
		errs = append(errs, &FieldError{Input: "target-host-key", Rule: "required with target-host: the only way to know it is the right host; read it on the host (cat /etc/ssh/ssh_host_ed25519_key.pub) or from your provider's console"})
	} else if k, err := parseHostKey("target-host-key", in.TargetHostKey); err != nil {
		errs = append(errs, err)
	} else {
		t.HostKey = k
	}
	if err := CheckUserName(t.User); err != nil && t.User != "root" {
		errs = append(errs, &FieldError{Input: "target-user", Value: t.User, Rule: "must be root or a Linux user name"})
	}
	if strings.TrimSpace(in.TargetSSHKey) == "" {
		if cmd != Switch { // switch may log in with deploy-key
			errs = append(errs, &FieldError{Input: "target-ssh-key", Rule: "required with target-host: the private key target-user logs in with the first time"})
		}
	} else if key, err := ParsePrivateKey("target-ssh-key", in.TargetSSHKey); err != nil {
		errs = append(errs, err)
	} else {
		t.Key = key
	}
	return t, errors.Join(errs...)
}

// parseHostPort reads "address" or "address:port": an IPv4 address, an
// IPv6 address (in brackets when a port follows), or a DNS name of RFC 1123
// labels, and nothing else. The value reaches the log, the ssh-command
// output and ssh's command line, so a newline, a space, "$(...)" or a
// leading '-' must never pass.
func parseHostPort(input, s string) (string, int, error) {
	host, port := s, 22
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 || p != strconv.Itoa(n) {
			return "", 0, &FieldError{Input: input, Value: s, Rule: "the port must be a number from 1 to 65535"}
		}
		host, port = h, n
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1] // "[2001:db8::1]" without a port
		if !strings.Contains(host, ":") {
			host = "" // brackets are for IPv6 addresses only
		}
	}
	if net.ParseIP(host) != nil {
		return host, port, nil
	}
	if isDNSName(host) {
		return host, port, nil
	}
	rule := "must be an IP address or a DNS host name (letters, digits, '-' and '.'), optionally with :port; an IPv6 address with a port goes in brackets, [2001:db8::1]:2222"
	if strings.Contains(host, "@") {
		rule += " (user names go in target-user)"
	}
	return "", 0, &FieldError{Input: input, Value: s, Rule: rule}
}

// isDNSName applies RFC 1123's host name rule: at most 253 characters of
// dot-separated labels, each 1-63 letters, digits and hyphens, not starting
// or ending with a hyphen. The last label must not be all digits, or the
// resolver reads the name as an IPv4 address in inet_aton's shorthand
// ("10.1" is 10.0.0.1).
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

var (
	dnsLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	vmNameRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{1,61}[a-z0-9]$`)
	rgRE       = regexp.MustCompile(`^[-\w._()]{1,90}$`)
	locationRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	sizeRE     = regexp.MustCompile(`^[A-Za-z]+_[A-Za-z0-9_-]+$`)
	urnPartRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	versionRE  = regexp.MustCompile(`^(latest|[0-9]+(\.[0-9]+){1,3})$`)
	userRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	channelRE  = regexp.MustCompile(`^nixos-(unstable|[0-9]{2}\.(05|11))(-small)?$`)
	flakeRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_'-]*$`)
	clockRE    = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	guidRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	domainRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$`)
	scpLikeRE  = regexp.MustCompile(`^([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):([^\s]+)$`)
)

// CheckVMName checks the VM name, which is also the host name and DNS label.
func CheckVMName(s string) error {
	if !vmNameRE.MatchString(s) {
		return &FieldError{Input: "vm-name", Value: s, Rule: "must be 3-63 characters of lower-case letters, digits and hyphens, start with a letter and not end with a hyphen (it is also the host name and DNS label)"}
	}
	return nil
}

// CheckResourceGroup applies Azure's resource group naming rule.
func CheckResourceGroup(s string) error {
	if !rgRE.MatchString(s) || strings.HasSuffix(s, ".") {
		return &FieldError{Input: "resource-group", Value: s, Rule: "must be 1-90 characters of letters, digits, '-', '_', '.', '(' and ')', not ending in '.'"}
	}
	return nil
}

// CheckLocation requires a lower-case region name and catches near-misses of
// known public regions ("uk south", "UKSouth", "uksouht").
func CheckLocation(s string) error {
	if knownRegions[s] {
		return nil
	}
	norm := strings.ToLower(strings.NewReplacer(" ", "", "-", "", "_", "").Replace(s))
	if knownRegions[norm] {
		return &FieldError{Input: "location", Value: s, Rule: fmt.Sprintf("must be the region's lower-case name without spaces; did you mean %q?", norm)}
	}
	if !locationRE.MatchString(s) {
		return &FieldError{Input: "location", Value: s, Rule: "must be a lower-case region name of letters and digits, for example uksouth"}
	}
	// An unknown, well-formed name may be a new region or an Azure Stack
	// location: Azure itself is the judge (deploy's pre-flight check refuses
	// a location that offers no VM sizes before anything is created), and
	// LocationWarning says what it may have meant.
	return nil
}

// LocationWarning is a warning for a well-formed location this version does
// not know, with the nearest known region, or "".
func LocationWarning(s string) string {
	if knownRegions[s] || !locationRE.MatchString(s) {
		return ""
	}
	return fmt.Sprintf("location %q is not a region this version knows%s: it is used as given (new regions appear), and Azure refuses it if it does not exist", s, didYouMean(s, regionNames()))
}

// CheckSize checks a VM size name and refuses known sizes with too little
// memory for nixos-anywhere's kexec installer.
func CheckSize(s string) error {
	if !sizeRE.MatchString(s) {
		return &FieldError{Input: "size", Value: s, Rule: "must be an Azure VM size name such as Standard_B4ms"}
	}
	if mem, ok := SizeMemoryGB(s); ok && mem < MinMemoryGB {
		return &FieldError{Input: "size", Value: s, Rule: fmt.Sprintf("has %.2g GB of memory; nixos-anywhere's kexec installer needs at least %.1f GB (try Standard_B2s or Standard_B4ms)", mem, MinMemoryGB)}
	}
	return nil
}

// CheckImage checks an image URN publisher:offer:sku:version.
func CheckImage(s string) error {
	parts := strings.Split(s, ":")
	ok := len(parts) == 4
	for i, p := range parts {
		if !ok {
			break
		}
		if i == 3 {
			ok = versionRE.MatchString(p)
		} else {
			ok = urnPartRE.MatchString(p)
		}
	}
	if !ok {
		return &FieldError{Input: "image", Value: s, Rule: "must be an image URN publisher:offer:sku:version, for example Canonical:ubuntu-24_04-lts:server:latest"}
	}
	return nil
}

// reservedUsers are admin user names Azure refuses, plus root.
var reservedUsers = map[string]bool{
	"root": true, "administrator": true, "admin": true, "user": true, "user1": true, "test": true,
	"user2": true, "test1": true, "user3": true, "admin1": true, "1": true, "123": true, "a": true,
	"actuser": true, "adm": true, "admin2": true, "aspnet": true, "backup": true, "console": true,
	"david": true, "guest": true, "john": true, "owner": true, "server": true, "sql": true,
	"support": true, "support_388945a0": true, "sys": true, "test2": true, "test3": true,
	"user4": true, "user5": true, "nixbld": true,
}

// CheckUserName applies Linux user name rules and Azure's reserved names.
func CheckUserName(s string) error {
	if !userRE.MatchString(s) {
		return &FieldError{Input: "user-name", Value: s, Rule: "must be 1-32 characters of lower-case letters, digits, '_' and '-', starting with a letter or '_'"}
	}
	if reservedUsers[s] {
		return &FieldError{Input: "user-name", Value: s, Rule: "is reserved: Azure refuses it as the admin user (or it is root); pick another, for example nixos"}
	}
	return nil
}

// ParsePrivateKey parses an OpenSSH/PEM private key without a passphrase,
// tolerating CRLF line endings (keys pasted on Windows). The error never
// contains the key.
func ParsePrivateKey(input, s string) ([]byte, error) {
	b := []byte(strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")) + "\n")
	if _, err := ssh.ParsePrivateKey(b); err != nil {
		rule := "must be an unencrypted private key in OpenSSH or PEM format"
		var pe *ssh.PassphraseMissingError
		if errors.As(err, &pe) {
			rule = "is encrypted with a passphrase; use a deploy key without one (it is stored as a secret)"
		}
		return nil, &FieldError{Input: input, Secret: true, Rule: rule}
	}
	return b, nil
}

// CheckChannel accepts nixos-YY.MM (a release) and nixos-unstable, as far
// as the bundled nix-config supports them (the nixos package knows which).
func CheckChannel(s string) error {
	if !channelRE.MatchString(s) {
		return &FieldError{Input: "nix-channel", Value: s, Rule: "must be nixos-YY.MM (a release, May or November: nixos-26.05) or nixos-unstable"}
	}
	if err := nixos.ValidateChannel(s); err != nil {
		_, rule, _ := strings.Cut(err.Error(), ": ")
		return &FieldError{Input: "nix-channel", Value: s, Rule: rule}
	}
	return nil
}

// checkGitURL accepts the git URLs the VM clones config-repo from: scp-like
// (git@github.com:OWNER/REPO.git), ssh://, git:// and https://. It refuses
// credentials in the URL: the value is printed in the plan, the summary and
// the log, and it is on the VM's command line. And it refuses a leading '-',
// which git would read as an option (the clone also passes it after "--").
func checkGitURL(s string) error {
	if strings.HasPrefix(s, "-") {
		return &FieldError{Input: "config-repo", Value: s, Rule: "must not start with '-' (git would read it as an option); give a git URL such as git@github.com:OWNER/REPO.git"}
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 || !utf8.ValidString(s) {
		return &FieldError{Input: "config-repo", Value: redactURL(s), Rule: "must not contain control characters or bytes that are not UTF-8"}
	}
	if m := scpLikeRE.FindStringSubmatch(s); m != nil {
		if strings.HasPrefix(m[2], "-") {
			return &FieldError{Input: "config-repo", Value: s, Rule: "the host must not start with '-' (ssh would read it as an option)"}
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Path == "" || strings.HasPrefix(u.Host, "-") {
		return &FieldError{Input: "config-repo", Value: redactURL(s), Rule: "must be a git URL: git@github.com:OWNER/REPO.git, ssh://... or https://..."}
	}
	switch u.Scheme {
	case "ssh":
		if u.User != nil {
			if strings.HasPrefix(u.User.Username(), "-") {
				return &FieldError{Input: "config-repo", Value: redactURL(s), Rule: "the user must not start with '-' (ssh would read it as an option)"}
			}
			if _, hasPassword := u.User.Password(); hasPassword {
				return &FieldError{Input: "config-repo", Value: redactURL(s), Rule: "must not carry a password; use github-ssh-key for a private repository"}
			}
		}
		return nil
	case "https", "git":
		if u.User != nil {
			// https://TOKEN@github.com/... is how tokens get pasted: the user
			// part alone may be the secret, so none of it is shown.
			return &FieldError{Input: "config-repo", Value: redactURL(s), Rule: "must not carry a user name, token or password (it would be printed in the plan, the log and on the VM's command line); for a private repository use an ssh URL with github-ssh-key"}
		}
		if u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#") {
			return &FieldError{Input: "config-repo", Value: redactURL(s), Rule: "must not have a query (?...) or fragment (#...); for a private repository use an ssh URL with github-ssh-key"}
		}
		return nil
	}
	return &FieldError{Input: "config-repo", Value: redactURL(s), Rule: "must be a git URL: git@github.com:OWNER/REPO.git, ssh://... or https://..."}
}

// redactURL shows a URL without anything between "://" and the last '@'
// of its authority, and without its query: the parts where credentials go.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		rest = "***" + rest[at:]
	}
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q] + "?***"
	}
	return scheme + "://" + rest
}

func checkFlakeAttr(s string) error {
	if !flakeRE.MatchString(s) {
		return &FieldError{Input: "config-flake-attr", Value: s, Rule: "must be a Nix attribute name (letters, digits, '_', '-', '\\'', not starting with a digit)"}
	}
	return nil
}

func checkClock(s string) error {
	if !clockRE.MatchString(s) {
		return &FieldError{Input: "auto-shutdown", Value: s, Rule: "must be a daily time HH:MM in UTC, for example 22:00"}
	}
	return nil
}

func parseBool(input, s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "1", "on":
		return true, nil
	case "false", "no", "0", "off", "":
		return false, nil
	}
	return false, &FieldError{Input: input, Value: s, Rule: "must be true or false"}
}

func parseDiskSize(s string) (int32, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 30 || n > 4095 {
		return 0, &FieldError{Input: "os-disk-size-gb", Value: s, Rule: "must be a whole number of GB from 30 to 4095"}
	}
	return int32(n), nil
}

func parseTimeout(input, s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, &FieldError{Input: input, Value: s, Rule: "must be a positive Go duration such as 10m or 1h30m"}
	}
	return d, nil
}

func checkGUID(input, s string) error {
	if s != "" && !guidRE.MatchString(s) {
		return &FieldError{Input: input, Value: s, Rule: "must be a GUID such as 00000000-0000-0000-0000-000000000000"}
	}
	return nil
}

func checkTenant(s string) error {
	if s != "" && !guidRE.MatchString(s) && !domainRE.MatchString(s) {
		return &FieldError{Input: "azure-tenant-id", Value: s, Rule: "must be a tenant GUID or a tenant domain such as contoso.onmicrosoft.com"}
	}
	return nil
}

var environments = []string{AzureCloud, AzureChinaCloud, AzureUSGovernment, AzureStack}

func checkEnvironment(env, endpoint string) error {
	known := false
	for _, e := range environments {
		known = known || e == env
	}
	if !known {
		return &FieldError{Input: "azure-environment", Value: env, Rule: "must be AzureCloud, AzureChinaCloud, AzureUSGovernment or AzureStack" + didYouMean(env, environments)}
	}
	if env == AzureStack && endpoint == "" {
		return &FieldError{Input: "arm-endpoint", Rule: "required when azure-environment is AzureStack: the Resource Manager URL of your Azure Stack Hub, for example https://management.local.azurestack.external"}
	}
	if env != AzureStack && endpoint != "" {
		return &FieldError{Input: "arm-endpoint", Value: endpoint, Rule: "only used with azure-environment AzureStack; the public clouds' endpoints are built in"}
	}
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return &FieldError{Input: "arm-endpoint", Value: endpoint, Rule: "must be an https URL such as https://management.local.azurestack.external"}
		}
	}
	return nil
}

// checkAudience applies Entra ID's rule for a federated credential's audience: one value of at
// most 600 characters (Microsoft Learn, "Configure an application to trust an external identity
// provider").
func checkAudience(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 600 || strings.ContainsAny(s, " \t\r\n,") {
		return &FieldError{Input: "azure-oidc-audience", Value: abbreviate(s), Rule: "must be one audience of at most 600 characters without spaces or commas, for example api://AzureADTokenExchange"}
	}
	return nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
