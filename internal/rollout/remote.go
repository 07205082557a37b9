package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Paths and unit names on the machine.
const (
	// ProfilePath is NixOS's system profile; its generations are
	// system-<N>-link beside it (NixOS/nix src/libstore/profiles.cc).
	ProfilePath = "/nix/var/nix/profiles/system"
	// StateDir holds the switch's state; a tmpfs, so a reboot forgets it.
	StateDir = "/run/nixos-cloud-deploy"
	// WatchdogUnit is the transient unit of the watchdog.
	WatchdogUnit = "nixos-cloud-deploy-watchdog"
	// ActivationUnit is the transient unit nixos-rebuild runs
	// switch-to-configuration in (nixos-rebuild-ng nix.py,
	// SWITCH_TO_CONFIGURATION_CMD_PREFIX): systemd refuses a second unit
	// of one name, so our switch and a nixos-rebuild on the machine
	// exclude each other.
	ActivationUnit = "nixos-rebuild-switch-to-configuration"
)

// Remote runs commands over one SSH connection; *sshx.Client is one.
type Remote interface {
	Run(ctx context.Context, cmd string, opts ...sshx.RunOption) error
	Output(ctx context.Context, cmd string, opts ...sshx.RunOption) ([]byte, error)
}

var _ Remote = (*sshx.Client)(nil)

// Machine is the machine being switched, reached as root or through
// sudo -n (a user with passwordless sudo).
type Machine struct {
	Remote Remote
	Sudo   bool
}

// command wraps a script for the remote shell: sh -c SCRIPT sh ARGS...,
// through sudo -n when the login user is not root.
func (m Machine) command(script string, args ...string) string {
	argv := append([]string{"sh", "-c", script, "sh"}, args...)
	if m.Sudo {
		argv = append([]string{"sudo", "-n", "--"}, argv...)
	}
	return sshx.Quote(argv...)
}

// storePathRE is a store path as Nix prints it: /nix/store/, 32 base-32
// characters (Nix's alphabet omits e, o, t and u), a dash and a name of
// the characters Nix allows (NixOS/nix src/libstore/path.cc, checkName).
var storePathRE = regexp.MustCompile(`^/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-._?=]+$`)

// CheckStorePath refuses anything but a plain store path.
func CheckStorePath(p string) error {
	if !storePathRE.MatchString(p) {
		return fmt.Errorf("%q is not a Nix store path", p)
	}
	return nil
}

// State is where a switch stands, as the state file on the machine says:
//
//	armed PREVIOUS PATH       PATH is activated (or being), unconfirmed
//	confirmed GENERATION PATH PATH is generation GENERATION and the boot default
//	rolling-back PREVIOUS REASON
//	rolled-back PREVIOUS REASON
type State struct {
	Phase      string // "", armed, confirmed, rolling-back, rolled-back
	Previous   int    // the generation a rollback goes (or went) back to
	Path       string // the system being switched to (armed, confirmed)
	Generation int    // confirmed: the new generation
	Reason     string // why it rolled back
}

func parseState(line string) State {
	f := strings.Fields(line)
	if len(f) == 0 {
		return State{}
	}
	s := State{Phase: f[0]}
	num := func(i int) int {
		if i < len(f) {
			n, _ := strconv.Atoi(f[i])
			return n
		}
		return 0
	}
	word := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch s.Phase {
	case "armed":
		s.Previous, s.Path = num(1), word(2)
	case "confirmed":
		s.Generation, s.Path = num(1), word(2)
	case "rolling-back", "rolled-back":
		s.Previous = num(1)
		if len(f) > 2 {
			s.Reason = strings.Join(f[2:], " ")
		}
	}
	return s
}

// Probe is what the machine said before anything changed.
type Probe struct {
	Generation int    // the system profile's current generation
	Profile    string // the store path it points to
	Current    string // /run/current-system
	Systemd    bool   // systemd runs (/run/systemd/system exists)
	State      State  // the last switch's state, if any
	Watchdog   bool   // a watchdog is waiting
}

const profileFunctions = `profile=` + ProfilePath + `
dir=` + StateDir + `
gen_of() { l=$(readlink "$profile") || return 1; l=${l#system-}; printf '%s\n' "${l%-link}"; }
`

