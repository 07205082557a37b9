package nixos

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Settings is settings.json, the only per-deployment part of the flake.
// configuration.nix and disk-config.nix read it with builtins.fromJSON.
type Settings struct {
	// HostName is networking.hostName and a nixosConfigurations attribute.
	HostName string `json:"hostName"`
	// UserName is the login user, in wheel with passwordless sudo.
	UserName string `json:"userName"`
	// AuthorizedKeys are the user's SSH public keys, one per element.
	AuthorizedKeys []string `json:"authorizedKeys"`
	// RootAuthorizedKeys may log in as root with a key (never a password):
	// the per-deployment deploy key, so verification and the finalize step
	// can reach the installed system.
	RootAuthorizedKeys []string `json:"rootAuthorizedKeys"`
	// DiskDevice is the OS disk, a stable /dev/disk/by-id/... path (DetectDisk).
	DiskDevice string `json:"diskDevice"`
	// StateVersion is system.stateVersion, "YY.MM".
	StateVersion string `json:"stateVersion"`
}

// DefaultChannel is the NixOS channel nix-config/flake.nix pins.
const DefaultChannel = "nixos-26.05"

var (
	// NixOS's own networking.hostName check.
	hostNameRE     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$`)
	userNameRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	stateVersionRE = regexp.MustCompile(`^[0-9]{2}\.[0-9]{2}$`)
	// disko pastes the device into shell scripts unquoted, so only the
	// characters udev uses in /dev/disk/by-id names are allowed.
	diskDeviceRE = regexp.MustCompile(`^/dev/[A-Za-z0-9._:+@/-]+$`)
	channelRE    = regexp.MustCompile(`^nixos-(unstable|[0-9]{2}\.[0-9]{2})(-small)?$`)
	// The comment may hold anything but control characters (a tab aside):
	// a CR or NUL in settings.json is a line break or an error on the Nix
	// side, and config.ParseAuthorizedKeys refuses the same.
	keyTypeRE = regexp.MustCompile(`^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( [^\x00-\x08\x0a-\x1f\x7f]*)?$`)
)

// Validate reports every field that nix-config cannot use, one error each.
func (s Settings) Validate() error {
	var errs []error
	if !hostNameRE.MatchString(s.HostName) {
		errs = append(errs, fmt.Errorf("host name %q: must be 1-63 letters, digits, hyphens or underscores, starting and ending with a letter or digit", s.HostName))
	}
	switch {
	case s.UserName == "root":
		errs = append(errs, errors.New(`user name "root": choose a normal user; root logs in with keys only`))
	case !userNameRE.MatchString(s.UserName):
		errs = append(errs, fmt.Errorf("user name %q: must be 1-32 lower-case letters, digits, hyphens or underscores, not starting with a digit or hyphen", s.UserName))
	}
	errs = append(errs, validateKeys("authorized key", s.AuthorizedKeys)...)
	errs = append(errs, validateKeys("root authorized key", s.RootAuthorizedKeys)...)
	if !diskDeviceRE.MatchString(s.DiskDevice) || strings.Contains(s.DiskDevice, "..") {
		errs = append(errs, fmt.Errorf("disk device %q: must be a /dev/... path of letters, digits and ._:+@-", s.DiskDevice))
	}
	if !stateVersionRE.MatchString(s.StateVersion) {
		errs = append(errs, fmt.Errorf("state version %q: must look like %q", s.StateVersion, "26.05"))
	}
	return errors.Join(errs...)
}

func validateKeys(what string, keys []string) []error {
	var errs []error
	for i, k := range keys {
		// Invalid UTF-8 would reach settings.json as U+FFFD: another comment.
		if !keyTypeRE.MatchString(k) || !utf8.ValidString(k) {
			// Not echoed: a value that is not a public key may be a pasted private one.
			errs = append(errs, fmt.Errorf("%s %d of %d: not an OpenSSH public key line such as %q", what, i+1, len(keys), "ssh-ed25519 AAAA... comment"))
		}
	}
	return errs
}

func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// MinRelease is the oldest NixOS release nix-config evaluates on:
// hardware.facter came into nixpkgs for 25.11 (NixOS/nixpkgs PR 450303).
const MinRelease = "25.11"

// ValidateChannel checks a nix-channel value: nixos-YY.MM (MinRelease or
// newer) or nixos-unstable, either with -small.
func ValidateChannel(channel string) error {
	m := channelRE.FindStringSubmatch(channel)
	if m == nil {
		return fmt.Errorf("nix channel %q: must be nixos-YY.MM or nixos-unstable (optionally with -small), e.g. %q", channel, DefaultChannel)
	}
	// "YY.MM" strings of equal length compare like the releases they name.
	if m[1] != "unstable" && m[1] < MinRelease {
		return fmt.Errorf("nix channel %q: nix-config needs NixOS %s or newer (hardware.facter); use %q", channel, MinRelease, DefaultChannel)
	}
	return nil
}

// StateVersion is the system.stateVersion a fresh install on channel gets:
// the release for nixos-YY.MM, the default release for nixos-unstable.
func StateVersion(channel string) string {
	if m := channelRE.FindStringSubmatch(channel); m != nil && m[1] != "unstable" {
		return m[1]
	}
	return strings.TrimPrefix(DefaultChannel, "nixos-")
}
