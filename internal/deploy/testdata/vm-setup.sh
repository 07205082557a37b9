#!/bin/sh
# sshd's wrapper for a test VM (internal/deploy tests). It runs inside a
# private mount namespace and UTS namespace (unshare --mount --uts) and gives
# the "VM" what the pipeline reads on a real Azure VM: its own /dev with
# /dev/disk/by-id, its own /etc, /home and /root (vm_root, from the NixOS
# stand-ins' vm-root.sh: os-release says Ubuntu until the install, ssh/ has
# the host key, nixos/ is empty), its host name, and, when the test wrote
# one, its own /proc/meminfo. Then it execs sshd, keeping its PID.
#
# Usage: vm-setup.sh VMDIR VM-ROOT-SH sshd ARGS...
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
mkdir -p "$vm/dev/disk/by-id"
# What udev makes for an Azure OS disk on SCSI.
ln -s ../../sda "$vm/dev/disk/by-id/scsi-3600224803fa8e3c1a6b2b4a0a2e6e6d1"
ln -s ../../sda1 "$vm/dev/disk/by-id/scsi-3600224803fa8e3c1a6b2b4a0a2e6e6d1-part1"
mount --rbind "$vm/dev" /dev
# shellcheck disable=SC1090 # the path is the caller's
. "$vmroot"
vm_root "$vm"
vm_nix "$vm"
if [ -f "$vm/meminfo" ]; then
  mount --bind "$vm/meminfo" /proc/meminfo
fi
# exec keeps the PID: this is sshd's, for the systemctl stand-in.
echo $$ >"$vm/sshd.pid"
exec "$@"