const probeScript = profileFunctions + `set -u
[ -L "$profile" ] || { echo "error $profile does not exist: this is not a NixOS system" >&2; exit 65; }
printf 'generation %s\n' "$(gen_of)"
printf 'profile %s\n' "$(readlink -f "$profile")"
printf 'current %s\n' "$(readlink -f /run/current-system)"
if [ -d /run/systemd/system ]; then echo 'systemd yes'; else echo 'systemd no'; fi
printf 'state %s\n' "$(cat "$dir/state" 2>/dev/null)"
if systemctl is-active --quiet ` + WatchdogUnit + `.service 2>/dev/null; then echo 'watchdog active'; else echo 'watchdog inactive'; fi
`

// Probe reads the machine's system profile, running system and switch
// state.
func (m Machine) Probe(ctx context.Context) (Probe, error) {
	out, err := m.Remote.Output(ctx, m.command(probeScript))
	if err != nil {
		return Probe{}, fmt.Errorf("failed to read the system profile: %w", err)
	}
	var p Probe
	kv := fields(out)
	if p.Generation, err = strconv.Atoi(kv["generation"]); err != nil {
		return Probe{}, fmt.Errorf("failed to read the system profile: %s points to %q, not system-<N>-link", ProfilePath, kv["generation"])
	}
	p.Profile, p.Current = kv["profile"], kv["current"]
	p.Systemd = kv["systemd"] == "yes"
	p.State = parseState(kv["state"])
	p.Watchdog = kv["watchdog"] == "active"
	return p, nil
}

