package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos/nixostest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/plan"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/report"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/rollout"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
)

// The switch tests run the pipeline against a test VM that runs an
// installed NixOS: a real sshd in its own mount namespace whose /nix (store,
// system profile, generations) and /run are the VM's own, booted by
// testdata/nixos-vm-boot.sh, with the NixOS stand-ins that keep generations
// (internal/nixos/testdata/nixos-vm: nix-env, nix-store, nix-daemon,
// systemd-run, systemctl, switch-to-configuration) and, on this side, the
// nix stand-in (internal/nixos/testdata/fake-nix/nix) and real git.

func standinPath(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "nixos", "testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// configRepo is a configuration repository with one commit per entry of
// revs, each writing its files over the previous ones; it returns the
// directory and the commits.
func configRepo(t testing.TB, revs ...map[string]string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
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
	var commits []string
	for i, files := range revs {
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		git("add", "-A")
		git("commit", "-q", "-m", fmt.Sprintf("revision %d", i))
		commits = append(commits, git("rev-parse", "HEAD"))
	}
	return dir, commits
}

// userConfig is a user's flake at one revision: packages and whether root
// may log in.
func userConfig(deployKey string, packages string, noRoot bool) map[string]string {
	return userConfigFor(deployKey, userPub, packages, noRoot)
}

// userConfigFor is userConfig with the key the user nixos logs in with.
func userConfigFor(deployKey, userKey string, packages string, noRoot bool) map[string]string {
	conf := "{ pkgs, ... }: {\n  environment.systemPackages = with pkgs; [ " + packages + " ];\n"
	if noRoot {
		conf += "  services.openssh.settings.PermitRootLogin = \"no\";\n"
	}
	conf += "}\n"
	return map[string]string{
		"flake.nix": `{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  outputs = { self, nixpkgs }: {
    nixosConfigurations.az-nixos = nixpkgs.lib.nixosSystem { modules = [ ./configuration.nix ]; };
  };
}
`,
		"configuration.nix": conf,
		"settings.json":     `{"userName":"nixos","authorizedKeys":["` + userKey + `"],"rootAuthorizedKeys":["` + deployKey + `"]}` + "\n",
	}
}

// checkout is the workflow's checkout of repo at commit.
func checkout(t testing.TB, repo, commit string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "workspace")
	for _, args := range [][]string{{"clone", "-q", repo, dir}, {"-C", dir, "checkout", "-q", commit}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// storeScript runs a shell snippet with standin-store.sh loaded and the
// store at root.
func storeScript(t testing.TB, root, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", ". \"$0\"; " + script, standinPath(t, "nixos-vm/standin-store.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "STORE_ROOT="+root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("store script %q: %v\n%s", script, err, out)
	}
	return strings.TrimSpace(string(out))
}

// nixosVM is the installed NixOS the switch tests move.
type nixosVM struct {
	srv *sshtest.Server
	dir string
}

// nixosVMOptions: the VM's user with passwordless sudo and the users Nix
// trusts (nix.conf trusted-users).
type nixosVMOptions struct {
	trusted string
}

// startNixOSVM installs the system of repo at commit as generation 1 in a
// new VM directory and boots it.
func startNixOSVM(t testing.TB, hostKeyPEM []byte, repo, commit string, opts ...nixosVMOptions) *nixosVM {
	t.Helper()
	requireNamespaces(t)
	var o nixosVMOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.trusted == "" {
		o.trusted = "root"
	}
	dir := t.TempDir()
	state := nixostest.VM{Dir: dir, OSRelease: "NAME=NixOS\nID=nixos\nVERSION_ID=\"26.05\"\n", Hostname: "az-nixos",
		Users: []nixostest.User{{Name: "nixos", UID: 4242, Sudo: true}}}
	if err := state.Write(); err != nil {
		t.Fatal(err)
	}
	// The VM's own Nix configuration (nixpkgs nixos/modules/config/nix.nix
	// writes /etc/nix/nix.conf from nix.settings).
	if err := os.MkdirAll(filepath.Join(dir, "etc", "nix"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "nix", "nix.conf"), []byte("trusted-users = "+o.trusted+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"nix/var/nix/profiles", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// What the install left: the system built from the configuration,
	// generation 1 of the system profile.
	tree := t.TempDir()
	if out, err := exec.Command("sh", "-c", `git -C "$0" archive "$1" | tar -C "$2" -xf -`, repo, commit, tree).CombinedOutput(); err != nil {
		t.Fatalf("git archive: %v\n%s", err, out)
	}
	sys := storeScript(t, dir, `src=$(store_add_source "$1"); drv=$(store_add_drv az-nixos "$src"); store_realise "$drv"`, tree)
	profiles := filepath.Join(dir, "nix/var/nix/profiles")
	if err := os.Symlink(sys, filepath.Join(profiles, "system-1-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("system-1-link", filepath.Join(profiles, "system")); err != nil {
		t.Fatal(err)
	}
	boot, err := filepath.Abs("testdata/nixos-vm-boot.sh")
	if err != nil {
		t.Fatal(err)
	}
	srv := sshtest.Start(t,
		sshtest.WithHostKeyPEM(hostKeyPEM),
		sshtest.WithWrapper("unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", boot, dir, nixostest.VMRootScript()),
		// NixOS's sshd reads the keys the configuration authorises
		// (nixpkgs nixos/modules/services/networking/ssh/sshd.nix).
		sshtest.WithAuthorizedKeysFiles("/etc/ssh/authorized_keys.d/%u"),
		sshtest.WithConfig("DebianBanner no"))
	vm := &nixosVM{srv: srv, dir: dir}
	// The VM's transient units outlive their sessions, as on a real
	// machine: stop what is left when the test ends.
	t.Cleanup(vm.stopUnits)
	// The VM's user runs sshtest's session wrapper and the stand-ins from
	// the server's directory, and appends to its command log: let them.
	for _, d := range []string{filepath.Dir(srv.Dir), srv.Dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chmod(filepath.Join(srv.Dir, "authorized_keys"), 0o644)
	for _, f := range []string{"commands.log", "calls.log"} {
		p := filepath.Join(srv.Dir, f)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, 0o666)
	}
	if err := nixostest.InstallTools(srv.BinDir, nixostest.Tools{Log: filepath.Join(srv.Dir, "calls.log"), SSHDPID: filepath.Join(dir, "sshd.pid")}); err != nil {
		t.Fatal(err)
	}
	return vm
}

func (vm *nixosVM) stopUnits() {
	pids, _ := filepath.Glob(filepath.Join(vm.dir, "run", "systemd", "transient", "*.pid"))
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// generation is the system profile's generation and the running system.
func (vm *nixosVM) generation(t testing.TB) (int, string, string) {
	t.Helper()
	profiles := filepath.Join(vm.dir, "nix/var/nix/profiles")
	link, err := os.Readlink(filepath.Join(profiles, "system"))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(link, "system-"), "-link"))
	if err != nil {
		t.Fatalf("profile link %q", link)
	}
	path, err := os.Readlink(filepath.Join(profiles, link))
	if err != nil {
		t.Fatal(err)
	}
	current, err := os.Readlink(filepath.Join(vm.dir, "run", "current-system"))
	if err != nil {
		t.Fatal(err)
	}
	return gen, path, current
}

// run runs a command on the VM as the test's own inspection login.
func (vm *nixosVM) run(t testing.TB, cmd string) string {
	t.Helper()
	c, err := ssh.Dial("tcp", vm.srv.Addr, vm.srv.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// switchRun is one command: switch's surroundings.
type switchRun struct {
	opts    Options
	stdout  *syncBuffer
	summary string
	output  string
	nixRoot string // the source system's store
}

func newSwitchRun(t testing.TB, vm *nixosVM, deployKey *keys.Pair, workspace string, set map[string]string) *switchRun {
	t.Helper()
	in, err := config.ReadAction(context.Background(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"command": "switch", "config-repo": ".", "deploy-key": string(deployKey.PrivatePEM),
		"target-host": vm.srv.Addr, "target-host-key": keys.AuthorizedKey(vm.srv.HostKey, ""),
		"ssh-timeout": "20s",
	} {
		in.Set(k, v)
	}
	for k, v := range set {
		if !in.Set(k, v) {
			t.Fatalf("no input %q", k)
		}
	}
	cfg, err := config.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &switchRun{stdout: &syncBuffer{}, summary: filepath.Join(dir, "summary"), output: filepath.Join(dir, "output"), nixRoot: filepath.Join(dir, "source-system")}
	files := map[string]string{"GITHUB_OUTPUT": r.output, "GITHUB_STEP_SUMMARY": r.summary}
	sink := report.NewActions(func(k string) string { return files[k] }, r.stdout)
	for _, s := range in.Secrets() {
		sink.Mask(s)
	}
	r.opts = Options{
		Config: cfg, Env: plan.Env{Workspace: workspace}, Sink: sink, TempDir: t.TempDir(),
		Builder: &rollout.Nix{Path: standinPath(t, "fake-nix/nix"), Env: append(os.Environ(), "FAKE_NIX_STORE_ROOT="+r.nixRoot), Log: sink.Stream},
	}
	return r
}

func (r *switchRun) deploy(t testing.TB) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := Deploy(ctx, r.opts)
	for _, kv := range res.Outputs.Map() {
		if kv[1] != "" {
			r.opts.Sink.Output(kv[0], kv[1])
		}
	}
	r.opts.Sink.Summary(res.Markdown())
	return res
}

func (r *switchRun) outputs(t testing.TB) map[string]string {
	t.Helper()
	b, err := os.ReadFile(r.output)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	// go-githubactions writes name<<DELIMITER\nvalue\nDELIMITER.
	re := regexp.MustCompile(`(?m)^([a-z-]+)<<(\S+)\n((?s:.*?))\n(\S+)$`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = m[3]
	}
	return out
}

func stageNotes(res *Result) map[string]string {
	m := map[string]string{}
	for _, s := range res.Stages {
		m[s.Name] = s.Note
	}
	return m
}

func switchFixture(t *testing.T) (deployKey *keys.Pair, hostKey *keys.Pair) {
	t.Helper()
	var err error
	if deployKey, err = keys.New(nil, "nixos-cloud-deploy"); err != nil {
		t.Fatal(err)
	}
	if hostKey, err = keys.New(nil, ""); err != nil {
		t.Fatal(err)
	}
	return deployKey, hostKey
}

func TestSwitchToANewRevision(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false), userConfig(line, "htop ripgrep", false))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0])
	_, before, _ := vm.generation(t)

	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), nil)
	res := r.deploy(t)
	if res.Err != nil {
		t.Fatalf("switch failed in %s: %v\nlog:\n%s", res.FailedStage, res.Err, r.stdout.String())
	}
	gen, path, current := vm.generation(t)
	if gen != 2 || path == before || current != path {
		t.Errorf("VM: generation %d, profile %s, running %s; want generation 2 running a new system (was %s)", gen, path, current, before)
	}
	out := r.outputs(t)
	if out["generation"] != "2" || out["previous-generation"] != "1" || out["system-path"] != path {
		t.Errorf("outputs %v; want generation 2, previous 1, system-path %s", out, path)
	}
	for _, want := range []string{"ripgrep: ∅ → 14.1.1", "Done. The new configuration is " + path} {
		if !strings.Contains(r.stdout.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.stdout.String())
		}
	}
	notes := stageNotes(res)
	if notes["activate"] != "activated (switch-to-configuration test); watchdog armed for 1m" || !strings.HasPrefix(notes["confirm"], "generation 2 confirmed over a new connection") || !strings.HasSuffix(notes["confirm"], "the boot default") {
		t.Errorf("stage notes %q", notes)
	}
	summary, _ := os.ReadFile(r.summary)
	for _, want := range []string{"### Switch", "| before | 1 |", "| after | 2 |", "1 added", "ripgrep: ∅ → 14.1.1", "--switch-generation 1"} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	if state := vm.run(t, "cat /run/nixos-cloud-deploy/state; systemctl is-active nixos-cloud-deploy-watchdog || true"); state != "confirmed 2 "+path+"\ninactive\n" {
		t.Errorf("the machine's switch state %q, want confirmed and no watchdog left", state)
	}
	if keys := vm.run(t, "cat /etc/ssh/authorized_keys.d/root"); !strings.Contains(keys, line) {
		t.Errorf("root's keys after the switch: %q", keys)
	}
	// Confirmed: the new generation is the boot loader's default.
	if def := vm.run(t, "cat /nix/var/nix/standin-boot-default"); def != "system-2-link\n" {
		t.Errorf("boot default %q, want system-2-link", def)
	}
	// One handshake per phase: connect (the probe, the diff and the
	// activation share it), copy (nix copy's ssh through the tunnel),
	// confirm (a new connection).
	if n := vm.logins(deployKey.Public); n != 3 {
		t.Errorf("%d SSH logins, want 3 (connect, copy, confirm):\n%s", n, vm.srv.Log())
	}
}

