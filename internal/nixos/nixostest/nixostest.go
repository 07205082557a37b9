// Package nixostest gives tests the NixOS stand-ins under
// internal/nixos/testdata: the nixos-anywhere and nix stand-ins that run on
// the source system, and a test VM's state and tools (nixos-rebuild, git,
// nix-channel, and what an install leaves behind), each following the real
// tool's rules as its comments say. internal/deploy's pipeline tests and
// test/e2e use them; so can any test that needs a machine that behaves like
// the NixOS we install.
package nixostest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
)

// testdata is internal/nixos/testdata in this source tree.
func testdata() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("nixostest: cannot locate its source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// NixosAnywhere is the nixos-anywhere stand-in.
func NixosAnywhere() string {
	return filepath.Join(testdata(), "fake-nixos-anywhere", "fake-nixos-anywhere.sh")
}

// NixDir is a directory holding only the nix stand-in (`nix flake lock`):
// put it first on PATH, or run Nix() directly.
func NixDir() string { return filepath.Join(testdata(), "fake-nix") }

// Nix is the nix stand-in.
func Nix() string { return filepath.Join(NixDir(), "nix") }

// VMRootScript is the shell file a test VM's setup script sources for
// vm_root, which mounts the VM's own /etc, /home and /root from its
// directory (see VM).
func VMRootScript() string { return filepath.Join(testdata(), "nixos-vm", "vm-root.sh") }

// vmTools are the files InstallTools copies.
var vmTools = []string{"standin-lib.sh", "nixos-rebuild", "git", "nix-channel", "standin-install-nixos",
	// The store, profiles and generations (standin-store.sh), and the
	// service manager's transient units that switch arms a watchdog in.
	"standin-store.sh", "nix-env", "nix-store", "nix-daemon", "switch-to-configuration", "systemd-run", "systemctl"}

// Tools configures the VM's stand-ins (standin.env).
type Tools struct {
	// Log is a file each stand-in appends "<name> <args>" to; "" for none.
	// It must be writable by every user that runs them.
	Log string
	// GitURLs maps a config-repo URL to a local repository that git on the
	// VM clones instead (git's url.<base>.insteadOf), as the VM has no
	// network.
	GitURLs map[string]string
	// SSHDPID is the file the VM's sshd wrote its PID to: systemctl's
	// answer for sshd.service's main process.
	SSHDPID string
}

// InstallTools copies the VM stand-ins into binDir, which must be on the
// PATH of the VM's sessions, and writes their standin.env.
func InstallTools(binDir string, t Tools) error {
	src := filepath.Join(testdata(), "nixos-vm")
	for _, name := range vmTools {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(binDir, name), b, 0o755); err != nil {
			return err
		}
	}
	var env strings.Builder
	env.WriteString("# Written by nixostest.InstallTools.\n")
	if t.Log != "" {
		fmt.Fprintf(&env, "STANDIN_LOG=%s\n", shQuote(t.Log))
	}
	if t.SSHDPID != "" {
		fmt.Fprintf(&env, "STANDIN_SSHD_PID=%s\n", shQuote(t.SSHDPID))
	}
	n := 0
	// The local repositories belong to the test's user; git refuses to read
	// another user's repository unless safe.directory names it, which git
	// honours only in the system and global configuration (git-config(1),
	// safe.directory): the VM's system configuration includes the real one
	// and trusts them.
	sysconf := "[include]\n\tpath = /etc/gitconfig\n"
	for url, local := range t.GitURLs {
		fmt.Fprintf(&env, "GIT_CONFIG_KEY_%d=%s\nGIT_CONFIG_VALUE_%d=%s\n", n, shQuote("url."+local+".insteadOf"), n, shQuote(url))
		n++
		sysconf += "[safe]\n\tdirectory = " + local + "\n"
	}
	if len(t.GitURLs) > 0 {
		p := filepath.Join(binDir, "standin-gitconfig")
		if err := os.WriteFile(p, []byte(sysconf), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&env, "GIT_CONFIG_SYSTEM=%s\nexport GIT_CONFIG_SYSTEM\n", shQuote(p))
	}
	if n > 0 {
		fmt.Fprintf(&env, "GIT_CONFIG_COUNT=%d\nexport GIT_CONFIG_COUNT", n)
		for i := range n {
			fmt.Fprintf(&env, " GIT_CONFIG_KEY_%d GIT_CONFIG_VALUE_%d", i, i)
		}
		env.WriteString("\n")
	}
	return os.WriteFile(filepath.Join(binDir, "standin.env"), []byte(env.String()), 0o644)
}

// User is an account the VM has before the install (a cloud image's
// default user).
type User struct {
	Name string
	UID  int
	// Sudo gives the user passwordless sudo.
	Sudo bool
	// Keys log in as the user (~/.ssh/authorized_keys).
	Keys []string
}

// VM is a test VM's own machine state, kept in Dir and mounted by vm_root
// (VMRootScript): Dir/etc (this machine's passwd, group and shadow plus
// Users; sudoers; os-release; hostname; ssh/ with SSHFiles; an empty nixos/),
// Dir/home (the users' homes) and Dir/root (root's home, with RootKeys in
// .ssh/authorized_keys as cloud-init writes them).
type VM struct {
	Dir       string
	OSRelease string
	Hostname  string
	Users     []User
	RootKeys  []string
	// SSHFiles are files in /etc/ssh by name ("ssh_host_ed25519_key.pub").
	SSHFiles map[string]string
}

