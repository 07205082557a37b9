// Package nixconfig carries the NixOS flake that nixos-cloud-deploy installs
// first, so the action binary can write it out without a source checkout.
//
// The Go file lives here because a Go package cannot embed files from its
// parent directories; internal/nixos renders a deployment from FS.
package nixconfig

import "embed"

// FS holds the flake: flake.nix, azure.nix (nixosModules.azure),
// configuration.nix, disk-config.nix and the
// sample settings.json (the defaults; every deployment writes its own).
//
//go:embed flake.nix azure.nix configuration.nix disk-config.nix settings.json
var FS embed.FS
