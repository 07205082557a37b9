#!/usr/bin/env bash
# Stand-in for nixos-anywhere in internal/nixos tests. It prints the real
# phase lines of nixos-anywhere 1.13 (step "..." => "### ... ###", abort =>
# "aborted: ..." on stderr, exit 1; see src/nixos-anywhere.sh), in the order
# a kexec install runs them, with some of the other output in between.
#
# Environment:
#   FAKE_NA_ARGV  file to record the argument vector in, one argument a line
#   FAKE_NA_ENV   file to record the environment in (env -0), to check what
#                 a child of the action gets to see
#   FAKE_NA_MODE  ok (default): a whole install, writes the facter report
#                 abort: aborts after kexec like a failed kexec does
#                 fail:  exits 2 during the install without an abort line
#                 hang:  starts a child that ignores SIGTERM and holds the
#                        output pipe, then waits forever (kexec on Azure
#                        hanging, nixos-anywhere issue 400)
#   FAKE_NA_PIDS  hang mode: file to record "leader <pid>" and "child <pid>"
#   FAKE_NA_REMOTE=1  reach the target as the real one does: the real ssh
#                 client with nixos-anywhere's own options (no host key
#                 checking) and the --ssh-option values it was given, so
#                 every byte goes through the ProxyCommand; it reads the
#                 target's os-release before "kexec" and, where the real one
#                 installs, runs ../nixos-vm/standin-install-nixos on the
#                 target (it must be on the target's PATH) with the users
#                 and keys of the configuration it installs (evaluated from
#                 the rendered flake with nix-instantiate and
#                 ../eval-stub.nix: users.users.<user>.openssh.authorizedKeys
#                 and root's) and the --extra-files directory, which leaves
#                 the target as the installed NixOS would be.
#
# Rules of the real one (src/nixos-anywhere.sh) it keeps: --flake needs a
# "#<attribute>"; --extra-files is copied to / of the new system owned by
# root, after the hardware report is written and before nixos-install, so
# a report written inside the extra files is copied with them; --kexec
# takes a URL or a file.
set -euo pipefail

if [[ -n ${FAKE_NA_ARGV-} ]]; then
  printf '%s\n' "$@" >"$FAKE_NA_ARGV"
fi
if [[ -n ${FAKE_NA_ENV-} ]]; then
  env -0 >"$FAKE_NA_ENV"
fi

flake="" facter="" host="" identity="" extra="" kexec=""
sshopts=()
while [[ $# -gt 0 ]]; do
  case "$1" in
  --flake) flake=$2; shift ;;
  --generate-hardware-config) facter=$3; shift 2 ;;
  -i) identity=$2; shift ;;
  --ssh-option) sshopts+=(-o "$2"); shift ;;
  --extra-files) extra=$2; shift ;;
  --kexec) kexec=$2; shift ;;
  --copy-host-keys) ;;
  -*) echo "fake-nixos-anywhere: unknown option $1" >&2; exit 3 ;;
  *) host=$1 ;;
  esac
  shift
done

step() { echo "### $* ###"; }
abort() {
  echo "aborted: $*" >&2
  exit 1
}

[[ -n $flake ]] || abort "--flake or --store-paths must be set"
[[ -n $host ]] || abort "ssh-host must be set"
if [[ ! $flake =~ ^(.*)\#([^\#\"]*)$ ]] || [[ -z ${BASH_REMATCH[2]} ]]; then
  abort "Please specify the name of the NixOS configuration to be installed, as a URI fragment in the flake-uri."
fi
flakedir=${BASH_REMATCH[1]#path:}
[[ -z $extra || -d $extra ]] || abort "--extra-files $extra is not a directory"
case $kexec in
"" | https://* | http://* | /*) ;;
*) abort "--kexec $kexec: not a URL or a file" ;;
esac

# nixos-anywhere's ssh: checking off first, then the caller's options.
remote() {
  ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -o BatchMode=yes -i "$identity" "${sshopts[@]}" "$host" "$@"
}

step Uploading install SSH keys
echo "/usr/bin/ssh-copy-id: INFO: Source of key(s) to be installed: \"/tmp/tmp.fake/nixos-anywhere.pub\"" >&2
echo "Number of key(s) added: 1"
step Gathering machine facts
echo "Warning: Permanently added '${host#*@}' (ED25519) to the list of known hosts." >&2
if [[ ${FAKE_NA_REMOTE-} == 1 ]]; then
  remote 'grep "^PRETTY_NAME=" /etc/os-release' || abort "ssh to $host failed"
fi
step Switching system into kexec
echo "Downloading kexec tarball, this may take a moment..."
[[ -z $kexec ]] || echo "+ curl --fail -Ss -L $kexec"

case ${FAKE_NA_MODE:-ok} in
abort)
  echo "Kexec may have failed - check output above"
  abort "Failed to kexec into NixOS installer"
  ;;
hang)
  (
    trap '' TERM
    exec sleep 3600
  ) &
  child=$!
  if [[ -n ${FAKE_NA_PIDS-} ]]; then
    # Written whole, then renamed: a test that waits for the file must
    # never read it half-written.
    printf 'leader %s\nchild %s\n' "$$" "$child" >"$FAKE_NA_PIDS.tmp"
    mv "$FAKE_NA_PIDS.tmp" "$FAKE_NA_PIDS"
  fi
  wait
  ;;
esac

echo "machine will boot into nixos in 6s..."
step Gathering machine facts
if [[ -n $facter ]]; then
  step Generating facter.json using nixos-facter
  mkdir -p "$(dirname "$facter")"
  printf '{\n  "version": 1,\n  "system": "x86_64-linux",\n  "virtualisation": "microsoft"\n}\n' >"$facter"
fi
step Formatting hard drive with disko
echo "+ sgdisk --align-end --new=1:0:+1M --change-name=1:disk-main-boot --typecode=1:EF02 /dev/disk/by-id/wwn-0x6002248000000000000000000000abcd"
step Uploading the system closure
if [[ -n $extra ]]; then
  step Copying extra files
fi
step Installing NixOS
if [[ ${FAKE_NA_MODE:-ok} == fail ]]; then
  echo "error: builder for '/nix/store/00000000000000000000000000000000-grub-config.xml.drv' failed with exit code 1" >&2
  exit 2
fi
echo "installing the boot loader..."
if [[ ${FAKE_NA_REMOTE-} == 1 ]]; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir "$stage/system"
  stub="$(cd "$(dirname "$0")/.." && pwd)/eval-stub.nix"
  nix-instantiate --eval --strict --json --arg dir "$flakedir" -E "{ dir }: let c = import $stub { inherit dir; }; in
    { userName = c.userName; authorizedKeys = c.userKeys; rootAuthorizedKeys = c.rootKeys; }" \
    >"$stage/system/settings.json" 2>/dev/null || abort "cannot evaluate the configuration in $flakedir"
  if [[ -n $extra ]]; then
    mkdir "$stage/extra"
    tar -C "$extra" -cpf- . | tar -C "$stage/extra" -xpf-
  fi
  tar -C "$stage" -cf- . | remote standin-install-nixos || abort "the install on $host failed"
else
  echo "installation finished!"
fi
step Rebooting
step Waiting for the machine to become unreachable due to reboot
step "Done!"
