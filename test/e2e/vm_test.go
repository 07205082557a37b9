//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos/nixostest"
)

const ubuntuOSRelease = `PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
ID=ubuntu
ID_LIKE=debian
`

// cloudConfig is the part of the cloud-init user data a booting Ubuntu VM
// acts on for SSH.
type cloudConfig struct {
	DisableRoot       *bool             `yaml:"disable_root"`
	SSHAuthorizedKeys []string          `yaml:"ssh_authorized_keys"`
	SSHKeys           map[string]string `yaml:"ssh_keys"`
}

// parseCloudConfig reads custom data the way cloud-init does: it must be a
// #cloud-config YAML document.
func parseCloudConfig(data []byte) (cloudConfig, error) {
	var cc cloudConfig
	if !strings.HasPrefix(string(data), "#cloud-config\n") {
		return cc, fmt.Errorf("custom data does not start with #cloud-config: %q", prefix(string(data), 40))
	}
	if err := yaml.Unmarshal(data, &cc); err != nil {
		return cc, fmt.Errorf("custom data is not YAML: %w", err)
	}
	return cc, nil
}

// vmRequest is the part of the VM PUT body the Azure Linux agent acts on: the
// admin user and their keys.
type vmRequest struct {
	Properties struct {
		OSProfile struct {
			AdminUsername      string `json:"adminUsername"`
			LinuxConfiguration struct {
				SSH struct {
					PublicKeys []struct {
						Path    string `json:"path"`
						KeyData string `json:"keyData"`
					} `json:"publicKeys"`
				} `json:"ssh"`
			} `json:"linuxConfiguration"`
		} `json:"osProfile"`
	} `json:"properties"`
}

// network is one test's slice of the "internet": a /24 the emulator assigns
// public IPs from, reached from the host through one veth pair per VM.
type network struct {
	prefix netip.Prefix
	host   netip.Addr // the host's address on every VM's link
}

var netCounter atomic.Int32

// newNetwork picks a /24 in 10.77.0.0/16 that no interface on this machine
// uses, so parallel tests (and parallel test processes) do not clash.
func newNetwork(t testing.TB) network {
	t.Helper()
	start := int(os.Getpid()%200) + int(netCounter.Add(1))*7
	for i := range 250 {
		n := (start + i) % 250
		p := netip.MustParsePrefix(fmt.Sprintf("10.77.%d.0/24", n))
		out, err := exec.Command("ip", "-o", "addr", "show", "to", p.String()).Output()
		if err != nil {
			t.Fatalf("ip addr show: %v", err)
		}
		if strings.TrimSpace(string(out)) == "" && claimNetwork(p) {
			return network{prefix: p, host: p.Addr().Next()}
		}
	}
	t.Fatal("no free /24 in 10.77.0.0/16")
	return network{}
}

var (
	claimedMu sync.Mutex
	claimed   = map[netip.Prefix]bool{}
)

func claimNetwork(p netip.Prefix) bool {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	if claimed[p] {
		return false
	}
	claimed[p] = true
	return true
}

// bootedVM is an emulated VM after boot: a network namespace with the VM's
// public IP and a real sshd configured from the cloud-init custom data.
type bootedVM struct {
	Name  string
	IP    string
	NS    string
	Dir   string
	Admin string
	// HostKeyPEM is the private host key cloud-init installed (a secret);
	// HostKeyPub its public half.
	HostKeyPEM, HostKeyPub string
	BootTime               time.Duration // from the hook's call until sshd accepted connections

	cmd *exec.Cmd
}

