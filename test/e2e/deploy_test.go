//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
)

// quick latencies for the functional tests: every operation still runs
// asynchronously, as on ARM.
var quickLatency = azuretest.Latency{VM: 100 * time.Millisecond}

// TestDeployRerunDestroy is a whole life: a deploy, the same deploy again
// (idempotent, install skipped), and a destroy.
func TestDeployRerunDestroy(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	const name = "e2e-life"
	in := w.inputs("deploy", name)

	var vm *bootedVM
	var hostKeyPub string
	t.Run("deploy", func(t *testing.T) {
		r := w.runAction(t, in)
		defer r.dump(t)
		if r.Code != 0 {
			t.Fatalf("exit code %d, want 0", r.Code)
		}
		vms := w.emu.VMs()
		if len(vms) != 1 {
			t.Fatalf("emulator has %d VMs, want 1", len(vms))
		}
		rec := vms[0]
		vm = w.fleet.VM(t, name)
		cc, err := parseCloudConfig(rec.CustomData)
		if err != nil {
			t.Fatal(err)
		}
		// The key from custom data got nixos-anywhere in; after the
		// install the VM made a new one, which the outputs and the tag name.
		hostKeyPub = cc.SSHKeys["ed25519_public"]
		rotated := vm.HostKeyNow(t)
		if rotated == hostKeyPub {
			t.Errorf("the VM still has the host key from custom data")
		}
		if got := w.emu.VMs()[0].Tags["ssh-host-key"]; got != rotated {
			t.Errorf("ssh-host-key tag %q, want the rotated key %q", got, rotated)
		}
		checkOldHostKeyRefused(t, vm, hostKeyPub)
		checkOutputs(t, r, rec, rotated)
		checkStages(t, r.Summary, []stage{
			{Name: "plan", Status: "✅ ok"},
			{Name: "provision", Status: "✅ ok", Note: "6 created, 0 reused; " + rec.PublicIPs[0]},
			{Name: "wait for SSH", Status: "✅ ok"},
			{Name: "detect disk", Status: "✅ ok", Note: "/dev/disk/by-id/wwn-0x60022480e2e0e2e0e2e0e2e0e2e0e2e0"},
			{Name: "lock", Status: "✅ ok"},
			{Name: "install", Status: "✅ ok", Note: "12 phases"},
			{Name: "verify", Status: "✅ ok", Note: "NixOS, host key unchanged"},
			{Name: "rotate host key", Status: "✅ ok"},
			{Name: "finalize", Status: "✅ ok"},
			{Name: "report", Status: "✅ ok"},
		})
		checkVMRequest(t, w.emu.Requests(), name, hostKeyPub)
		checkStandIn(t, w, r, rec, hostKeyPub)

		// What the VM saw: nixos-anywhere installed NixOS with the locked
		// flake in /etc/nixos, then the finalize steps ran.
		if !strings.Contains(vm.OSRelease(), "ID=nixos") {
			t.Errorf("the VM's /etc/os-release after the install:\n%s\nwant ID=nixos", vm.OSRelease())
		}
		if !strings.Contains(vm.SSHDLog(), "--- reboot into NixOS ---") {
			t.Errorf("the VM was not rebooted after the install")
		}
		wantCalls := []string{
			"standin-install-nixos",
			// The host key rotation asks systemd for sshd's main process.
			"systemctl show --property MainPID --value sshd.service",
			"nix-channel --add https://nixos.org/channels/nixos-26.05 nixos",
			"nix-channel --update",
			"git clone -- https://github.com/me/cfg /home/nixos/nix-config",
			"git config --global --get-all safe.directory",
			"git config --global --add safe.directory /home/nixos/nix-config",
			"nixos-rebuild switch --flake /home/nixos/nix-config#az-nixos",
		}
		if d := cmp.Diff(wantCalls, vm.Calls()); d != "" {
			t.Errorf("finalize commands seen on the VM (-want +got):\n%s", d)
		}
		checkInstalledFlake(t, r, vm)
		// The user's own key logs in as the admin user, with the host key
		// from the output.
		checkUserLogin(t, w, vm, rotated)
		checkNoSecrets(t, r, w)
	})
	if vm == nil {
		t.Fatal("the first deploy failed; not running the rest")
	}

	t.Run("rerun", func(t *testing.T) {
		before := w.emu.ResourceIDs()
		w.emu.ResetRequests()
		callsBefore := len(vm.Calls())
		r := w.runAction(t, in)
		defer r.dump(t)
		if r.Code != 0 {
			t.Fatalf("exit code %d, want 0", r.Code)
		}
		if d := cmp.Diff(before, w.emu.ResourceIDs()); d != "" {
			t.Errorf("resources changed on a re-run (-before +after):\n%s", d)
		}
		seen := map[string]int{}
		for _, req := range w.emu.Requests() {
			seen[fmt.Sprintf("%s %d", req.Method, req.Status)]++
			if req.Status == http.StatusCreated {
				t.Errorf("re-run created something: %s %s answered %d", req.Method, req.Path, req.Status)
			}
			if req.Method == http.MethodPut && strings.Contains(strings.ToLower(req.Path), "/virtualmachines/") {
				t.Errorf("re-run PUT the VM again (Azure refuses changed custom data): %s", req.Path)
			}
		}
		t.Logf("requests of the re-run: %v", seen)
		checkStages(t, r.Summary, []stage{
			{Name: "plan", Status: "✅ ok"},
			{Name: "provision", Status: "✅ ok", Note: "0 created, 6 reused; " + vm.IP},
			{Name: "wait for SSH", Status: "✅ ok"},
			{Name: "detect disk", Status: "⏭️ skipped", Note: "the VM already runs NixOS with the pinned host key (force-reinstall: true installs again)"},
			{Name: "lock", Status: "⏭️ skipped", Note: "the VM already runs NixOS with the pinned host key (force-reinstall: true installs again)"},
			{Name: "install", Status: "⏭️ skipped", Note: "the VM already runs NixOS with the pinned host key (force-reinstall: true installs again)"},
			{Name: "verify", Status: "✅ ok", Note: "NixOS, host key unchanged"},
			{Name: "rotate host key", Status: "✅ ok", Note: "host key " + fingerprint(t, vm.HostKeyNow(t)) + " was made on the VM by an earlier run"},
			{Name: "finalize", Status: "✅ ok"},
			{Name: "report", Status: "✅ ok"},
		})
		if r.StandInArgv != nil {
			t.Errorf("nixos-anywhere ran on a re-run: %q", r.StandInArgv)
		}
		if got := r.Outputs["ssh-host-key"]; !strings.HasSuffix(got, " "+vm.HostKeyNow(t)) {
			t.Errorf("ssh-host-key output %q, want the key the first run rotated to %q", got, vm.HostKeyNow(t))
		}
		wantCalls := []string{
			"nix-channel --add https://nixos.org/channels/nixos-26.05 nixos",
			"nix-channel --update",
			"git -C /home/nixos/nix-config fetch --prune origin",
			"git -C /home/nixos/nix-config reset --hard @{upstream}",
			"git config --global --get-all safe.directory",
			"nixos-rebuild switch --flake /home/nixos/nix-config#az-nixos",
		}
		if d := cmp.Diff(wantCalls, vm.Calls()[callsBefore:]); d != "" {
			t.Errorf("finalize commands seen on the VM on the re-run (-want +got):\n%s", d)
		}
		checkNoSecrets(t, r, w)
	})

	// Without the deploy-key input a run has a new key, which root on the
	// installed VM refuses: the host key still verifies (from the VM's tag),
	// the SSH banner says it is no longer Ubuntu, and install and finalize
	// are skipped with a warning.
	t.Run("rerun without deploy-key", func(t *testing.T) {
		nokey := w.inputs("deploy", name)
		delete(nokey, "deploy-key")
		before := w.emu.ResourceIDs()
		callsBefore := len(vm.Calls())
		r := w.runAction(t, nokey)
		defer r.dump(t)
		if r.Code != 0 {
			t.Fatalf("exit code %d, want 0", r.Code)
		}
		if d := cmp.Diff(before, w.emu.ResourceIDs()); d != "" {
			t.Errorf("resources changed on a re-run (-before +after):\n%s", d)
		}
		const noRoot = "root on the existing VM does not accept this run's deploy key (give the deploy-key input to converge fully)"
		const installed = "the existing VM runs NixOS (its SSH server says so) and root does not accept this run's deploy key"
		checkStages(t, r.Summary, []stage{
			{Name: "plan", Status: "✅ ok"},
			{Name: "provision", Status: "✅ ok", Note: "0 created, 6 reused; " + vm.IP},
			{Name: "wait for SSH", Status: "✅ ok"},
			{Name: "detect disk", Status: "⏭️ skipped", Note: installed},
			{Name: "lock", Status: "⏭️ skipped", Note: installed},
			{Name: "install", Status: "⏭️ skipped", Note: installed},
			{Name: "verify", Status: "⏭️ skipped", Note: noRoot},
			{Name: "rotate host key", Status: "⏭️ skipped", Note: noRoot},
			{Name: "finalize", Status: "⏭️ skipped", Note: noRoot},
			{Name: "report", Status: "✅ ok"},
		})
		if !strings.Contains(r.Summary, "no root access") {
			t.Errorf("the summary does not say root refused the key")
		}
		warned := false
		for _, l := range strings.Split(r.Stdout, "\n") {
			warned = warned || strings.HasPrefix(l, "::warning::") && strings.Contains(l, "give the deploy-key input")
		}
		if !warned {
			t.Errorf("no ::warning:: that install and finalize were skipped")
		}
		if got := vm.Calls()[callsBefore:]; len(got) > 0 {
			t.Errorf("commands ran on the VM without root access: %q", got)
		}
		if r.Outputs["ssh-host-key"] == "" || r.Outputs["fqdn"] == "" {
			t.Errorf("outputs missing on a no-root re-run: %v", r.Outputs)
		}
		checkNoSecrets(t, r, w)
	})

	t.Run("destroy", func(t *testing.T) {
		din := w.inputs("destroy", name)
		r := w.runAction(t, din)
		defer r.dump(t)
		if r.Code != 0 {
			t.Fatalf("exit code %d, want 0", r.Code)
		}
		if left := groupResources(w.emu, name); len(left) > 0 {
			t.Errorf("after destroy the emulator still has:\n%s", strings.Join(left, "\n"))
		}
		checkNoSecrets(t, r, w)
	})
}

