package deploy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos/nixostest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/plan"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/report"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

const userPub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"

// harness is one pipeline run's surroundings: the fake cloud, the Actions
// sink writing to files, the stand-in nixos-anywhere.
type harness struct {
	t         *testing.T
	cloud     *fakeCloud
	stdout    *syncBuffer
	output    string
	summary   string
	workspace string
	secrets   []string
	naEnv     []string
	naArgv    string
	// nixEnv is the nix stand-in's environment beyond the process's.
	nixEnv []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	on func(string)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on != nil {
		s.on(string(p))
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	requireNamespaces(t)
	dir := t.TempDir()
	h := &harness{t: t, cloud: newFakeCloud(t), stdout: &syncBuffer{},
		output: filepath.Join(dir, "output"), summary: filepath.Join(dir, "summary"),
		workspace: filepath.Join(dir, "workspace"), naArgv: filepath.Join(dir, "na-argv")}
	if err := os.Mkdir(h.workspace, 0o755); err != nil {
		t.Fatal(err)
	}
	h.naEnv = []string{"FAKE_NA_REMOTE=1", "FAKE_NA_ARGV=" + h.naArgv}
	h.cloud.vmOpts.gitURLs = map[string]string{}
	return h
}

// configRepo makes the repository behind url (on the test VMs this harness
// boots): the README's user flake (nixostest.UserFlakeRepo). Without
// rootKeys it is the README's as it stands, which refuses root; with them,
// root may log in with those keys, as re-runs need.
func (h *harness) configRepo(url string, rootKeys ...string) {
	h.t.Helper()
	if h.cloud.vmOpts.gitURLs == nil {
		h.cloud.vmOpts.gitURLs = map[string]string{}
	}
	h.cloud.vmOpts.gitURLs[url] = nixostest.UserFlakeRepo(h.t, nixos.Settings{HostName: "az-nixos", UserName: "nixos", AuthorizedKeys: []string{userPub},
		RootAuthorizedKeys: rootKeys, DiskDevice: "/dev/disk/by-id/scsi-3600224803fa8e3c1a6b2b4a0a2e6e6d1", StateVersion: "26.05"}, len(rootKeys) == 0)
}

// options builds the run: inputs as a user gives them, plus the test's
// endpoints (the forwarder port, the stand-in, this binary as the proxy).
func (h *harness) options(set map[string]string) Options {
	t := h.t
	t.Helper()
	in, err := config.ReadAction(context.Background(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	in.SSHPublicKeys = userPub
	in.AzureSubID = "00000000-1111-2222-3333-444444444444"
	in.SSHTimeout = "20s"
	in.InstallTimeout = "60s"
	for k, v := range set {
		if !in.Set(k, v) {
			t.Fatalf("no input %q", k)
		}
	}
	h.secrets = in.Secrets()
	cfg, err := config.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"GITHUB_OUTPUT": h.output, "GITHUB_STEP_SUMMARY": h.summary}
	sink := report.NewActions(func(k string) string { return files[k] }, h.stdout)
	for _, s := range h.secrets {
		sink.Mask(s)
	}
	return Options{
		Config:    cfg,
		Env:       plan.Env{Self: self, Workspace: h.workspace, RunURL: "https://github.com/me/infra/actions/runs/1"},
		Cloud:     h.cloud,
		Sink:      sink,
		Installer: &nixos.Runner{Command: []string{nixostest.NixosAnywhere()}, Env: append(os.Environ(), h.naEnv...), KillGrace: time.Second},
		Locker:    &nixos.Locker{Command: []string{nixostest.Nix()}, Env: append(os.Environ(), h.nixEnv...)},
		// As in the action: no install from unlocked inputs.
		RequireLock: true,
		SSHPort:     h.cloud.fwd.port(),
		TempDir:     t.TempDir(),
	}
}

func (h *harness) run(ctx context.Context, opts Options) *Result {
	h.t.Helper()
	res := Deploy(ctx, opts)
	// What the cli does with a result: outputs and the summary.
	for _, kv := range res.Outputs.Map() {
		if kv[1] != "" {
			opts.Sink.Output(kv[0], kv[1])
		}
	}
	opts.Sink.Summary(res.Markdown())
	return res
}

func statuses(res *Result) map[string]Status {
	m := map[string]Status{}
	for _, s := range res.Stages {
		m[s.Name] = s.Status
	}
	return m
}

func newKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := keys.New(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(k.PrivatePEM)
}

// TestDeploySuccessWithFinalize: a deploy with config-repo whose flake (the
// README's) refuses root ends in success. The user's files are the user's,
// root's Nix may read the user's checkout, the switch leaves root locked
// out, and the check after it proves the host key without logging in.
func TestDeploySuccessWithFinalize(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.configRepo("git@github.com:me/cfg.git")
	githubKey := strings.ReplaceAll(newKeyPEM(t), "\n", "\r\n") // pasted on Windows
	deployKey := newKeyPEM(t)
	opts := h.options(map[string]string{
		"config-repo": "git@github.com:me/cfg.git", "github-ssh-key": githubKey, "deploy-key": deployKey,
		"azure-client-secret": "Azure.Client~Secret_value",
	})
	res := h.run(context.Background(), opts)
	if res.Err != nil {
		t.Fatalf("deploy failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	want := map[string]Status{"plan": StatusOK, "provision": StatusOK, "wait for SSH": StatusOK, "detect disk": StatusOK,
		"lock": StatusOK, "install": StatusOK, "verify": StatusOK, "rotate host key": StatusOK, "finalize": StatusOK, "report": StatusOK}
	if d := cmp.Diff(want, statuses(res)); d != "" {
		t.Errorf("stages (-want +got):\n%s", d)
	}
	vm := h.cloud.vm
	if got := vm.osReleaseID(t); got != "nixos" {
		t.Errorf("the VM says ID=%q after the install", got)
	}
	// nixos-anywhere went through our proxy, with the kexec image of the
	// channel's release and the flake as extra files for /etc/nixos.
	argv, err := os.ReadFile(h.naArgv)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^ProxyCommand=/.*/proxy$`, `(?m)^--copy-host-keys$`,
		`(?m)^--kexec\nhttps://github\.com/nix-community/nixos-images/releases/download/nixos-26\.05/nixos-kexec-installer-noninteractive-x86_64-linux\.tar\.gz$`,
		`(?m)^--extra-files\n/.*/extra$`, `(?m)^--flake\npath:/.*/extra/etc/nixos#az-nixos$`} {
		if !regexp.MustCompile(re).Match(argv) {
			t.Errorf("nixos-anywhere argv does not match %s:\n%s", re, argv)
		}
	}
	// The finalize commands reached the VM's tools, in order.
	wantCalls := []string{
		"standin-install-nixos",
		// The host key rotation asks systemd for sshd's main process.
		"systemctl show --property MainPID --value sshd.service",
		"nix-channel --add https://nixos.org/channels/nixos-26.05 nixos",
		"nix-channel --update",
		"git clone -- git@github.com:me/cfg.git /home/nixos/nix-config",
		"git config --global --get-all safe.directory",
		"git config --global --add safe.directory /home/nixos/nix-config",
		"nixos-rebuild switch --flake /home/nixos/nix-config#az-nixos",
	}
	if d := cmp.Diff(wantCalls, vm.Calls()); d != "" {
		t.Errorf("the VM's tools were called (-want +got):\n%s", d)
	}
	// The user's files are the user's: written by them, not chowned.
	uid := vmUID(t, vm, "nixos")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{"home/nixos/.ssh/github", 0o600}, {"home/nixos/.ssh/config", 0o600}, {"home/nixos/.ssh/known_hosts", 0o644}, {"home/nixos/nix-config/.git", os.ModeDir | 0o755}} {
		fi, err := os.Lstat(filepath.Join(vm.dir, f.path))
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || fi.Mode() != f.mode {
			t.Errorf("/%s: owner %d mode %v, want %d (nixos) and %v", f.path, st.Uid, fi.Mode(), uid, f.mode)
		}
	}
	if got, want := vm.file(t, "/home/nixos/.ssh/github"), strings.ReplaceAll(githubKey, "\r\n", "\n"); got != want {
		t.Errorf("uploaded key:\n%q\nwant\n%q", got, want)
	}
	// The switch to the README's flake locked root out: the deploy key that
	// installed the VM no longer logs in, yet finalize proved the host key.
	// NixOS writes /etc/ssh/authorized_keys.d/<user> for a user with keys:
	// a root without any has none.
	if keys, err := os.ReadFile(filepath.Join(vm.dir, "etc/ssh/authorized_keys.d/root")); err == nil && len(keys) > 0 || err != nil && !os.IsNotExist(err) {
		t.Errorf("root's keys after switching to a flake that refuses root: %q (%v)", keys, err)
	}
	dk, err := keys.FromPEM([]byte(deployKey))
	if err != nil {
		t.Fatal(err)
	}
	var ae *sshx.AuthError
	if c, err := sshx.Dial(context.Background(), sshx.Target{Addr: h.cloud.vm.srv.Addr, User: "root", HostKey: outputHostKey(t, res), Signer: dk.Signer}); !errors.As(err, &ae) {
		if c != nil {
			c.Close()
		}
		t.Errorf("root login with the deploy key after the switch: %v, want an authentication failure", err)
	}
	if note := res.Stages[len(res.Stages)-2].Note; !strings.Contains(note, "verified after the switch") {
		t.Errorf("finalize note %q", note)
	}
	// The installed flake is on the VM, root's, with the hardware report and
	// the lock; the lock and the report are in the workspace too.
	checkInstalledFlake(t, h, vm)
	// Outputs and the hardware report.
	outFile, _ := os.ReadFile(h.output)
	for _, name := range []string{"fqdn", "public-ip", "resource-group", "vm-id", "ssh-host-key", "ssh-command", "facter-report", "nixpkgs-revision"} {
		if !strings.Contains(string(outFile), name+"<<") && !strings.Contains(string(outFile), name+"=") {
			t.Errorf("output %s not set:\n%s", name, outFile)
		}
	}
	if res.Outputs.FacterReport != "facter.json" {
		t.Errorf("facter-report output %q, want a path relative to the workspace", res.Outputs.FacterReport)
	}
	if _, err := os.Stat(filepath.Join(h.workspace, "facter.json")); err != nil {
		t.Errorf("facter.json not in the workspace: %v", err)
	}
	if res.Outputs.SSHHostKey == "" || !regexp.MustCompile(`^\[az-nixos\.uksouth\.cloudapp\.azure\.com\]:\d+,\[127\.0\.0\.1\]:\d+ ssh-ed25519 `).MatchString(res.Outputs.SSHHostKey) {
		t.Errorf("ssh-host-key output %q", res.Outputs.SSHHostKey)
	}
	// The work directory with the deploy key file is gone.
	if left, _ := filepath.Glob(filepath.Join(opts.TempDir, "nixos-cloud-deploy-*")); len(left) > 0 {
		t.Errorf("work directory left behind: %v", left)
	}
	assertNoSecrets(t, h, append(h.secrets, deployKey, githubKey, string(h.cloud.lastHostKeyPEM())))
	checkGolden(t, "success.md", normalize(res))
}

// checkInstalledFlake checks /etc/nixos on the VM after an install: the
// rendered flake with facter.json and flake.lock, owned by root, and the
// same lock and report in the workspace; the nixpkgs revision in the
// outputs and the summary.
func checkInstalledFlake(t *testing.T, h *harness, vm *testVM) {
	t.Helper()
	etc := filepath.Join(vm.dir, "etc", "nixos")
	var names []string
	err := filepath.WalkDir(etc, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
			t.Errorf("%s on the VM is owned by uid %d, want root", strings.TrimPrefix(p, vm.dir), st.Uid)
		}
		if p != etc {
			names = append(names, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"azure.nix", "configuration.nix", "disk-config.nix", "facter.json", "flake.lock", "flake.nix", "settings.json"}, names); d != "" {
		t.Errorf("/etc/nixos on the VM (-want +got):\n%s", d)
	}
	for _, f := range []string{"flake.lock", "facter.json"} {
		ws, err := os.ReadFile(filepath.Join(h.workspace, f))
		if err != nil {
			t.Errorf("%s is not in the workspace: %v", f, err)
			continue
		}
		if onVM := vm.file(t, "/etc/nixos/"+f); onVM != string(ws) {
			t.Errorf("/etc/nixos/%s on the VM differs from the workspace's:\n%s\n%s", f, onVM, ws)
		}
	}
	lock, err := nixos.ParseLock([]byte(vm.file(t, "/etc/nixos/flake.lock")))
	if err != nil {
		t.Fatal(err)
	}
	rev := lock.Nixpkgs().Rev
	if outFile, _ := os.ReadFile(h.output); !strings.Contains(string(outFile), rev) {
		t.Errorf("the outputs lack nixpkgs-revision %s:\n%s", rev, outFile)
	}
	if summary, _ := os.ReadFile(h.summary); !strings.Contains(string(summary), "nixpkgs nixos-26.05 @ "+rev) {
		t.Errorf("the summary does not show the nixpkgs revision %s:\n%s", rev, summary)
	}
}

// vmUID is user's uid in the VM's passwd.
func vmUID(t *testing.T, vm *testVM, user string) int {
	t.Helper()
	for _, l := range strings.Split(vm.file(t, "/etc/passwd"), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 && f[0] == user {
			uid, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("no user %q in the VM's passwd", user)
	return 0
}

// assertNoSecrets checks stdout (beyond the mask commands), the summary and
// the outputs for any line of any secret.
func assertNoSecrets(t *testing.T, h *harness, secrets []string) {
	t.Helper()
	var kept []string
	for _, l := range strings.Split(h.stdout.String(), "\n") {
		if !strings.HasPrefix(l, "::add-mask::") {
			kept = append(kept, l)
		}
	}
	summary, _ := os.ReadFile(h.summary)
	output, _ := os.ReadFile(h.output)
	all := strings.Join(kept, "\n") + string(summary) + string(output)
	for _, s := range secrets {
		for _, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
			line = strings.TrimSpace(line)
			if len(line) < 8 || strings.HasPrefix(line, "-----") {
				continue
			}
			if strings.Contains(all, line) {
				t.Errorf("a secret line %q appears in the log, summary or outputs", line)
			}
		}
	}
}

var (
	normFingerprint = regexp.MustCompile(`SHA256:[A-Za-z0-9+/]+`)
	normKey         = regexp.MustCompile(`ssh-ed25519 AAAA[A-Za-z0-9+/=]+`)
	normPort        = regexp.MustCompile(`(127\.0\.0\.1|\]):\d+`)
	normTmp         = regexp.MustCompile("/tmp/[^\\s'\"`]+")
)

// normalize renders the summary without what differs from run to run.
func normalize(res *Result) string {
	r := *res
	r.Total = 0
	r.Stages = append([]StageResult(nil), res.Stages...)
	for i := range r.Stages {
		r.Stages[i].Duration = 0
		r.Stages[i].Phases = append([]nixos.PhaseTiming(nil), r.Stages[i].Phases...)
		for j := range r.Stages[i].Phases {
			r.Stages[i].Phases[j].Duration = 0
		}
	}
	s := r.Markdown()
	s = normFingerprint.ReplaceAllString(s, "SHA256:<fingerprint>")
	s = normKey.ReplaceAllString(s, "ssh-ed25519 <key>")
	s = normPort.ReplaceAllString(s, "$1:<port>")
	s = normTmp.ReplaceAllString(s, "<tmp>")
	s = regexp.MustCompile(`ssh -p \d+`).ReplaceAllString(s, "ssh -p <port>")
	return s
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name), []byte(got))
}