// logins counts the VM's logins with key so far: one per SSH handshake.
func (vm *nixosVM) logins(key ssh.PublicKey) int {
	n := 0
	for _, l := range strings.Split(vm.srv.Log(), "\n") {
		if strings.HasPrefix(l, "Accepted publickey for ") && strings.HasSuffix(l, ssh.FingerprintSHA256(key)) {
			n++
		}
	}
	return n
}

// standinCalls lists the stand-in commands the VM ran (sshtest's command
// log), e.g. "nix-env" or "nix-daemon".
func (vm *nixosVM) ran(tool string) bool {
	for _, c := range vm.srv.Commands() {
		if strings.Contains(c, tool) {
			return true
		}
	}
	return false
}

func TestSwitchNoOpActivatesNothing(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0])
	gen0, path0, _ := vm.generation(t)

	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[0]), nil)
	res := r.deploy(t)
	if res.Err != nil {
		t.Fatalf("switch failed in %s: %v", res.FailedStage, res.Err)
	}
	gen, path, current := vm.generation(t)
	if gen != gen0 || path != path0 || current != path0 {
		t.Errorf("the VM moved: generation %d %s (running %s), was %d %s", gen, path, current, gen0, path0)
	}
	st := statuses(res)
	for _, name := range []string{"build/copy", "activate", "confirm"} {
		if st[name] != StatusSkipped {
			t.Errorf("stage %s: %s, want skipped", name, st[name])
		}
	}
	if !strings.Contains(stageNotes(res)["evaluate"], "no change, generation 1 already runs it") {
		t.Errorf("evaluate note %q", stageNotes(res)["evaluate"])
	}
	for _, tool := range []string{"nix-env", "nix-daemon", "systemd-run", "nix-store"} {
		if vm.ran(tool) {
			t.Errorf("a no-op switch ran %s on the VM", tool)
		}
	}
	if n := vm.logins(deployKey.Public); n != 1 {
		t.Errorf("%d SSH logins for a no-op switch, want 1", n)
	}
	out := r.outputs(t)
	if out["generation"] != "1" || out["previous-generation"] != "1" || out["system-path"] != path0 {
		t.Errorf("outputs %v", out)
	}
}

