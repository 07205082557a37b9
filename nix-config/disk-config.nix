# One GPT disk that boots on both Hyper-V generations:
#   Gen1 (BIOS): GRUB's core image goes into the 1M "BIOS boot" partition (EF02).
#   Gen2 (UEFI): GRUB goes onto the ESP as the removable-media loader.
# The disk is the stable /dev/disk/by-id/... path of the disk that held / on the
# image we replaced, detected over SSH before kexec and written to settings.json.
{ config, ... }:
{
  disko.devices.disk.main = {
    type = "disk";
    device = config.nixos-cloud-deploy.settings.diskDevice;
    content = {
      type = "gpt";
      partitions = {
        # Because this partition is EF02, disko adds the disk to
        # boot.loader.grub.devices; azure.nix must not add it again.
        boot = {
          size = "1M";
          type = "EF02";
        };
        ESP = {
          size = "512M";
          type = "EF00";
          content = {
            type = "filesystem";
            format = "vfat";
            mountpoint = "/boot";
            mountOptions = [ "umask=0077" ];
          };
        };
        root = {
          size = "100%";
          content = {
            type = "filesystem";
            format = "ext4";
            mountpoint = "/";
          };
        };
      };
    };
  };
}
