# Evaluates a rendered flake directory without nixpkgs or disko: stub
# versions of the few lib functions it calls stand in for the inputs, so
# the test can check what settings.json feeds into each file, offline.
# nix-instantiate --eval --strict --json --arg dir /abs/flake/dir eval-stub.nix
{ dir }:
let
  lib = {
    nixosSystem = args: { modules = map (m: if builtins.isPath m then baseNameOf m else m) args.modules; };
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    unique = builtins.foldl' (acc: e: if builtins.elem e acc then acc else acc ++ [ e ]) [ ];
    mkIf = condition: content: if condition then content else null;
    mkDefault = v: v;
  };
  flake = import (dir + "/flake.nix");
  outputs = flake.outputs {
    nixpkgs = { inherit lib; };
    disko = { nixosModules.disko = "disko"; };
  };
  pkgs = { curl = "curl"; git = "git"; vim = "vim"; dos2unix = "dos2unix"; };
  config = import (dir + "/configuration.nix") { inherit lib pkgs; };
  disk = (import (dir + "/disk-config.nix")).disko.devices.disk.main;
  user = builtins.head (builtins.filter (n: n != "root") (builtins.attrNames config.users.users));
in
{
  configurations = builtins.attrNames outputs.nixosConfigurations;
  modules = outputs.nixosConfigurations.az-nixos.modules;
  nixpkgsUrl = flake.inputs.nixpkgs.url;
  diskoUrl = flake.inputs.disko.url;
  diskDevice = disk.device;
  partitions = builtins.mapAttrs (_: p: p.type or "8300") disk.content.partitions;
  hostName = config.networking.hostName;
  userName = user;
  userKeys = config.users.users.${user}.openssh.authorizedKeys.keys;
  userGroups = config.users.users.${user}.extraGroups;
  rootKeys = config.users.users.root.openssh.authorizedKeys.keys;
  facterReport = config.hardware.facter.reportPath != null;
  kernelParams = config.boot.kernelParams;
  permitRootLogin = config.services.openssh.settings.PermitRootLogin;
  passwordAuthentication = config.services.openssh.settings.PasswordAuthentication;
  stateVersion = config.system.stateVersion;
  packages = config.environment.systemPackages;
}