// A configuration that locks root out: the new logins the confirmation
// needs are refused, so the VM's watchdog rolls back by itself; the run
// sees the old generation and says why.
func TestSwitchThatBreaksSSHIsRolledBackByTheVM(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false), userConfig(line, "htop", true))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0])
	_, path0, _ := vm.generation(t)

	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), nil)
	// The input's floor is 10s; the protocol does not care.
	r.opts.Config.Switch.ConfirmTimeout = 3 * time.Second
	t0 := time.Now()
	res := r.deploy(t)
	if res.Err == nil {
		t.Fatalf("the switch to a configuration without root's key succeeded:\n%s", r.stdout.String())
	}
	want := "rolled back to generation 1: no confirmation over a new SSH connection within 3s of the activation"
	if res.FailedStage != "confirm" || res.Err.Error() != want {
		t.Errorf("failed in %q with %q; want confirm with %q", res.FailedStage, res.Err, want)
	}
	if took := time.Since(t0); took < 3*time.Second {
		t.Errorf("the run ended after %s, before the VM's watchdog could act", took)
	}
	gen, path, current := vm.generation(t)
	if gen != 1 || path != path0 || current != path0 {
		t.Errorf("VM after the rollback: generation %d, profile %s, running %s; want generation 1 running %s", gen, path, current, path0)
	}
	if keys := vm.run(t, "cat /etc/ssh/authorized_keys.d/root; cat /run/nixos-cloud-deploy/state"); !strings.Contains(keys, line) || !strings.Contains(keys, "rolled-back 1 no confirmation") {
		t.Errorf("root's keys and the switch state after the rollback:\n%s", keys)
	}
	// The refused system was only ever activated with test: it never became
	// a generation, and a reboot during the wait would have booted
	// generation 1.
	if _, err := os.Lstat(filepath.Join(vm.dir, "nix/var/nix/profiles/system-2-link")); err == nil {
		t.Error("the refused system became generation 2")
	}
	out := r.outputs(t)
	if out["generation"] != "1" || out["previous-generation"] != "1" || out["system-path"] != path0 {
		t.Errorf("outputs %v; want the old generation", out)
	}
	summary, _ := os.ReadFile(r.summary)
	for _, w := range []string{want, "| after (rolled back) | 1 |", "| refused |"} {
		if !strings.Contains(string(summary), w) {
			t.Errorf("summary lacks %q:\n%s", w, summary)
		}
	}
}

