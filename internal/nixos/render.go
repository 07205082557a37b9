package nixos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	nixconfig "github.com/nixos-cloud-deploy/nixos-cloud-deploy/nix-config"
)

// SettingsFile is the name of the generated file inside the flake directory.
const SettingsFile = "settings.json"

// FacterFile is where nixos-anywhere writes the hardware report inside the
// flake directory; configuration.nix uses it when it exists.
const FacterFile = "facter.json"

// LockFile is the flake's lock file, written by the lock step before the
// install and kept with the flake on the VM.
const LockFile = "flake.lock"

// InstalledDir is where the installed flake lives on the VM, owned by root,
// so `sudo nixos-rebuild switch` works there without further setup:
// nixos-rebuild uses /etc/nixos/flake.nix when no --flake is given, with the
// host name as the attribute (nixpkgs
// pkgs/by-name/ni/nixos-rebuild-ng/src/nixos_rebuild/models.py, Flake.from_arg).
// /etc/nixos is no git repository, so Nix reads it as a path: flake.
const InstalledDir = "/etc/nixos"

// The one line of flake.nix that names the nixpkgs channel. Flake inputs must
// be literal (Nix evaluates them before anything else and will not call
// builtins.readFile there), and nixos-anywhere has no --override-input, so the
// channel is chosen by rewriting this line. Render insists on exactly one
// match, so a change to flake.nix that breaks this fails loudly in tests.
var nixpkgsURLRE = regexp.MustCompile(`(?m)^(\s*nixpkgs\.url = "github:NixOS/nixpkgs/)[^"]+(";)`)

// Render writes the flake for one deployment into dir (created if needed):
// the embedded nix-config, with flake.nix's nixpkgs input on channel (empty
// means DefaultChannel), and a settings.json generated from s. It returns the
// flake reference to pass to nixos-anywhere: "path:<absolute dir>#<host name>".
//
// Why a path: reference and not a git repository: flakes in a git work tree
// see only tracked files, and nixos-anywhere writes facter.json into the
// directory halfway through the run; a path: flake sees every file each time
// Nix evaluates it, needs no git binary or commit identity, and behaves the
// same on every Nix version. Render dir outside any git work tree (a temporary
// directory): nixos-anywhere runs `git add --intent-to-add facter.json` when
// the report lands inside one, which would touch that repository's index.
func Render(dir string, s Settings, channel string) (string, error) {
	if channel == "" {
		channel = DefaultChannel
	}
	if err := ValidateChannel(channel); err != nil {
		return "", err
	}
	if err := s.Validate(); err != nil {
		return "", fmt.Errorf("failed to render the NixOS flake: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("failed to resolve flake directory %q: %w", dir, err)
	}
	// A flake URL ends its path at '?' or '#', and whitespace would not
	// survive nixos-anywhere's ssh option handling.
	if strings.ContainsAny(abs, "?#% \t\r\n\"'") {
		return "", fmt.Errorf("flake directory %q: must not contain spaces, quotes or any of ?#%%; use a plain temporary directory", abs)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("failed to create flake directory: %w", err)
	}

	settings, err := marshalSettings(s)
	if err != nil {
		return "", err
	}
	err = fs.WalkDir(nixconfig.FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || name == SettingsFile {
			return err
		}
		data, err := fs.ReadFile(nixconfig.FS, name)
		if err != nil {
			return err
		}
		if name == "flake.nix" {
			if data, err = setChannel(data, channel); err != nil {
				return err
			}
		}
		return writeFile(filepath.Join(abs, filepath.FromSlash(name)), data)
	})
	if err != nil {
		return "", fmt.Errorf("failed to render the NixOS flake into %q: %w", abs, err)
	}
	if err := writeFile(filepath.Join(abs, SettingsFile), settings); err != nil {
		return "", fmt.Errorf("failed to render the NixOS flake into %q: %w", abs, err)
	}
	return "path:" + abs + "#" + s.HostName, nil
}

// setChannel points flake.nix's nixpkgs input at channel.
func setChannel(flake []byte, channel string) ([]byte, error) {
	if n := len(nixpkgsURLRE.FindAllIndex(flake, -1)); n != 1 {
		return nil, fmt.Errorf("flake.nix has %d nixpkgs.url lines of the form %q, want exactly 1", n, `nixpkgs.url = "github:NixOS/nixpkgs/<channel>";`)
	}
	return nixpkgsURLRE.ReplaceAll(flake, []byte("${1}"+channel+"${2}")), nil
}

// marshalSettings renders settings.json: stable field order, two-space
// indent, lists never null (Nix would see null where it wants a list).
func marshalSettings(s Settings) ([]byte, error) {
	if s.AuthorizedKeys == nil {
		s.AuthorizedKeys = []string{}
	}
	if s.RootAuthorizedKeys == nil {
		s.RootAuthorizedKeys = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("failed to encode %s: %w", SettingsFile, err)
	}
	return buf.Bytes(), nil
}

// writeFile replaces path atomically, so a re-run never leaves half a file.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
