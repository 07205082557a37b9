package deploy

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
)

// existingVM puts a VM into the fake cloud that some earlier process made:
// Ubuntu, root accepting only another key, no ssh-host-key tag.
func existingVM(t *testing.T, h *harness, o vmOptions) *testVM {
	t.Helper()
	host, _ := keys.New(nil, "")
	other, _ := keys.New(nil, "")
	o.hostKeyPEM, o.rootKeys = host.PrivatePEM, []ssh.PublicKey{other.Public}
	vm := startVM(t, o)
	h.cloud.vm = vm
	h.cloud.fwd.setBackend(vm.srv.Addr)
	h.cloud.exists = true
	return vm
}

func TestInstallOntoExistingAzureVM(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	vm := existingVM(t, h, vmOptions{})
	h.cloud.powerState = "deallocated"
	res := h.run(context.Background(), h.options(map[string]string{"command": "install", "start-if-stopped": "true"}))
	if res.Err != nil {
		t.Fatalf("install failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	want := map[string]Status{"plan": StatusOK, "locate": StatusOK, "prepare access": StatusOK, "wait for SSH": StatusOK,
		"detect disk": StatusOK, "lock": StatusOK, "install": StatusOK, "verify": StatusOK, "rotate host key": StatusSkipped, "finalize": StatusSkipped, "report": StatusOK}
	if d := cmp.Diff(want, statuses(res)); d != "" {
		t.Errorf("stages (-want +got):\n%s", d)
	}
	calls := strings.Join(h.cloud.Calls(), "\n")
	for _, c := range []string{"start az-nixos/az-nixos", "run-command az-nixos/az-nixos"} {
		if !strings.Contains(calls, c) {
			t.Errorf("cloud calls lack %q:\n%s", c, calls)
		}
	}
	if strings.Contains(calls, "provision") {
		t.Errorf("install provisioned something:\n%s", calls)
	}
	if vm.osReleaseID(t) != "nixos" {
		t.Error("the VM was not installed")
	}
	// The host key was learnt over Run Command and pinned: it is the one
	// the VM's sshd really has.
	if !strings.Contains(res.Outputs.SSHHostKey, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(vm.srv.HostKey)))) {
		t.Errorf("ssh-host-key %q is not the VM's key", res.Outputs.SSHHostKey)
	}
	checkGolden(t, "install-azure.md", normalize(res))
}

func TestInstallRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vm      vmOptions
		power   string
		tag     bool   // a stale ssh-host-key tag
		agent   string // the VM agent's status
		set     map[string]string
		stage   string
		wantErr string
	}{
		{name: "already nixos", vm: vmOptions{nixos: true}, stage: "prepare access", wantErr: "already runs NixOS"},
		{name: "too little memory", vm: vmOptions{memKB: 1000000}, stage: "prepare access", wantErr: "needs at least 1.5 GB"},
		{name: "secure boot", vm: vmOptions{secureBoot: true}, stage: "prepare access", wantErr: "Secure Boot is on"},
		{name: "stopped", power: "deallocated", stage: "locate", wantErr: "is deallocated"},
		{name: "stale host key tag", tag: true, stage: "prepare access", wantErr: "is not the pinned one"},
		// A NixOS VM whose configuration runs no Azure agent: Run Command
		// would wait until Azure gives up; refused before it is sent.
		{name: "no agent", vm: vmOptions{nixos: true}, agent: "Not Ready", set: map[string]string{"force-reinstall": "true"}, stage: "locate", wantErr: `the Azure VM agent on virtual machine "az-nixos" is "Not Ready"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			vm := existingVM(t, h, tc.vm)
			h.cloud.powerState, h.cloud.agentStatus = tc.power, tc.agent
			if tc.tag {
				stale, _ := keys.New(nil, "")
				h.cloud.hostKeyTag = keys.AuthorizedKey(stale.Public, "")
			}
			set := map[string]string{"command": "install"}
			for k, v := range tc.set {
				set[k] = v
			}
			res := h.run(context.Background(), h.options(set))
			if res.Err == nil || res.FailedStage != tc.stage || !strings.Contains(res.Err.Error(), tc.wantErr) {
				t.Fatalf("want %s to refuse with %q, got %s: %v", tc.stage, tc.wantErr, res.FailedStage, res.Err)
			}
			if res.Hint == "" {
				t.Error("a refusal without a hint")
			}
			if vm.osReleaseID(t) == "nixos" && !tc.vm.nixos {
				t.Error("the refused machine was installed")
			}
			if strings.Contains(strings.Join(h.cloud.Calls(), "\n"), "destroy") {
				t.Error("install destroyed something")
			}
			if tc.agent != "" && strings.Contains(strings.Join(h.cloud.Calls(), "\n"), "run-command") {
				t.Error("Run Command was sent to a VM without a ready agent")
			}
		})
	}
}

// TestInstallOntoAnyHost: no Azure at all, a host by address with its host
// key given, a first login with the user's key.
func TestInstallOntoAnyHost(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	host, _ := keys.New(nil, "")
	login, _ := keys.New(nil, "")
	vm := startVM(t, vmOptions{hostKeyPEM: host.PrivatePEM, rootKeys: []ssh.PublicKey{login.Public}})
	set := map[string]string{
		"command": "install", "target-host": vm.srv.Addr, "target-user": vm.srv.User,
		"target-host-key": keys.AuthorizedKey(host.Public, ""), "target-ssh-key": string(login.PrivatePEM),
		"azure-subscription-id": "",
	}
	opts := h.options(set)
	opts.Cloud = nil // install onto a host needs no cloud
	res := h.run(context.Background(), opts)
	if res.Err != nil {
		t.Fatalf("install failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	if vm.osReleaseID(t) != "nixos" {
		t.Error("the host was not installed")
	}
	if res.Outputs.PublicIP != "127.0.0.1" || res.Outputs.ResourceGroup != "" || !strings.HasPrefix(res.Outputs.SSHCommand, "ssh -p ") {
		t.Errorf("outputs %+v", res.Outputs)
	}

	// The same host under another key is refused before anything is sent.
	testWrongTargetKey(t, set)
}

// TestInstallOntoAnyHostWithSudo: the first login is a user with
// passwordless sudo, as on a cloud image, not root.
func TestInstallOntoAnyHostWithSudo(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Fatalf("sudo not found (apt-get install sudo; scripts/deps.sh does): %v", err)
	}
	h := newHarness(t)
	host, _ := keys.New(nil, "")
	login, _ := keys.New(nil, "")
	vm := startVM(t, vmOptions{hostKeyPEM: host.PrivatePEM, sudoUser: "ubuntu", sudoUserKeys: []ssh.PublicKey{login.Public}})
	opts := h.options(map[string]string{
		"command": "install", "target-host": vm.srv.Addr, "target-user": "ubuntu",
		"target-host-key": keys.AuthorizedKey(host.Public, ""), "target-ssh-key": string(login.PrivatePEM),
		"azure-subscription-id": "",
	})
	opts.Cloud = nil
	res := h.run(context.Background(), opts)
	if res.Err != nil {
		t.Fatalf("install failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	if vm.osReleaseID(t) != "nixos" {
		t.Error("the host was not installed")
	}
	if cmds := strings.Join(vm.srv.Commands(), "\n"); !strings.HasPrefix(cmds, "sudo -n sh -c ") {
		t.Errorf("the first login did not go through sudo:\n%s", cmds)
	}
}

func testWrongTargetKey(t *testing.T, set map[string]string) {
	t.Helper()
	h2 := newHarness(t)
	wrong, _ := keys.New(nil, "")
	set["target-host-key"] = keys.AuthorizedKey(wrong.Public, "")
	opts := h2.options(set)
	opts.Cloud = nil
	res := h2.run(context.Background(), opts)
	if res.Err == nil || res.FailedStage != "prepare access" || !strings.Contains(res.Err.Error(), "host key mismatch") {
		t.Fatalf("want a host key mismatch, got %s: %v", res.FailedStage, res.Err)
	}
}
