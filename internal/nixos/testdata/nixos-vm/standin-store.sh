# shellcheck shell=sh
# The Nix store, profiles and NixOS systems of the stand-ins (sourced, not
# run): shared by the stand-ins on a test VM (nix-env, nix-store, nix-daemon,
# nixos-rebuild, switch-to-configuration) and by the nix stand-in on the
# source system (../fake-nix/nix), so that both build the same system from
# the same configuration, as real Nix does.
#
# What it models, with where the real rule is written:
# - A store path is /nix/store/<32 characters of Nix's base-32 alphabet,
#   which has no e, o, t or u>-<name> (NixOS/nix src/libutil/hash.cc
#   nix32Chars; src/libstore/path.cc). Its name for a derivation output is
#   <pname>-<version> (DrvName, src/libstore/names.cc).
# - A path is valid when the store's database has it, with its NAR size and
#   references (src/libstore/local-store.cc, registerValidPath); a
#   directory under /nix/store that is not registered is not valid. Here
#   the database is one file per path under $STORE_ROOT/nix/var/nix/standin-db.
# - The closure of a path is it and, recursively, its references
#   (computeFSClosure, src/libstore/misc.cc).
# - A NixOS system is <out>/bin/switch-to-configuration, nixos-version and
#   etc/, named nixos-system-<host>-<version> (nixpkgs
#   nixos/modules/system/activation/top-level.nix); its output path depends
#   only on its inputs, so the same configuration gives the same path
#   wherever it is built.
#
# STORE_ROOT is where /nix physically is: "" on the test VM (its /nix is
# its own mount), a directory on the source system (nix's --store
# local?root=..., here $FAKE_NIX_STORE_ROOT).

: "${STORE_ROOT:=}"
nix32_chars=0123456789abcdfghijklmnpqrsvwxyz

if ! command -v die >/dev/null 2>&1; then
  die() {
    printf '%s\n' "$*" >&2
    exit 1
  }
fi

# store_hash STRING: 32 characters of the base-32 alphabet from STRING.
store_hash() {
  printf '%s' "$1" | sha256sum | cut -c1-32 | tr 0123456789abcdef "$(printf '%s' "$nix32_chars" | cut -c1-16)"
}

store_db() { echo "$STORE_ROOT/nix/var/nix/standin-db/$(basename "$1")"; }

# store_valid PATH
store_valid() { [ -f "$(store_db "$1")" ]; }

# store_register PATH REFERENCE...: PATH's content is in place.
store_register() {
  _p=$1
  shift
  mkdir -p "$STORE_ROOT/nix/var/nix/standin-db"
  {
    printf 'narsize %s\n' "$(du -sb "$STORE_ROOT$_p" | cut -f1)"
    for _r in "$@"; do
      [ "$_r" = "$_p" ] || printf 'ref %s\n' "$_r"
    done
  } >"$(store_db "$_p").tmp"
  mv "$(store_db "$_p").tmp" "$(store_db "$_p")"
}

# store_refs PATH: its references, one a line.
store_refs() { sed -n 's/^ref //p' "$(store_db "$1")"; }

# store_narsize PATH
store_narsize() { sed -n 's/^narsize //p' "$(store_db "$1")"; }

# store_closure PATH...: every path in the closure, sorted, one a line.
store_closure() {
  _seen=$(mktemp)
  _todo=$(mktemp)
  printf '%s\n' "$@" >"$_todo"
  while [ -s "$_todo" ]; do
    _next=$(mktemp)
    while IFS= read -r _p; do
      [ -n "$_p" ] || continue
      grep -qxF "$_p" "$_seen" && continue
      store_valid "$_p" || die "error: path '$_p' is not valid"
      echo "$_p" >>"$_seen"
      store_refs "$_p" >>"$_next"
    done <"$_todo"
    mv "$_next" "$_todo"
  done
  sort -u "$_seen"
  rm -f "$_seen" "$_todo"
}

