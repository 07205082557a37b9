// Package finalize lists, as data, what happens on the installed NixOS when
// the user gives their own configuration repository: the original scripts'
// steps (channel, key, ssh config, clone, nixos-rebuild) without their
// shortcuts (ssh-keyscan, dos2unix, --impure). The plan shows the steps; the
// pipeline runs them over SSH in root's session, and whatever belongs to the
// user (~/.ssh, the checkout) is written by the user (runuser).
package finalize

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Step is one checked step: an optional file written first, then a command
// run by the remote shell in root's session.
type Step struct {
	Name    string
	Upload  *Upload
	Command string
}

// Upload is a file written on the VM through stdin, never a command line,
// by Owner (sshx.UploadAsCommand): root never writes into a user's
// directory, where a planted symlink would send the write elsewhere.
type Upload struct {
	Path   string
	Mode   fs.FileMode
	Owner  string
	Data   []byte
	Secret bool // the data is never shown
}

// GitHubKnownHosts are GitHub's published SSH host keys (docs.github.com,
// "GitHub's SSH key fingerprints"; api.github.com/meta "ssh_keys"), pinned
// here rather than fetched with ssh-keyscan, which trusts whatever answers.
var GitHubKnownHosts = []string{
	"github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
	"github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
	"github.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=",
}

// ConfigDir is where the user's configuration is cloned, by the user, so
// they can edit, commit and pull it there.
func ConfigDir(user string) string { return "/home/" + user + "/nix-config" }

// TrustCommand makes root's Nix accept dir, a git repository owned by the
// user. Nix 2.20 and later opens a local git flake with libgit2, whose
// ownership check refuses a repository owned by another user unless the
// caller is root with SUDO_UID set to its owner (sudo as that user) or the
// work tree is listed in safe.directory of the global or system git config
// (libgit2 src/libgit2/repository.c validate_ownership; NixOS/nix
// src/libfetchers/git-utils.cc); nixos-rebuild then fails with "repository
// path '...' is not owned by current user". This adds exactly dir to root's
// ~/.gitconfig, once. The user is the machine's administrator (wheel), so
// trusting their checkout gives nobody anything new.
func TrustCommand(dir string) string {
	return fmt.Sprintf("git config --global --get-all safe.directory | grep -qxF -- %s || git config --global --add safe.directory %s",
		sshx.Quote(dir), sshx.Quote(dir))
}

// Steps returns the finalize steps for cfg; none without config-repo.
func Steps(cfg config.Config) []Step {
	if cfg.ConfigRepo == "" {
		return nil
	}
	user := cfg.UserName
	home := "/home/" + user
	dir := ConfigDir(user)
	asUser := func(args ...string) string {
		return sshx.Quote(append([]string{"runuser", "-u", user, "--"}, args...)...)
	}
	steps := []Step{
		{Name: "set the nixos channel", Command: sshx.Quote("nix-channel", "--add", "https://nixos.org/channels/"+cfg.NixChannel, "nixos") + " && nix-channel --update"},
		{Name: "prepare ~/.ssh", Command: asUser("mkdir", "-p", "-m", "0700", home+"/.ssh")},
	}
	if len(cfg.GitHubSSHKey) > 0 {
		// CRLF was normalised when the input was parsed.
		steps = append(steps,
			Step{Name: "upload the GitHub key", Upload: &Upload{Path: home + "/.ssh/github", Mode: 0o600, Owner: user, Data: cfg.GitHubSSHKey, Secret: true}},
			Step{Name: "write ~/.ssh/config for github.com", Upload: &Upload{Path: home + "/.ssh/config", Mode: 0o600, Owner: user,
				Data: []byte("Host github.com\n  User git\n  IdentityFile ~/.ssh/github\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n")}},
		)
	}
	steps = append(steps,
		Step{Name: "pin github.com's published host keys", Upload: &Upload{Path: home + "/.ssh/known_hosts", Mode: 0o644, Owner: user,
			Data: []byte(strings.Join(GitHubKnownHosts, "\n") + "\n")}},
		// "--" ends git's options: config-repo is checked not to start
		// with '-', and this makes it hold whatever the check misses.
		Step{Name: "clone the configuration (or fetch it)", Command: fmt.Sprintf("if [ -d %s ]; then %s && %s; else %s; fi",
			sshx.Quote(dir+"/.git"),
			asUser("git", "-C", dir, "fetch", "--prune", "origin"),
			asUser("git", "-C", dir, "reset", "--hard", "@{upstream}"),
			asUser("git", "clone", "--", cfg.ConfigRepo, dir))},
		Step{Name: "let root's Nix read the user's checkout", Command: TrustCommand(dir)},
		Step{Name: "nixos-rebuild switch", Command: sshx.Quote("nixos-rebuild", "switch", "--flake", dir+"#"+cfg.ConfigFlakeAttr)},
	)
	return steps
}

// String describes the step for the plan, without secret data.
func (s Step) String() string {
	var parts []string
	if u := s.Upload; u != nil {
		what := fmt.Sprintf("%d bytes", len(u.Data))
		if u.Secret {
			what = "the secret"
		}
		parts = append(parts, fmt.Sprintf("write %s (%04o) as %s from %s over stdin", u.Path, u.Mode, u.Owner, what))
	}
	if s.Command != "" {
		parts = append(parts, s.Command)
	}
	return s.Name + ": " + strings.Join(parts, "; then ")
}
