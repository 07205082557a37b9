#!/bin/sh
# The "boot" of an emulated Azure VM (test/e2e). It runs inside the VM's own
# network namespace (ip netns exec) and private mount and UTS namespaces
# (unshare --mount --uts), and gives sshd what a fresh Ubuntu VM has and the
# pipeline reads:
#   /dev               its own, with /dev/sda, /dev/sda1 and the
#                      /dev/disk/by-id links udev makes for an Azure OS disk
#   /etc, /home, /root the VM's own, kept in VMDIR (vm_root, from the NixOS
#                      stand-ins' vm-root.sh): os-release says Ubuntu, passwd
#                      has the admin user, ssh/ the host keys cloud-init wrote
#                      from ssh_keys, nixos/ is empty, root's and the admin's
#                      ~/.ssh/authorized_keys what cloud-init and the agent
#                      wrote. The install changes them as NixOS would, and a
#                      reboot (the same script again) keeps them.
#   host name          the VM's name
#   /usr/local/bin     the VM's tools: findmnt, lsblk and the NixOS stand-ins
#                      (nixos-rebuild, git, nix-channel, standin-install-nixos)
#   /usr/local/bin     also systemctl's answer for sshd.service's MainPID
# Then it execs sshd, keeping its PID (written to VMDIR/sshd.pid).
#
# Usage: vm-boot.sh VMDIR VM-ROOT-SH sshd ARGS...
set -eu
vm=$1
vmroot=$2
shift 2

mount -t tmpfs -o mode=0755 vmdev "$vm/dev"
for n in null zero full random urandom tty; do
  : >"$vm/dev/$n"
  mount --bind "/dev/$n" "$vm/dev/$n"
done
mkdir "$vm/dev/pts"
mount --bind /dev/pts "$vm/dev/pts"
ln -s /proc/self/fd "$vm/dev/fd"
ln -s /proc/self/fd/0 "$vm/dev/stdin"
ln -s /proc/self/fd/1 "$vm/dev/stdout"
ln -s /proc/self/fd/2 "$vm/dev/stderr"
: >"$vm/dev/sda"
: >"$vm/dev/sda1"
mkdir -p "$vm/dev/disk/by-id"
ln -s ../../sda "$vm/dev/disk/by-id/scsi-360022480e2e0e2e0e2e0e2e0e2e0e2e0"
ln -s ../../sda1 "$vm/dev/disk/by-id/scsi-360022480e2e0e2e0e2e0e2e0e2e0e2e0-part1"
ln -s ../../sda "$vm/dev/disk/by-id/wwn-0x60022480e2e0e2e0e2e0e2e0e2e0e2e0"
mount --rbind "$vm/dev" /dev

# shellcheck disable=SC1090 # the path is the caller's
. "$vmroot"
vm_root "$vm"
vm_nix "$vm"
mount --bind "$vm/bin" /usr/local/bin
# exec keeps the PID: this is sshd's, for the systemctl stand-in.
echo $$ >"$vm/sshd.pid"
exec "$@"
