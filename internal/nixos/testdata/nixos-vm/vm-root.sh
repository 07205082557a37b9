# Sourced by a test VM's setup script (internal/deploy/testdata/vm-setup.sh,
# test/e2e/testdata/vm-boot.sh) inside the VM's private mount and UTS
# namespaces: vm_root VMDIR gives the VM its own machine state, kept in
# VMDIR so it survives a "reboot" (a new namespace on the same VMDIR):
#   /etc      a tmpfs holding VMDIR/etc's entries (passwd, group, shadow,
#             sudoers, os-release, hostname, ssh/, nixos/, ...) and, for every
#             other name, the host's entry bind-mounted; the host's
#             gitconfig is left out (its safe.directory would not be the VM's)
#   /home     VMDIR/home
#   /root     VMDIR/root
#   host name VMDIR/etc/hostname
# Everything a NixOS stand-in writes is then one of these mounts
# (standin-lib.sh vm_private).

vm_root() {
  _vm=$1
  mkdir -p "$_vm/.host-etc"
  mount --rbind /etc "$_vm/.host-etc"
  mount -t tmpfs -o mode=0755 vmetc /etc
  for _e in "$_vm/.host-etc"/* "$_vm/.host-etc"/.[!.]* "$_vm/etc"/* "$_vm/etc"/.[!.]*; do
    [ -e "$_e" ] || [ -L "$_e" ] || continue
    _n=$(basename "$_e")
    case $_e in
    "$_vm/.host-etc"/*)
      # The VM's own entry wins; gitconfig is not the VM's.
      if [ -e "$_vm/etc/$_n" ] || [ -L "$_vm/etc/$_n" ] || [ "$_n" = gitconfig ]; then
        continue
      fi
      ;;
    esac
    if [ -L "$_e" ]; then
      cp -P "$_e" "/etc/$_n"
    elif [ -d "$_e" ]; then
      mkdir "/etc/$_n"
      mount --rbind "$_e" "/etc/$_n"
    else
      : >"/etc/$_n"
      mount --bind "$_e" "/etc/$_n"
    fi
  done
  mount --bind "$_vm/home" /home
  mount --bind "$_vm/root" /root
  if [ -f "$_vm/etc/hostname" ]; then
    hostname "$(cat "$_vm/etc/hostname")"
  fi
}

# vm_nix VMDIR gives the VM its own Nix store and /run, and boots what its
# system profile says, as NixOS's stage 2 does:
#   /nix      VMDIR/nix: the store, the system profile and its generations
#             (standin-store.sh), kept across a reboot
#   /run      VMDIR/run, emptied first: a tmpfs on a real machine, empty at
#             every boot (a directory here, so the test can stop the
#             transient units the VM leaves running), with /run/sshd and
#             /run/systemd/system (systemd runs: nixos-rebuild-ng's test)
#   boot      when the profile has a generation, /run/booted-system is its
#             system and the system is activated (nixpkgs
#             nixos/modules/system/boot/stage-2-init.sh runs
#             $systemConfig/activate and links /run/booted-system; the
#             activation links /run/current-system); the output goes to
#             VMDIR/boot.log
#   markers   /nix/.standin-vm and /run/standin-vm: the stand-ins that
#             write the store, the profiles or /run refuse to run without
#             them, so they never touch the test machine's own /nix or /run
vm_nix() {
  _vm=$1
  mkdir -p "$_vm/nix/store" "$_vm/nix/var/nix/profiles" "$_vm/run"
  : >"$_vm/nix/.standin-vm"
  mount --bind "$_vm/nix" /nix
  find "$_vm/run" -mindepth 1 -delete
  mount --bind "$_vm/run" /run
  mkdir -p /run/sshd /run/systemd/system
  : >/run/standin-vm
  if [ -L /nix/var/nix/profiles/system ]; then
    _sys=$(readlink -f /nix/var/nix/profiles/system)
    ln -s "$_sys" /run/booted-system
    "$_sys/bin/switch-to-configuration" test >"$_vm/boot.log" 2>&1
  fi
}