// A failed activation is undone at once, not after the confirm timeout.
func TestSwitchWhoseActivationFailsIsRolledBack(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	broken := userConfig(line, "htop", false)
	broken["configuration.nix"] = strings.Replace(broken["configuration.nix"], "{ pkgs, ... }: {", "{ pkgs, ... }: {\n  # standin: activation fails", 1)
	repo, commits := configRepo(t, userConfig(line, "htop", false), broken)
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0])
	_, path0, _ := vm.generation(t)
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), nil)
	res := r.deploy(t)
	if res.Err == nil || res.FailedStage != "activate" || !strings.Contains(res.Err.Error(), "rolled back to generation 1: the activation failed (switch-to-configuration exited with status 4)") {
		t.Fatalf("failed in %q: %v", res.FailedStage, res.Err)
	}
	if gen, path, current := vm.generation(t); gen != 1 || path != path0 || current != path0 {
		t.Errorf("VM: generation %d %s running %s", gen, path, current)
	}
}

// The VM answers with another host key: nothing is evaluated, copied or
// changed, and the error says so.
func TestSwitchStopsAtAnotherHostKey(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false), userConfig(line, "htop ripgrep", false))
	other, err := keys.New(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	vm := startNixOSVM(t, other.PrivatePEM, repo, commits[0]) // not the pinned key
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), map[string]string{"target-host-key": keys.AuthorizedKey(hostKey.Public, "")})
	res := r.deploy(t)
	if res.FailedStage != "connect" || res.Err == nil || !strings.Contains(res.Err.Error(), "host key mismatch") || !strings.Contains(res.Hint, "nothing was copied") {
		t.Fatalf("failed in %q: %v (hint %q)", res.FailedStage, res.Err, res.Hint)
	}
	if st := statuses(res); st["evaluate"] != StatusNotRun || st["build/copy"] != StatusNotRun {
		t.Errorf("stages after the mismatch: %v", st)
	}
	if n := len(vm.srv.Commands()); n != 0 {
		t.Errorf("%d commands ran on the VM: %q", n, vm.srv.Commands())
	}
	if entries, _ := os.ReadDir(filepath.Join(r.nixRoot, "nix", "store")); len(entries) != 0 {
		t.Errorf("the source system's store has %d entries: nothing should have been evaluated", len(entries))
	}
	if gen, _, _ := vm.generation(t); gen != 1 {
		t.Errorf("VM at generation %d", gen)
	}
}

