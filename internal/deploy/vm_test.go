package deploy

import (
	"context"
	"crypto/rsa"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos/nixostest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// TestMain lets the test binary stand in for the action binary's `proxy`
// subcommand: nixos-anywhere's ProxyCommand script execs it.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		// A test that checks what the proxy may see has it write down its
		// environment, one variable per line, each run appending.
		if p := os.Getenv("DEPLOY_TEST_PROXY_ENV"); p != "" {
			if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
				_, _ = f.WriteString(strings.Join(os.Environ(), "\n") + "\n")
				_ = f.Close()
			}
		}
		os.Exit(sshx.RunProxy(context.Background(), os.Args[2:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const ubuntuOSRelease = `PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
ID=ubuntu
ID_LIKE=debian
`

// requireNamespaces skips, loudly, where a private mount namespace cannot be
// made (not root, or no unshare). CI runs as root.
func requireNamespaces(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: the test VM needs a private mount namespace, which needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("SKIPPED LOUDLY: unshare (util-linux) not found")
	}
}

// testVM is a real sshd in its own mount and UTS namespaces that looks like
// a fresh Ubuntu VM on Azure to the pipeline: its own /etc (os-release,
// passwd, sudoers, ssh), /home and /root (nixostest.VM, kept in dir),
// /dev/disk/by-id, findmnt/lsblk, and the NixOS stand-ins
// (nixostest.InstallTools: nixos-rebuild, git, nix-channel, and what
// nixos-anywhere's install leaves behind) on its PATH.
type testVM struct {
	srv *sshtest.Server
	dir string
	// calls is where the stand-ins record how they were called.
	calls string
}

type vmOptions struct {
	hostKeyPEM []byte
	rootKeys   []ssh.PublicKey
	nixos      bool // answer as an installed NixOS: os-release and no distribution in the SSH banner
	failCmd    string
	memKB      int    // /proc/meminfo's MemTotal; 0 means 16 GB
	sudoUser   string // a user with passwordless sudo (the first login of install onto a host)
	// sudoUserKeys log in as sudoUser (~/.ssh/authorized_keys).
	sudoUserKeys []ssh.PublicKey
	secureBoot   bool // mokutil --sb-state says SecureBoot enabled
	// hostKeyOverride boots the VM with another host key than the one in
	// the custom data: a wrong address or a machine in the middle.
	hostKeyOverride []byte
	// osRelease replaces the Ubuntu /etc/os-release; executables add or
	// replace remote commands (name to script): a hostile VM.
	osRelease   string
	executables map[string]string
	// gitURLs maps config-repo URLs to local repositories (nixostest.ConfigRepo).
	gitURLs map[string]string
}

func startVM(t *testing.T, o vmOptions) *testVM {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	rel := ubuntuOSRelease
	if o.osRelease != "" {
		rel = o.osRelease
	}
	if o.nixos {
		rel = "NAME=NixOS\nID=nixos\nVERSION_ID=\"26.05\"\n"
	}
	if o.memKB == 0 {
		o.memKB = 16 * 1000 * 1000 // a Standard_B4ms, whatever this machine has
	}
	{
		meminfo := fmt.Sprintf("MemTotal:       %d kB\nMemFree:        %d kB\n", o.memKB, o.memKB/2)
		if err := os.WriteFile(filepath.Join(dir, "meminfo"), []byte(meminfo), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setup, err := filepath.Abs("testdata/vm-setup.sh")
	if err != nil {
		t.Fatal(err)
	}
	hostKey := o.hostKeyPEM
	if o.hostKeyOverride != nil {
		hostKey = o.hostKeyOverride
	}
	// Where Run Command reads the host key: the one sshd really uses.
	signer, err := ssh.ParsePrivateKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	state := nixostest.VM{Dir: dir, OSRelease: rel, Hostname: "az-nixos",
		SSHFiles: map[string]string{"ssh_host_ed25519_key": string(hostKey), "ssh_host_ed25519_key.pub": string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}}
	for _, k := range o.rootKeys {
		state.RootKeys = append(state.RootKeys, string(ssh.MarshalAuthorizedKey(k)))
	}
	if o.sudoUser != "" {
		u := nixostest.User{Name: o.sudoUser, UID: 4242, Sudo: true}
		for _, k := range o.sudoUserKeys {
			u.Keys = append(u.Keys, string(ssh.MarshalAuthorizedKey(k)))
		}
		state.Users = append(state.Users, u)
	}
	if err := state.Write(); err != nil {
		t.Fatal(err)
	}
	opts := []sshtest.Option{
		sshtest.WithHostKeyPEM(hostKey),
		// sshd reads the VM's own host key file, which a rotation replaces.
		sshtest.WithHostKeyPath("/etc/ssh/ssh_host_ed25519_key"),
		sshtest.WithWrapper("unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", setup, dir, nixostest.VMRootScript()),
		// cloud-init's keys in ~/.ssh, NixOS's in /etc/ssh/authorized_keys.d
		// (nixpkgs nixos/modules/services/networking/ssh/sshd.nix). The
		// server's own authorized_keys holds the test's inspection key only.
		sshtest.WithAuthorizedKeysFiles(".ssh/authorized_keys", "/etc/ssh/authorized_keys.d/%u"),
	}
	if o.nixos {
		// NixOS ships OpenSSH as released; Debian's adds itself to the banner.
		opts = append(opts, sshtest.WithConfig("DebianBanner no"))
	}
	srv := sshtest.Start(t, opts...)
	vm := &testVM{srv: srv, dir: dir, calls: filepath.Join(srv.Dir, "calls.log")}
	// Sessions of other users (the sudo user, the VM's user under runuser)
	// run sshtest's wrapper and the stand-ins from the server's directory,
	// and append to the logs: let them.
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
	if err := nixostest.InstallTools(srv.BinDir, nixostest.Tools{Log: vm.calls, GitURLs: o.gitURLs, SSHDPID: filepath.Join(dir, "sshd.pid")}); err != nil {
		t.Fatal(err)
	}
	// An Azure VM of a default (x86_64) size, whatever this machine is.
	srv.AddExecutable("uname", "#!/bin/sh\nif [ \"$*\" = -m ]; then echo x86_64; else exec /bin/uname \"$@\"; fi\n")
	srv.AddExecutable("findmnt", "#!/bin/sh\necho /dev/sda1\n")
	srv.AddExecutable("lsblk", "#!/bin/sh\ncase \"$*\" in *sda1*) echo sda ;; *) echo ;; esac\n")
	if o.secureBoot {
		srv.AddExecutable("mokutil", "#!/bin/sh\necho 'SecureBoot enabled'\n")
	}
	for name, script := range o.executables {
		srv.AddExecutable(name, script)
	}
	if o.failCmd != "" {
		srv.AddExecutable(o.failCmd, "#!/bin/sh\necho \""+o.failCmd+": something went wrong\" >&2\nexit 1\n")
	}
	return vm
}

// Calls returns how the VM's stand-ins were called, one "<name> <args>" each.
func (vm *testVM) Calls() []string {
	b, err := os.ReadFile(vm.calls)
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// file reads a file of the VM's own state (its /etc, /home, /root are
// dir/etc, dir/home, dir/root).
func (vm *testVM) file(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vm.dir, filepath.FromSlash(strings.TrimPrefix(path, "/"))))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (vm *testVM) osReleaseID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vm.dir, "etc", "os-release"))
	if err != nil {
		t.Fatal(err)
	}
	return nixos.OSReleaseID(b)
}

// forwarder stands in for the VM's public IP: a fixed loopback port, known
// before the VM exists, that forwards to the VM's sshd once it boots.
type forwarder struct {
	ln      net.Listener
	mu      sync.Mutex
	backend string
}

func newForwarder(t *testing.T) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *forwarder) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *forwarder) setBackend(addr string) {
	f.mu.Lock()
	f.backend = addr
	f.mu.Unlock()
}