// Write creates the VM's state.
func (v VM) Write() error {
	for _, d := range []string{"etc/ssh", "etc/nixos", "home", "root/.ssh"} {
		if err := os.MkdirAll(filepath.Join(v.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(v.Dir, "root"), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(v.Dir, "root", ".ssh"), 0o700); err != nil {
		return err
	}
	var passwd, group, shadow, sudoers strings.Builder
	sudoers.WriteString("root ALL=(ALL:ALL) ALL\n")
	for _, u := range v.Users {
		fmt.Fprintf(&passwd, "%s:x:%d:%d::/home/%s:/bin/sh\n", u.Name, u.UID, u.UID, u.Name)
		fmt.Fprintf(&group, "%s:x:%d:\n", u.Name, u.UID)
		fmt.Fprintf(&shadow, "%s:*:20000:0:99999:7:::\n", u.Name)
		if u.Sudo {
			fmt.Fprintf(&sudoers, "%s ALL=(ALL) NOPASSWD: ALL\n", u.Name)
		}
		home := filepath.Join(v.Dir, "home", u.Name)
		if err := os.Mkdir(home, 0o755); err != nil {
			return err
		}
		if err := os.Chown(home, u.UID, u.UID); err != nil {
			return err
		}
		if len(u.Keys) > 0 {
			var keys string
			for _, k := range u.Keys {
				keys += strings.TrimSpace(k) + "\n"
			}
			if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), []byte(keys), 0o600); err != nil {
				return err
			}
			for _, p := range []string{filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
				if err := os.Chown(p, u.UID, u.UID); err != nil {
					return err
				}
			}
		}
	}
	files := []struct {
		name, hostFile, extra string
		mode                  os.FileMode
	}{
		{"passwd", "/etc/passwd", passwd.String(), 0o644},
		{"group", "/etc/group", group.String(), 0o644},
		{"shadow", "/etc/shadow", shadow.String(), 0o640},
		{"sudoers", "", sudoers.String(), 0o440},
		{"os-release", "", v.OSRelease, 0o644},
		{"hostname", "", v.Hostname + "\n", 0o644},
		{"gitconfig", "", "", 0o644},
	}
	for _, f := range files {
		var b []byte
		if f.hostFile != "" {
			var err error
			if b, err = os.ReadFile(f.hostFile); err != nil {
				return err
			}
			if len(b) > 0 && b[len(b)-1] != '\n' {
				b = append(b, '\n')
			}
		}
		p := filepath.Join(v.Dir, "etc", f.name)
		if err := os.WriteFile(p, append(b, f.extra...), f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	for name, content := range v.SSHFiles {
		mode := os.FileMode(0o644)
		if !strings.HasSuffix(name, ".pub") && strings.HasPrefix(name, "ssh_host_") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(v.Dir, "etc", "ssh", name), []byte(content), mode); err != nil {
			return err
		}
	}
	var keys string
	for _, k := range v.RootKeys {
		keys += strings.TrimSpace(k) + "\n"
	}
	return os.WriteFile(filepath.Join(v.Dir, "root", ".ssh", "authorized_keys"), []byte(keys), 0o600)
}

// ConfigRepo makes a bare git repository whose main branch has files, that
// every user may read: the config-repo a VM's user clones (Tools.GitURLs).
// It returns its path; it is removed at the end of the test.
func ConfigRepo(t testing.TB, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nixostest-config-repo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "config")
	bare := dir + ".git"
	t.Cleanup(func() { _ = os.RemoveAll(bare) })
	git("clone", "-q", "--bare", dir, bare)
	if err := exec.Command("chmod", "-R", "a+rX", bare).Run(); err != nil {
		t.Fatal(err)
	}
	return bare
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// READMEUserFlake is the minimal user flake README.md shows, between
// <!-- user-flake:start --> and <!-- user-flake:end --> in a ```nix fence:
// the tests use it as the config-repo's flake.nix, so the README shows one
// that works.
func READMEUserFlake() (string, error) {
	b, err := os.ReadFile(filepath.Join(testdata(), "..", "..", "..", "README.md"))
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(string(b), "<!-- user-flake:start -->\n")
	block, _, ok2 := strings.Cut(rest, "<!-- user-flake:end -->")
	if !ok || !ok2 {
		return "", fmt.Errorf("README.md has no <!-- user-flake:start --> ... <!-- user-flake:end --> block")
	}
	body, ok := strings.CutPrefix(block, "```nix\n")
	body, ok2 = strings.CutSuffix(body, "```\n")
	if !ok || !ok2 {
		return "", fmt.Errorf("README.md's user-flake block is not one ```nix fence")
	}
	return body, nil
}

// UserFlakeRepo is ConfigRepo with the README's user flake, s as its
// settings.json and a facter.json. With refuseRoot the flake is the
// README's as it stands (PermitRootLogin "no"); without, that line is left
// out, so root logs in with s.RootAuthorizedKeys (the module's default), as
// re-runs need.
func UserFlakeRepo(t testing.TB, s nixos.Settings, refuseRoot bool) string {
	t.Helper()
	flake, err := READMEUserFlake()
	if err != nil {
		t.Fatal(err)
	}
	if !refuseRoot {
		refuse := regexp.MustCompile(`(?m)^\s*# Root may not log in.*\n\s*services\.openssh\.settings\.PermitRootLogin = "no";\n`)
		if !refuse.MatchString(flake) {
			t.Fatalf("the README's flake no longer refuses root the way this helper expects:\n%s", flake)
		}
		flake = refuse.ReplaceAllString(flake, "")
	}
	if s.RootAuthorizedKeys == nil {
		s.RootAuthorizedKeys = []string{}
	}
	settings, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return ConfigRepo(t, map[string]string{
		"flake.nix":     flake,
		"settings.json": string(settings) + "\n",
		"facter.json":   `{"version": 1, "system": "x86_64-linux", "virtualisation": "microsoft"}` + "\n",
	})
}