// timed wraps a tool so that each run appends its wall time in nanoseconds
// to log.
func timed(tb testing.TB, tool, log string) string {
	tb.Helper()
	w := filepath.Join(tb.TempDir(), filepath.Base(tool))
	script := "#!/bin/sh\nstart=$(date +%s%N)\n" + shellQuote(tool) + " \"$@\"\nrc=$?\necho $(($(date +%s%N) - start)) >>" + shellQuote(log) + "\nexit $rc\n"
	if err := os.WriteFile(w, []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	return w
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sumNanos(tb testing.TB, log string) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		total += time.Duration(n)
	}
	return total
}

// BenchmarkSwitchNoOp measures what a no-op switch costs beyond the tools
// it runs (git fetching the checkout, the nix stand-in evaluating it): the
// orchestration (connection, probe, stages, reporting), which should stay
// under a second, and the SSH handshakes it makes (one).
//
//	go test -run '^$' -bench SwitchNoOp -benchtime 10x ./internal/deploy
func BenchmarkSwitchNoOp(b *testing.B) {
	deployKey, err := keys.New(nil, "nixos-cloud-deploy")
	if err != nil {
		b.Fatal(err)
	}
	hostKey, err := keys.New(nil, "")
	if err != nil {
		b.Fatal(err)
	}
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(b, userConfig(line, "htop", false))
	vm := startNixOSVM(b, hostKey.PrivatePEM, repo, commits[0])
	ws := checkout(b, repo, commits[0])
	toolLog := filepath.Join(b.TempDir(), "tools.ns")
	nix := timed(b, standinPath(b, "fake-nix/nix"), toolLog)
	gitPath, err := exec.LookPath("git")
	if err != nil {
		b.Fatal(err)
	}
	git := timed(b, gitPath, toolLog)
	logins0 := vm.logins(deployKey.Public)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		r := newSwitchRun(b, vm, deployKey, ws, nil)
		r.opts.Builder.(*rollout.Nix).Path = nix
		r.opts.Fetcher = rollout.Git{Path: git}
		b.StartTimer()
		t0 := time.Now()
		res := r.deploy(b)
		total += time.Since(t0)
		if res.Err != nil || !strings.Contains(stageNotes(res)["evaluate"], "no change") {
			b.Fatalf("not a no-op switch: %v %v", res.Err, stageNotes(res))
		}
	}
	b.StopTimer()
	tools := sumNanos(b, toolLog)
	n := float64(b.N)
	b.ReportMetric(float64(total.Milliseconds())/n, "total-ms/op")
	b.ReportMetric(float64(tools.Milliseconds())/n, "tools-ms/op")
	b.ReportMetric(float64((total-tools).Milliseconds())/n, "orchestration-ms/op")
	b.ReportMetric(float64(vm.logins(deployKey.Public)-logins0)/n, "handshakes/op")
}

