package rollout

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Source is the flake to switch to, fetched into a git repository this
// process owns. Nix opens a local git flake with libgit2, whose ownership
// check refuses a repository another user owns (NixOS/nix
// src/libfetchers/git-utils.cc; libgit2 validate_ownership): the
// workflow's checkout belongs to the runner's user, not to the
// container's root, so it is fetched, never opened in place.
type Source struct {
	Dir string // the repository
	Rev string // the commit, 40 hex digits
	// Flake is the flake reference Nix evaluates: the commit, nothing
	// uncommitted, and shallow=1 because the fetch has depth 1 (Nix
	// refuses a shallow repository without it, libfetchers/git.cc).
	Flake string
}

// Git runs the git command where the action runs.
type Git struct {
	// Path is the git binary; "" means "git" from PATH.
	Path string
	// Env is the child's environment; nil means ChildEnv(os.Environ()).
	Env []string
}

// SSHAuth is how git reaches an ssh URL: a key file and a known_hosts file
// with the host's pinned keys.
type SSHAuth struct {
	KeyFile        string // "" when no key is given: only public repositories
	KnownHostsFile string
}

var revRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// FetchURL fetches ref (a branch, tag or commit; "" is the remote's HEAD)
// of the repository at rawURL into dir, one commit deep.
func (g Git) FetchURL(ctx context.Context, dir, rawURL, ref string, auth SSHAuth) (Source, error) {
	if ref == "" {
		ref = "HEAD"
	}
	var env []string
	if isSSHURL(rawURL) {
		cmd := []string{"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + auth.KnownHostsFile,
			"-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentityAgent=none"}
		if auth.KeyFile != "" {
			cmd = append(cmd, "-o", "IdentitiesOnly=yes", "-i", auth.KeyFile)
		}
		// git runs GIT_SSH_COMMAND with the shell; every part is quoted.
		env = append(env, "GIT_SSH_COMMAND="+shellQuote(cmd...))
	}
	if err := g.init(ctx, dir); err != nil {
		return Source{}, err
	}
	// "--" ends the options: a URL or ref can never be read as one.
	if _, err := g.run(ctx, env, "-C", dir, "fetch", "--quiet", "--depth=1", "--", rawURL, ref); err != nil {
		return Source{}, fmt.Errorf("failed to fetch %q of %s: %w", ref, redactURL(rawURL), err)
	}
	return g.source(ctx, dir)
}

// FetchWorkspace fetches the commit checked out in workspace (the
// workflow's checkout) into dir. Git itself refuses a repository another
// user owns ("detected dubious ownership", git's setup.c
// ensure_valid_ownership) unless safe.directory names it in protected
// configuration: the system or global file, or the command line. The
// upload-pack that serves the fetch does not see the command line's, so a
// global file of this run's own names the checkout and its .git (what
// upload-pack opens), and nothing else.
func (g Git) FetchWorkspace(ctx context.Context, dir, workspace string) (Source, error) {
	abs, err := filepath.Abs(workspace)
	if err != nil {
		return Source{}, err
	}
	global := filepath.Join(filepath.Dir(dir), "workspace.gitconfig")
	cfg := fmt.Sprintf("[safe]\n\tdirectory = %s\n\tdirectory = %s\n", abs, filepath.Join(abs, ".git"))
	if err := os.WriteFile(global, []byte(cfg), 0o600); err != nil {
		return Source{}, err
	}
	env := []string{"GIT_CONFIG_GLOBAL=" + global}
	head, err := g.run(ctx, env, "-C", abs, "rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return Source{}, fmt.Errorf("failed to read the commit checked out in %s (is it a git checkout? add actions/checkout before this step): %w", abs, err)
	}
	if err := g.init(ctx, dir); err != nil {
		return Source{}, err
	}
	if _, err := g.run(ctx, env, "-C", dir, "fetch", "--quiet", "--depth=1", "--", "file://"+abs, "HEAD"); err != nil {
		return Source{}, fmt.Errorf("failed to fetch the checkout in %s: %w", abs, err)
	}
	src, err := g.source(ctx, dir)
	if err == nil && src.Rev != strings.TrimSpace(string(head)) {
		err = fmt.Errorf("the checkout in %s moved while it was fetched (%s, then %s)", abs, strings.TrimSpace(string(head)), src.Rev)
	}
	return src, err
}

func (g Git) init(ctx context.Context, dir string) error {
	if _, err := g.run(ctx, nil, "init", "--quiet", dir); err != nil {
		return fmt.Errorf("failed to create a repository for the configuration: %w", err)
	}
	return nil
}

func (g Git) source(ctx context.Context, dir string) (Source, error) {
	out, err := g.run(ctx, nil, "-C", dir, "rev-parse", "--verify", "FETCH_HEAD^{commit}")
	if err != nil {
		return Source{}, fmt.Errorf("failed to read the fetched commit: %w", err)
	}
	rev := strings.TrimSpace(string(out))
	if !revRE.MatchString(rev) {
		return Source{}, fmt.Errorf("failed to read the fetched commit: %q", rev)
	}
	// A ref keeps the commit from being pruned, and Nix finds it.
	if _, err := g.run(ctx, nil, "-C", dir, "update-ref", "refs/heads/switch", rev); err != nil {
		return Source{}, err
	}
	u := url.URL{Scheme: "git+file", Path: dir, RawQuery: "rev=" + rev + "&shallow=1"}
	return Source{Dir: dir, Rev: rev, Flake: u.String()}, nil
}

func (g Git) run(ctx context.Context, extraEnv []string, args ...string) ([]byte, error) {
	path := g.Path
	if path == "" {
		path = "git"
	}
	cmd := exec.CommandContext(ctx, path, args...)
	env := g.Env
	if env == nil {
		env = ChildEnv(os.Environ())
	}
	// Never prompt for a password on a terminal that is not there.
	cmd.Env = append(append(append([]string(nil), env...), "GIT_TERMINAL_PROMPT=0"), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", err, msg)
	}
	return stdout.Bytes(), nil
}

var scpLikeRE = regexp.MustCompile(`^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):`)

func isSSHURL(s string) bool {
	return scpLikeRE.MatchString(s) || strings.HasPrefix(s, "ssh://")
}

// SSHHost is the host name of an ssh or scp-like git URL, "" for others.
func SSHHost(s string) string {
	if m := scpLikeRE.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	if u, err := url.Parse(s); err == nil && u.Scheme == "ssh" {
		return u.Hostname()
	}
	return ""
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

func shellQuote(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
