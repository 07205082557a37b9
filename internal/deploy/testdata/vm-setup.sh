#!/bin/sh
# sshd's wrapper for a test VM (internal/deploy tests). It runs inside a
# private mount namespace (unshare --mount) and gives the "VM" what the
# pipeline reads on a real Azure VM: its own /dev with /dev/disk/by-id, its
# own /etc/os-release (Ubuntu until the install flips it), an empty /home
# and /root, and, when the test wrote one, its own /proc/meminfo.
# Then it execs sshd, keeping its PID.
set -eu
vm=$1
shift
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
mount --bind "$vm/os-release" /etc/os-release
mount -t tmpfs -o mode=0755 vmhome /home
mount -t tmpfs -o mode=0700 vmroot /root
if [ -f "$vm/ssh_host_ed25519_key.pub" ]; then
  # The host key the VM's sshd really uses, where Run Command reads it and
  # where sshd reads it (HostKey /etc/ssh/ssh_host_ed25519_key).
  mount -t tmpfs -o mode=0755 vmetcssh /etc/ssh
  cp "$vm/ssh_host_ed25519_key.pub" /etc/ssh/
  if [ -f "$vm/ssh_host_ed25519_key" ]; then
    (umask 077 && cp "$vm/ssh_host_ed25519_key" /etc/ssh/)
  fi
fi
# A user with passwordless sudo, as a cloud image's default user is.
for f in passwd group shadow sudoers; do
  if [ -f "$vm/$f" ]; then
    mount --bind "$vm/$f" "/etc/$f"
  fi
done
if [ -f "$vm/sudo-user" ]; then
  user=$(cat "$vm/sudo-user")
  mkdir -p "/home/$user"
  chown "$user:" "/home/$user"
fi
if [ -f "$vm/meminfo" ]; then
  mount --bind "$vm/meminfo" /proc/meminfo
fi
# exec keeps the PID: this is sshd's, for the systemctl stand-in.
echo $$ >"$vm/sshd.pid"
exec "$@"
