//go:build e2e

// Package e2e runs the built action binary the way GitHub runs it, on this
// machine, with nothing faked inside the binary: only the far ends are
// stand-ins. Azure is the azuretest ARM emulator, reached as an Azure Stack
// Hub (azure-environment: AzureStack, arm-endpoint, SSL_CERT_FILE); each VM
// "boots" as a real sshd in its own network and mount namespace, configured
// from the cloud-init custom data the binary sent; nixos-anywhere is the
// stand-in from internal/nixos/testdata, which reaches the VM with the real
// ssh client through the ProxyCommand the binary gave it.
//
// Run it with make e2e (go test -tags e2e ./test/e2e/...). It needs root for
// the namespaces (CI runs as root) and skips, loudly, elsewhere.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos/nixostest"
)

var (
	// binary is the built cmd/action; raceBinary the same built with -race
	// when the tests run with -race (the functional tests use it; the
	// timing uses binary).
	binary, raceBinary string
	raceEnabled        bool
	// standInBin is the directory that holds the nixos-anywhere and nix
	// stand-ins.
	standInBin string
	// skipReason says why this machine cannot run the tests.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "nixos-cloud-deploy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer os.RemoveAll(tmp)
	skipReason = checkHost()
	if skipReason == "" {
		if err := setup(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "e2e setup:", err)
			return 3
		}
	}
	return m.Run()
}

// checkHost says what this machine lacks for network namespaces and sshd.
func checkHost() string {
	if os.Geteuid() != 0 {
		return "the emulated VMs need network and mount namespaces, which need root (CI runs as root; try sudo make e2e)"
	}
	for _, tool := range []string{"ip", "unshare", "ssh", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s not found (apt-get install iproute2 util-linux openssh-client bash)", tool)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		return "/usr/sbin/sshd not found: apt-get install openssh-server"
	}
	ns := "e2e-probe-" + randomHex(4)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	_ = exec.Command("ip", "netns", "del", ns).Run()
	return ""
}

// requireHost skips the test where the machine cannot run it, loudly.
func requireHost(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		msg := "!!!!!!!! E2E TEST SKIPPED: " + skipReason + " !!!!!!!!"
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
}

func moduleRoot() (string, error) {
	return filepath.Abs(filepath.Join("..", ".."))
}

