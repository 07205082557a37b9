# Shared by the NixOS stand-ins in this directory (sourced, not run).
#
# The stand-ins run inside a test VM: a real sshd in its own mount (and UTS)
# namespace whose /etc/nixos, /etc/ssh, /home, /root, /etc/passwd, group,
# shadow, sudoers and os-release are the VM's own (bind mounts of the test's
# VM directory). standin.env, next to the scripts, is written by the test:
#   STANDIN_LOG       file every stand-in appends "<name> <args>" to
#   GIT_CONFIG_COUNT, GIT_CONFIG_KEY_<n>, GIT_CONFIG_VALUE_<n>
#                     git configuration from the environment (git-config(1),
#                     git >= 2.31), e.g. url.<local repo>.insteadOf=<config-repo
#                     URL>: the VM has no network
#   GIT_CONFIG_SYSTEM the VM's system git configuration: the real one
#                     included, and safe.directory for those local
#                     repositories, which belong to the test's user
# A stand-in never writes outside the VM's own mounts (vm_private).

standin_dir=$(cd "$(dirname "$0")" && pwd)
if [ -f "$standin_dir/standin.env" ]; then
  # shellcheck disable=SC1091
  . "$standin_dir/standin.env"
fi

# standin_log records this call, as the tests read it back; a stand-in
# that another one runs (nixos-rebuild's nix-env) is part of that call and
# is not recorded (STANDIN_NESTED, which standin_nested sets).
standin_log() {
  if [ -n "${STANDIN_LOG-}" ] && [ -z "${STANDIN_NESTED-}" ]; then
    printf '%s\n' "$(basename "$0")${*:+ $*}" >>"$STANDIN_LOG"
  fi
}

# die prints an error the way the real tool does and exits 1.
die() {
  printf '%s\n' "$*" >&2
  exit 1
}

# vm_private PATH: PATH is one of the test VM's own mounts, so writing
# there cannot touch the machine the tests run on.
vm_private() {
  mountpoint -q "$1" 2>/dev/null || die "$(basename "$0") (stand-in): $1 is not one of the test VM's own mounts; refusing to write there"
}

# real_git_path prints the system's git, not the stand-in next to this file.
real_git_path() {
  for g in /usr/bin/git /bin/git /usr/local/bin/git; do
    if [ -x "$g" ] && [ "$g" != "$standin_dir/git" ]; then
      echo "$g"
      return
    fi
  done
  die "stand-in: no real git found"
}

# real_git runs the system's git.
real_git() {
  _git=$(real_git_path)
  "$_git" "$@"
}

# inspect_git runs the system's git to look at any repository, whoever owns
# it: a stand-in reading what the real tool would read, not a rule.
inspect_git() {
  _conf=$(mktemp)
  printf '[safe]\n\tdirectory = *\n' >"$_conf"
  _rc=0
  env -u GIT_CONFIG_COUNT GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_SYSTEM="$_conf" "$(real_git_path)" "$@" || _rc=$?
  rm -f "$_conf"
  return $_rc
}

# standin_nested: what this stand-in runs from here on is part of its call.
standin_nested() {
  STANDIN_NESTED=1
  export STANDIN_NESTED
}