// TestAllocationFailed: Azure accepts the VM and its operation ends
// AllocationFailed. The run fails with the serial log tail and, with
// cleanup-on-failure, leaves nothing behind; without, it says how to remove
// what is left.
func TestAllocationFailed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cleanup bool
	}{
		{"cleanup", true},
		{"no cleanup", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, quickLatency)
			name := "e2e-alloc-" + map[bool]string{true: "clean", false: "keep"}[tc.cleanup]
			const serial = "[    4.2] e2e-serial-marker: hv_storvsc vmbus_0_12: allocation tail line"
			w.emu.SetSerialLog(name, "[    0.000000] Linux version 6.8.0-1017-azure\r\n"+serial+"\r\n")
			w.emu.InjectFault(azuretest.FailOperation("AllocationFailed", azuretest.Match{Method: http.MethodPut, ResourceType: "Microsoft.Compute/virtualMachines"}))
			in := w.inputs("deploy", name)
			in["cleanup-on-failure"] = map[bool]string{true: "true", false: "false"}[tc.cleanup]
			r := w.runAction(t, in)
			defer r.dump(t)
			if r.Code != 1 {
				t.Errorf("exit code %d, want 1 (deployment failed)", r.Code)
			}
			ann := errorAnnotation(r.Stdout, "deployment failed")
			if ann == "" {
				t.Fatalf("no ::error annotation titled \"deployment failed ...\" in stdout")
			}
			// One annotation: the error, its code, and the serial log tail
			// (the workflow command escapes line breaks as %0A).
			for _, want := range []string{"title=deployment failed in stage provision", "AllocationFailed", "Serial console (last lines):", "e2e-serial-marker"} {
				if !strings.Contains(ann, want) {
					t.Errorf("the ::error annotation lacks %q:\n%s", want, ann)
				}
			}
			checkStages(t, r.Summary, []stage{
				{Name: "plan", Status: "✅ ok"},
				{Name: "provision", Status: "❌ failed"},
				{Name: "wait for SSH", Status: "· not run"},
				{Name: "detect disk", Status: "· not run"},
				{Name: "lock", Status: "· not run"},
				{Name: "install", Status: "· not run"},
				{Name: "verify", Status: "· not run"},
				{Name: "rotate host key", Status: "· not run"},
				{Name: "finalize", Status: "· not run"},
				{Name: "report", Status: "· not run"},
			})
			if !strings.Contains(r.Summary, "e2e-serial-marker") {
				t.Errorf("the summary does not show the serial log tail")
			}
			left := groupResources(w.emu, name)
			if tc.cleanup {
				if ids := w.emu.ResourceIDs(); len(ids) > 0 {
					t.Errorf("cleanup-on-failure left:\n%s", strings.Join(ids, "\n"))
				}
				if !strings.Contains(r.Summary, "deleted resource group `"+name+"`") {
					t.Errorf("summary does not report the cleanup")
				}
			} else {
				if len(left) == 0 {
					t.Errorf("without cleanup-on-failure the resource group is gone")
				}
				t.Logf("left for command: destroy:\n%s", strings.Join(left, "\n"))
				if !strings.Contains(r.Summary, "command: destroy") {
					t.Errorf("summary does not say how to remove the resource group")
				}
			}
			if w.fleet.count() != 0 {
				t.Errorf("a VM booted although its allocation failed")
			}
			checkNoSecrets(t, r, w)
		})
	}
}

