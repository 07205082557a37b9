#!/bin/sh
# sshd's wrapper for a test VM that runs an installed NixOS (internal/deploy
# switch tests). It runs inside a private mount namespace (unshare --mount)
# and boots the machine the way NixOS's stage 2 does, from the VM's own
# state in VMDIR, which survives a reboot:
#   /nix      VMDIR/nix: the store, the system profile and its generations
#             (the NixOS stand-ins of internal/nixos/testdata/nixos-vm)
#   /run      VMDIR/run, emptied first: a tmpfs on a real machine, empty at
#             every boot (here a directory the test can see, so it can stop
#             the transient units the VM leaves running)
#   /etc/ssh  a tmpfs the activation fills (authorized_keys.d)
#   /root     an empty tmpfs
#   /usr/bin/nix*  the machine running the tests may have Nix installed
#             (Debian's nix-bin, for nix-instantiate --parse): its tools are
#             not the VM's, so they fail here; the VM's are the stand-ins on
#             the sessions' PATH
# Boot: /run/booted-system is the system the profile points to, and its
# activation runs (nixpkgs nixos/modules/system/boot/stage-2-init.sh runs
# $systemConfig/activate and links /run/booted-system; the activation links
# /run/current-system). Then it execs sshd, keeping its PID.
#
# Usage: nixos-vm-boot.sh VMDIR sshd ARGS...
set -eu
vm=$1
shift
mount --bind "$vm/nix" /nix
find "$vm/run" -mindepth 1 -delete
mount --bind "$vm/run" /run
mkdir -p /run/sshd /run/systemd/system
mount -t tmpfs -o mode=0755 vmetcssh /etc/ssh
mount -t tmpfs -o mode=0700 vmroot /root
for f in /usr/bin/nix /usr/bin/nix-*; do
  [ -e "$f" ] || continue
  mount --bind /bin/false "$f"
done
sys=$(readlink -f /nix/var/nix/profiles/system)
ln -s "$sys" /run/booted-system
"$sys/bin/switch-to-configuration" test >"$vm/boot.log" 2>&1
exec "$@"
