# The first NixOS configuration of an Azure VM. What every VM installed by
# nixos-cloud-deploy needs is in azure.nix (nixosModules.azure); what differs
# between deployments is in settings.json. Add your own settings here.
{ pkgs, ... }:
{
  nixos-cloud-deploy.settingsFile = ./settings.json;
  # nixos-anywhere writes the hardware report here during the install
  # (--generate-hardware-config nixos-facter ./facter.json). Before the first
  # install it does not exist yet, so evaluation must not depend on it.
  nixos-cloud-deploy.facterReport = if builtins.pathExists ./facter.json then ./facter.json else null;

  environment.systemPackages = with pkgs; [
    curl
    git
    vim
    dos2unix
  ];
}