// TestDeployFailureInEachStage injects one failure per stage and checks the
// failed stage, that later stages did not run, the serial log, and the
// cleanup (or the note on what was left).
func TestDeployFailureInEachStage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stage   string
		set     map[string]string
		arrange func(h *harness)
		wantErr string
		serial  bool // a VM existed, so the serial log is fetched
	}{
		{name: "provision", stage: "provision", arrange: func(h *harness) {
			h.cloud.provisionErr = &azure.HintError{Err: errors.New("Allocation failed. We do not have sufficient capacity"), Code: "AllocationFailed", Hint: "try another size or location"}
		}, wantErr: "Allocation failed"},
		{name: "provision-after-vm", stage: "provision", arrange: func(h *harness) {
			h.cloud.provisionErr, h.cloud.failAfterVM = errors.New("auto-shutdown schedule: 500 Internal Server Error"), true
		}, wantErr: "auto-shutdown", serial: true},
		{name: "wait-host-key", stage: "wait for SSH", arrange: func(h *harness) {
			other, _ := keys.New(nil, "")
			h.cloud.vmOpts.hostKeyOverride = other.PrivatePEM
		}, wantErr: "host key mismatch", serial: true},
		{name: "detect-disk", stage: "detect disk", arrange: func(h *harness) { h.cloud.vmOpts.failCmd = "findmnt" }, wantErr: "findmnt", serial: true},
		{name: "install", stage: "install", arrange: func(h *harness) { h.naEnv = append(h.naEnv, "FAKE_NA_MODE=abort") }, wantErr: "Failed to kexec", serial: true},
		{name: "verify", stage: "verify", arrange: func(h *harness) { h.naEnv = []string{"FAKE_NA_ARGV=" + h.naArgv} }, wantErr: "does not run NixOS", serial: true},
		{name: "finalize", stage: "finalize", set: map[string]string{"config-repo": "https://github.com/me/cfg"},
			arrange: func(h *harness) {
				h.configRepo("https://github.com/me/cfg")
				h.cloud.vmOpts.failCmd = "nixos-rebuild"
			}, wantErr: `step "nixos-rebuild switch" failed`, serial: true},
	}
	for _, tc := range tests {
		for _, cleanup := range []bool{false, true} {
			name := tc.name
			if cleanup {
				name += "-cleanup"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t)
				tc.arrange(h)
				set := map[string]string{}
				for k, v := range tc.set {
					set[k] = v
				}
				if cleanup {
					set["cleanup-on-failure"] = "true"
				}
				res := h.run(context.Background(), h.options(set))
				if res.Err == nil || res.FailedStage != tc.stage || !strings.Contains(res.Err.Error(), tc.wantErr) {
					t.Fatalf("want %s to fail with %q, got stage %q: %v\n%s", tc.stage, tc.wantErr, res.FailedStage, res.Err, h.stdout)
				}
				after := false
				for _, s := range res.Stages {
					if after && s.Status != StatusNotRun {
						t.Errorf("stage %s after the failure: %s", s.Name, s.Status)
					}
					if s.Name == tc.stage {
						after = true
						if s.Status != StatusFailed {
							t.Errorf("stage %s: %s, want failed", s.Name, s.Status)
						}
					}
				}
				if got := res.SerialLog != ""; got != tc.serial {
					t.Errorf("serial log fetched: %v, want %v", got, tc.serial)
				}
				calls := strings.Join(h.cloud.Calls(), "\n")
				if destroyed := strings.Contains(calls, "destroy "); destroyed != cleanup {
					t.Errorf("destroy called: %v, want %v; calls:\n%s", destroyed, cleanup, calls)
				}
				if cleanup && !strings.Contains(res.Cleanup, "cleanup-on-failure: deleted resource group") {
					t.Errorf("cleanup note %q", res.Cleanup)
				}
				if !cleanup && !strings.Contains(res.Cleanup, "command: destroy") {
					t.Errorf("without cleanup, the summary must say how to remove what was left: %q", res.Cleanup)
				}
				if !cleanup {
					checkGolden(t, "fail-"+tc.name+".md", normalize(res))
				}
				// The report still says what exists.
				if res.Outputs.ResourceGroup == "" {
					t.Error("resource-group output missing after a failure")
				}
			})
		}
	}
}

