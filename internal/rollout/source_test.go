package rollout

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo makes a repository with two commits on main and a tag on the
// first; it returns the directory and both commits.
func gitRepo(t *testing.T) (dir, first, second string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git not found: %v; apt-get install git", err)
	}
	dir = t.TempDir()
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	write := func(content string) {
		if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "flake.nix")
		git("commit", "-q", "-m", content)
	}
	write("{ outputs = _: { }; }\n")
	first = git("rev-parse", "HEAD")
	git("tag", "-a", "-m", "v1", "v1")
	write("{ outputs = _: { one = 1; }; }\n")
	second = git("rev-parse", "HEAD")
	// Uncommitted work is never part of a switch.
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("dirty"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, first, second
}

func TestFetchURLRefs(t *testing.T) {
	t.Parallel()
	repo, first, second := gitRepo(t)
	for _, tc := range []struct{ ref, want string }{
		{"", second}, {"main", second}, {"v1", first}, {first, first},
	} {
		t.Run("ref "+tc.ref, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "config")
			src, err := Git{}.FetchURL(context.Background(), dir, "file://"+repo, tc.ref, SSHAuth{})
			if err != nil {
				t.Fatal(err)
			}
			if src.Rev != tc.want || src.Dir != dir {
				t.Errorf("source %+v, want rev %s", src, tc.want)
			}
			if want := "git+file://" + dir + "?rev=" + tc.want + "&shallow=1"; src.Flake != want {
				t.Errorf("flake %q, want %q", src.Flake, want)
			}
		})
	}
	if _, err := (Git{}).FetchURL(context.Background(), filepath.Join(t.TempDir(), "c"), "file://"+repo, "no-such-branch", SSHAuth{}); err == nil || !strings.Contains(err.Error(), `failed to fetch "no-such-branch"`) {
		t.Errorf("a missing ref: %v", err)
	}
}

// The workflow's checkout belongs to the runner's user, the container runs
// as root: git's own ownership check ("detected dubious ownership", setup.c
// ensure_valid_ownership) must not stop the fetch, and nothing uncommitted
// may come along.
func TestFetchWorkspaceOwnedByAnotherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: giving the checkout to another user needs root (CI runs as root)")
	}
	ws, _, second := gitRepo(t)
	if out, err := exec.Command("chown", "-R", "4242:4242", ws).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	// The rule this works around, shown by git itself.
	cmd := exec.Command("git", "-C", ws, "rev-parse", "HEAD")
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "dubious ownership") {
		t.Fatalf("git opened another user's repository without safe.directory (%v: %s); the test does not exercise the rule", err, out)
	}
	dir := filepath.Join(t.TempDir(), "config")
	src, err := Git{Env: append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())}.FetchWorkspace(context.Background(), dir, ws)
	if err != nil {
		t.Fatal(err)
	}
	if src.Rev != second {
		t.Errorf("rev %s, want the checked-out %s", src.Rev, second)
	}
	show := exec.Command("git", "-C", dir, "show", src.Rev+":flake.nix")
	out, err := show.Output()
	if err != nil || string(out) != "{ outputs = _: { one = 1; }; }\n" {
		t.Errorf("the fetched flake.nix is %q (%v), want the committed one", out, err)
	}
}

func TestSSHHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"git@github.com:me/c.git":          "github.com",
		"ssh://git@gitlab.com:2222/me/c":   "gitlab.com",
		"https://github.com/me/c":          "",
		"file:///srv/c":                    "",
		"deploy@git.example.org:infra.git": "git.example.org",
	} {
		if got := SSHHost(in); got != want {
			t.Errorf("SSHHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// An ssh URL is fetched with host key checking on, against the given
// known_hosts file only, and the given key: git runs GIT_SSH_COMMAND with
// the host and git-upload-pack (git's connect.c), here a recording ssh.
func TestFetchURLOverSSHChecksTheHostKey(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	record := filepath.Join(t.TempDir(), "ssh-args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" >" + record + "\necho 'ssh: stand-in refuses' >&2\nexit 255\n"
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	auth := SSHAuth{KeyFile: "/run/key file", KnownHostsFile: "/run/known_hosts"}
	_, err := Git{Env: env}.FetchURL(context.Background(), filepath.Join(t.TempDir(), "c"), "git@github.com:me/cfg.git", "main", auth)
	if err == nil || !strings.Contains(err.Error(), "ssh: stand-in refuses") {
		t.Fatalf("err = %v", err)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("git did not run ssh: %v", err)
	}
	args := strings.Split(strings.TrimSpace(string(b)), "\n")
	joined := strings.Join(args, " ")
	for _, want := range []string{"StrictHostKeyChecking=yes", "UserKnownHostsFile=/run/known_hosts", "GlobalKnownHostsFile=/dev/null", "IdentitiesOnly=yes", "git@github.com", "git-upload-pack 'me/cfg.git'"} {
		if !strings.Contains(joined, want) {
			t.Errorf("ssh ran with %q, lacking %q", args, want)
		}
	}
	// The key file's path, with its space, arrives as one argument.
	found := false
	for i, a := range args {
		found = found || a == "-i" && i+1 < len(args) && args[i+1] == "/run/key file"
	}
	if !found {
		t.Errorf("ssh ran with %q, want -i and the key file as one argument", args)
	}
}