// setup builds the action binary and the stand-in's bin directory.
func setup(tmp string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	binary = filepath.Join(tmp, "nixos-cloud-deploy")
	builds := [][]string{{"build", "-o", binary, "./cmd/action"}}
	if raceEnabled {
		raceBinary = filepath.Join(tmp, "race", "nixos-cloud-deploy")
		builds = append(builds, []string{"build", "-race", "-o", raceBinary, "./cmd/action"})
	}
	for _, args := range builds {
		build := exec.Command(goBin, args...)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	standInBin = filepath.Join(tmp, "bin")
	if err := os.Mkdir(standInBin, 0o755); err != nil {
		return err
	}
	fake := filepath.Join(root, "internal", "nixos", "testdata", "fake-nixos-anywhere", "fake-nixos-anywhere.sh")
	if _, err := os.Stat(fake); err != nil {
		return err
	}
	// nix for the lock step: the stand-in (`nix flake lock`, no network).
	if err := os.Symlink(nixostest.Nix(), filepath.Join(standInBin, "nix")); err != nil {
		return err
	}
	// The wrapper times the stand-in (for the orchestration overhead),
	// keeps a copy of the ProxyCommand script, which the binary removes at
	// exit, runs the stand-in, and after a successful install reboots the
	// VM into "NixOS" (see fleet.writeReboot).
	wrapper := `#!/usr/bin/env bash
set -u
start=$(date +%s%N)
if [[ -n ${E2E_PROXY_COPY-} ]]; then
  for a in "$@"; do
    case $a in ProxyCommand=*) cp "${a#ProxyCommand=}" "$E2E_PROXY_COPY" ;; esac
  done
fi
` + shellQuote(fake) + ` "$@"
rc=$?
# The install ends with a reboot into NixOS.
host=${*: -1}
host=${host#*@}
if [[ $rc == 0 && -n ${E2E_REBOOT_DIR-} && -x $E2E_REBOOT_DIR/$host ]]; then
  "$E2E_REBOOT_DIR/$host" || rc=1
fi
if [[ -n ${E2E_STANDIN_TIMES-} ]]; then
  echo "$start $(date +%s%N)" >>"$E2E_STANDIN_TIMES"
fi
exit $rc
`
	return os.WriteFile(filepath.Join(standInBin, "nixos-anywhere"), []byte(wrapper), 0o755)
}

// world is one test's emulated Azure with its VMs.
type world struct {
	// bin is the binary the world's runs execute.
	bin   string
	emu   *azuretest.Emulator
	fleet *fleet
	ca    string
	// deployKey is the deploy-key input: the same every run.
	deployKey *keys.Pair
	// userKey is the user's own key, its public half the ssh-public-keys input.
	userKey *keys.Pair
}

// e2eLatency is what the timed run emulates.
var e2eLatency = azuretest.Latency{
	ResourceGroup: 20 * time.Millisecond,
	PublicIP:      300 * time.Millisecond,
	NSG:           200 * time.Millisecond,
	VNet:          400 * time.Millisecond,
	NIC:           200 * time.Millisecond,
	VM:            1500 * time.Millisecond,
}

// criticalPath is the emulated latency no orchestration can avoid:
// group, then the slowest of public IP, NSG and VNet, then NIC, then VM.
func criticalPath(l azuretest.Latency) time.Duration {
	return l.ResourceGroup + max(l.PublicIP, l.NSG, l.VNet) + l.NIC + l.VM
}

func newWorld(t testing.TB, lat azuretest.Latency) *world {
	t.Helper()
	requireHost(t)
	w := &world{bin: binary, fleet: newFleet(t)}
	if raceBinary != "" {
		w.bin = raceBinary
	}
	w.emu = azuretest.New(azuretest.Options{
		PublicIPPrefix: w.fleet.net.prefix,
		PollRetryAfter: 50 * time.Millisecond,
		Latency:        lat,
		OnVMCreated:    w.fleet.Boot,
		RunCommand:     w.fleet.RunCommand,
	})
	// Cleanups run last-registered first: the VMs (registered when they
	// booted) shut down, then boot errors are reported, then the emulator
	// closes.
	t.Cleanup(w.emu.Close)
	t.Cleanup(func() { w.fleet.Check(t) })
	w.ca = filepath.Join(t.TempDir(), "ca.pem")
	if err := w.emu.WriteCACert(w.ca); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.deployKey, err = keys.New(nil, "e2e-deploy"); err != nil {
		t.Fatal(err)
	}
	if w.userKey, err = keys.New(nil, "me@laptop"); err != nil {
		t.Fatal(err)
	}
	// config-repo: the README's user flake, keeping the deploy key for
	// root so re-runs converge (README, "Your own flake").
	w.fleet.gitURLs = map[string]string{defaultConfigRepo: w.userFlake(t, false)}
	return w
}

// defaultConfigRepo is the config-repo input of every run.
const defaultConfigRepo = "https://github.com/me/cfg"

// userFlake makes a config-repo from the README's user flake for the
// world's user and deploy key; refuseRoot keeps the README's
// PermitRootLogin "no" and authorises no key for root.
func (w *world) userFlake(t testing.TB, refuseRoot bool) string {
	t.Helper()
	s := nixos.Settings{HostName: "az-nixos", UserName: "nixos", AuthorizedKeys: []string{keys.AuthorizedKey(w.userKey.Public, "me@laptop")},
		DiskDevice: "/dev/disk/by-id/wwn-0x60022480e2e0e2e0e2e0e2e0e2e0e2e0", StateVersion: "26.05"}
	if !refuseRoot {
		s.RootAuthorizedKeys = []string{keys.AuthorizedKey(w.deployKey.Public, "nixos-cloud-deploy")}
	}
	return nixostest.UserFlakeRepo(t, s, refuseRoot)
}

// inputs are the step's with: block for a deploy of vm.
func (w *world) inputs(command, vm string) map[string]string {
	o := w.emu.Options()
	return map[string]string{
		"command":               command,
		"vm-name":               vm,
		"location":              "uksouth",
		"user-name":             "nixos",
		"ssh-public-keys":       keys.AuthorizedKey(w.userKey.Public, "me@laptop"),
		"config-repo":           defaultConfigRepo,
		"config-flake-attr":     "az-nixos",
		"deploy-key":            string(w.deployKey.PrivatePEM),
		"azure-environment":     "AzureStack",
		"arm-endpoint":          w.emu.URL(),
		"azure-client-id":       o.ClientID,
		"azure-tenant-id":       o.TenantID,
		"azure-subscription-id": o.SubscriptionID,
		"azure-client-secret":   o.ClientSecret,
		"ssh-timeout":           "60s",
		"install-timeout":       "120s",
	}
}

// run is one finished run of the binary.
type run struct {
	Code           int
	Stdout, Stderr string
	Outputs        map[string]string
	OutputFile     string // GITHUB_OUTPUT as written
	Summary        string
	Workspace      string
	StandInArgv    []string // what nixos-anywhere was called with; nil when it was not
	ProxyScript    string   // the ProxyCommand script it was given
	StandInTime    time.Duration
	Wall           time.Duration
}

// runAction runs the binary as a GitHub Actions step with the given inputs
// and extra NAME=value environment (for the stand-in's FAKE_NA_MODE).
func (w *world) runAction(t testing.TB, in map[string]string, extraEnv ...string) *run {
	t.Helper()
	dir := t.TempDir()
	ws := filepath.Join(dir, "workspace")
	home := filepath.Join(dir, "home")
	for _, d := range []string{ws, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, f := range []string{"output", "summary"} {
		if err := os.WriteFile(p(f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{
		"PATH=" + standInBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"TMPDIR=" + dir,
		"GITHUB_ACTIONS=true",
		"GITHUB_OUTPUT=" + p("output"),
		"GITHUB_STEP_SUMMARY=" + p("summary"),
		"GITHUB_WORKSPACE=" + ws,
		"GITHUB_SERVER_URL=https://github.com",
		"GITHUB_REPOSITORY=me/infra",
		"GITHUB_RUN_ID=4242",
		"SSL_CERT_FILE=" + w.ca,
		"FAKE_NA_REMOTE=1",
		"FAKE_NA_ARGV=" + p("argv"),
		"E2E_PROXY_COPY=" + p("proxy"),
		"E2E_STANDIN_TIMES=" + p("standin-times"),
		"E2E_REBOOT_DIR=" + w.fleet.rebootDir,
	}
	env = append(env, extraEnv...)
	names := make([]string, 0, len(in))
	for k := range in {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		env = append(env, "INPUT_"+strings.ToUpper(k)+"="+in[k])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin)
	cmd.Env = env
	cmd.Dir = ws
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	r := &run{Wall: time.Since(t0), Stdout: stdout.String(), Stderr: stderr.String(), Workspace: ws}
	switch e := err.(type) {
	case nil:
	case *exec.ExitError:
		r.Code = e.ExitCode()
	default:
		t.Fatalf("run %s: %v", w.bin, err)
	}
	t.Logf("%s %s: exit %d in %s", in["command"], in["vm-name"], r.Code, r.Wall.Round(time.Millisecond))
	// The race detector reports on stderr; the proxy's reports reach the
	// binary's output through nixos-anywhere's.
	if strings.Contains(r.Stdout+r.Stderr, "WARNING: DATA RACE") {
		t.Errorf("the binary reported a data race:\n%s\n%s", r.Stderr, r.Stdout)
	}
	out, err := os.ReadFile(p("output"))
	if err != nil {
		t.Fatal(err)
	}
	r.OutputFile = string(out)
	if r.Outputs, err = parseOutputs(r.OutputFile); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(p("summary"))
	if err != nil {
		t.Fatal(err)
	}
	r.Summary = string(sum)
	if b, err := os.ReadFile(p("argv")); err == nil {
		r.StandInArgv = strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	}
	if b, err := os.ReadFile(p("proxy")); err == nil {
		r.ProxyScript = string(b)
	}
	if b, err := os.ReadFile(p("standin-times")); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var start, end int64
			if _, err := fmt.Sscan(l, &start, &end); err == nil {
				r.StandInTime += time.Duration(end - start)
			}
		}
	}
	return r
}

// dump logs the run's streams when the test fails, or always with
// E2E_VERBOSE=1.
func (r *run) dump(t testing.TB) {
	t.Helper()
	if t.Failed() || os.Getenv("E2E_VERBOSE") == "1" {
		t.Logf("exit %d\n--- stdout\n%s\n--- stderr\n%s\n--- summary\n%s\n--- outputs\n%s", r.Code, r.Stdout, r.Stderr, r.Summary, r.OutputFile)
	}
}

// parseOutputs reads a GITHUB_OUTPUT file: name<<DELIMITER, value lines,
// DELIMITER, as go-githubactions writes it (single-line name=value too).
func parseOutputs(s string) (map[string]string, error) {
	out := map[string]string{}
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l == "" {
			continue
		}
		if name, delim, ok := strings.Cut(l, "<<"); ok {
			var val []string
			for i++; i < len(lines) && lines[i] != delim; i++ {
				val = append(val, lines[i])
			}
			if i == len(lines) {
				return nil, fmt.Errorf("output %q: no closing delimiter %q", name, delim)
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		name, val, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("GITHUB_OUTPUT line %q is neither name=value nor name<<DELIMITER", l)
		}
		out[name] = val
	}
	return out, nil
}

// stage is one row of the summary's stages table.
type stage struct {
	Name, Status string
	Duration     time.Duration
	Note         string
}

// summaryStages reads the stages table of a step summary (phase rows, ↳,
// and the total row are left out).
func summaryStages(t testing.TB, summary string) []stage {
	t.Helper()
	var out []stage
	for _, l := range strings.Split(summary, "\n") {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| stage") || strings.HasPrefix(l, "| ---") || strings.Contains(l, "↳") || strings.Contains(l, "**total**") {
			continue
		}
		f := strings.Split(strings.Trim(l, "|"), " | ")
		if len(f) < 4 {
			continue
		}
		st := stage{Name: strings.TrimSpace(f[0]), Status: strings.TrimSpace(f[1]), Note: strings.TrimSpace(f[3])}
		if d := strings.TrimSpace(f[2]); d != "" && d != "–" && d != "-" {
			if dur, err := time.ParseDuration(d); err == nil {
				st.Duration = dur
			}
		}
		out = append(out, st)
	}
	return out
}