// Calls returns how the VM's NixOS stand-ins (nixos-rebuild, git,
// nix-channel, standin-install-nixos) were called, one "<name> <args>" a
// line.
func (vm *bootedVM) Calls() []string {
	b, err := os.ReadFile(filepath.Join(vm.Dir, "calls.log"))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// HostKeyNow is the public host key the VM's sshd has now ("ssh-ed25519
// AAAA..."), after a rotation the one the VM made, and HostKeyPEMNow its
// private half (a secret).
func (vm *bootedVM) HostKeyNow(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vm.Dir, "etc", "ssh", "ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		t.Fatalf("the VM's ssh_host_ed25519_key.pub is %q", b)
	}
	return f[0] + " " + f[1]
}

func (vm *bootedVM) HostKeyPEMNow() string {
	b, _ := os.ReadFile(filepath.Join(vm.Dir, "etc", "ssh", "ssh_host_ed25519_key"))
	return string(b)
}

// OSRelease returns the VM's /etc/os-release as its processes see it.
func (vm *bootedVM) OSRelease() string { return vm.File("/etc/os-release") }

// File returns a file of the VM's own state (its /etc, /home, /root), ""
// when it does not exist.
func (vm *bootedVM) File(path string) string {
	b, _ := os.ReadFile(filepath.Join(vm.Dir, filepath.FromSlash(strings.TrimPrefix(path, "/"))))
	return string(b)
}

// SSHDLog returns what sshd logged (-e).
func (vm *bootedVM) SSHDLog() string {
	b, _ := os.ReadFile(filepath.Join(vm.Dir, "sshd.log"))
	return string(b)
}

// fleet boots the emulator's VMs. Its Boot method is the emulator's
// OnVMCreated hook; errors are kept for the test to report, because a hook
// runs on the emulator's goroutine.
type fleet struct {
	t   testing.TB
	net network
	// gitURLs maps config-repo URLs to local repositories the VMs clone
	// instead (they have no network).
	gitURLs map[string]string
	// rebootDir holds one script per VM, named for its public IP, that
	// reboots it into "NixOS"; the nixos-anywhere wrapper runs it after a
	// successful install (E2E_REBOOT_DIR).
	rebootDir string

	mu   sync.Mutex
	vms  []*bootedVM
	errs []error
}

func newFleet(t testing.TB) *fleet {
	return &fleet{t: t, net: newNetwork(t), rebootDir: t.TempDir()}
}

// Boot is azuretest.Options.OnVMCreated.
func (f *fleet) Boot(rec azuretest.VMRecord) {
	vm, err := f.boot(rec)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("boot VM %q: %w", rec.Name, err))
		return
	}
	f.vms = append(f.vms, vm)
}

// Check fails the test for every VM that did not boot.
func (f *fleet) Check(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, err := range f.errs {
		t.Error(err)
	}
}

// count is how many VMs booted.
func (f *fleet) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.vms)
}

// all returns every booted VM.
func (f *fleet) all() []*bootedVM {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*bootedVM(nil), f.vms...)
}

