{
  description = "NixOS on an Azure VM, installed by nixos-cloud-deploy with nixos-anywhere";

  inputs = {
    # The NixOS release channel. nixos-cloud-deploy rewrites exactly this line
    # when the deployment asks for another channel (nix-channel input).
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

    # Declarative partitioning, used by nixos-anywhere to format the disk.
    disko = {
      url = "github:nix-community/disko/v1.13.0";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    { nixpkgs, disko, ... }:
    let
      # The only per-deployment file: host name, user, keys, disk, state version.
      settings = builtins.fromJSON (builtins.readFile ./settings.json);

      system = nixpkgs.lib.nixosSystem {
        modules = [
          disko.nixosModules.disko
          ./disk-config.nix
          ./configuration.nix
        ];
      };
    in
    {
      # Always available as `#az-nixos`, and also under the VM's host name
      # (`#<hostName>`) so several machines can share one checkout.
      nixosConfigurations = nixpkgs.lib.genAttrs (nixpkgs.lib.unique [
        "az-nixos"
        settings.hostName
      ]) (_: system);
    };
}
