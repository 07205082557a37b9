# nixosModules.azure: everything a NixOS VM installed by nixos-cloud-deploy
# needs on Azure. nix-config's own configuration imports it, and so can your
# flake (README.md, "Your own flake"): give it the VM's settings.json (in
# /etc/nixos on the VM, and in the workspace after a deploy) and, when you
# have it, the VM's facter.json hardware report.
{
  config,
  lib,
  ...
}:
let
  cfg = config.nixos-cloud-deploy;
  settings = cfg.settings;
in
{
  imports = [ ./disk-config.nix ];

  options.nixos-cloud-deploy = {
    settingsFile = lib.mkOption {
      type = lib.types.path;
      example = lib.literalExpression "./settings.json";
      description = ''
        The settings.json nixos-cloud-deploy wrote for this VM: host name, user,
        authorised keys, root's keys, disk and state version. The installed copy
        is /etc/nixos/settings.json on the VM.
      '';
    };
    settings = lib.mkOption {
      type = lib.types.attrs;
      default = builtins.fromJSON (builtins.readFile cfg.settingsFile);
      defaultText = lib.literalExpression "builtins.fromJSON (builtins.readFile config.nixos-cloud-deploy.settingsFile)";
      description = "The settings themselves, read from settingsFile unless given here.";
    };
    facterReport = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = lib.literalExpression "./facter.json";
      description = ''
        The VM's nixos-facter hardware report (/etc/nixos/facter.json on the VM, and
        the facter-report output). Without it the VM still boots on Azure: the
        Hyper-V drivers below cover its disk and network.
      '';
    };
  };

  config = {
    # Hardware (kernel modules, CPU microcode, platform) from nixos-facter.
    hardware.facter.reportPath = lib.mkIf (cfg.facterReport != null) cfg.facterReport;
    # Without a report the facter module cannot tell the platform; Azure's
    # default sizes are x86_64.
    nixpkgs.hostPlatform = lib.mkIf (cfg.facterReport == null) (lib.mkDefault "x86_64-linux");

    # Azure runs Hyper-V: vmbus, storvsc, netvsc, KVP daemon.
    virtualisation.hypervGuest.enable = true;
    # v6 and newer sizes attach the OS disk over NVMe.
    boot.initrd.availableKernelModules = [ "nvme" ];

    # Boot messages on the serial port, so Azure's boot diagnostics (serial
    # log) show the boot; ttyS0 last makes it /dev/console. rootdelay gives
    # slow Azure storage time to appear.
    boot.kernelParams = [
      "console=tty1"
      "console=ttyS0,115200n8"
      "earlyprintk=ttyS0,115200"
      "rootdelay=300"
    ];

    # GRUB for BIOS (Gen1) and UEFI (Gen2) alike. The install device comes from
    # disk-config.nix: disko puts settings.diskDevice into
    # boot.loader.grub.devices (it has an EF02 partition); setting
    # boot.loader.grub.device as well would list the disk twice and trip
    # NixOS's duplicate-device assertion.
    boot.loader.grub = {
      enable = true;
      efiSupport = true;
      # Install to EFI/BOOT/BOOTX64.EFI: no NVRAM entry is needed, and a VM's
      # NVRAM is not ours to keep.
      efiInstallAsRemovable = true;
      # Every generation in the menu keeps its kernel and initrd (40-80 MB
      # together) on the 512 MB /boot; NixOS's default limit (100) fills it.
      configurationLimit = lib.mkDefault 5;
    };

    networking.hostName = lib.mkDefault settings.hostName;
    networking.useDHCP = lib.mkDefault true;

    # SSH with keys only. Root may log in with a key (never a password) by
    # default: the deploy key nixos-cloud-deploy installs and re-runs with.
    # Your flake may say "no": nothing after the install needs root.
    services.openssh = {
      enable = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = lib.mkDefault "prohibit-password";
      };
    };

    users.users.${settings.userName} = {
      isNormalUser = true;
      extraGroups = [ "wheel" ];
      openssh.authorizedKeys.keys = settings.authorizedKeys;
    };
    users.users.root.openssh.authorizedKeys.keys = settings.rootAuthorizedKeys or [ ];

    # The user has no password, so sudo must not ask for one.
    security.sudo.wheelNeedsPassword = lib.mkDefault false;

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

    # The Azure Linux agent reports the VM ready and runs extensions (Run
    # Command, which `command: install` uses), as nixpkgs' own Azure images do
    # (nixos/modules/virtualisation/azure-common.nix). Provisioning stays off:
    # with it, the agent would take users, SSH keys and host keys from Azure's
    # provisioning data on the first boot of NixOS (WALinuxAgent
    # azurelinuxagent/pa/provision/default.py), where this configuration and
    # the pinned host key decide them; off, it only reports ready.
    services.waagent = {
      enable = lib.mkDefault true;
      settings.Provisioning.Enable = false;
    };

    system.stateVersion = lib.mkDefault settings.stateVersion;
  };
}
