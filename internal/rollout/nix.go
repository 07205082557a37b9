package rollout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
)

// FlakeFlags turn on what `nix` needs for flakes whatever nix.conf says,
// as nixos-rebuild does (nixos-rebuild-ng nix.py, FLAKE_FLAGS).
var FlakeFlags = []string{"--extra-experimental-features", "nix-command flakes"}

// Nix runs the nix command where the action runs: in its container (whose
// nix.conf has flakes on and the sandbox off), or on a laptop.
type Nix struct {
	// Path is the nix binary; "" means "nix" from PATH.
	Path string
	// Env is the child's environment; nil means ChildEnv(os.Environ()).
	Env []string
	// Log receives nix's standard error (build logs), one line at a time.
	Log func(line string)
}

// Toplevel is a NixOS system as evaluated: its derivation and output.
type Toplevel struct {
	Drv string `json:"drv"`
	Out string `json:"out"`
}

// ToplevelInstallable is the flake attribute nixos-rebuild builds.
func ToplevelInstallable(flake, attr string) string {
	return flake + `#nixosConfigurations."` + attr + `".config.system.build.toplevel`
}

// EvaluateArgs is the evaluation's command line after "nix".
func EvaluateArgs(flake, attr string) []string {
	return append(append([]string(nil), FlakeFlags...), "eval", "--json", ToplevelInstallable(flake, attr),
		"--apply", "t: { drv = t.drvPath; out = t.outPath; }")
}

// Evaluate evaluates the system's derivation and output path: the output
// path alone tells a no-op switch, before anything is built.
func (n *Nix) Evaluate(ctx context.Context, flake, attr string) (Toplevel, error) {
	out, err := n.run(ctx, nil, EvaluateArgs(flake, attr)...)
	if err != nil {
		return Toplevel{}, fmt.Errorf("failed to evaluate %s: %w", ToplevelInstallable(flake, attr), err)
	}
	var t Toplevel
	if err := json.Unmarshal(out, &t); err != nil {
		return Toplevel{}, fmt.Errorf("failed to evaluate %s: unexpected output %q: %w", ToplevelInstallable(flake, attr), abbreviate(string(out)), err)
	}
	if CheckStorePath(t.Out) != nil || !strings.HasSuffix(t.Drv, ".drv") || CheckStorePath(t.Drv) != nil {
		return Toplevel{}, fmt.Errorf("failed to evaluate %s: %q and %q are not store paths", ToplevelInstallable(flake, attr), t.Drv, t.Out)
	}
	return t, nil
}

// Build realises the derivation's outputs in the local store (nix build
// DRV^*, as nixos-rebuild-ng builds an evaluated system) and returns the
// output path.
func (n *Nix) Build(ctx context.Context, t Toplevel) error {
	out, err := n.run(ctx, nil, append(append([]string(nil), FlakeFlags...), "build", "--no-link", "--print-out-paths", t.Drv+"^*")...)
	if err != nil {
		return fmt.Errorf("failed to build %s: %w", t.Out, err)
	}
	if got := strings.TrimSpace(string(out)); got != t.Out {
		return fmt.Errorf("failed to build %s: nix built %q", t.Out, got)
	}
	return nil
}

// PathInfo lists the closure of path in the local store with NAR sizes
// (nix path-info --json --recursive).
func (n *Nix) PathInfo(ctx context.Context, path string) ([]PathInfo, error) {
	out, err := n.run(ctx, nil, append(append([]string(nil), FlakeFlags...), "path-info", "--json", "--recursive", path)...)
	if err != nil {
		return nil, fmt.Errorf("failed to list the closure of %s: %w", path, err)
	}
	infos, err := parsePathInfoJSON(out)
	if err != nil {
		return nil, fmt.Errorf("failed to list the closure of %s: %w", path, err)
	}
	return infos, nil
}

// parsePathInfoJSON reads both shapes `nix path-info --json` has had: an
// array of objects with "path" (Nix before 2.19) and an object keyed by
// path (2.19 and later, NixOS/nix doc/manual/rl-next of 2.19).
func parsePathInfoJSON(b []byte) ([]PathInfo, error) {
	type info struct {
		Path    string `json:"path"`
		NarSize int64  `json:"narSize"`
	}
	var byPath map[string]*info
	if err := json.Unmarshal(b, &byPath); err == nil {
		out := make([]PathInfo, 0, len(byPath))
		for p, i := range byPath {
			if i == nil {
				return nil, fmt.Errorf("%s is not valid in the store", p)
			}
			out = append(out, PathInfo{Path: p, NarSize: i.NarSize})
		}
		SortPaths(out)
		return out, nil
	}
	var list []info
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("unexpected output of nix path-info --json %q: %w", abbreviate(string(b)), err)
	}
	out := make([]PathInfo, 0, len(list))
	for _, i := range list {
		out = append(out, PathInfo(i))
	}
	SortPaths(out)
	return out, nil
}