// A dry run shows the generation it would replace, the closure diff and
// what the VM lacks, and changes nothing on the VM.
func TestSwitchDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false), userConfig(line, "htop ripgrep jq", false))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0])
	gen0, path0, _ := vm.generation(t)
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), map[string]string{"dry-run": "true"})
	res := r.deploy(t)
	if res.Err != nil {
		t.Fatalf("dry run failed in %s: %v", res.FailedStage, res.Err)
	}
	if gen, path, current := vm.generation(t); gen != gen0 || path != path0 || current != path0 {
		t.Errorf("a dry run moved the VM: generation %d %s running %s", gen, path, current)
	}
	for _, tool := range []string{"nix-env", "nix-daemon", "systemd-run"} {
		if vm.ran(tool) {
			t.Errorf("a dry run ran %s on the VM", tool)
		}
	}
	note := stageNotes(res)["build/copy"]
	if !strings.Contains(note, "2 added") || !strings.Contains(note, "; 3 paths (") || !strings.Contains(note, "dry run: nothing copied") {
		t.Errorf("build/copy note %q; want the diff, what the VM lacks (ripgrep, jq and the system: 3 paths) and that nothing was copied", note)
	}
	if st := statuses(res); st["activate"] != StatusSkipped || st["confirm"] != StatusSkipped {
		t.Errorf("stages %v", st)
	}
	summary, _ := os.ReadFile(r.summary)
	for _, w := range []string{"| would run | new |", "jq: ∅ → 1.7.1", "ripgrep: ∅ → 14.1.1", "Dry run: nothing was activated."} {
		if !strings.Contains(string(summary), w) {
			t.Errorf("summary lacks %q:\n%s", w, summary)
		}
	}
	if notice := res.Switch.Notice(); !strings.HasPrefix(notice, "dry run: ") || !strings.Contains(notice, "would replace generation 1; ") || !strings.Contains(notice, "2 added; 3 paths") {
		t.Errorf("notice %q", notice)
	}
}