func (f *forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		backend := f.backend
		f.mu.Unlock()
		if backend == "" {
			c.Close() // the VM has not booted: nothing answers
			continue
		}
		go func() {
			defer c.Close()
			b, err := net.Dial("tcp", backend)
			if err != nil {
				return
			}
			defer b.Close()
			go func() { _, _ = io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(c, b)
		}()
	}
}

// fakeCloud is a hand-written Cloud: provisioning "boots" a testVM from the
// cloud-init custom data the pipeline rendered, as Azure and cloud-init
// would. Faults are injected per method.
type fakeCloud struct {
	t   *testing.T
	fwd *forwarder

	mu            sync.Mutex
	calls         []string
	vm            *testVM
	exists        bool
	hostKeyTag    string
	vmOpts        vmOptions // what the next boot looks like
	provisionErr  error
	failAfterVM   bool // the VM exists when provisioning fails
	provisionHang bool // Provision waits for its deadline
	destroyed     bool
	managed       bool   // LookupVM says the VM is tagged ours
	powerState    string // "" means running
	failed        string // the VM's creation failed with this status message (provisioning state Failed)
	size          string
	// agentStatus is the VM agent's status in the instance view; "" means
	// "Ready".
	agentStatus string
	rgExists    bool
	serial      string
	hostKeyPEM  []byte   // the private host key the custom data carried
	adminKeys   []string // the osProfile keys of the last Provision
	tagErr      error    // SetHostKeyTag fails with it
}