// CopyTarget is where nix copy sends paths: an ssh-ng store reached
// through a tunnel on the verified connection.
type CopyTarget struct {
	// URI is the store URI, "ssh-ng://root@127.0.0.1".
	URI string
	// SSHOpts is NIX_SSHOPTS: the tunnel's port, the pinned host key in a
	// known_hosts file and the login key (SSHOptions).
	SSHOpts []string
}

// CopyArgs is nix copy's command line after "nix": the machine fetches what
// it can from its own substituters (--substitute-on-destination, what
// nixos-rebuild's --use-substitutes passes to nix-copy-closure as -s).
func CopyArgs(uri string, derivation bool, paths ...string) []string {
	args := append(append([]string(nil), FlakeFlags...), "copy", "--to", uri, "--substitute-on-destination")
	if derivation {
		args = append(args, "--derivation")
	}
	return append(args, paths...)
}

// Copy copies paths (and their closures) to the machine; with derivation
// the store derivations themselves, for a build on the machine.
func (n *Nix) Copy(ctx context.Context, to CopyTarget, derivation bool, paths ...string) error {
	env := []string{"NIX_SSHOPTS=" + strings.Join(to.SSHOpts, " ")}
	if _, err := n.run(ctx, env, CopyArgs(to.URI, derivation, paths...)...); err != nil {
		return fmt.Errorf("failed to copy %s to the machine: %w", strings.Join(paths, " "), err)
	}
	return nil
}

// SSHOptions is NIX_SSHOPTS for a copy through a local tunnel on port:
// strict checking against a known_hosts file that holds only the pinned
// key under an alias, the login key and nothing from ~/.ssh. Nix splits
// NIX_SSHOPTS at whitespace (shell-like in newer releases), so no value
// may contain any; the paths come from os.MkdirTemp.
func SSHOptions(port int, knownHosts, alias, identity string) ([]string, error) {
	opts := []string{
		"-F", "/dev/null",
		"-p", fmt.Sprint(port),
		"-o", "HostKeyAlias=" + alias,
		"-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-i", identity,
		"-o", "BatchMode=yes",
	}
	for _, o := range opts {
		if strings.ContainsAny(o, " \t\n'\"\\") {
			return nil, fmt.Errorf("ssh option %q for nix copy has whitespace or quotes, which NIX_SSHOPTS cannot carry; set TMPDIR to a plain directory", o)
		}
	}
	return opts, nil
}

// NixError is a nix command that failed, with its last lines.
type NixError struct {
	Args []string
	Err  error
	Tail []string
}

func (e *NixError) Error() string {
	msg := fmt.Sprintf("nix %s: %v", strings.Join(e.Args, " "), e.Err)
	if len(e.Tail) > 0 {
		msg += "; last output:\n    " + strings.Join(e.Tail, "\n    ")
	}
	return msg
}

func (e *NixError) Unwrap() error { return e.Err }

// ErrNoNix means the nix command is not installed.
var ErrNoNix = errors.New("nix is not installed: switch evaluates the flake with Nix; use the action (its container has Nix) or install Nix (https://nixos.org/download)")

func (n *Nix) run(ctx context.Context, extraEnv []string, args ...string) ([]byte, error) {
	path := n.Path
	if path == "" {
		path = "nix"
	}
	if _, err := exec.LookPath(path); err != nil {
		return nil, ErrNoNix
	}
	cmd := exec.CommandContext(ctx, path, args...)
	env := n.Env
	if env == nil {
		env = ChildEnv(os.Environ())
	}
	cmd.Env = append(append([]string(nil), env...), extraEnv...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	tail := &tailLines{max: 15}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			tail.add(line)
			if n.Log != nil {
				n.Log(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	_ = pw.Close()
	wg.Wait()
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return stdout.Bytes(), &NixError{Args: args, Err: err, Tail: tail.lines}
	}
	return stdout.Bytes(), nil
}

type tailLines struct {
	max   int
	lines []string
}

func (t *tailLines) add(l string) {
	if len(t.lines) == t.max {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, l)
}

// secretEnvRE matches what no child needs: the action's inputs (secrets
// among them), Azure credentials, GitHub's token and OIDC request.
var secretEnvRE = regexp.MustCompile(`^(INPUT_[^=]*|AZURE_[^=]*|ACTIONS_ID_TOKEN_REQUEST_[^=]*|ACTIONS_RUNTIME_TOKEN|GITHUB_TOKEN)=`)

// ChildEnv is env without the variables that carry secrets.
func ChildEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !secretEnvRE.MatchString(kv) {
			out = append(out, kv)
		}
	}
	return out
}

func abbreviate(s string) string {
	if len(s) > 200 {
		return s[:197] + "..."
	}
	return s
}
