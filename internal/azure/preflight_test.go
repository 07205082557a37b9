package azure

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// TestPreflightRefusesBeforeAnyPUT: a size the location does not offer to this subscription, or a
// quota without room, is refused before the first PUT, so nothing is left behind; a check that
// cannot run is skipped with a note.
func TestPreflightRefusesBeforeAnyPUT(t *testing.T) {
	t.Parallel()
	restrict := func(typ armcompute.ResourceSKURestrictionsType, zones ...string) func(f *fakeARM) {
		return func(f *fakeARM) {
			r := &armcompute.ResourceSKURestrictions{Type: ptr(typ), ReasonCode: ptr(armcompute.ResourceSKURestrictionsReasonCodeNotAvailableForSubscription),
				Values: []*string{ptr("westeurope")}, RestrictionInfo: &armcompute.ResourceSKURestrictionInfo{Locations: []*string{ptr("westeurope")}}}
			for _, z := range zones {
				r.RestrictionInfo.Zones = append(r.RestrictionInfo.Zones, ptr(z))
			}
			f.skus[0].Restrictions = append(f.skus[0].Restrictions, r)
		}
	}
	tests := []struct {
		name     string
		setup    func(f *fakeARM)
		size     string
		wantCode string
		want     []string
		note     string
	}{
		{"offered", func(*fakeARM) {}, "Standard_B2s", "", nil, ""},
		{"restricted in the location", restrict(armcompute.ResourceSKURestrictionsTypeLocation), "Standard_B2s", "SkuNotAvailable",
			[]string{`VM size "Standard_B2s" is not available in location "westeurope"`, "NotAvailableForSubscription", "az vm list-skus --location westeurope --size B2s"}, ""},
		{"restricted in every zone", restrict(armcompute.ResourceSKURestrictionsTypeZone, "1", "2", "3"), "Standard_B2s", "SkuNotAvailable", []string{"every zone"}, ""},
		{"restricted in one zone only", restrict(armcompute.ResourceSKURestrictionsTypeZone, "2"), "Standard_B2s", "", nil, ""},
		{"not offered there", func(*fakeARM) {}, "Standard_B2ss", "SkuNotAvailable", []string{`VM size "Standard_B2ss" is not offered in location "westeurope"`, "Standard_B2s"}, ""},
		{"family quota full", func(f *fakeARM) { f.quotas["standardbsfamily"] = [2]int32{10, 10} }, "Standard_B2s", "QuotaExceeded",
			[]string{"standardBSFamily vCPU quota", "10 of 10 vCPUs are in use and it needs 2", "request at least 12", "https://aka.ms/quotas"}, ""},
		{"regional quota full", func(f *fakeARM) { f.quotas["cores"] = [2]int32{3, 4} }, "Standard_B2s", "QuotaExceeded", []string{"regional vCPU quota", "3 of 4"}, ""},
		{"quota with room", func(f *fakeARM) { f.quotas["cores"] = [2]int32{2, 4} }, "Standard_B2s", "", nil, ""},
		{"no read access to the quotas", func(f *fakeARM) {
			f.intercept, _ = failOn(http.MethodGet, "/usages", 1, func(r *http.Request) *http.Response {
				return armErrorResp(r, 403, "AuthorizationFailed", "The client does not have authorization to perform action 'Microsoft.Compute/locations/usages/read'.")
			})
		}, "Standard_B2s", "", nil, "could not read the vCPU quotas of westeurope (403 AuthorizationFailed)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeARM()
			tc.setup(f)
			s := testSpec()
			s.Size = tc.size
			res, err := f.provisioner(t).Provision(context.Background(), s, nil)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("Provision: %v", err)
				}
				if tc.note != "" && !strings.Contains(strings.Join(res.Notes, "\n"), tc.note) {
					t.Errorf("notes = %q, want %q", res.Notes, tc.note)
				}
				return
			}
			var pe *HintError
			if !errors.As(err, &pe) || pe.Code != tc.wantCode {
				t.Fatalf("err = %v, want a %s pre-flight refusal", err, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant %q", err, w)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.sentPuts != 0 || len(f.groups) != 0 {
				t.Errorf("%d PUTs sent, groups %v: a refusal must leave nothing behind", f.sentPuts, f.groups)
			}
		})
	}
}

// TestPreflightDoesNotStopReuse: an existing VM is reused as it is, whatever the size's state now.
func TestPreflightDoesNotStopReuse(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	p := f.provisioner(t)
	if _, err := p.Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.quotas["cores"] = [2]int32{20, 20}
	f.mu.Unlock()
	if _, err := p.Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatalf("re-run with a full quota: %v", err)
	}
}
