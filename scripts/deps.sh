#!/usr/bin/env bash
# Installs the Debian packages the tests need, if any is missing.
# Shared by `make test` and .ci/run so a fresh machine and CI agree.
#   openssh-server  real sshd for the SSH, pipeline and end-to-end tests
#   openssh-client  the real ssh client that nixos-anywhere uses (proxy tests)
#   nix-bin         nix-instantiate --parse for every .nix file
#   shellcheck      actionlint checks run: scripts with it
#   iproute2        network namespaces for the end-to-end test
#   git             nixos-anywhere and the finalize step use git; tests build repos
#   sudo            the install test's first login as a user with passwordless sudo
#   jq              the NixOS stand-ins (internal/nixos/testdata) read settings.json and write JSON (flake.lock, switch tests)
set -euo pipefail

need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v nix-instantiate >/dev/null 2>&1 || need+=(nix-bin)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v git >/dev/null 2>&1 || need+=(git)
command -v sudo >/dev/null 2>&1 || need+=(sudo)
command -v jq >/dev/null 2>&1 || need+=(jq)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "scripts/deps.sh: installing ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "scripts/deps.sh: need root to install ${need[*]}: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
