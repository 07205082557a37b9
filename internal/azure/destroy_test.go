package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
	"github.com/google/go-cmp/cmp"
)

func TestDestroy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		seed        func(t *testing.T, f *fakeARM)
		wantDeleted bool
		wantNote    string
		wantForeign bool
		wantGroups  []string
		wantRes     []string
	}{
		{
			name: "our deployment",
			seed: func(t *testing.T, f *fakeARM) {
				f.seedGroup("other-rg", map[string]string{TagManagedBy: ManagedByValue})
				if _, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil); err != nil {
					t.Fatal(err)
				}
			},
			wantDeleted: true,
			wantGroups:  []string{"other-rg"},
			wantRes: []string{
				"Microsoft.Compute/disks/az-nixos-osdisk",
				"Microsoft.Compute/virtualMachines/az-nixos",
				"Microsoft.DevTestLab/schedules/shutdown-computevm-az-nixos",
				"Microsoft.Network/networkInterfaces/az-nixos-nic",
				"Microsoft.Network/networkSecurityGroups/az-nixos-nsg",
				"Microsoft.Network/publicIPAddresses/az-nixos-ip",
				"Microsoft.Network/virtualNetworks/az-nixos-vnet",
			},
		},
		{
			name:     "missing group",
			seed:     func(*testing.T, *fakeARM) {},
			wantNote: `resource group "az-nixos-rg" does not exist; nothing to delete`,
		},
		{
			name:        "foreign group",
			seed:        func(_ *testing.T, f *fakeARM) { f.seedGroup("az-nixos-rg", map[string]string{"owner": "finance"}) },
			wantForeign: true,
			wantGroups:  []string{"az-nixos-rg"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeARM()
			tc.seed(t, f)
			got, err := f.provisioner(t).Destroy(context.Background(), "az-nixos-rg")
			var fe *ForeignResourceError
			if tc.wantForeign {
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v, want ForeignResourceError", err)
				}
			} else if err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			if got.Deleted != tc.wantDeleted || got.Note != tc.wantNote {
				t.Errorf("result = %+v", got)
			}
			if d := cmp.Diff(tc.wantRes, got.Resources); d != "" {
				t.Errorf("resources (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantGroups, f.groupNames()); d != "" {
				t.Errorf("groups left (-want +got):\n%s", d)
			}
		})
	}
}

// TestSerialLog: the log comes from the SAS URL that RetrieveBootDiagnosticsData returns, and
// the GET there carries no Authorization header (the bearer token is for ARM only).
func TestSerialLog(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		auth    []string
		queries []string
	)
	blob := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		if r.URL.Query().Get("sig") != "secret-signature" {
			http.Error(w, "AuthenticationFailed", http.StatusForbidden)
			return
		}
		for i := 1; i <= 50; i++ {
			fmt.Fprintf(w, "[    %d.000000] boot line %d\n", i, i)
		}
	}))
	t.Cleanup(blob.Close)

	f := newFakeARM()
	f.serialURL = blob.URL + "/bootdiagnostics/az-nixos.serialconsole.log?sv=2024&sig=secret-signature"
	p := f.provisioner(t, WithHTTPClient(blob.Client()))
	if _, err := p.Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatal(err)
	}
	got, err := p.SerialLog(context.Background(), "az-nixos-rg", "az-nixos", 3)
	if err != nil {
		t.Fatalf("SerialLog: %v", err)
	}
	want := "[    48.000000] boot line 48\n[    49.000000] boot line 49\n[    50.000000] boot line 50\n"
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("tail (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"", ""}, auth); d != "" { // HEAD for the size, then GET
		t.Errorf("Authorization headers sent to the blob (-want +got):\n%s", d)
	}

	// A refused SAS URL gives an error without the signature in it.
	f.serialURL = blob.URL + "/log?sig=wrong-signature"
	_, err = p.SerialLog(context.Background(), "az-nixos-rg", "az-nixos", 3)
	if err == nil || strings.Contains(err.Error(), "wrong-signature") || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("err = %v, want HTTP 403 without the SAS signature", err)
	}
}