func (c *fakeCloud) lastHostKeyPEM() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hostKeyPEM
}

func newFakeCloud(t *testing.T) *fakeCloud {
	return &fakeCloud{t: t, fwd: newForwarder(t), serial: "[    0.000000] Linux version 6.8.0-1017-azure\nUbuntu 24.04.1 LTS az-nixos ttyS0\n"}
}

func (c *fakeCloud) record(s string) {
	c.mu.Lock()
	c.calls = append(c.calls, s)
	c.mu.Unlock()
}

func (c *fakeCloud) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func (c *fakeCloud) LookupVM(_ context.Context, rg, vm string) (*azure.VMInfo, error) {
	c.record("lookup " + rg + "/" + vm)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.exists {
		return nil, fmt.Errorf("virtual machine %q in resource group %q: %w", vm, rg, azure.ErrNotFound)
	}
	power := c.powerState
	if power == "" {
		power = "running"
	}
	size := c.size
	if size == "" {
		size = "Standard_B4ms"
	}
	return &azure.VMInfo{ID: "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/" + rg + "/providers/Microsoft.Compute/virtualMachines/" + vm,
		Name: vm, ResourceGroup: rg, Managed: c.managed, HostKey: c.hostKeyTag, PowerState: power, Size: size,
		PublicIP: "127.0.0.1", FQDN: vm + ".uksouth.cloudapp.azure.com", AgentStatus: c.agent(),
		ProvisioningState: c.provisioningState(), StatusMessage: c.failed}, nil
}

func (c *fakeCloud) provisioningState() string {
	if c.failed != "" {
		return "Failed"
	}
	return "Succeeded"
}

func (c *fakeCloud) agent() string {
	if c.agentStatus == "" {
		return "Ready"
	}
	return c.agentStatus
}

// RunShellScript is the VM agent: it runs the script as root on the VM.
// Without a ready agent nothing runs it: Azure keeps the request until it
// times out (Microsoft Learn, "Troubleshoot Run Command": the VM agent must
// be installed and ready); the fake fails at once instead of waiting.
func (c *fakeCloud) RunShellScript(_ context.Context, rg, vm, script string) (string, error) {
	c.record("run-command " + rg + "/" + vm)
	c.mu.Lock()
	v, agent := c.vm, c.agent()
	c.mu.Unlock()
	if agent != "Ready" {
		return "", fmt.Errorf("fake cloud: Run Command on %q timed out: the VM agent is %q", vm, agent)
	}
	if v == nil {
		return "", fmt.Errorf("fake cloud: no VM %q", vm)
	}
	cl, err := ssh.Dial("tcp", v.srv.Addr, v.srv.ClientConfig())
	if err != nil {
		return "", err
	}
	defer cl.Close()
	sess, err := cl.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	var stderr strings.Builder
	sess.Stderr = &stderr
	out, err := sess.Output("sh -c " + sshx.Quote(script))
	if err != nil {
		return string(out), &azure.RunCommandError{VM: vm, Stdout: string(out), Stderr: stderr.String()}
	}
	return string(out), nil
}

func (c *fakeCloud) StartVM(_ context.Context, rg, vm string) error {
	c.record("start " + rg + "/" + vm)
	c.mu.Lock()
	c.powerState = "running"
	c.mu.Unlock()
	return nil
}

