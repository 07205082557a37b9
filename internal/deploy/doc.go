// Package deploy is the pipeline behind `command: deploy` and `destroy`:
// provision the Azure VM, wait for SSH with the pinned host key, install
// NixOS with nixos-anywhere, verify, finalize, and report. Stages are data;
// each is timed and logged in its own group, and a failure in any of them
// still reports what exists.
package deploy