func TestSerialLogMissingVM(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	_, err := f.provisioner(t).SerialLog(context.Background(), "az-nixos-rg", "az-nixos", 10)
	if err == nil || !strings.Contains(err.Error(), `failed to retrieve boot diagnostics of virtual machine "az-nixos"`) {
		t.Errorf("err = %v", err)
	}
}

func TestLookupVM(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	p := f.provisioner(t)
	if _, err := p.Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatal(err)
	}
	got, err := p.LookupVM(context.Background(), "az-nixos-rg", "az-nixos")
	if err != nil {
		t.Fatalf("LookupVM: %v", err)
	}
	res, err := p.Provision(context.Background(), testSpec(), nil) // a re-run: reads what exists
	if err != nil {
		t.Fatal(err)
	}
	want := &VMInfo{
		ID:            "/subscriptions/" + f.sub + "/resourceGroups/az-nixos-rg/providers/Microsoft.Compute/virtualMachines/az-nixos",
		Name:          "az-nixos",
		ResourceGroup: "az-nixos-rg",
		Location:      "westeurope",
		Size:          "Standard_B2s",
		Tags: map[string]string{"owner": "team", TagManagedBy: ManagedByValue, TagVMName: "az-nixos",
			TagRunURL: "https://github.com/o/r/actions/runs/1", TagHostKey: testHostKey},
		Managed:           true,
		HostKey:           testHostKey,
		PublicIP:          "20.31.42.53",
		FQDN:              res.FQDN, // Azure's answer, hash included
		PowerState:        "running",
		ProvisioningState: "Succeeded",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("LookupVM (-want +got):\n%s", d)
	}

	_, err = p.LookupVM(context.Background(), "az-nixos-rg", "nope")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing VM: err = %v, want ErrNotFound", err)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 5, "a\nb\nc\n"},
		{"a\nb\n", 0, "a\nb\n"},
	}
	for _, tc := range tests {
		if got := tail(tc.in, tc.n); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestDestroyRefusesUntaggedResourcesInOurGroup (issue 14): the group is ours, but a storage
// account someone added to it later is not; destroy deletes the whole group, so it refuses, lists
// what is not ours, and deletes nothing. The VM's OS disk (no tags, managed by our VM) and an
// extension of our VM are ours.
func TestDestroyRefusesUntaggedResourcesInOurGroup(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	p := f.provisioner(t)
	if _, err := p.Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatal(err)
	}
	rg := "/subscriptions/" + f.sub + "/resourceGroups/az-nixos-rg/providers/"
	f.mu.Lock()
	for id, typ := range map[string]string{
		rg + "Microsoft.Compute/virtualMachines/az-nixos/extensions/RunCommandLinux": "Microsoft.Compute/virtualMachines/extensions",
		rg + "Microsoft.Storage/storageAccounts/teamdata":                            "Microsoft.Storage/storageAccounts",
	} {
		f.generic[genericKey(id)] = armresources.GenericResource{ID: ptr(id), Type: ptr(typ), Name: ptr(id[strings.LastIndex(id, "/")+1:])}
	}
	f.mu.Unlock()
	res, err := p.Destroy(context.Background(), "az-nixos-rg")
	var he *HintError
	if !errors.As(err, &he) || he.Code != "ForeignResourcesInGroup" {
		t.Fatalf("Destroy = %+v, %v; want a refusal", res, err)
	}
	if !strings.Contains(err.Error(), "holds 1 resource(s)") || !strings.Contains(err.Error(), "Microsoft.Storage/storageAccounts/teamdata") || !strings.Contains(he.Hint, "az resource tag") {
		t.Errorf("err = %v", err)
	}
	if res.Deleted || len(f.groupNames()) != 1 {
		t.Errorf("deleted = %v, groups %v: nothing may be deleted", res.Deleted, f.groupNames())
	}
}
