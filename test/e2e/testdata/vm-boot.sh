#!/bin/sh
# The "boot" of an emulated Azure VM (test/e2e). It runs inside the VM's own
# network namespace (ip netns exec) and a private mount namespace (unshare
# --mount), and gives sshd what a fresh Ubuntu VM has and the pipeline reads:
#   /dev               its own, with /dev/sda, /dev/sda1 and the
#                      /dev/disk/by-id links udev makes for an Azure OS disk
#   /etc/os-release    Ubuntu, a file in the VM directory bind-mounted in place,
#                      so nixos-anywhere's stand-in can flip it to NixOS
#   /etc/passwd        the host's plus the admin user cloud-init creates
#   /etc/ssh           the host keys cloud-init wrote from ssh_keys
#   /home              empty (tmpfs), with the admin user's home
#   /root              empty (tmpfs), as on a fresh VM: the host's root dot
#                      files (a .bashrc that bash sources for every ssh
#                      command) are not the VM's
#   /usr/local/bin     the VM's tools: findmnt, lsblk, systemctl's answer for
#                      sshd.service's MainPID, and recording fakes of
#                      runuser, chown, nix-channel, nixos-rebuild and git
# Then it execs sshd, keeping its PID (written to VMDIR/sshd.pid).
#
# Usage: vm-boot.sh VMDIR ADMINUSER sshd ARGS...
set -eu
vm=$1
user=$2
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

mount --bind "$vm/os-release" /etc/os-release
mount --bind "$vm/passwd" /etc/passwd
mount --bind "$vm/etc-ssh" /etc/ssh
mount -t tmpfs -o mode=0755 vmhome /home
mkdir -m 0755 "/home/$user"
mount -t tmpfs -o mode=0700 vmroot /root
mount --bind "$vm/bin" /usr/local/bin
# exec keeps the PID: this is sshd's, for the systemctl stand-in.
echo $$ >"$vm/sshd.pid"
exec "$@"
