//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// generation reads a VM's system profile (its own /nix, kept in its
// directory): the generation, and the system it points to.
func (vm *bootedVM) generation(t testing.TB) (int, string) {
	t.Helper()
	profiles := filepath.Join(vm.Dir, "nix", "var", "nix", "profiles")
	link, err := os.Readlink(filepath.Join(profiles, "system"))
	if err != nil {
		t.Fatalf("the VM has no system profile: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(link, "system-"), "-link"))
	if err != nil {
		t.Fatalf("system profile link %q", link)
	}
	path, err := os.Readlink(filepath.Join(profiles, link))
	if err != nil {
		t.Fatal(err)
	}
	return n, path
}

// stopUnits ends the transient units a VM left running (its watchdog),
// which live in its /run, kept in its directory.
func (vm *bootedVM) stopUnits() {
	pids, _ := filepath.Glob(filepath.Join(vm.Dir, "run", "systemd", "transient", "*.pid"))
	for _, f := range pids {
		if b, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	}
}

// pushConfig commits files to the bare config repository and pushes main.
func pushConfig(t *testing.T, bare string, files map[string]string, message string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cfg")
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=me", "-c", "user.email=me@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("clone", "-q", bare, dir)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("-C", dir, "add", "-A")
	git("-C", dir, "commit", "-q", "-m", message)
	git("-C", dir, "push", "-q", "origin", "HEAD:main")
}

// TestSwitchDayTwo is the day after a deploy: the real binary, run as a
// GitHub Actions step with command: switch, moves the VM the deploy made
// to a new revision of its configuration (address from ARM, host key from
// the VM's tag, the closure copied through the tunnel, the activation
// confirmed over a new connection); a second run changes nothing; a
// revision that locks root out is rolled back by the VM itself.
func TestSwitchDayTwo(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	const name = "e2e-day-two"
	r := w.runAction(t, w.inputs("deploy", name))
	if r.Code != 0 {
		r.dump(t)
		t.Fatalf("the deploy failed with exit code %d", r.Code)
	}
	vm := w.fleet.VM(t, name)
	t.Cleanup(vm.stopUnits)
	deployed, _ := vm.generation(t)

	bare := w.fleet.gitURLs[defaultConfigRepo]
	flake, err := exec.Command("git", "--git-dir", bare, "show", "main:flake.nix").Output()
	if err != nil {
		t.Fatal(err)
	}
	withPackages := strings.Replace(string(flake), "nixos-cloud-deploy.nixosModules.azure\n", "nixos-cloud-deploy.nixosModules.azure\n          ./packages.nix\n", 1)
	if withPackages == string(flake) {
		t.Fatalf("the README's flake has no nixosModules.azure line to add a module after:\n%s", flake)
	}
	pushConfig(t, bare, map[string]string{
		"flake.nix":    withPackages,
		"packages.nix": "{ pkgs, ... }: {\n  environment.systemPackages = with pkgs; [ htop ripgrep ];\n}\n",
	}, "add packages")

	// The action fetches config-repo itself; the test's git rewrites the
	// URL to the local repository (git-config(1) url.<base>.insteadOf).
	env := []string{"FAKE_NIX_STORE_ROOT=" + filepath.Join(t.TempDir(), "source-system"),
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=url." + bare + ".insteadOf", "GIT_CONFIG_VALUE_0=" + defaultConfigRepo}
	in := w.inputs("switch", name)
	in["config-ref"] = "main"
	in["confirm-timeout"] = "10s"

	t.Run("new revision", func(t *testing.T) {
		r := w.runAction(t, in, env...)
		defer r.dump(t)
		if r.Code != 0 {
			t.Fatalf("exit code %d, want 0", r.Code)
		}
		gen, path := vm.generation(t)
		if gen != deployed+1 || r.Outputs["generation"] != strconv.Itoa(gen) || r.Outputs["previous-generation"] != strconv.Itoa(deployed) || r.Outputs["system-path"] != path {
			t.Errorf("VM at generation %d (%s); outputs %v; want generation %d", gen, path, r.Outputs, deployed+1)
		}
		for _, want := range []string{"ripgrep: ∅ → 14.1.1", "| confirm | ✅ ok |", "| activate | ✅ ok |"} {
			if !strings.Contains(r.Summary, want) {
				t.Errorf("summary lacks %q", want)
			}
		}
		if !strings.Contains(r.Stdout, "::notice title=switch::generation "+strconv.Itoa(gen)) {
			t.Errorf("no switch notice for the bot in the log")
		}
	})

	t.Run("no change", func(t *testing.T) {
		before, _ := vm.generation(t)
		r := w.runAction(t, in, env...)
		defer r.dump(t)
		if r.Code != 0 {
			t.Fatalf("exit code %d, want 0", r.Code)
		}
		if gen, _ := vm.generation(t); gen != before || !strings.Contains(r.Summary, "no change, generation "+strconv.Itoa(before)+" already runs it") {
			t.Errorf("a no-op switch: generation %d (was %d)", gen, before)
		}
	})

	t.Run("locks root out", func(t *testing.T) {
		before, path := vm.generation(t)
		refuse := strings.Replace(withPackages, "nixos-cloud-deploy.facterReport = ./facter.json;\n",
			"nixos-cloud-deploy.facterReport = ./facter.json;\n            services.openssh.settings.PermitRootLogin = \"no\";\n", 1)
		pushConfig(t, bare, map[string]string{"flake.nix": refuse}, "no root")
		r := w.runAction(t, in, env...)
		defer r.dump(t)
		if r.Code != 1 {
			t.Fatalf("exit code %d, want 1", r.Code)
		}
		want := "rolled back to generation " + strconv.Itoa(before) + ": no confirmation over a new SSH connection within 10s of the activation"
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("the log does not say %q", want)
		}
		if gen, now := vm.generation(t); gen != before || now != path {
			t.Errorf("VM at generation %d (%s) after the rollback, want %d (%s)", gen, now, before, path)
		}
		if r.Outputs["generation"] != strconv.Itoa(before) {
			t.Errorf("generation output %q, want %d", r.Outputs["generation"], before)
		}
	})
}