func TestDeployCancelledMidInstall(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.naEnv = append(h.naEnv, "FAKE_NA_MODE=hang")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.stdout.on = func(s string) {
		if strings.Contains(s, "### Switching system into kexec ###") {
			cancel() // what SIGTERM does when a run is cancelled
		}
	}
	opts := h.options(nil)
	done := make(chan *Result, 1)
	go func() { done <- h.run(ctx, opts) }()
	var res *Result
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the pipeline did not return after cancellation")
	}
	if st := statuses(res); st["install"] != StatusCancelled || st["verify"] != StatusNotRun {
		t.Errorf("stages after cancel: %v", st)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "cancelled") {
		t.Errorf("err %v", res.Err)
	}
	// The report still says what exists.
	if res.Outputs.FQDN == "" || len(res.Resources) == 0 || !strings.Contains(res.Cleanup, "left as it is") {
		t.Errorf("after cancel: outputs %+v resources %v cleanup %q", res.Outputs, res.Resources, res.Cleanup)
	}
}

func TestProvisionDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cloud.provisionHang = true
	opts := h.options(nil)
	opts.ProvisionTimeout = 200 * time.Millisecond
	res := h.run(context.Background(), opts)
	if res.Err == nil || res.FailedStage != "provision" || !strings.Contains(res.Err.Error(), "provisioning did not finish within 200ms") {
		t.Fatalf("want provision to fail on its deadline, got %s: %v", res.FailedStage, res.Err)
	}
	if st := statuses(res); st["provision"] != StatusFailed {
		t.Errorf("provision %s, want failed (a deadline is not a cancellation)", st["provision"])
	}
}

func TestDeployRerunIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	deployKey := newKeyPEM(t)
	dk, err := keys.FromPEM([]byte(deployKey))
	if err != nil {
		t.Fatal(err)
	}
	// The user's flake keeps the deploy key for root, as README says re-runs need.
	h.configRepo("https://github.com/me/cfg", keys.AuthorizedKey(dk.Public, "nixos-cloud-deploy"))
	set := map[string]string{"deploy-key": deployKey, "config-repo": "https://github.com/me/cfg"}
	first := h.run(context.Background(), h.options(set))
	if first.Err != nil {
		t.Fatalf("first run: %v\n%s", first.Err, h.stdout)
	}
	vm := h.cloud.vm
	second := h.run(context.Background(), h.options(set))
	if second.Err != nil {
		t.Fatalf("second run: %v\n%s", second.Err, h.stdout)
	}
	if h.cloud.vm != vm {
		t.Error("the second run booted another VM")
	}
	want := map[string]Status{"plan": StatusOK, "provision": StatusOK, "wait for SSH": StatusOK, "detect disk": StatusSkipped,
		"lock": StatusSkipped, "install": StatusSkipped, "verify": StatusOK, "rotate host key": StatusOK, "finalize": StatusOK, "report": StatusOK}
	if d := cmp.Diff(want, statuses(second)); d != "" {
		t.Errorf("second run stages (-want +got):\n%s", d)
	}
	for _, st := range second.Stages {
		if st.Name == "rotate host key" && !strings.Contains(st.Note, "made on the VM by an earlier run") {
			t.Errorf("the second run rotated the host key again: %q", st.Note)
		}
	}
	for _, r := range second.Resources {
		if !strings.HasSuffix(r, "(reused)") {
			t.Errorf("second run created %s", r)
		}
	}
	if first.Outputs.SSHHostKey != second.Outputs.SSHHostKey {
		t.Errorf("host key changed between runs:\n%s\n%s", first.Outputs.SSHHostKey, second.Outputs.SSHHostKey)
	}
	if cmds := strings.Join(vm.srv.Commands(), "\n"); !strings.Contains(cmds, "git -C /home/nixos/nix-config fetch --prune origin") {
		t.Errorf("the second finalize did not fetch the existing checkout:\n%s", cmds)
	}
}