// VM returns the booted VM with that name.
func (f *fleet) VM(t testing.TB, name string) *bootedVM {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, vm := range f.vms {
		if vm.Name == name {
			return vm
		}
	}
	t.Fatalf("VM %q never booted (boot errors: %v)", name, f.errs)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (f *fleet) boot(rec azuretest.VMRecord) (*bootedVM, error) {
	t0 := time.Now()
	if len(rec.PublicIPs) != 1 {
		return nil, fmt.Errorf("want one public IP, the emulator has %q", rec.PublicIPs)
	}
	ip, err := netip.ParseAddr(rec.PublicIPs[0])
	if err != nil || !f.net.prefix.Contains(ip) {
		return nil, fmt.Errorf("public IP %q is not in the test network %s", rec.PublicIPs[0], f.net.prefix)
	}
	cc, err := parseCloudConfig(rec.CustomData)
	if err != nil {
		return nil, err
	}
	var req vmRequest
	if err := json.Unmarshal(rec.Request, &req); err != nil {
		return nil, fmt.Errorf("VM request is not JSON: %w", err)
	}
	admin := req.Properties.OSProfile.AdminUsername
	if admin == "" || admin == "root" || strings.ContainsAny(admin, ":/\n ") {
		return nil, fmt.Errorf("admin user %q cannot be created", admin)
	}

	dir, err := os.MkdirTemp("", "e2e-vm-")
	if err != nil {
		return nil, err
	}
	// sshd reads the admin user's keys as that user.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	id := randomHex(4)
	vm := &bootedVM{Name: rec.Name, IP: ip.String(), NS: "e2e-" + id, Dir: dir, Admin: admin, HostKeyPEM: cc.SSHKeys["ed25519_private"], HostKeyPub: cc.SSHKeys["ed25519_public"]}
	f.t.Cleanup(func() { vm.shutdown(f.t) })

	// cloud-init's cc_ssh: the host key from ssh_keys; root's keys only
	// when disable_root is false (cloud-init's default is true).
	priv, pub := cc.SSHKeys["ed25519_private"], cc.SSHKeys["ed25519_public"]
	if priv == "" || pub == "" {
		return nil, errors.New("custom data has no ssh_keys.ed25519_private/ed25519_public: the VM would make its own host key")
	}
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	// The Linux agent: the admin user with the osProfile's keys and, having
	// no password, sudo without one (WALinuxAgent conf_sudoer nopasswd).
	admin0 := nixostest.User{Name: admin, UID: freeUID(string(passwd)), Sudo: true}
	for _, k := range req.Properties.OSProfile.LinuxConfiguration.SSH.PublicKeys {
		if want := "/home/" + admin + "/.ssh/authorized_keys"; k.Path != want {
			return nil, fmt.Errorf("osProfile key path %q, want %q", k.Path, want)
		}
		admin0.Keys = append(admin0.Keys, strings.TrimSpace(k.KeyData))
	}
	state := nixostest.VM{Dir: dir, OSRelease: ubuntuOSRelease, Hostname: rec.Name, Users: []nixostest.User{admin0},
		SSHFiles: map[string]string{"ssh_host_ed25519_key": priv, "ssh_host_ed25519_key.pub": pub + "\n"}}
	if cc.DisableRoot != nil && !*cc.DisableRoot {
		state.RootKeys = cc.SSHAuthorizedKeys
	}
	if moduli, err := os.ReadFile("/etc/ssh/moduli"); err == nil {
		state.SSHFiles["moduli"] = string(moduli)
	}
	if err := state.Write(); err != nil {
		return nil, err
	}
	files := map[string]string{"calls.log": ""}
	files["sshd_config"] = strings.Join([]string{
		"ListenAddress 0.0.0.0:22",
		// The VM's own /etc/ssh (see vm-boot.sh), where cloud-init writes
		// the keys from ssh_keys.
		"HostKey /etc/ssh/ssh_host_ed25519_key",
		// Ubuntu's: cloud-init's and the agent's keys in ~/.ssh (the
		// reboot into NixOS adds NixOS's place, see writeReboot).
		"AuthorizedKeysFile .ssh/authorized_keys",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AllowTcpForwarding yes",
		"StrictModes no",
		"UsePAM no",
		"PidFile none",
		"LogLevel VERBOSE",
		"",
	}, "\n")
	for name, tool := range vmTools() {
		files["bin/"+name] = tool
	}
	for _, d := range []string{"dev", "bin"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		switch {
		case strings.HasPrefix(name, "bin/"):
			mode = 0o755
		case name == "calls.log":
			mode = 0o666 // the VM's user appends too (runuser)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			return nil, err
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			return nil, err
		}
	}
	if err := nixostest.InstallTools(filepath.Join(dir, "bin"), nixostest.Tools{Log: filepath.Join(dir, "calls.log"), GitURLs: f.gitURLs, SSHDPID: filepath.Join(dir, "sshd.pid")}); err != nil {
		return nil, err
	}

	// The network: a veth pair, the host end on the test network, the VM
	// end in the VM's namespace with the public IP.
	hostIf, vmIf := "e2h"+id, "e2v"+id
	bits := strconv.Itoa(f.net.prefix.Bits())
	for _, args := range [][]string{
		{"netns", "add", vm.NS},
		{"link", "add", hostIf, "type", "veth", "peer", "name", vmIf, "netns", vm.NS},
		{"addr", "add", f.net.host.String() + "/" + bits, "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", vm.NS, "addr", "add", vm.IP + "/" + bits, "dev", vmIf},
		{"-n", vm.NS, "link", "set", vmIf, "up"},
		{"-n", vm.NS, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	setup, err := filepath.Abs("testdata/vm-boot.sh")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	vm.cmd = exec.Command("ip", "netns", "exec", vm.NS,
		"unshare", "--mount", "--uts", "--propagation", "private", "--",
		"/bin/sh", setup, dir, nixostest.VMRootScript(),
		"/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	vm.cmd.Stdout, vm.cmd.Stderr = logf, logf
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := vm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- vm.cmd.Wait() }()
	addr := net.JoinHostPort(vm.IP, "22")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("sshd exited (%v): %s", err, vm.SSHDLog())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sshd does not accept on %s after 10s: %s", addr, vm.SSHDLog())
		}
	}
	vm.BootTime = time.Since(t0)
	if err := f.writeReboot(vm, setup); err != nil {
		return nil, err
	}
	return vm, nil
}

// writeReboot writes the script that reboots vm into the installed NixOS,
// as the end of a real nixos-anywhere run does: every process of the VM
// dies (connections drop), and sshd comes back with the same host key and
// keys (--copy-host-keys, the rendered config), a fresh /home, and a
// banner without a distribution, as NixOS's OpenSSH sends it. The script
// returns once sshd accepts connections again.
func (f *fleet) writeReboot(vm *bootedVM, setup string) error {
	cfg, err := os.ReadFile(filepath.Join(vm.Dir, "sshd_config"))
	if err != nil {
		return err
	}
	nixosCfg := filepath.Join(vm.Dir, "sshd_config.nixos")
	// NixOS's sshd also reads /etc/ssh/authorized_keys.d/%u, where the
	// installed configuration puts users.users.<name>.openssh.authorizedKeys
	// (nixpkgs nixos/modules/services/networking/ssh/sshd.nix,
	// authorizedKeysFiles); the install stand-in wrote root's and the
	// user's there.
	keysLine := "AuthorizedKeysFile .ssh/authorized_keys"
	if !strings.Contains(string(cfg), keysLine+"\n") {
		return fmt.Errorf("sshd_config has no line %q", keysLine)
	}
	nixosText := strings.Replace(string(cfg), keysLine+"\n", keysLine+" /etc/ssh/authorized_keys.d/%u\n", 1) + "DebianBanner no\n"
	if err := os.WriteFile(nixosCfg, []byte(nixosText), 0o644); err != nil {
		return err
	}
	q := shellQuote
	// The VM's state (its /etc, /home, /root) lives in its directory, as
	// the installed system left it: the reboot keeps it.
	script := `#!/usr/bin/env bash
set -u
for _ in $(seq 100); do
  pids=$(ip netns pids ` + q(vm.NS) + `)
  [[ -z $pids ]] && break
  kill -9 $pids 2>/dev/null
  sleep 0.01
done
echo "--- reboot into NixOS ---" >>` + q(filepath.Join(vm.Dir, "sshd.log")) + `
setsid ip netns exec ` + q(vm.NS) + ` unshare --mount --uts --propagation private -- /bin/sh ` + q(setup) + ` ` + q(vm.Dir) + ` ` + q(nixostest.VMRootScript()) + ` \
  /usr/sbin/sshd -D -e -f ` + q(nixosCfg) + ` >>` + q(filepath.Join(vm.Dir, "sshd.log")) + ` 2>&1 </dev/null &
for _ in $(seq 1000); do
  (exec 3<>/dev/tcp/` + vm.IP + `/22) 2>/dev/null && exit 0
  sleep 0.01
done
echo "e2e: VM ` + vm.Name + ` did not come back after the reboot" >&2
exit 1
`
	return os.WriteFile(filepath.Join(f.rebootDir, vm.IP), []byte(script), 0o755)
}

// RunCommand is azuretest.Options.RunCommand: the Azure Linux agent runs
// the script as root on the VM, here inside the VM's network and mount
// namespaces.
func (f *fleet) RunCommand(ctx context.Context, rc azuretest.RunCommand) azuretest.RunCommandResult {
	f.mu.Lock()
	var vm *bootedVM
	for _, v := range f.vms {
		if v.Name == rc.VM.Name {
			vm = v
		}
	}
	f.mu.Unlock()
	if vm == nil {
		return azuretest.RunCommandResult{Stderr: "e2e: no booted VM " + rc.VM.Name, ExitCode: 1}
	}
	if rc.CommandID != "RunShellScript" {
		return azuretest.RunCommandResult{Stderr: "e2e: unsupported command id " + rc.CommandID, ExitCode: 1}
	}
	out, err := exec.Command("ip", "netns", "pids", vm.NS).Output()
	pids := strings.Fields(string(out))
	if err != nil || len(pids) == 0 {
		return azuretest.RunCommandResult{Stderr: "e2e: the VM is not running", ExitCode: 1}
	}
	cmd := exec.CommandContext(ctx, "nsenter", "-t", pids[0], "-m", "-n", "--", "/bin/sh", "-c", strings.Join(rc.Script, "\n"))
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	cmd.Dir = "/"
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	res := azuretest.RunCommandResult{}
	if err := cmd.Run(); err != nil {
		res.ExitCode = 1
		if ee, ok := err.(*exec.ExitError); ok {
			res.ExitCode = ee.ExitCode()
		}
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	return res
}

// shutdown kills every process in the VM's network namespace (sshd and
// the sessions it forked, which sit in their own sessions), then removes
// the namespace, whose veth end takes the host end with it.
func (vm *bootedVM) shutdown(t testing.TB) {
	if vm.NS != "" {
		for range 50 {
			out, _ := exec.Command("ip", "netns", "pids", vm.NS).Output()
			pids := strings.Fields(string(out))
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if vm.cmd != nil && vm.cmd.Process != nil {
			_ = syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
		}
		if out, err := exec.Command("ip", "netns", "del", vm.NS).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			t.Errorf("ip netns del %s: %v: %s", vm.NS, err, out)
		}
	}
	if t.Failed() {
		t.Logf("VM %s sshd log:\n%s", vm.Name, vm.SSHDLog())
	}
	_ = os.RemoveAll(vm.Dir)
}

// vmTools are the VM's /usr/local/bin besides the NixOS stand-ins
// (nixostest.InstallTools, whose systemctl answers for sshd's main PID):
// findmnt and lsblk as on an Azure VM with its OS disk on SCSI, and uname.
func vmTools() map[string]string {
	return map[string]string{
		"findmnt": "#!/bin/sh\necho /dev/sda1\n",
		// A default (x86_64) Azure size, whatever this machine is.
		"uname": "#!/bin/sh\nif [ \"$*\" = -m ]; then echo x86_64; else exec /bin/uname \"$@\"; fi\n",
		"lsblk": "#!/bin/sh\ncase \"$*\" in *sda1*) echo sda ;; *) echo ;; esac\n",
	}
}

// freeUID is the first uid from 1000 up that passwd does not use, as
// useradd picks it.
func freeUID(passwd string) int {
	used := map[string]bool{}
	for _, l := range strings.Split(passwd, "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 {
			used[f[2]] = true
		}
	}
	uid := 1000
	for used[strconv.Itoa(uid)] {
		uid++
	}
	return uid
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
