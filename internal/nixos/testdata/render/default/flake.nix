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
    {
      self,
      nixpkgs,
      disko,
      ...
    }:
    let
      # The only per-deployment file: host name, user, keys, disk, state version.
      settings = builtins.fromJSON (builtins.readFile ./settings.json);

      system = nixpkgs.lib.nixosSystem {
        modules = [
          self.nixosModules.azure
          ./configuration.nix
        ];
      };
    in
    {
      # What every VM installed by nixos-cloud-deploy needs (Hyper-V guest,
      # serial console, disk layout and users from settings.json, the facter
      # report, GRUB, keys-only SSH, the Azure agent). Import it in your own
      # flake; README.md, "Your own flake", shows how.
      nixosModules.azure = {
        imports = [
          disko.nixosModules.disko
          ./azure.nix
        ];
      };
      nixosModules.default = self.nixosModules.azure;

      # Always available as `#az-nixos`, and also under the VM's host name
      # (`#<hostName>`) so several machines can share one checkout.
      nixosConfigurations = nixpkgs.lib.genAttrs (nixpkgs.lib.unique [
        "az-nixos"
        settings.hostName
      ]) (_: system);
    };
}
