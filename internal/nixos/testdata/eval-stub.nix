# Evaluates a rendered flake directory without nixpkgs or disko: stub
# versions of the few lib functions it calls stand in for the inputs and the
# module system, so the test can check what settings.json feeds into each
# file, offline.
# nix-instantiate --eval --strict --json --arg dir /abs/flake/dir eval-stub.nix
{ dir }:
let
  lib = {
    nixosSystem = args: {
      modules = map (
        m:
        if builtins.isPath m then
          baseNameOf m
        else
          map (i: if builtins.isPath i then baseNameOf i else i) m.imports
      ) args.modules;
    };
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    unique = builtins.foldl' (acc: e: if builtins.elem e acc then acc else acc ++ [ e ]) [ ];
    mkIf = condition: content: if condition then content else null;
    mkDefault = v: v;
    mkOption = o: o;
    literalExpression = e: e;
    types = {
      path = "path";
      attrs = "attrs";
      nullOr = t: "null or ${t}";
    };
  };
  flake = import (dir + "/flake.nix");
  outputs = flake.outputs {
    self = outputs;
    nixpkgs = { inherit lib; };
    disko = { nixosModules.disko = "disko"; };
  };
  pkgs = { curl = "curl"; git = "git"; vim = "vim"; dos2unix = "dos2unix"; };
  # The module system, reduced to what these files need: configuration.nix
  # sets nixos-cloud-deploy's options, azure.nix and disk-config.nix read
  # them.
  user = import (dir + "/configuration.nix") { inherit lib pkgs; };
  config = {
    nixos-cloud-deploy = {
      inherit (user.nixos-cloud-deploy) settingsFile facterReport;
      settings = builtins.fromJSON (builtins.readFile user.nixos-cloud-deploy.settingsFile);
    };
  };
  azure = import (dir + "/azure.nix") { inherit config lib; };
  module = azure.config;
  disk = (import (dir + "/disk-config.nix") { inherit config; }).disko.devices.disk.main;
  userName = builtins.head (builtins.filter (n: n != "root") (builtins.attrNames module.users.users));
in
{
  configurations = builtins.attrNames outputs.nixosConfigurations;
  modules = outputs.nixosConfigurations.az-nixos.modules;
  exportedModules = builtins.attrNames outputs.nixosModules;
  azureImports = map (i: if builtins.isPath i then baseNameOf i else i) azure.imports;
  options = builtins.attrNames azure.options.nixos-cloud-deploy;
  nixpkgsUrl = flake.inputs.nixpkgs.url;
  diskoUrl = flake.inputs.disko.url;
  diskDevice = disk.device;
  partitions = builtins.mapAttrs (_: p: p.type or "8300") disk.content.partitions;
  hostName = module.networking.hostName;
  userName = userName;
  userKeys = module.users.users.${userName}.openssh.authorizedKeys.keys;
  userGroups = module.users.users.${userName}.extraGroups;
  rootKeys = module.users.users.root.openssh.authorizedKeys.keys;
  facterReport = module.hardware.facter.reportPath != null;
  kernelParams = module.boot.kernelParams;
  configurationLimit = module.boot.loader.grub.configurationLimit;
  permitRootLogin = module.services.openssh.settings.PermitRootLogin;
  passwordAuthentication = module.services.openssh.settings.PasswordAuthentication;
  waagent = module.services.waagent;
  stateVersion = module.system.stateVersion;
  packages = user.environment.systemPackages;
}