# store_package NAME VERSION: the path of a package from the stand-in's
# nixpkgs, added when missing. Its size is fixed by its name, so a closure
# diff has sizes to show.
store_package() {
  _p=/nix/store/$(store_hash "package:$1-$2")-$1-$2
  if ! store_valid "$_p"; then
    mkdir -p "$STORE_ROOT$_p/share/$1"
    _kib=$(($(printf '%s' "$1" | cksum | cut -d' ' -f1) % 200 + 20))
    head -c "$((_kib * 1024))" /dev/zero >"$STORE_ROOT$_p/share/$1/data"
    store_register "$_p"
  fi
  echo "$_p"
}

# The stand-in's nixpkgs: every system has the base packages; a name in
# environment.systemPackages gets its version from this table (1.0 when it
# is not in it).
base_packages="glibc 2.40-66
bash 5.2p37
coreutils 9.7
systemd 257.5
openssh 10.0p2
nix 2.28.4"
package_versions="htop 3.4.0
ripgrep 14.1.1
git 2.49.0
jq 1.7.1
curl 8.14.1
vim 9.1.1122
tmux 3.5a"

# system_packages FLAKEDIR: "name version" of the configuration's packages.
# The stand-in cannot evaluate Nix: it reads the names in the first
# `environment.systemPackages = with pkgs; [ ... ];` of the .nix files at
# the flake's root.
system_packages() {
  printf '%s\n' "$base_packages"
  for _f in "$1"/*.nix; do
    [ -f "$_f" ] || continue
    tr '\n' ' ' <"$_f" | sed -n 's/.*environment\.systemPackages *= *with pkgs; *\[\([^]]*\)\].*/\1/p' | tr ' ' '\n' | while IFS= read -r _n; do
      [ -n "$_n" ] || continue
      _v=$(printf '%s\n' "$package_versions" | awk -v n="$_n" '$1 == n { print $2 }')
      printf '%s %s\n' "$_n" "${_v:-1.0}"
    done
  done
}

# system_out ATTR SOURCE: the output path of the system ATTR built from the
# flake in the store path SOURCE (its inputs decide it; nothing is built).
system_out() {
  echo "/nix/store/$(store_hash "system:$1:$2")-nixos-system-$1-26.05.$(printf '%s' "$2" | cut -c12-19)"
}

