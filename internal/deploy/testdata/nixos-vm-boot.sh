#!/bin/sh
# sshd's wrapper for a test VM that runs an installed NixOS (internal/deploy
# switch tests). It runs inside private mount and UTS namespaces (unshare
# --mount --uts) and gives the VM its own machine state from VMDIR, which
# survives a reboot: /etc, /home and /root (vm_root) and /nix and /run, then
# boots what the system profile says as NixOS's stage 2 does (vm_nix; both
# from the NixOS stand-ins' vm-root.sh). Then it execs sshd, keeping its PID
# (written to VMDIR/sshd.pid, for the systemctl stand-in).
#
# The tools of a Nix the test machine may have (Debian's nix-bin, one
# multi-call binary) are not the VM's and fail in it: what runs outside the
# sessions' PATH (a transient unit has the service manager's) must not find
# them. nixos-rebuild's stand-in evaluates with nix-instantiate; it is not
# used on this VM.
#
# Usage: nixos-vm-boot.sh VMDIR VM-ROOT-SH sshd ARGS...
set -eu
vm=$1
vmroot=$2
shift 2
# shellcheck disable=SC1090 # the path is the caller's
. "$vmroot"
vm_root "$vm"
vm_nix "$vm"
for f in /usr/bin/nix /usr/bin/nix-*; do
  [ -e "$f" ] || continue
  mount --bind /bin/false "$f"
done
echo $$ >"$vm/sshd.pid"
exec "$@"
