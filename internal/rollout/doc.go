// Package rollout moves a running NixOS machine to a new system closure and
// lets the machine roll itself back when the new system cut it off.
//
// The steps, each over SSH with the pinned host key (sshx):
//
//  1. Probe reads the system profile's generation, the running system and
//     any switch still waiting for its confirmation.
//  2. The new system is evaluated and built where the caller chose (Nix),
//     then copied with `nix copy --to ssh-ng://` over a tunnel through the
//     verified connection, the machine fetching what it can from its own
//     substituters (--substitute-on-destination, nixos-rebuild's
//     --use-substitutes).
//  3. Activate arms a watchdog, then runs `switch-to-configuration test` in
//     the transient unit nixos-rebuild-switch-to-configuration, as
//     nixos-rebuild runs its activation, so it outlives the SSH session. The
//     system profile and the boot loader still name the previous generation:
//     a machine that reboots before the confirmation boots that.
//  4. Confirm opens a new SSH connection: only a system that still lets us
//     in can be confirmed. The confirmation stops the watchdog and does what
//     nixos-rebuild switch would have done with the profile: `nix-env -p
//     /nix/var/nix/profiles/system --set`, then `switch-to-configuration boot`.
//
// The watchdog is deploy-rs's magic rollback without an agent on the
// machine (serokell/deploy-rs src/bin/activate.rs: a canary file the
// deployer must delete over a new connection within confirm_timeout, else
// `nix-env --rollback` and re-activation). Here it is a shell script in
// the transient systemd unit nixos-cloud-deploy-watchdog, started with
// systemd-run before the activation: once the activation has ended, it
// waits confirm-timeout for the state file to say "confirmed"; otherwise,
// or when the activation failed or never ended, it activates the profile's
// generation (the previous one) again. Unlike deploy-rs, which sets the
// profile first and deletes the generation when it rolls back, nothing
// needs undoing in the profile. A lock (flock) makes confirming and rolling
// back exclude each other. The state lives in /run/nixos-cloud-deploy, a
// tmpfs: a reboot forgets a half-done switch and boots the previous
// generation, which the profile and the boot loader still name.
package rollout