// build-on: target copies the derivation (and its source) and builds on
// the VM, as nixos-rebuild --build-host does.
func TestSwitchBuildsOnTheTarget(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false), userConfig(line, "htop tmux", false))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0])
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), map[string]string{"build-on": "target"})
	res := r.deploy(t)
	if res.Err != nil {
		t.Fatalf("switch failed in %s: %v\n%s", res.FailedStage, res.Err, r.stdout.String())
	}
	gen, path, current := vm.generation(t)
	if gen != 2 || current != path {
		t.Errorf("VM: generation %d %s running %s", gen, path, current)
	}
	// Built there: the source system never realised the system.
	if _, err := os.Stat(filepath.Join(r.nixRoot, path)); err == nil {
		t.Errorf("%s was built on the source system", path)
	}
	if !vm.ran("nix-store --realise") {
		t.Error("the VM did not build the derivation")
	}
	if note := stageNotes(res)["build/copy"]; !strings.Contains(note, "1 added") || !strings.Contains(note, "1 derivations to build on the machine, 1 paths to fetch") {
		t.Errorf("build/copy note %q", note)
	}
}

// An Azure VM by name: the address comes from ARM and the host key from its
// ssh-host-key tag.
func TestSwitchAzureVMByName(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false), userConfig(line, "htop git", false))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[1])
	cloud := newFakeCloud(t)
	cloud.exists, cloud.managed, cloud.hostKeyTag = true, true, keys.AuthorizedKey(hostKey.Public, "")
	cloud.fwd.setBackend(vm.srv.Addr)
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), nil)
	// As a user gives it: the VM by name, no target-host.
	in, err := config.ReadAction(context.Background(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"command": "switch", "config-repo": ".", "deploy-key": string(deployKey.PrivatePEM),
		"azure-subscription-id": "00000000-1111-2222-3333-444444444444", "ssh-timeout": "20s"} {
		in.Set(k, v)
	}
	if r.opts.Config, err = config.Parse(in); err != nil {
		t.Fatal(err)
	}
	r.opts.Cloud, r.opts.SSHPort = cloud, cloud.fwd.port()
	res := r.deploy(t)
	if res.Err != nil {
		t.Fatalf("switch failed in %s: %v", res.FailedStage, res.Err)
	}
	if calls := cloud.Calls(); len(calls) != 1 || calls[0] != "lookup az-nixos/az-nixos" {
		t.Errorf("Azure calls %q, want one lookup", calls)
	}
	out := r.outputs(t)
	if out["fqdn"] != "az-nixos.uksouth.cloudapp.azure.com" || !strings.Contains(out["ssh-host-key"], keys.AuthorizedKey(hostKey.Public, "")) || out["generation"] != "1" {
		t.Errorf("outputs %v", out)
	}
}

// The flake locks root out; the switch logs in as the user with
// passwordless sudo (target-user, target-ssh-key), whom the VM's Nix
// trusts, and the nix copy goes as that user too.
func TestSwitchAsASudoUser(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	userKey, err := keys.New(nil, "me@laptop")
	if err != nil {
		t.Fatal(err)
	}
	root := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	user := keys.AuthorizedKey(userKey.Public, "me@laptop")
	repo, commits := configRepo(t, userConfigFor(root, user, "htop", true), userConfigFor(root, user, "htop ripgrep", true))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0], nixosVMOptions{trusted: "root nixos"})
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), map[string]string{
		"deploy-key": "", "target-user": "nixos", "target-ssh-key": string(userKey.PrivatePEM)})
	res := r.deploy(t)
	if res.Err != nil {
		t.Fatalf("switch failed in %s: %v\n%s", res.FailedStage, res.Err, r.stdout.String())
	}
	if gen, path, current := vm.generation(t); gen != 2 || current != path {
		t.Errorf("VM: generation %d %s running %s", gen, path, current)
	}
	sudo := 0
	for _, c := range vm.srv.Commands() {
		if strings.HasPrefix(c, "sudo -n -- sh -c ") {
			sudo++
		}
	}
	if sudo < 3 { // probe, activate, confirm at least
		t.Errorf("%d commands through sudo -n, want the probe, the activation and the confirmation:\n%q", sudo, vm.srv.Commands())
	}
	if n := vm.logins(userKey.Public); n != 3 {
		t.Errorf("%d logins as the user, want 3 (connect, copy, confirm)", n)
	}
	if n := vm.logins(deployKey.Public); n != 0 {
		t.Errorf("%d logins with the deploy key, which root refuses here", n)
	}
}

