package nixos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ErrNoNix is returned by Lock when no nix is on PATH.
var ErrNoNix = errors.New(`"nix" is not on PATH`)

// Locker locks a rendered flake's inputs with `nix flake lock` before the
// install, so the install uses exactly that lock (nixos-anywhere evaluates
// the flake with --no-write-lock-file and would otherwise resolve the inputs
// itself and keep no record), and the VM and the workspace keep it.
type Locker struct {
	// Command is the argv prefix that runs nix; empty means the nix on PATH.
	Command []string
	// Env is the environment; nil means this process's. ChildEnv filters it.
	Env []string
	// Line receives nix's output lines.
	Line func(string)
	// Timeout bounds the lock; zero means 10 minutes (it fetches nixpkgs).
	Timeout time.Duration

	lookPath func(string) (string, error) // for tests; nil means exec.LookPath
}

// Lock runs `nix flake lock path:<dir>`, which writes <dir>/flake.lock, and
// reads the result. dir must be a rendered flake (Render).
func (l *Locker) Lock(ctx context.Context, dir string) (*FlakeLock, error) {
	prefix := l.Command
	if len(prefix) == 0 {
		lookPath := l.lookPath
		if lookPath == nil {
			lookPath = exec.LookPath
		}
		p, err := lookPath("nix")
		if err != nil {
			return nil, ErrNoNix
		}
		prefix = []string{p}
	}
	timeout := l.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := append(append([]string(nil), prefix...), LockArgs(dir)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	env := l.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = ChildEnv(env)
	var tail []string
	out := &lineWriter{fn: func(line string) {
		if len(tail) == 20 {
			tail = tail[1:]
		}
		tail = append(tail, line)
		if l.Line != nil {
			l.Line(line)
		}
	}}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out.flush()
	if err != nil {
		msg := fmt.Sprintf("failed to lock the flake's inputs (%s): %v", strings.Join(argv, " "), err)
		if ctx.Err() != nil {
			msg = fmt.Sprintf("failed to lock the flake's inputs within %s (nix flake lock fetches nixpkgs from GitHub)", timeout)
		}
		if len(tail) > 0 {
			msg += "\nlast output lines:\n  " + strings.Join(tail, "\n  ")
		}
		return nil, errors.New(msg)
	}
	data, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, fmt.Errorf("failed to read the lock file nix wrote: %w", err)
	}
	return ParseLock(data)
}

// LockArgs is the nix argument vector that locks the flake in dir.
func LockArgs(dir string) []string {
	return []string{"--extra-experimental-features", "nix-command flakes", "flake", "lock", "path:" + dir}
}

// FlakeLock is what a flake.lock pins.
type FlakeLock struct {
	// Inputs are the root's inputs by name (follows left out).
	Inputs map[string]LockedInput
	// Data is the file itself.
	Data []byte
}

// LockedInput is one locked input (Nix's lock file "locked" attributes).
type LockedInput struct {
	Type         string `json:"type"`
	Owner        string `json:"owner"`
	Repo         string `json:"repo"`
	Rev          string `json:"rev"`
	NarHash      string `json:"narHash"`
	LastModified int64  `json:"lastModified"`
	// Ref is the original reference: a branch or tag ("nixos-26.05").
	Ref string `json:"-"`
}

// Nixpkgs is the locked nixpkgs input.
func (l *FlakeLock) Nixpkgs() LockedInput { return l.Inputs["nixpkgs"] }

// String is "nixpkgs nixos-26.05 @ <rev>, disko v1.13.0 @ <rev>".
func (l *FlakeLock) String() string {
	names := make([]string, 0, len(l.Inputs))
	for n := range l.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		in := l.Inputs[n]
		s := n
		if in.Ref != "" {
			s += " " + in.Ref
		}
		parts = append(parts, s+" @ "+in.Rev)
	}
	return strings.Join(parts, ", ")
}

// ParseLock reads a Nix flake lock file (version 7, NixOS/nix
// src/libflake/lockfile.cc): nodes keyed by name, "root" naming the root
// node, whose inputs map to node names (or, for follows, to paths). Every
// direct input must be locked to a revision and a NAR hash, and nixpkgs must
// be one of them: a lock that pins less is refused rather than installed.
func ParseLock(data []byte) (*FlakeLock, error) {
	var f struct {
		Version int    `json:"version"`
		Root    string `json:"root"`
		Nodes   map[string]struct {
			Inputs   map[string]json.RawMessage `json:"inputs"`
			Locked   *LockedInput               `json:"locked"`
			Original struct {
				Ref string `json:"ref"`
			} `json:"original"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("flake.lock is not JSON: %w", err)
	}
	if f.Version < 5 || f.Version > 7 {
		return nil, fmt.Errorf("flake.lock has version %d; this tool reads versions 5 to 7", f.Version)
	}
	root, ok := f.Nodes[f.Root]
	if !ok {
		return nil, fmt.Errorf("flake.lock has no root node %q", f.Root)
	}
	lock := &FlakeLock{Inputs: map[string]LockedInput{}, Data: bytes.Clone(data)}
	for name, ref := range root.Inputs {
		var node string
		if json.Unmarshal(ref, &node) != nil {
			continue // follows another input: locked there
		}
		n, ok := f.Nodes[node]
		if !ok || n.Locked == nil {
			return nil, fmt.Errorf("flake.lock: input %q is not locked", name)
		}
		in := *n.Locked
		if in.Rev == "" || in.NarHash == "" {
			return nil, fmt.Errorf("flake.lock: input %q is locked without a revision and a NAR hash (%+v)", name, in)
		}
		in.Ref = n.Original.Ref
		lock.Inputs[name] = in
	}
	if _, ok := lock.Inputs["nixpkgs"]; !ok {
		return nil, errors.New("flake.lock: no nixpkgs input")
	}
	return lock, nil
}
