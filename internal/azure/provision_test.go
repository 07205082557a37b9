package azure

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
)

const testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyHostKeyHostKeyHostKeyHostKeyHost"

func testSpec() Spec {
	return Spec{
		ResourceGroup: "az-nixos-rg",
		Location:      "westeurope",
		VMName:        "az-nixos",
		Size:          "Standard_B2s",
		ImageURN:      "Canonical:ubuntu-24_04-lts:server:latest",
		AdminUser:     "nixos",
		AdminKeys:     []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@laptop\n"},
		CustomData:    []byte("#cloud-config\ndisable_root: false\n"),
		Tags:          map[string]string{"owner": "team"},
		RunURL:        "https://github.com/o/r/actions/runs/1",
		AutoShutdown:  "22:00",
		HostKeyPublic: testHostKey,
	}
}

func TestProvisionCreatesWholeGraph(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	f.vmPolls = 2 // the VM's LRO is really polled
	p := f.provisioner(t)
	var (
		mu     sync.Mutex
		events []Event
	)
	res, err := p.Provision(context.Background(), testSpec(), func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}

	got := map[string]Action{}
	for _, r := range res.Resources {
		got[r.Kind] = r.Action
	}
	want := map[string]Action{
		KindResourceGroup: ActionCreated, KindPublicIP: ActionCreated, KindNSG: ActionCreated,
		KindVNet: ActionCreated, KindNIC: ActionCreated, KindVM: ActionCreated, KindAutoShutdown: ActionCreated,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("actions (-want +got):\n%s", d)
	}
	wantVMID := "/subscriptions/" + f.sub + "/resourceGroups/az-nixos-rg/providers/Microsoft.Compute/virtualMachines/az-nixos"
	if res.VMID != wantVMID || res.PublicIP != "20.31.42.53" || !regexp.MustCompile(`^az-nixos\.[0-9a-f]{16}\.westeurope\.cloudapp\.azure\.com$`).MatchString(res.FQDN) {
		t.Errorf("result = %q %q %q", res.VMID, res.PublicIP, res.FQDN)
	}
	// One start and one done event per resource, done after start.
	if len(events) != 2*len(want) {
		t.Errorf("got %d events, want %d: %+v", len(events), 2*len(want), events)
	}
	started := map[string]bool{}
	for _, e := range events {
		switch e.Phase {
		case PhaseStart:
			started[e.Kind] = true
		case PhaseDone:
			if !started[e.Kind] {
				t.Errorf("%s done before start", e.Kind)
			}
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}

	// The request bodies are what Azure receives: compare them with a golden file.
	f.mu.Lock()
	bodies := map[string]json.RawMessage{}
	for k, b := range f.bodies {
		bodies[k] = b
	}
	f.mu.Unlock()
	checkGolden(t, "put-bodies.golden.json", bodies)

	// And spell out the properties that matter most.
	var vm struct {
		Tags       map[string]string `json:"tags"`
		Properties struct {
			SecurityProfile struct {
				SecurityType string `json:"securityType"`
			} `json:"securityProfile"`
			DiagnosticsProfile struct {
				BootDiagnostics map[string]any `json:"bootDiagnostics"`
			} `json:"diagnosticsProfile"`
			StorageProfile struct {
				OSDisk struct {
					DeleteOption string `json:"deleteOption"`
					DiskSizeGB   int    `json:"diskSizeGB"`
				} `json:"osDisk"`
			} `json:"storageProfile"`
			NetworkProfile struct {
				NetworkInterfaces []struct {
					Properties struct {
						DeleteOption string `json:"deleteOption"`
					} `json:"properties"`
				} `json:"networkInterfaces"`
			} `json:"networkProfile"`
			OSProfile struct {
				CustomData         string `json:"customData"`
				LinuxConfiguration struct {
					DisablePasswordAuthentication bool `json:"disablePasswordAuthentication"`
				} `json:"linuxConfiguration"`
			} `json:"osProfile"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(bodies[KindVM], &vm); err != nil {
		t.Fatal(err)
	}
	pr := vm.Properties
	if pr.SecurityProfile.SecurityType != "Standard" {
		t.Errorf("securityType = %q, want Standard (Secure Boot blocks kexec)", pr.SecurityProfile.SecurityType)
	}
	if d := cmp.Diff(map[string]any{"enabled": true}, pr.DiagnosticsProfile.BootDiagnostics); d != "" {
		t.Errorf("boot diagnostics must be managed (no storageUri) (-want +got):\n%s", d)
	}
	if pr.StorageProfile.OSDisk.DeleteOption != "Delete" || pr.StorageProfile.OSDisk.DiskSizeGB != DefaultOSDiskSizeGB {
		t.Errorf("os disk = %+v", pr.StorageProfile.OSDisk)
	}
	if len(pr.NetworkProfile.NetworkInterfaces) != 1 || pr.NetworkProfile.NetworkInterfaces[0].Properties.DeleteOption != "Delete" {
		t.Errorf("nic reference = %+v", pr.NetworkProfile.NetworkInterfaces)
	}
	if cd, _ := base64.StdEncoding.DecodeString(pr.OSProfile.CustomData); string(cd) != string(testSpec().CustomData) {
		t.Errorf("custom data = %q", cd)
	}
	if !pr.OSProfile.LinuxConfiguration.DisablePasswordAuthentication {
		t.Error("password authentication is enabled")
	}
	wantTags := map[string]string{"owner": "team", TagManagedBy: ManagedByValue, TagVMName: "az-nixos",
		TagRunURL: "https://github.com/o/r/actions/runs/1", TagHostKey: testHostKey}
	if d := cmp.Diff(wantTags, vm.Tags); d != "" {
		t.Errorf("vm tags (-want +got):\n%s", d)
	}
}

func TestProvisionTrustedLaunchKeepsSecureBootOff(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	s := testSpec()
	s.SecurityType = "TrustedLaunch"
	if _, err := f.provisioner(t).Provision(context.Background(), s, nil); err != nil {
		t.Fatal(err)
	}
	var vm struct {
		Properties struct {
			SecurityProfile map[string]any `json:"securityProfile"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(f.bodies[KindVM], &vm); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"securityType": "TrustedLaunch", "uefiSettings": map[string]any{"secureBootEnabled": false, "vTpmEnabled": true}}
	if d := cmp.Diff(want, vm.Properties.SecurityProfile); d != "" {
		t.Errorf("securityProfile (-want +got):\n%s", d)
	}
}

// TestProvisionNetworkInParallel proves the three network PUTs are in flight together: each one
// waits at a barrier that opens only when all three have arrived (a sequential implementation
// times out there). The NIC's PUT must start after all three ended.
func TestProvisionNetworkInParallel(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	network := map[string]bool{KindPublicIP: true, KindNSG: true, KindVNet: true}
	var (
		mu      sync.Mutex
		arrived int
		all     = make(chan struct{})
	)
	f.beforePut = func(ctx context.Context, kind string) error {
		if !network[kind] {
			return nil
		}
		mu.Lock()
		arrived++
		if arrived == len(network) {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return nil
		case <-time.After(10 * time.Second):
			return fmt.Errorf("%s PUT waited for the other network PUTs in vain: they do not run in parallel", kind)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if _, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatalf("Provision: %v", err)
	}

	pos := func(kind string, end bool) int {
		for i, m := range f.timeline {
			if m.kind == kind && m.end == end {
				return i
			}
		}
		t.Fatalf("no %s mark (end=%v) in %+v", kind, end, f.timeline)
		return -1
	}
	nicStart := pos(KindNIC, false)
	for k := range network {
		if pos(k, false) < pos(KindResourceGroup, true) {
			t.Errorf("%s started before the resource group was created", k)
		}
		for other := range network {
			if pos(k, false) > pos(other, true) {
				t.Errorf("%s started after %s ended: no overlap", k, other)
			}
		}
		if pos(k, true) > nicStart {
			t.Errorf("NIC started before %s ended", k)
		}
	}
	if pos(KindVM, false) < pos(KindNIC, true) {
		t.Error("VM started before the NIC ended")
	}
}

func TestProvisionRerunReusesEverything(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	p := f.provisioner(t)
	first, err := p.Provision(context.Background(), testSpec(), nil)
	if err != nil {
		t.Fatal(err)
	}
	puts := f.putCount()

	// Different custom data on the second run must not PUT the VM again: Azure would answer
	// 409 PropertyChangeNotAllowed.
	s := testSpec()
	s.CustomData = []byte("#cloud-config\n# changed\n")
	s.Size = "Standard_D2s_v5"
	s.HostKeyPublic = "ssh-ed25519 AAAAOtherKey"
	second, err := p.Provision(context.Background(), s, nil)
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if got := f.putCount(); got != puts {
		t.Errorf("second run sent %d PUTs (%v), want none", got-puts, f.puts[puts:])
	}
	for _, r := range second.Resources {
		if r.Action != ActionReused {
			t.Errorf("%s %q: %s, want reused", r.Kind, r.Name, r.Action)
		}
	}
	if first.VMID != second.VMID || first.PublicIP != second.PublicIP || first.FQDN != second.FQDN {
		t.Errorf("results differ: %+v vs %+v", first, second)
	}
	wantNotes := []string{"reused as it is", `has size "Standard_B2s", not the requested "Standard_D2s_v5"`, "another SSH host key"}
	if len(second.Notes) != len(wantNotes) {
		t.Fatalf("notes = %q, want %d", second.Notes, len(wantNotes))
	}
	for i, w := range wantNotes {
		if !strings.Contains(second.Notes[i], w) {
			t.Errorf("note %d = %q, want it to contain %q", i, second.Notes[i], w)
		}
	}
	if len(first.Notes) != 0 {
		t.Errorf("first run notes = %q, want none", first.Notes)
	}
	if len(second.Resources) != len(first.Resources) {
		t.Errorf("second run reported %d resources, first %d", len(second.Resources), len(first.Resources))
	}
}

func TestProvisionChangedAutoShutdownIsUpdated(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	p := f.provisioner(t)
	if _, err := p.Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatal(err)
	}
	s := testSpec()
	s.AutoShutdown = "19:30"
	res, err := p.Provision(context.Background(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := res.Resource(KindAutoShutdown); r.Action != ActionUpdated {
		t.Errorf("auto-shutdown action = %q, want updated", r.Action)
	}
	if !strings.Contains(string(f.bodies[KindAutoShutdown]), `"time":"1930"`) {
		t.Errorf("schedule body = %s", f.bodies[KindAutoShutdown])
	}
}

func TestProvisionRefusesForeignResources(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		seed     func(f *fakeARM)
		wantKind string
	}{
		{
			name:     "resource group without our tag",
			seed:     func(f *fakeARM) { f.seedGroup("az-nixos-rg", map[string]string{"owner": "someone"}) },
			wantKind: "resource group",
		},
		{
			name: "vm without our tag in our group",
			seed: func(f *fakeARM) {
				f.seedGroup("az-nixos-rg", map[string]string{TagManagedBy: ManagedByValue})
				f.seedVM("az-nixos-rg", "az-nixos", map[string]string{TagManagedBy: "terraform"})
			},
			wantKind: "virtual machine",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeARM()
			tc.seed(f)
			_, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil)
			var fe *ForeignResourceError
			if !errors.As(err, &fe) || fe.Kind != tc.wantKind {
				t.Fatalf("err = %v, want ForeignResourceError for %s", err, tc.wantKind)
			}
			if !strings.Contains(err.Error(), "will not be touched") {
				t.Errorf("error does not say it is left alone: %v", err)
			}
			if n := f.putCount(); n != 0 {
				t.Errorf("%d PUTs sent (%v), want none", n, f.puts)
			}
		})
	}
}

func TestProvisionRejectsBadSpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"image", func(s *Spec) { s.ImageURN = "ubuntu" }, `image "ubuntu": must be publisher:offer:sku:version`},
		{"shutdown", func(s *Spec) { s.AutoShutdown = "25:00" }, `auto-shutdown "25:00": must be HH:MM`},
		{"keys", func(s *Spec) { s.AdminKeys = nil }, "no admin SSH public key"},
		{"security", func(s *Spec) { s.SecurityType = "ConfidentialVM" }, `security type "ConfidentialVM"`},
		{"custom data", func(s *Spec) { s.CustomData = make([]byte, 70000) }, "custom data is"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeARM()
			s := testSpec()
			tc.mutate(&s)
			_, err := f.provisioner(t).Provision(context.Background(), s, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func checkGolden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", name), append(got, '\n'))
}

var _ = http.StatusOK