// The Nix daemon refuses unsigned paths from a user it does not trust
// (nix.conf trusted-users): the copy fails and nothing is activated.
func TestSwitchAsAnUntrustedUserCopiesNothing(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	userKey, err := keys.New(nil, "me@laptop")
	if err != nil {
		t.Fatal(err)
	}
	root := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	user := keys.AuthorizedKey(userKey.Public, "me@laptop")
	repo, commits := configRepo(t, userConfigFor(root, user, "htop", true), userConfigFor(root, user, "htop ripgrep", true))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0]) // trusted-users = root
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), map[string]string{
		"deploy-key": "", "target-user": "nixos", "target-ssh-key": string(userKey.PrivatePEM)})
	res := r.deploy(t)
	if res.FailedStage != "build/copy" || res.Err == nil || !strings.Contains(res.Err.Error(), "lacks a signature by a trusted key") || !strings.Contains(res.Hint, "trusted-users") {
		t.Fatalf("failed in %q: %v (hint %q)", res.FailedStage, res.Err, res.Hint)
	}
	if vm.ran("nix-env") || vm.ran("systemd-run") {
		t.Error("something was activated after the refused copy")
	}
	if gen, _, _ := vm.generation(t); gen != 1 {
		t.Errorf("VM at generation %d", gen)
	}
}

// The VM reboots while the new system waits for its confirmation (a
// kernel panic, someone at the console): it boots the previous generation,
// which the profile and the boot loader still name, and the run says the
// switch was forgotten.
func TestSwitchRebootBeforeConfirmationBootsThePreviousGeneration(t *testing.T) {
	t.Parallel()
	deployKey, hostKey := switchFixture(t)
	line := keys.AuthorizedKey(deployKey.Public, "nixos-cloud-deploy")
	repo, commits := configRepo(t, userConfig(line, "htop", false), userConfig(line, "htop", true))
	vm := startNixOSVM(t, hostKey.PrivatePEM, repo, commits[0])
	_, path0, _ := vm.generation(t)
	r := newSwitchRun(t, vm, deployKey, checkout(t, repo, commits[1]), map[string]string{"confirm-timeout": "10m", "ssh-timeout": "5s"})
	done := make(chan *Result, 1)
	go func() { done <- r.deploy(t) }()
	// Once the new system is active (the machine recorded how its
	// activation ended), the VM goes down and boots again.
	activated := filepath.Join(vm.dir, "run", "nixos-cloud-deploy", "activated")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(activated); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the activation did not end within 2m:\n%s", r.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	vm.stopUnits()
	vm.srv.KillSessions()
	vm.srv.Stop()
	if err := vm.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if b, _ := os.ReadFile(filepath.Join(vm.dir, "boot.log")); res.Err == nil || !strings.Contains(res.Err.Error(), "switch state") {
		t.Logf("boot log:\n%s\nrun:\n%s", b, r.stdout.String())
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), `the machine's switch state is ""`) || !strings.Contains(res.Err.Error(), "a reboot that forgot it (it runs generation 1, "+path0+")") {
		t.Errorf("failed in %q: %v", res.FailedStage, res.Err)
	}
	if gen, path, current := vm.generation(t); gen != 1 || path != path0 || current != path0 {
		t.Errorf("after the reboot: generation %d %s running %s, want generation 1 running %s", gen, path, current, path0)
	}
}