// TestRerunWithoutRootAccess: a VM an earlier run installed answers with the
// pinned host key, but this run's fresh deploy key is not authorised.
func TestRerunWithoutRootAccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		nixos   bool
		wantErr string
	}{
		{"nixos", true, ""},
		{"unfinished-ubuntu", false, "an earlier install did not finish"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			host, _ := keys.New(nil, "")
			earlier, _ := keys.New(nil, "")
			h.cloud.vm = startVM(t, vmOptions{hostKeyPEM: host.PrivatePEM, rootKeys: []ssh.PublicKey{earlier.Public}, nixos: tc.nixos})
			h.cloud.fwd.setBackend(h.cloud.vm.srv.Addr)
			h.cloud.exists, h.cloud.managed, h.cloud.hostKeyTag = true, true, keys.AuthorizedKey(host.Public, "")
			res := h.run(context.Background(), h.options(nil))
			if tc.wantErr != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr) || !strings.Contains(res.Hint, "deploy-key") {
					t.Fatalf("want %q with a deploy-key hint, got %v (hint %q)", tc.wantErr, res.Err, res.Hint)
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("%v\n%s", res.Err, h.stdout)
			}
			st := statuses(res)
			if st["install"] != StatusSkipped || st["verify"] != StatusSkipped || st["provision"] != StatusOK {
				t.Errorf("stages %v", st)
			}
			if !strings.Contains(h.stdout.String(), "::warning::") {
				t.Error("no warning that install and finalize were skipped")
			}
		})
	}
}