// errorAnnotation returns the ::error workflow command whose title starts
// with title, or "".
// TestThrottled: ARM throttles the first PUTs (429 with Retry-After) and
// fails one operation poll with a 500; the SDK's retries carry the deploy
// through.
func TestThrottled(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	const name = "e2e-throttled"
	w.emu.InjectFault(azuretest.Throttle(2, time.Second, azuretest.Match{Method: http.MethodPut, ResourceType: "Microsoft.Network/publicIPAddresses"}))
	w.emu.InjectFault(azuretest.ServerError(1, azuretest.Match{Method: http.MethodGet, ResourceType: "operations"}))
	r := w.runAction(t, w.inputs("deploy", name))
	defer r.dump(t)
	if r.Code != 0 {
		t.Fatalf("exit code %d, want 0", r.Code)
	}
	got := map[int]int{}
	for _, req := range w.emu.Requests() {
		got[req.Status]++
	}
	if got[http.StatusTooManyRequests] != 2 || got[http.StatusInternalServerError] != 1 {
		t.Errorf("answers by status %v: want 2 throttled (429) and 1 server error (500), retried", got)
	}
	if !strings.Contains(w.fleet.VM(t, name).OSRelease(), "ID=nixos") {
		t.Errorf("the VM does not run NixOS after the deploy")
	}
	checkNoSecrets(t, r, w)
}