// fields reads "key value" lines; the last one of a key wins.
func fields(out []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if k != "" {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

const closureScript = `set -eu
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
nix-store --query --requisites "$@" | sort -u >"$t/paths"
xargs -r nix-store --query --size <"$t/paths" >"$t/sizes"
paste -d ' ' "$t/paths" "$t/sizes"
`

// Closure lists the closure of paths in the machine's store with their NAR
// sizes (nix-store --query --requisites and --size).
func (m Machine) Closure(ctx context.Context, paths ...string) ([]PathInfo, error) {
	for _, p := range paths {
		if err := CheckStorePath(p); err != nil {
			return nil, err
		}
	}
	out, err := m.Remote.Output(ctx, m.command(closureScript, paths...))
	if err != nil {
		return nil, fmt.Errorf("failed to list the closure of %s on the machine: %w", strings.Join(paths, " "), err)
	}
	var infos []PathInfo
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, size, ok := strings.Cut(line, " ")
		n, err := strconv.ParseInt(size, 10, 64)
		if !ok || err != nil || CheckStorePath(p) != nil {
			return nil, fmt.Errorf("failed to list the closure: unexpected line %q", line)
		}
		infos = append(infos, PathInfo{Path: p, NarSize: n})
	}
	return infos, nil
}

// Missing returns the paths the machine's store does not have
// (nix-store --check-validity --print-invalid, NixOS/nix
// src/nix/nix-store/nix-store.cc opCheckValidity). The list goes through
// stdin: a closure has thousands of paths.
func (m Machine) Missing(ctx context.Context, paths []string) ([]string, error) {
	for _, p := range paths {
		if err := CheckStorePath(p); err != nil {
			return nil, err
		}
	}
	in := strings.NewReader(strings.Join(paths, "\n") + "\n")
	out, err := m.Remote.Output(ctx, m.command(`xargs -r nix-store --check-validity --print-invalid`), sshx.WithStdin(in))
	if err != nil {
		return nil, fmt.Errorf("failed to ask the machine which store paths it lacks: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// watchdogScript runs in the transient unit WatchdogUnit with the
// arguments PREVIOUS PATH CONFIRM_SECONDS ACTIVATION_LIMIT_SECONDS.
const watchdogScript = `#!/bin/sh
# nixos-cloud-deploy's watchdog: PATH was activated with
# switch-to-configuration test, the system profile and the boot loader still
# say generation $1. Unless the switch is confirmed within $3 seconds after
# the activation ended, it activates generation $1 again. It does so at once
# when the activation fails, and when the activation does not end within $4
# seconds.
` + profileFunctions + `prev=$1 path=$2 confirm=$3 limit=$4 reason=
waited=0
while [ ! -e "$dir/activated" ]; do
  if [ "$waited" -ge "$limit" ]; then
    reason="the activation did not end within ${limit}s"
    break
  fi
  sleep 1
  waited=$((waited + 1))
done
if [ -z "$reason" ]; then
  rc=$(cat "$dir/activated")
  if [ "$rc" != 0 ]; then
    reason="the activation failed (switch-to-configuration exited with status $rc)"
  else
    waited=0
    while [ "$waited" -lt "$confirm" ]; do
      case $(cat "$dir/state") in confirmed*) exit 0 ;; esac
      sleep 1
      waited=$((waited + 1))
    done
    reason="no confirmation over a new SSH connection within ${confirm}s of the activation"
  fi
fi
exec 9>"$dir/lock"
flock 9
case $(cat "$dir/state") in
  "armed $prev $path") ;;
  *) exit 0 ;;
esac
printf 'rolling-back %s %s\n' "$prev" "$reason" >"$dir/state"
echo "nixos-cloud-deploy: rolling back to generation $prev: $reason"
"$profile/bin/switch-to-configuration" switch
rc=$?
if [ "$rc" != 0 ]; then
  reason="$reason; switch-to-configuration of generation $prev exited with status $rc"
fi
printf 'rolled-back %s %s\n' "$prev" "$reason" >"$dir/state"
`

// activationScript runs in the transient unit ActivationUnit with the
// system path as its argument: it activates the system without making it
// the boot default (switch-to-configuration test), and records how that
// ended.
const activationScript = `#!/bin/sh
"$1/bin/switch-to-configuration" test
rc=$?
echo "$rc" >` + StateDir + `/activated.tmp && mv ` + StateDir + `/activated.tmp ` + StateDir + `/activated
exit $rc
`

// activateScript takes the arguments PATH EXPECTED_GENERATION
// CONFIRM_SECONDS LIMIT_SECONDS. It prints "armed" once the watchdog runs,
// the activation's own output, and "activation RC" at the end. The system
// profile and the boot loader are left alone until the confirmation: a
// machine that reboots before it boots the previous generation.
var activateScript = profileFunctions + `set -u
path=$1 expect=$2 confirm=$3 limit=$4
umask 077
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if systemctl is-active --quiet ` + WatchdogUnit + `.service; then
  echo "error another switch is waiting for its confirmation ($(cat "$dir/state"))"
  exit 75
fi
prev=$(gen_of)
if [ "$prev" != "$expect" ]; then
  echo "error the system profile moved from generation $expect to $prev since this run read it"
  exit 75
fi
if [ ! -x "$path/bin/switch-to-configuration" ]; then
  echo "error $path is not a NixOS system: it has no bin/switch-to-configuration"
  exit 65
fi
rm -f "$dir/activated" "$dir/activated.tmp"
cat >"$dir/watchdog" <<'NCD_EOF'
` + watchdogScript + `NCD_EOF
cat >"$dir/activate" <<'NCD_EOF'
` + activationScript + `NCD_EOF
printf 'armed %s %s\n' "$prev" "$path" >"$dir/state"
# A transient unit gets the service manager's environment, not ours: the
# watchdog and the activation wrapper get this session's PATH, where NixOS
# puts nix-env, flock and the rest (/run/current-system/sw/bin).
if ! systemd-run --unit=` + WatchdogUnit + ` --description='nixos-cloud-deploy: roll back unless the switch is confirmed' \
    --setenv=PATH="$PATH" --service-type=exec --collect --quiet /bin/sh "$dir/watchdog" "$prev" "$path" "$confirm" "$limit"; then
  printf 'rolled-back %s %s\n' "$prev" "the watchdog could not be started; nothing was activated" >"$dir/state"
  echo "error failed to start the watchdog; nothing was activated"
  exit 70
fi
echo armed
flock -u 9
systemd-run -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER=0 --setenv=PATH="$PATH" --collect --no-ask-password --pipe --quiet \
  --service-type=exec --unit=` + ActivationUnit + ` --wait /bin/sh "$dir/activate" "$path"
echo "activation $?"
`

// Activation is what the activate step saw.
type Activation struct {
	Armed      bool // the watchdog runs
	Ended      bool // the activation's exit status was seen
	ExitStatus int  // switch-to-configuration's
}

// ActivateOptions tune Activate.
type ActivateOptions struct {
	// Expect is the generation Probe saw: a profile that moved since is
	// not switched.
	Expect int
	// Confirm is how long the watchdog waits for the confirmation after
	// the activation ended.
	Confirm time.Duration
	// Limit is how long the activation itself may take before the
	// watchdog rolls back anyway.
	Limit time.Duration
	// Log receives the activation's output.
	Log func(line string)
}

// ErrRefused is a switch the machine refused before changing anything.
var ErrRefused = errors.New("the machine refused the switch")

// Activate arms the watchdog and activates path (switch-to-configuration
// test: the profile and the boot loader wait for the confirmation). The
// connection may drop during the activation (a new firewall, a restarted
// network); then the Activation says how far it got and err is the lost
// connection: confirming (or the watchdog) decides the rest.
func (m Machine) Activate(ctx context.Context, path string, o ActivateOptions) (Activation, error) {
	if err := CheckStorePath(path); err != nil {
		return Activation{}, err
	}
	var a Activation
	var refusal string
	log := func(_ string, line string) {
		k, v, _ := strings.Cut(line, " ")
		if !a.Armed {
			switch {
			case line == "armed":
				a.Armed = true
				return
			case k == "error":
				refusal = v
				return
			}
		} else if k == "activation" && !a.Ended {
			if n, err := strconv.Atoi(v); err == nil {
				a.Ended, a.ExitStatus = true, n
				return
			}
		}
		if o.Log != nil {
			o.Log(line)
		}
	}
	err := m.Remote.Run(ctx, m.command(activateScript, path, strconv.Itoa(o.Expect), seconds(o.Confirm), seconds(o.Limit)), sshx.WithLog(log))
	if refusal != "" {
		return a, fmt.Errorf("%w: %s", ErrRefused, refusal)
	}
	if err != nil && a.Ended {
		err = nil // the script's own exit after the activation ended
	}
	return a, err
}

func seconds(d time.Duration) string {
	return strconv.Itoa(int(max(1, (d+time.Second-1)/time.Second)))
}

// confirmScript takes PREVIOUS PATH and answers one line: "confirmed",
// "activating" (the activation has not ended yet), "failed RC" (it failed:
// the watchdog rolls back now), or "state LINE". Confirming makes PATH a
// generation of the system profile and the boot loader's default, as
// nixos-rebuild switch would have (nix-env -p PROFILE --set, then
// switch-to-configuration boot), and stops the watchdog.
const confirmScript = profileFunctions + `set -u
prev=$1 path=$2
# After a reboot /run is empty: no state, nothing to confirm.
umask 077
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
state=$(cat "$dir/state" 2>/dev/null)
if [ "$state" = "armed $prev $path" ]; then
  if [ ! -e "$dir/activated" ]; then
    echo activating
  elif [ "$(cat "$dir/activated")" = 0 ]; then
    systemctl stop ` + WatchdogUnit + `.service 2>/dev/null
    if nix-env -p "$profile" --set "$path" >&2 && "$path/bin/switch-to-configuration" boot >&2; then
      printf 'confirmed %s %s\n' "$(gen_of)" "$path" >"$dir/state"
      echo confirmed
    else
      printf 'confirmed %s %s\n' "$(gen_of)" "$path" >"$dir/state"
      echo "confirmed-not-default"
    fi
  else
    echo "failed $(cat "$dir/activated")"
  fi
else
  echo "state $state"
fi
flock -u 9
printf 'generation %s\n' "$(gen_of)"
printf 'current %s\n' "$(readlink -f /run/current-system)"
`

// Answer is the machine's answer to a confirmation.
type Answer struct {
	Confirmed bool
	// NotDefault: confirmed, but the system could not be made a
	// generation and the boot default (the machine runs it until a reboot).
	NotDefault bool
	Activating bool  // the activation has not ended yet: ask again
	Failed     bool  // the activation failed; the watchdog rolls back
	ExitStatus int   // switch-to-configuration's, when Failed
	State      State // when none of the above
	Generation int
	Current    string
}

// Confirm confirms the switch from generation prev to path over this
// connection, which must be a new one: only a system that lets a new login
// in may stay.
func (m Machine) Confirm(ctx context.Context, prev int, path string) (Answer, error) {
	out, err := m.Remote.Output(ctx, m.command(confirmScript, strconv.Itoa(prev), path))
	if err != nil {
		return Answer{}, fmt.Errorf("failed to confirm the switch: %w", err)
	}
	first, _, _ := bytes.Cut(out, []byte("\n"))
	kv := fields(out)
	a := Answer{Current: kv["current"]}
	a.Generation, _ = strconv.Atoi(kv["generation"])
	switch line := strings.TrimSpace(string(first)); {
	case line == "confirmed":
		a.Confirmed = true
	case line == "confirmed-not-default":
		a.Confirmed, a.NotDefault = true, true
	case line == "activating":
		a.Activating = true
	case strings.HasPrefix(line, "failed "):
		a.Failed = true
		a.ExitStatus, _ = strconv.Atoi(strings.TrimPrefix(line, "failed "))
	default:
		rest, ok := strings.CutPrefix(line, "state")
		if !ok {
			return Answer{}, fmt.Errorf("failed to confirm the switch: unexpected answer %q", line)
		}
		a.State = parseState(rest)
	}
	return a, nil
}

// DryRun is what `nix-store --realise --dry-run` says the machine would do
// (NixOS/nix src/libmain/shared.cc, printMissing).
type DryRun struct {
	Build    int    // derivations to build
	Fetch    int    // paths to substitute
	Download string // "12.3 MiB", as Nix renders it
	Unpacked string
}

var (
	willBuildRE = regexp.MustCompile(`^(?:this derivation|these (\d+) derivations) will be built:`)
	willFetchRE = regexp.MustCompile(`^(?:this path|these (\d+) paths) will be fetched \(([^,]+) download, ([^)]+) unpacked\):`)
)

// ParseDryRun reads printMissing's lines.
func ParseDryRun(out string) DryRun {
	var d DryRun
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if m := willBuildRE.FindStringSubmatch(line); m != nil {
			d.Build = 1
			if m[1] != "" {
				d.Build, _ = strconv.Atoi(m[1])
			}
		}
		if m := willFetchRE.FindStringSubmatch(line); m != nil {
			d.Fetch = 1
			if m[1] != "" {
				d.Fetch, _ = strconv.Atoi(m[1])
			}
			d.Download, d.Unpacked = m[2], m[3]
		}
	}
	return d
}

// Summary is "3 derivations to build, 120 paths to fetch (45.2 MiB download)".
func (d DryRun) Summary() string {
	s := fmt.Sprintf("%d derivations to build on the machine", d.Build)
	if d.Fetch > 0 {
		s += fmt.Sprintf(", %d paths to fetch (%s download, %s unpacked)", d.Fetch, d.Download, d.Unpacked)
	}
	return s
}

// RealiseDryRun asks the machine what building drv would build and fetch.
func (m Machine) RealiseDryRun(ctx context.Context, drv string) (DryRun, error) {
	if err := CheckStorePath(drv); err != nil {
		return DryRun{}, err
	}
	// printMissing writes to stderr; the script hands it over on stdout.
	out, err := m.Remote.Output(ctx, m.command(`nix-store --realise --dry-run "$1" 2>&1`, drv))
	if err != nil {
		return DryRun{}, fmt.Errorf("failed to ask the machine what it would build: %w", err)
	}
	return ParseDryRun(string(out)), nil
}

// Realise builds drv on the machine (build-on: target, as nixos-rebuild
// --build-host does with the evaluated derivation) and returns its output.
func (m Machine) Realise(ctx context.Context, drv string, log func(string)) (string, error) {
	if err := CheckStorePath(drv); err != nil {
		return "", err
	}
	out, err := m.Remote.Output(ctx, m.command(`nix-store --realise "$1"`, drv), sshx.WithLog(func(_, l string) {
		if log != nil {
			log(l)
		}
	}), sshx.WithTailLines(30))
	if err != nil {
		return "", fmt.Errorf("failed to build %s on the machine: %w", drv, err)
	}
	p := strings.TrimSpace(string(out))
	if err := CheckStorePath(p); err != nil {
		return "", fmt.Errorf("failed to build %s on the machine: %w", drv, err)
	}
	return p, nil
}