func TestDestroy(t *testing.T) {
	t.Parallel()
	h := &harness{t: t, cloud: &fakeCloud{t: t}, stdout: &syncBuffer{}}
	sink := report.NewTerminal(h.stdout)
	cfg := config.Config{VMName: "az-nixos", ResourceGroup: "az-nixos", Location: "uksouth"}
	res := Destroy(context.Background(), Options{Config: cfg, Cloud: h.cloud, Sink: sink})
	if res.Err != nil || !strings.Contains(res.Stages[0].Note, "does not exist") {
		t.Fatalf("missing group: %v %+v", res.Err, res.Stages)
	}
	h.cloud.exists = true
	res = Destroy(context.Background(), Options{Config: cfg, Cloud: h.cloud, Sink: sink})
	if res.Err != nil || !h.cloud.destroyed || len(res.Resources) != 1 {
		t.Fatalf("destroy: %v %+v", res.Err, res)
	}
}

// TestDeployWithOnlyAnECDSAKey (issue 14): Azure refuses ECDSA keys in a
// VM's osProfile, so the VM is created with the deploy key, and the user's
// ECDSA key reaches user-name on the installed NixOS through settings.json
// (the stand-ins evaluate the rendered configuration and install its user
// keys where NixOS's sshd reads them).
func TestDeployWithOnlyAnECDSAKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " me@laptop"
	opts := h.options(map[string]string{"ssh-public-keys": ecLine})
	res := h.run(context.Background(), opts)
	if res.Err != nil {
		t.Fatalf("deploy failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	h.cloud.mu.Lock()
	sent := h.cloud.adminKeys
	h.cloud.mu.Unlock()
	if len(sent) != 1 || !strings.HasPrefix(sent[0], "ssh-ed25519 ") || !strings.HasSuffix(sent[0], " nixos-cloud-deploy") {
		t.Errorf("osProfile keys = %q, want only the deploy key", sent)
	}
	c, err := ssh.Dial("tcp", h.cloud.vm.srv.Addr, h.cloud.vm.clientConfig(t, res)) // the rotated host key
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("cat /etc/ssh/authorized_keys.d/nixos")
	if err != nil {
		t.Fatalf("the installed system has no keys for nixos: %v", err)
	}
	if strings.TrimSpace(string(out)) != ecLine {
		t.Errorf("keys of nixos on the installed system = %q, want %q", out, ecLine)
	}
	if !strings.Contains(h.stdout.String(), "1 key(s) of a kind Azure does not take in a VM's osProfile (ecdsa-sha2-nistp256) reach nixos on the installed NixOS") {
		t.Errorf("the log does not say where the ECDSA key went:\n%s", h.stdout)
	}
}

// TestFinalizeWritesUserFilesAsUser (issue 16, item 5): between two runs the
// VM's user (or anything running as them) replaces ~/.ssh with a symlink to
// /etc/ssh, a directory of root's they may look into but not write. The
// re-run's finalize writes the GitHub key, the ssh config and known_hosts as
// the user, so the symlink leads nowhere the user could not write anyway:
// the writes fail and /etc/ssh stays root's. Root writing them and then
// chown-ing, as before, would have put the GitHub key into /etc/ssh and
// handed files there to the user.
func TestFinalizeWritesUserFilesAsUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	deployKey := newKeyPEM(t)
	dk, err := keys.FromPEM([]byte(deployKey))
	if err != nil {
		t.Fatal(err)
	}
	h.configRepo("git@github.com:me/cfg.git", keys.AuthorizedKey(dk.Public, "nixos-cloud-deploy"))
	set := map[string]string{"config-repo": "git@github.com:me/cfg.git", "github-ssh-key": newKeyPEM(t), "deploy-key": deployKey}
	first := h.run(context.Background(), h.options(set))
	if first.Err != nil {
		t.Fatalf("first run failed in %s: %v\n%s", first.FailedStage, first.Err, h.stdout)
	}
	vm := h.cloud.vm
	if out, err := vm.outputErr(t, first, "runuser -u nixos -- sh -c 'rm -rf ~/.ssh && ln -s /etc/ssh ~/.ssh'"); err != nil {
		t.Fatalf("planting the symlink: %v\n%s", err, out)
	}
	second := h.run(context.Background(), h.options(set))
	if second.Err == nil || second.FailedStage != "finalize" || !strings.Contains(second.Err.Error(), "as nixos") {
		t.Errorf("second run: %v (stage %q), want finalize to fail writing as nixos", second.Err, second.FailedStage)
	}
	entries, err := os.ReadDir(filepath.Join(vm.dir, "etc", "ssh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
			t.Errorf("/etc/ssh/%s belongs to uid %d: finalize followed the user's symlink", e.Name(), st.Uid)
		}
		switch e.Name() {
		case "github", "config", "known_hosts":
			t.Errorf("finalize wrote /etc/ssh/%s through the user's symlink", e.Name())
		}
	}
}