// TestInstallFails: the VM boots, nixos-anywhere aborts after kexec. The
// run fails in the install stage with the hint about kexec, the serial log
// the emulator serves for the booted VM, and, with cleanup-on-failure,
// nothing left.
func TestInstallFails(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	const name = "e2e-kexec-fails"
	const serial = "[   12.5] e2e-serial-marker: kexec_core: Starting new kernel"
	w.emu.SetSerialLog(name, "[    0.000000] Linux version 6.8.0-1017-azure\r\n"+serial+"\r\n")
	in := w.inputs("deploy", name)
	in["cleanup-on-failure"] = "true"
	r := w.runAction(t, in, "FAKE_NA_MODE=abort")
	defer r.dump(t)
	if r.Code != 1 {
		t.Errorf("exit code %d, want 1 (deployment failed)", r.Code)
	}
	ann := errorAnnotation(r.Stdout, "deployment failed")
	for _, want := range []string{"title=deployment failed in stage install", "Failed to kexec into NixOS installer", "Secure Boot", "e2e-serial-marker"} {
		if !strings.Contains(ann, want) {
			t.Errorf("the ::error annotation lacks %q:\n%s", want, ann)
		}
	}
	checkStages(t, r.Summary, []stage{
		{Name: "plan", Status: "✅ ok"},
		{Name: "provision", Status: "✅ ok"},
		{Name: "wait for SSH", Status: "✅ ok"},
		{Name: "detect disk", Status: "✅ ok"},
		{Name: "lock", Status: "✅ ok"},
		{Name: "install", Status: "❌ failed"},
		{Name: "verify", Status: "· not run"},
		{Name: "rotate host key", Status: "· not run"},
		{Name: "finalize", Status: "· not run"},
		{Name: "report", Status: "· not run"},
	})
	if ids := w.emu.ResourceIDs(); len(ids) > 0 {
		t.Errorf("cleanup-on-failure left:\n%s", strings.Join(ids, "\n"))
	}
	if strings.Contains(w.fleet.VM(t, name).OSRelease(), "ID=nixos") {
		t.Errorf("the VM runs NixOS although the install aborted")
	}
	checkNoSecrets(t, r, w)
}

func errorAnnotation(stdout, title string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "::error ") && strings.Contains(l, "title="+title) {
			return l
		}
	}
	return ""
}

// groupResources lists what the emulator holds in (or as) the resource
// group.
func groupResources(e *azuretest.Emulator, group string) []string {
	var out []string
	for _, id := range e.ResourceIDs() {
		if strings.Contains(strings.ToLower(id+"/"), "/resourcegroups/"+strings.ToLower(group)+"/") {
			out = append(out, id)
		}
	}
	return out
}

func checkOutputs(t *testing.T, r *run, rec azuretest.VMRecord, hostKeyPub string) {
	t.Helper()
	if len(rec.FQDNs) != 1 || len(rec.PublicIPs) != 1 {
		t.Fatalf("emulator VM has FQDNs %q, public IPs %q", rec.FQDNs, rec.PublicIPs)
	}
	fqdn, ip := rec.FQDNs[0], rec.PublicIPs[0]
	want := map[string]string{
		"fqdn":           fqdn,
		"public-ip":      ip,
		"resource-group": rec.ResourceGroup,
		"vm-id":          rec.ID,
		"ssh-host-key":   fqdn + "," + ip + " " + hostKeyPub,
		"ssh-command":    "ssh nixos@" + fqdn,
		"facter-report":  r.Outputs["facter-report"],
		// The nix stand-in's revision for github:NixOS/nixpkgs/nixos-26.05.
		"nixpkgs-revision": "2d4642a93993be047b02f7ac015ba23b57dea471",
	}
	if d := cmp.Diff(want, r.Outputs); d != "" {
		t.Errorf("outputs (-want +got):\n%s", d)
	}
	// The DNS label is scoped to the resource group: Azure's hash sits
	// between the label and the region.
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(rec.Name) + `\.[a-z0-9]{16}\.uksouth\.cloudapp\.azure\.com$`).MatchString(fqdn) {
		t.Errorf("FQDN %q, want the VM name as DNS label with the scope's hash in uksouth", fqdn)
	}
	// The public outputs are notices too: the ChatOps bot reads them.
	for _, n := range []string{"::notice title=ssh-host-key::" + want["ssh-host-key"], "::notice title=fqdn::" + fqdn} {
		if !strings.Contains(r.Stdout, n+"\n") {
			t.Errorf("stdout lacks the annotation %q", n)
		}
	}
	fr := r.Outputs["facter-report"]
	if !filepath.IsAbs(fr) {
		fr = filepath.Join(r.Workspace, fr)
	}
	if rel, err := filepath.Rel(r.Workspace, fr); err != nil || strings.HasPrefix(rel, "..") {
		t.Errorf("facter-report %q is not in the workspace %q", r.Outputs["facter-report"], r.Workspace)
	}
	b, err := os.ReadFile(fr)
	if err != nil {
		t.Errorf("facter-report: %v", err)
	} else if !json.Valid(b) || !strings.Contains(string(b), `"virtualisation": "microsoft"`) {
		t.Errorf("facter-report is not the stand-in's facter.json: %s", b)
	}
}