func (c *fakeCloud) Provision(ctx context.Context, s azure.Spec, progress func(azure.Event)) (*azure.Result, error) {
	c.record("provision " + s.ResourceGroup + "/" + s.VMName)
	if c.provisionHang {
		// Azure that never finishes: only the deadline ends it.
		<-ctx.Done()
		return &azure.Result{}, fmt.Errorf("failed to create virtual machine %q: %w", s.VMName, ctx.Err())
	}
	res := &azure.Result{PublicIP: "127.0.0.1", FQDN: s.VMName + "." + s.Location + ".cloudapp.azure.com"}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.adminKeys = append([]string(nil), s.AdminKeys...)
	// A VM create with a key Azure does not take in osProfile fails whole:
	// ssh-rsa >= 2048 bits and ssh-ed25519 only (Microsoft Learn, "Detailed
	// steps: create and manage SSH keys"; azuretest models it on the wire).
	for _, k := range s.AdminKeys {
		if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil || (pk.Type() != ssh.KeyAlgoED25519 && !(pk.Type() == ssh.KeyAlgoRSA && rsaBits(pk) >= 2048)) {
			return res, fmt.Errorf("failed to create virtual machine %q: InvalidParameter: The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.", s.VMName)
		}
	}
	c.rgExists = true // the resource group comes first
	if c.provisionErr != nil && !c.failAfterVM {
		progress(azure.Event{Kind: azure.KindVM, Name: s.VMName, Phase: azure.PhaseFailed, Err: c.provisionErr})
		return res, c.provisionErr
	}
	res.VMID = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/" + s.ResourceGroup + "/providers/Microsoft.Compute/virtualMachines/" + s.VMName
	action := azure.ActionReused
	if !c.exists {
		action = azure.ActionCreated
		var ci struct {
			RootKeys []string          `yaml:"ssh_authorized_keys"`
			SSHKeys  map[string]string `yaml:"ssh_keys"`
		}
		if err := yaml.Unmarshal(s.CustomData, &ci); err != nil {
			return res, fmt.Errorf("fake cloud: custom data is not YAML: %w", err)
		}
		o := c.vmOpts
		o.hostKeyPEM = []byte(ci.SSHKeys["ed25519_private"])
		c.hostKeyPEM = o.hostKeyPEM
		for _, k := range ci.RootKeys {
			pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil {
				return res, fmt.Errorf("fake cloud: root key %q: %w", k, err)
			}
			o.rootKeys = append(o.rootKeys, pk)
		}
		c.vm = startVM(c.t, o)
		c.fwd.setBackend(c.vm.srv.Addr)
		c.exists, c.managed = true, true
		c.hostKeyTag = s.HostKeyPublic
	}
	for _, kind := range []string{azure.KindResourceGroup, azure.KindPublicIP, azure.KindNSG, azure.KindVNet, azure.KindNIC, azure.KindVM} {
		res.Resources = append(res.Resources, azure.ResourceResult{Kind: kind, Name: s.VMName, Action: action})
	}
	if c.provisionErr != nil {
		return res, c.provisionErr
	}
	return res, nil
}

// SetHostKeyTag merges the tag, as ARM's tags resource does with operation
// Merge; a VM that is not ours is refused, as the Provisioner does.
func (c *fakeCloud) SetHostKeyTag(_ context.Context, rg, vm, hostKey string) error {
	c.record("tag " + rg + "/" + vm)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.exists {
		return fmt.Errorf("virtual machine %q in resource group %q: %w", vm, rg, azure.ErrNotFound)
	}
	if c.tagErr != nil {
		return c.tagErr
	}
	c.hostKeyTag = hostKey
	return nil
}

func (c *fakeCloud) SerialLog(_ context.Context, rg, vm string, tail int) (string, error) {
	c.record(fmt.Sprintf("serial-log %s/%s %d", rg, vm, tail))
	return c.serial, nil
}

func (c *fakeCloud) Destroy(_ context.Context, rg string) (azure.DestroyResult, error) {
	c.record("destroy " + rg)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.rgExists && !c.exists {
		return azure.DestroyResult{ResourceGroup: rg, Note: fmt.Sprintf("resource group %q does not exist; nothing to delete", rg)}, nil
	}
	c.destroyed, c.exists, c.rgExists = true, false, false
	return azure.DestroyResult{ResourceGroup: rg, Deleted: true, Resources: []string{"Microsoft.Compute/virtualMachines/az-nixos"}}, nil
}

var _ Cloud = (*fakeCloud)(nil)

func rsaBits(k ssh.PublicKey) int {
	if ck, ok := k.(ssh.CryptoPublicKey); ok {
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok {
			return rk.N.BitLen()
		}
	}
	return 0
}