// TestChildrenSeeNoSecrets (issue 16, item 9): the action's environment
// holds its inputs (secrets among them: GitHub hands every input to a
// container action as INPUT_<NAME>), Azure credentials and GitHub's tokens.
// nix (the lock step), nixos-anywhere, and the proxy that nixos-anywhere's
// ssh starts see none of them; stand-ins write down what they got.
func TestChildrenSeeNoSecrets(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dir := t.TempDir()
	naEnv, nixEnv, proxyEnv := filepath.Join(dir, "na"), filepath.Join(dir, "nix"), filepath.Join(dir, "proxy")
	secrets := []string{
		"INPUT_GITHUB-SSH-KEY=secret-input-github-key", "INPUT_DEPLOY-KEY=secret-input-deploy-key",
		"INPUT_AZURE-CLIENT-SECRET=secret-input-azure", "AZURE_CLIENT_SECRET=secret-azure-client",
		"AZURE_FEDERATED_TOKEN_FILE=/secret-azure-token-file", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=secret-oidc-request",
		"ACTIONS_ID_TOKEN_REQUEST_URL=https://secret-oidc-url", "GITHUB_TOKEN=secret-github-token",
		"ACTIONS_RUNTIME_TOKEN=secret-runtime-token", "IDENTITY_HEADER=secret-identity-header",
	}
	h.naEnv = append(h.naEnv, "FAKE_NA_ENV="+naEnv, "DEPLOY_TEST_PROXY_ENV="+proxyEnv)
	h.naEnv = append(h.naEnv, secrets...)
	h.nixEnv = append([]string{"FAKE_NIX_ENV=" + nixEnv}, secrets...)
	res := h.run(context.Background(), h.options(nil))
	if res.Err != nil {
		t.Fatalf("deploy failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	for name, f := range map[string]string{"nixos-anywhere": naEnv, "nix": nixEnv, "the proxy": proxyEnv} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			t.Errorf("%s did not write down its environment (%v): did it run?", name, err)
			continue
		}
		if bytes.Contains(b, []byte("secret-")) {
			t.Errorf("%s saw a secret:\n%s", name, bytes.ReplaceAll(b, []byte{0}, []byte{'\n'}))
		}
		if !bytes.Contains(b, []byte("PATH=")) {
			t.Errorf("%s lost PATH", name)
		}
	}
}

// lockerFunc adapts a function to Locker.
type lockerFunc func(ctx context.Context, dir string) (*nixos.FlakeLock, error)

func (f lockerFunc) Lock(ctx context.Context, dir string) (*nixos.FlakeLock, error) {
	return f(ctx, dir)
}