// checkStages compares the summary's stages table; a want with an empty
// Note accepts any note. Durations are not compared.
func checkStages(t *testing.T, summary string, want []stage) {
	t.Helper()
	got := summaryStages(t, summary)
	for i := range got {
		got[i].Duration = 0
		if i < len(want) && want[i].Note == "" {
			got[i].Note = ""
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("summary stages (-want +got):\n%s\nsummary:\n%s", d, summary)
	}
	if !strings.Contains(summary, "| **total** |") {
		t.Errorf("summary has no total row")
	}
}

// checkVMRequest looks at the VM PUT as the emulator received it; its
// ssh-host-key tag names the key in its custom data (rotated later).
func checkVMRequest(t *testing.T, reqs []azuretest.Request, name, hostKeyPub string) {
	t.Helper()
	var body []byte
	for _, r := range reqs {
		if r.Method == http.MethodPut && strings.HasSuffix(strings.ToLower(r.Path), "/providers/microsoft.compute/virtualmachines/"+name) {
			if body != nil {
				t.Errorf("the VM was PUT more than once")
			}
			body = r.Body
		}
	}
	if body == nil {
		t.Fatal("no PUT of the VM recorded")
	}
	var vm struct {
		Tags       map[string]string `json:"tags"`
		Properties struct {
			SecurityProfile *struct {
				SecurityType string `json:"securityType"`
				UefiSettings *struct {
					SecureBootEnabled *bool `json:"secureBootEnabled"`
				} `json:"uefiSettings"`
			} `json:"securityProfile"`
			DiagnosticsProfile struct {
				BootDiagnostics struct {
					Enabled    *bool   `json:"enabled"`
					StorageURI *string `json:"storageUri"`
				} `json:"bootDiagnostics"`
			} `json:"diagnosticsProfile"`
			OSProfile struct {
				CustomData string `json:"customData"`
			} `json:"osProfile"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(body, &vm); err != nil {
		t.Fatalf("VM PUT body: %v", err)
	}
	// kexec needs Secure Boot off (kernel lockdown refuses kexec_load).
	sp := vm.Properties.SecurityProfile
	switch {
	case sp == nil:
		t.Errorf("VM PUT has no securityProfile: Azure picks Trusted Launch with Secure Boot for Gen2 images")
	case sp.SecurityType == "Standard":
	case sp.SecurityType == "TrustedLaunch" && sp.UefiSettings != nil && sp.UefiSettings.SecureBootEnabled != nil && !*sp.UefiSettings.SecureBootEnabled:
	default:
		t.Errorf("VM securityProfile %s: want securityType Standard or Secure Boot off", mustJSON(sp))
	}
	bd := vm.Properties.DiagnosticsProfile.BootDiagnostics
	if bd.Enabled == nil || !*bd.Enabled || (bd.StorageURI != nil && *bd.StorageURI != "") {
		t.Errorf("boot diagnostics %s: want enabled with managed storage (no storageUri)", mustJSON(bd))
	}
	for k, v := range map[string]string{
		// The tag names the azure package writes; plan.Tag* should match (see the report).
		azure.TagManagedBy: azure.ManagedByValue,
		azure.TagVMName:    name,
		azure.TagRunURL:    "https://github.com/me/infra/actions/runs/4242",
		azure.TagHostKey:   hostKeyPub,
	} {
		if vm.Tags[k] != v || v == "" {
			t.Errorf("VM tag %q = %q, want %q", k, vm.Tags[k], v)
		}
	}
	cd, err := base64.StdEncoding.DecodeString(vm.Properties.OSProfile.CustomData)
	if err != nil {
		t.Fatalf("customData is not base64: %v", err)
	}
	for _, s := range []string{"#cloud-config\n", "\ndisable_root: false\n", "\nssh_keys:\n", "  ed25519_private: ", "  ed25519_public: ", "\nssh_authorized_keys:\n"} {
		if !strings.Contains(string(cd), s) {
			t.Errorf("custom data lacks %q", s)
		}
	}
	// Every resource the run made carries the managed-by tag.
	for _, r := range reqs {
		if r.Method != http.MethodPut || strings.Contains(r.Path, "/subnets/") {
			continue
		}
		var doc struct {
			Tags map[string]string `json:"tags"`
		}
		if err := json.Unmarshal(r.Body, &doc); err != nil || doc.Tags[azure.TagManagedBy] != azure.ManagedByValue {
			t.Errorf("PUT %s: tags %v, want managed-by: nixos-cloud-deploy", r.Path, doc.Tags)
		}
	}
}

// checkStandIn looks at how nixos-anywhere was called: through our proxy,
// which pins the host key, to root at the public IP.
func checkStandIn(t *testing.T, w *world, r *run, rec azuretest.VMRecord, hostKeyPub string) {
	t.Helper()
	argv := r.StandInArgv
	if len(argv) == 0 {
		t.Fatal("nixos-anywhere was not run")
	}
	var proxy string
	for i, a := range argv {
		if a == "--ssh-option" && i+1 < len(argv) && strings.HasPrefix(argv[i+1], "ProxyCommand=") {
			proxy = strings.TrimPrefix(argv[i+1], "ProxyCommand=")
		}
	}
	if proxy == "" {
		t.Fatalf("no --ssh-option ProxyCommand=... in nixos-anywhere's arguments %q", argv)
	}
	if last := argv[len(argv)-1]; last != "root@"+rec.PublicIPs[0] {
		t.Errorf("nixos-anywhere's target %q, want root@%s", last, rec.PublicIPs[0])
	}
	for _, want := range []string{"--copy-host-keys", "-i", "--flake", "--generate-hardware-config"} {
		if !contains(argv, want) {
			t.Errorf("nixos-anywhere's arguments lack %q: %q", want, argv)
		}
	}
	// The proxy script execs this binary's proxy subcommand with the pinned key.
	got, err := execArgv(r.ProxyScript)
	if err != nil {
		t.Fatalf("ProxyCommand script: %v\n%s", err, r.ProxyScript)
	}
	want := map[string]string{"--addr": net.JoinHostPort(rec.PublicIPs[0], "22"), "--host-key": hostKeyPub, "--user": "root"}
	if len(got) < 2 || got[0] != w.bin || got[1] != "proxy" {
		t.Errorf("ProxyCommand script runs %q, want %s proxy ...", got, w.bin)
	}
	for i := 2; i+1 < len(got); i += 2 {
		if v, ok := want[got[i]]; ok {
			if got[i+1] != v {
				t.Errorf("ProxyCommand %s %q, want %q", got[i], got[i+1], v)
			}
			delete(want, got[i])
		}
	}
	if len(want) > 0 {
		t.Errorf("ProxyCommand script lacks %v:\n%s", want, r.ProxyScript)
	}
}

// execArgv returns the argument vector of the script's exec line, as the
// shell splits it.
func execArgv(script string) ([]string, error) {
	for _, l := range strings.Split(script, "\n") {
		if rest, ok := strings.CutPrefix(l, "exec "); ok {
			out, err := exec.Command("/bin/sh", "-c", `printf '%s\n' `+rest).Output()
			if err != nil {
				return nil, err
			}
			return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"), nil
		}
	}
	return nil, errors.New("no exec line")
}

// checkUserLogin logs in as the admin user with the user's own key,
// verifying the host key the run reported.
func checkUserLogin(t *testing.T, w *world, vm *bootedVM, hostKeyPub string) {
	t.Helper()
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKeyPub))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort(vm.IP, "22"), &ssh.ClientConfig{
		User: vm.Admin, Auth: []ssh.AuthMethod{ssh.PublicKeys(w.userKey.Signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Errorf("log in as %s with the ssh-public-keys key: %v", vm.Admin, err)
		return
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("id -un")
	if err != nil || strings.TrimSpace(string(out)) != vm.Admin {
		t.Errorf("id -un as the admin user: %q, %v", out, err)
	}
	// root does not accept the user's key: only the deploy key.
	if c, err := ssh.Dial("tcp", net.JoinHostPort(vm.IP, "22"), &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(w.userKey.Signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second,
	}); err == nil {
		c.Close()
		t.Errorf("root accepts the user's key; only the deploy key should work")
	}
}

// checkNoSecrets: no line of a secret (client secret, deploy key, the VM's
// private host key) appears in anything the run printed or wrote, except
// the ::add-mask:: lines that hide them.
func checkNoSecrets(t *testing.T, r *run, w *world) {
	t.Helper()
	secrets := []string{w.emu.Options().ClientSecret}
	secrets = append(secrets, secretLines(string(w.deployKey.PrivatePEM))...)
	for _, pem := range w.hostKeysSent(t) {
		secrets = append(secrets, secretLines(pem)...)
	}
	for _, vm := range w.fleet.all() {
		secrets = append(secrets, secretLines(vm.HostKeyPEM)...)
		secrets = append(secrets, secretLines(vm.HostKeyPEMNow())...) // made on the VM: never leaves it
	}
	for name, text := range map[string]string{"stdout": r.Stdout, "stderr": r.Stderr, "summary": r.Summary, "outputs": r.OutputFile} {
		for i, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "::add-mask::") {
				continue
			}
			for _, s := range secrets {
				if strings.Contains(l, s) {
					t.Errorf("%s line %d shows a secret: %q", name, i+1, prefix(l, 60))
				}
			}
		}
	}
	masked := 0
	for _, l := range strings.Split(r.Stdout, "\n") {
		if l == "::add-mask::"+w.emu.Options().ClientSecret {
			masked++
		}
	}
	if masked == 0 {
		t.Errorf("the client secret was never masked")
	}
}

// hostKeysSent are the private host keys in the custom data of every VM
// PUT the emulator received.
func (w *world) hostKeysSent(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range w.emu.Requests() {
		if r.Method != http.MethodPut || !strings.Contains(strings.ToLower(r.Path), "/virtualmachines/") {
			continue
		}
		var vm struct {
			Properties struct {
				OSProfile struct {
					CustomData string `json:"customData"`
				} `json:"osProfile"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(r.Body, &vm); err != nil {
			t.Fatalf("VM PUT body: %v", err)
		}
		cd, err := base64.StdEncoding.DecodeString(vm.Properties.OSProfile.CustomData)
		if err != nil {
			t.Fatalf("customData: %v", err)
		}
		cc, err := parseCloudConfig(cd)
		if err != nil {
			t.Fatal(err)
		}
		if k := cc.SSHKeys["ed25519_private"]; k != "" {
			out = append(out, k)
		}
	}
	return out
}

// secretLines are the lines of a PEM key that hold key material.
func secretLines(pem string) []string {
	var out []string
	for _, l := range strings.Split(pem, "\n") {
		l = strings.TrimSpace(l)
		if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestInstallAfterFailedInstall: a deploy whose install aborts leaves an
// Ubuntu VM whose root accepts only that run's (random) deploy key.
// command: install recovers: it finds the VM over ARM, authorises its own
// deploy key for root through Azure Run Command (no SSH credentials), pins
// the host key from the VM's tag, and installs.
func TestInstallAfterFailedInstall(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	const name = "e2e-install"
	in := w.inputs("deploy", name)
	delete(in, "deploy-key")
	in["cleanup-on-failure"] = "false"
	r := w.runAction(t, in, "FAKE_NA_MODE=abort")
	if r.Code != 1 {
		r.dump(t)
		t.Fatalf("deploy with an aborting install: exit code %d, want 1", r.Code)
	}
	vm := w.fleet.VM(t, name)
	hostKeyPub := vm.HostKeyPub
	w.emu.ResetRequests()

	in["command"] = "install"
	r = w.runAction(t, in)
	defer r.dump(t)
	if r.Code != 0 {
		t.Fatalf("install: exit code %d, want 0", r.Code)
	}
	checkStages(t, r.Summary, []stage{
		{Name: "plan", Status: "✅ ok"},
		{Name: "locate", Status: "✅ ok"},
		{Name: "prepare access", Status: "✅ ok"},
		{Name: "wait for SSH", Status: "✅ ok"},
		{Name: "detect disk", Status: "✅ ok", Note: "/dev/disk/by-id/wwn-0x60022480e2e0e2e0e2e0e2e0e2e0e2e0"},
		{Name: "lock", Status: "✅ ok"},
		{Name: "install", Status: "✅ ok", Note: "12 phases"},
		{Name: "verify", Status: "✅ ok", Note: "NixOS, host key unchanged"},
		// deploy made this VM and its key travelled in custom data.
		{Name: "rotate host key", Status: "✅ ok"},
		{Name: "finalize", Status: "✅ ok"},
		{Name: "report", Status: "✅ ok"},
	})
	runCommands := 0
	for _, req := range w.emu.Requests() {
		if req.Method == http.MethodPut || req.Method == http.MethodDelete {
			t.Errorf("install changed a resource: %s %s", req.Method, req.Path)
		}
		if req.Method == http.MethodPost && strings.HasSuffix(req.Path, "/runCommand") {
			runCommands++
		}
	}
	if runCommands != 1 {
		t.Errorf("%d Run Command requests, want 1 (to authorise the deploy key)", runCommands)
	}
	if !strings.Contains(vm.OSRelease(), "ID=nixos") {
		t.Errorf("the VM does not run NixOS after command: install")
	}
	if got := r.Outputs["ssh-host-key"]; !strings.HasSuffix(got, " "+vm.HostKeyNow(t)) || vm.HostKeyNow(t) == hostKeyPub {
		t.Errorf("ssh-host-key output %q, want the VM's rotated key %q (not %q)", got, vm.HostKeyNow(t), hostKeyPub)
	}
	if calls := vm.Calls(); len(calls) == 0 || calls[len(calls)-1] != "nixos-rebuild switch --flake /home/nixos/nix-config#az-nixos" {
		t.Errorf("finalize did not end with nixos-rebuild switch on the VM: %q", calls)
	}
	checkStandIn(t, w, r, w.emu.VMs()[0], hostKeyPub)
	checkNoSecrets(t, r, w)
}

// TestDeployWithOnlyAnECDSAKey (issue 14): Azure refuses an ECDSA key in the
// VM's osProfile (the emulator answers 400 InvalidParameter on keyData, as
// Azure does), so the binary sends it only keys Azure takes, and the ECDSA
// key reaches the installed NixOS through settings.json: it logs in as
// user-name after the install, with the pinned host key.
func TestDeployWithOnlyAnECDSAKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	const name = "e2e-ecdsa"
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	in := w.inputs("deploy", name)
	in["ssh-public-keys"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " me@laptop"
	// The installed flake's keys, not a config-repo's: a switch to the
	// user's own flake authorises what that flake says.
	delete(in, "config-repo")
	delete(in, "config-flake-attr")
	r := w.runAction(t, in)
	defer r.dump(t)
	if r.Code != 0 {
		t.Fatalf("exit code %d, want 0", r.Code)
	}
	vms := w.emu.VMs()
	if len(vms) != 1 {
		t.Fatalf("emulator has %d VMs, want 1", len(vms))
	}
	var req vmRequest
	if err := json.Unmarshal(vms[0].Request, &req); err != nil {
		t.Fatal(err)
	}
	for _, k := range req.Properties.OSProfile.LinuxConfiguration.SSH.PublicKeys {
		if strings.HasPrefix(k.KeyData, "ecdsa-") {
			t.Errorf("the ECDSA key was sent in osProfile: %q", k.KeyData)
		}
	}
	vm := w.fleet.VM(t, name)
	// The host key the run reported: the one the VM made after the install.
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(vm.HostKeyNow(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort(vm.IP, "22"), &ssh.ClientConfig{
		User: vm.Admin, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("log in as %s with the ECDSA key: %v", vm.Admin, err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if out, err := sess.Output("id -un"); err != nil || strings.TrimSpace(string(out)) != vm.Admin {
		t.Errorf("id -un = %q, %v", out, err)
	}
}

// checkOldHostKeyRefused: the key that travelled in custom data opens
// nothing any more; the VM does not prove it.
func checkOldHostKeyRefused(t *testing.T, vm *bootedVM, old string) {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort(vm.IP, "22"), &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.Password("x")}, Timeout: 10 * time.Second,
		HostKeyCallback: ssh.FixedHostKey(k), HostKeyAlgorithms: []string{k.Type()},
	})
	if err == nil {
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("a client pinning the key from custom data: %v, want a host key mismatch", err)
	}
}

func fingerprint(t *testing.T, pub string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(k)
}

// checkInstalledFlake checks what an install leaves on the VM and in the
// workspace: /etc/nixos holds the installed flake with its hardware report
// and lock, all root's; the workspace has the same lock and report; the
// nixpkgs revision is the lock's.
func checkInstalledFlake(t *testing.T, r *run, vm *bootedVM) {
	t.Helper()
	etc := filepath.Join(vm.Dir, "etc", "nixos")
	entries, err := os.ReadDir(etc)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("/etc/nixos/%s on the VM is owned by %d:%d, want root", e.Name(), st.Uid, st.Gid)
		}
	}
	if d := cmp.Diff([]string{"azure.nix", "configuration.nix", "disk-config.nix", "facter.json", "flake.lock", "flake.nix", "settings.json"}, names); d != "" {
		t.Errorf("/etc/nixos on the VM (-want +got):\n%s", d)
	}
	for _, f := range []string{"flake.lock", "facter.json"} {
		ws, err := os.ReadFile(filepath.Join(r.Workspace, f))
		if err != nil {
			t.Errorf("%s is not in the workspace: %v", f, err)
		} else if onVM := vm.File("/etc/nixos/" + f); onVM != string(ws) {
			t.Errorf("/etc/nixos/%s on the VM is not the workspace's:\n%s\n---\n%s", f, onVM, ws)
		}
	}
	lock, err := nixos.ParseLock([]byte(vm.File("/etc/nixos/flake.lock")))
	if err != nil {
		t.Fatalf("/etc/nixos/flake.lock: %v", err)
	}
	if rev := lock.Nixpkgs().Rev; r.Outputs["nixpkgs-revision"] != rev || !strings.Contains(r.Summary, rev) {
		t.Errorf("nixpkgs-revision output %q, want the lock's %q, also in the summary", r.Outputs["nixpkgs-revision"], rev)
	}
}

// sshAs runs cmd on vm as user with signer, the VM's host key now (after
// the rotation) pinned.
func sshAs(t *testing.T, vm *bootedVM, user string, signer ssh.Signer, cmd string) (string, error) {
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(vm.HostKeyNow(t)))
	if err != nil {
		return "", err
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort(vm.IP, "22"), &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

// TestDeployWithoutConfigRepo: the VM keeps the flake it was installed
// from, so its user rebuilds it with sudo and nothing else.
func TestDeployWithoutConfigRepo(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	const name = "e2e-etc-nixos"
	in := w.inputs("deploy", name)
	delete(in, "config-repo")
	delete(in, "config-flake-attr")
	r := w.runAction(t, in)
	defer r.dump(t)
	if r.Code != 0 {
		t.Fatalf("exit code %d, want 0", r.Code)
	}
	vm := w.fleet.VM(t, name)
	checkInstalledFlake(t, r, vm)
	// nixos-rebuild switch needs root (the system profile); the user has
	// it through sudo, and /etc/nixos is a path: flake (no git), root's.
	if out, err := sshAs(t, vm, "nixos", w.userKey.Signer, "nixos-rebuild switch"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nixos-rebuild switch without sudo: %v\n%s\nwant it refused", err, out)
	}
	out, err := sshAs(t, vm, "nixos", w.userKey.Signer, "sudo -n nixos-rebuild switch")
	if err != nil {
		t.Fatalf("sudo nixos-rebuild switch on the VM as its user: %v\n%s", err, out)
	}
	if want := "the configuration /etc/nixos#" + name + " is active"; !strings.Contains(out, want) {
		t.Errorf("sudo nixos-rebuild switch said:\n%s\nwant %q", out, want)
	}
	checkNoSecrets(t, r, w)
}

// TestDeployFlakeRefusesRoot: config-repo is the README's flake as it
// stands, which lets no one log in as root. The deploy still succeeds: the
// check after the switch proves the host key without logging in, and
// nothing after it needs root.
func TestDeployFlakeRefusesRoot(t *testing.T) {
	t.Parallel()
	w := newWorld(t, quickLatency)
	w.fleet.gitURLs[defaultConfigRepo] = w.userFlake(t, true)
	const name = "e2e-no-root"
	r := w.runAction(t, w.inputs("deploy", name))
	defer r.dump(t)
	if r.Code != 0 {
		t.Fatalf("exit code %d, want 0", r.Code)
	}
	checkStages(t, r.Summary, []stage{
		{Name: "plan", Status: "✅ ok"},
		{Name: "provision", Status: "✅ ok"},
		{Name: "wait for SSH", Status: "✅ ok"},
		{Name: "detect disk", Status: "✅ ok"},
		{Name: "lock", Status: "✅ ok"},
		{Name: "install", Status: "✅ ok"},
		{Name: "verify", Status: "✅ ok"},
		{Name: "rotate host key", Status: "✅ ok"},
		{Name: "finalize", Status: "✅ ok"},
		{Name: "report", Status: "✅ ok"},
	})
	vm := w.fleet.VM(t, name)
	if _, err := sshAs(t, vm, "root", w.deployKey.Signer, "true"); err == nil {
		t.Error("root still accepts the deploy key after switching to a flake that refuses root")
	}
	if out, err := sshAs(t, vm, "nixos", w.userKey.Signer, "id -un"); err != nil || strings.TrimSpace(out) != "nixos" {
		t.Errorf("the user's own login after the switch: %q, %v", out, err)
	}
	if !strings.Contains(r.Summary, "verified after the switch") {
		t.Errorf("the summary does not say the host key was verified after the switch")
	}
	checkInstalledFlake(t, r, vm)
	checkNoSecrets(t, r, w)
}
