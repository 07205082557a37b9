# The first NixOS configuration of an Azure VM. Everything that differs between
# deployments comes from settings.json; edit this file, not generated values.
{ lib, pkgs, ... }:
let
  settings = builtins.fromJSON (builtins.readFile ./settings.json);

  # nixos-anywhere writes the hardware report here during the install
  # (--generate-hardware-config nixos-facter ./facter.json). Before the first
  # install it does not exist yet, so evaluation must not depend on it.
  hasFacterReport = builtins.pathExists ./facter.json;
in
{
  # Hardware (kernel modules, CPU microcode, platform) from nixos-facter.
  hardware.facter.reportPath = lib.mkIf hasFacterReport ./facter.json;
  # Without a report the facter module cannot tell the platform; Azure's
  # default sizes are x86_64.
  nixpkgs.hostPlatform = lib.mkIf (!hasFacterReport) "x86_64-linux";

  # Azure runs Hyper-V: vmbus, storvsc, netvsc, KVP daemon.
  virtualisation.hypervGuest.enable = true;
  # v6 and newer sizes attach the OS disk over NVMe.
  boot.initrd.availableKernelModules = [ "nvme" ];

  # Boot messages on the serial port, so Azure's boot diagnostics (serial log)
  # show the boot; ttyS0 last makes it /dev/console. rootdelay gives slow
  # Azure storage time to appear.
  boot.kernelParams = [
    "console=tty1"
    "console=ttyS0,115200n8"
    "earlyprintk=ttyS0,115200"
    "rootdelay=300"
  ];

  # GRUB for BIOS (Gen1) and UEFI (Gen2) alike. The install device comes from
  # disk-config.nix: disko puts settings.diskDevice into boot.loader.grub.devices
  # (it has an EF02 partition); setting boot.loader.grub.device as well would
  # list the disk twice and trip NixOS's duplicate-device assertion.
  boot.loader.grub = {
    enable = true;
    efiSupport = true;
    # Install to EFI/BOOT/BOOTX64.EFI: no NVRAM entry is needed, and a VM's
    # NVRAM is not ours to keep.
    efiInstallAsRemovable = true;
  };

  networking.hostName = settings.hostName;
  networking.useDHCP = lib.mkDefault true;

  # SSH with keys only. Root may log in with a key (never a password): the
  # deploy key used by nixos-anywhere, verification and the finalize step.
  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  users.users.${settings.userName} = {
    isNormalUser = true;
    extraGroups = [ "wheel" ];
    openssh.authorizedKeys.keys = settings.authorizedKeys;
  };
  users.users.root.openssh.authorizedKeys.keys = settings.rootAuthorizedKeys or [ ];

  # The user has no password, so sudo must not ask for one.
  security.sudo.wheelNeedsPassword = false;

  nix.settings = {
    experimental-features = [
      "nix-command"
      "flakes"
    ];
    trusted-users = [
      "root"
      "@wheel"
    ];
  };

  environment.systemPackages = with pkgs; [
    curl
    git
    vim
    dos2unix
  ];

  system.stateVersion = settings.stateVersion;
}