// TestLockWithoutNix: where there is no nix to lock with, a run on a laptop
// installs with a clear note that nothing was locked, and the action
// (RequireLock) stops before the install rather than install unlocked
// inputs.
func TestLockWithoutNix(t *testing.T) {
	t.Parallel()
	noNix := lockerFunc(func(context.Context, string) (*nixos.FlakeLock, error) { return nil, nixos.ErrNoNix })
	for _, action := range []bool{false, true} {
		t.Run(map[bool]string{false: "laptop", true: "action"}[action], func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			opts := h.options(nil)
			opts.Locker, opts.RequireLock = noNix, action
			res := h.run(context.Background(), opts)
			var lock StageResult
			for _, s := range res.Stages {
				if s.Name == "lock" {
					lock = s
				}
			}
			if action {
				if res.FailedStage != "lock" || !strings.Contains(res.Err.Error(), "never installs unlocked inputs") || !strings.Contains(res.Hint, "nix") {
					t.Fatalf("want the lock stage to fail with a hint, got %s: %v (hint %q)", res.FailedStage, res.Err, res.Hint)
				}
				if h.cloud.vm.osReleaseID(t) != "ubuntu" {
					t.Error("the VM was installed from unlocked inputs")
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("deploy failed in %s: %v", res.FailedStage, res.Err)
			}
			if lock.Status != StatusSkipped || !strings.Contains(lock.Note, `"nix" is not on PATH`) || !strings.Contains(lock.Note, "not locked") {
				t.Errorf("lock stage %s: %q", lock.Status, lock.Note)
			}
			if res.Outputs.NixpkgsRevision != "" {
				t.Errorf("nixpkgs-revision %q without a lock", res.Outputs.NixpkgsRevision)
			}
			if _, err := os.Stat(filepath.Join(h.workspace, "flake.lock")); !os.IsNotExist(err) {
				t.Errorf("flake.lock in the workspace without a lock step: %v", err)
			}
		})
	}
}

// TestVMKeepsItsConfiguration: after a deploy without config-repo, the
// flake that was installed is in /etc/nixos, root's, with its hardware
// report and lock; the VM's user rebuilds it with sudo and nothing else,
// and not without sudo (switching needs root).
func TestVMKeepsItsConfiguration(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	res := h.run(context.Background(), h.options(nil))
	if res.Err != nil {
		t.Fatalf("deploy failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	vm := h.cloud.vm
	checkInstalledFlake(t, h, vm)
	if out, err := vm.outputErr(t, res, "runuser -u nixos -- nixos-rebuild switch"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nixos-rebuild switch without sudo: %v\n%s\nwant it refused", err, out)
	}
	out, err := vm.outputErr(t, res, "runuser -u nixos -- sudo -n nixos-rebuild switch")
	if err != nil {
		t.Fatalf("sudo nixos-rebuild switch as the VM's user: %v\n%s", err, out)
	}
	if !strings.Contains(out, "the configuration /etc/nixos#az-nixos is active") {
		t.Errorf("sudo nixos-rebuild switch said:\n%s", out)
	}
}

// TestExistingFailedVMIsNotReused (issue 14): a VM whose creation failed
// (provisioning state Failed) is not treated as a machine to install onto:
// the run says so with Azure's status message and the serial log, tells the
// user what to do, and with cleanup-on-failure deletes the group.
func TestExistingFailedVMIsNotReused(t *testing.T) {
	t.Parallel()
	for _, cleanup := range []bool{false, true} {
		t.Run(fmt.Sprintf("cleanup-on-failure=%v", cleanup), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.cloud.exists, h.cloud.managed, h.cloud.rgExists = true, true, true
			h.cloud.hostKeyTag = userPub // any key: the run must not get as far as pinning it
			h.cloud.failed = "failed/AllocationFailed: Allocation failed. We do not have sufficient capacity for the requested VM size in this region."
			res := h.run(context.Background(), h.options(map[string]string{"cleanup-on-failure": fmt.Sprint(cleanup)}))
			if res.Err == nil || res.FailedStage != "provision" {
				t.Fatalf("err = %v in %q, want a provision failure", res.Err, res.FailedStage)
			}
			for _, w := range []string{"creation failed (provisioning state Failed)", "AllocationFailed: Allocation failed"} {
				if !strings.Contains(res.Err.Error(), w) {
					t.Errorf("err = %v, want %q", res.Err, w)
				}
			}
			if !strings.Contains(res.Hint, "command: destroy") || !strings.Contains(res.Hint, "cleanup-on-failure") {
				t.Errorf("hint = %q", res.Hint)
			}
			if res.SerialLog == "" {
				t.Error("no serial log with the failure")
			}
			calls := strings.Join(h.cloud.Calls(), "\n")
			if strings.Contains(calls, "provision ") {
				t.Errorf("the failed VM was provisioned over:\n%s", calls)
			}
			if got := strings.Contains(calls, "destroy "); got != cleanup {
				t.Errorf("destroy called = %v with cleanup-on-failure %v:\n%s", got, cleanup, calls)
			}
		})
	}
}
