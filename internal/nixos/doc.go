// Package nixos turns a fresh VM into NixOS: it renders the flake directory
// for one deployment (the embedded nix-config plus a generated settings.json),
// finds the disk that holds / on the running system, runs nixos-anywhere and
// follows its phases, keeps the hardware report, and checks that the machine
// came back as NixOS.
package nixos