# system_build ATTR SOURCE: builds the system (a store path) from the flake
# source and prints its path. What the configuration says that the tests
# observe, as NixOS would build it:
# - users.users.<name>.openssh.authorizedKeys end up in
#   etc/ssh/authorized_keys.d/<name> (nixpkgs
#   nixos/modules/services/networking/ssh/sshd.nix): from settings.json's
#   rootAuthorizedKeys (root) and authorizedKeys (userName), as
#   nixosModules.azure declares them (nix-config/azure.nix).
# - A literal `PermitRootLogin = "no"` in a .nix file at the root stands for
#   the option: then no key logs in as root (sshd_config(5)), modelled by
#   authorising none.
# - `# standin: activation fails` in a .nix file makes switch-to-configuration
#   exit 4, as when a unit fails to start (nixpkgs
#   nixos/modules/system/activation/switch-to-configuration.pl's status).
system_build() {
  _attr=$1 _src=$STORE_ROOT$2
  _out=$(system_out "$1" "$2")
  if store_valid "$_out"; then
    echo "$_out"
    return
  fi
  _pkgs=""
  _tmp=$(mktemp)
  system_packages "$_src" >"$_tmp"
  while read -r _n _v; do
    _pkgs="$_pkgs $(store_package "$_n" "$_v")"
  done <"$_tmp"
  rm -f "$_tmp"
  _d=$STORE_ROOT$_out
  rm -rf "$_d"
  mkdir -p "$_d/bin" "$_d/etc/ssh/authorized_keys.d"
  cp "$standin_store_dir/switch-to-configuration" "$_d/bin/switch-to-configuration"
  chmod 0555 "$_d/bin/switch-to-configuration"
  echo "26.05.$(printf '%s' "$2" | cut -c12-19) (Yarara)" >"$_d/nixos-version"
  # shellcheck disable=SC2086 # one path per word
  printf '%s\n' $_pkgs >"$_d/packages"
  _permit=yes
  for _f in "$_src"/*.nix; do
    [ -f "$_f" ] || continue
    grep -q 'PermitRootLogin = "no"' "$_f" && _permit=no
    grep -q '# standin: activation fails' "$_f" && : >"$_d/activation-fails"
  done
  if [ -f "$_src/settings.json" ]; then
    if [ $_permit = yes ]; then
      jq -r '.rootAuthorizedKeys // [] | .[]' "$_src/settings.json" >"$_d/etc/ssh/authorized_keys.d/root"
    fi
    _user=$(jq -r '.userName // empty' "$_src/settings.json")
    if [ -n "$_user" ]; then
      jq -r '.authorizedKeys // [] | .[]' "$_src/settings.json" >"$_d/etc/ssh/authorized_keys.d/$_user"
    fi
  fi
  # shellcheck disable=SC2086 # one reference per word
  store_register "$_out" $_pkgs
  echo "$_out"
}

# store_add_source DIR: copies a flake's files into the store as a source
# path (what fetching a flake does, src/libfetchers) and prints its path.
# The path depends on the content only.
store_add_source() {
  _h=$(cd "$1" && find . -type f ! -path './.git/*' | LC_ALL=C sort | xargs -r sha256sum | sha256sum | cut -c1-64)
  _p=/nix/store/$(store_hash "source:$_h")-source
  if ! store_valid "$_p"; then
    rm -rf "$STORE_ROOT$_p"
    mkdir -p "$STORE_ROOT$_p"
    (cd "$1" && find . -type f ! -path './.git/*' | while IFS= read -r _f; do
      mkdir -p "$STORE_ROOT$_p/$(dirname "$_f")"
      cp "$_f" "$STORE_ROOT$_p/$_f"
    done)
    store_register "$_p"
  fi
  echo "$_p"
}

# store_add_drv ATTR SOURCE: the store derivation of system ATTR from the
# source path SOURCE (instantiation writes it, src/libexpr/primops.cc
# derivationStrict); it references the source. Prints its path.
store_add_drv() {
  _out=$(system_out "$1" "$2")
  _drv=/nix/store/$(store_hash "drv:$_out")-$(basename "$_out" | cut -c34-).drv
  if ! store_valid "$_drv"; then
    mkdir -p "$STORE_ROOT/nix/store"
    printf '{"builder":"standin-nixos-system","attr":"%s","source":"%s","out":"%s"}\n' "$1" "$2" "$_out" >"$STORE_ROOT$_drv"
    store_register "$_drv" "$2"
  fi
  echo "$_drv"
}

# store_realise DRV: builds DRV's output unless it is valid; prints it.
store_realise() {
  store_valid "$1" || die "error: path '$1' is not valid"
  _attr=$(jq -r .attr "$STORE_ROOT$1")
  _src=$(jq -r .source "$STORE_ROOT$1")
  _want=$(jq -r .out "$STORE_ROOT$1")
  store_valid "$_src" || die "error: path '$_src' is not valid"
  _got=$(system_build "$_attr" "$_src")
  [ "$_got" = "$_want" ] || die "error: derivation '$1' produced '$_got', not '$_want'"
  echo "$_got"
}

# On a test VM the store is its own /nix (vm_nix, vm-root.sh): never the
# test machine's.
if [ -z "$STORE_ROOT" ] && [ ! -e /nix/.standin-vm ]; then
  die "$(basename "$0") (stand-in): /nix is not a test VM's own (no /nix/.standin-vm); refusing to touch it"
fi

standin_store_dir=$(cd "$(dirname "$0")" && pwd)
case $standin_store_dir in
*/fake-nix) standin_store_dir=$(cd "$standin_store_dir/../nixos-vm" && pwd) ;;
esac
