package azuretest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// TestSizesAndQuotas: the Resource SKUs and Usage APIs answer from the catalogue, the
// restrictions and the VMs that exist, and a VM create is refused on the same grounds.
func TestSizesAndQuotas(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	c := newClients(t, e)
	cred, err := e.Credential()
	if err != nil {
		t.Fatal(err)
	}
	opts := e.ClientOptions()
	skus, err := armcompute.NewResourceSKUsClient(e.Options().SubscriptionID, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	usages, err := armcompute.NewUsageClient(e.Options().SubscriptionID, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e.RestrictSKU("Standard_B2s", testLocation)
	e.RestrictSKU("Standard_D4s_v5", testLocation, "1")

	listed := map[string]*armcompute.ResourceSKU{}
	pager := skus.NewListPager(&armcompute.ResourceSKUsClientListOptions{Filter: to.Ptr("location eq '" + testLocation + "'")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Value {
			if *s.Locations[0] != testLocation {
				t.Errorf("SKU %s listed for %s with a filter on %s", *s.Name, *s.Locations[0], testLocation)
			}
			listed[*s.Name] = s
		}
	}
	if len(listed) != len(DefaultSKUs) {
		t.Errorf("%d SKUs listed, want %d", len(listed), len(DefaultSKUs))
	}
	if r := listed["Standard_B2s"].Restrictions; len(r) != 1 || *r[0].Type != armcompute.ResourceSKURestrictionsTypeLocation || *r[0].ReasonCode != armcompute.ResourceSKURestrictionsReasonCodeNotAvailableForSubscription {
		t.Errorf("B2s restrictions = %+v", r)
	}
	if r := listed["Standard_D4s_v5"].Restrictions; len(r) != 1 || *r[0].Type != armcompute.ResourceSKURestrictionsTypeZone || *r[0].RestrictionInfo.Zones[0] != "1" {
		t.Errorf("D4s_v5 restrictions = %+v", r)
	}
	if _, err := skus.NewListPager(&armcompute.ResourceSKUsClientListOptions{Filter: to.Ptr("name eq 'x'")}).NextPage(ctx); err == nil {
		t.Error("a filter on name was accepted; the API supports location only")
	}

	g := createNetwork(ctx, t, c)
	create := func(size string) error {
		params := vmParams(g.nic, testCustomData)
		params.Properties.HardwareProfile.VMSize = to.Ptr(armcompute.VirtualMachineSizeTypes(size))
		p, err := c.vms.BeginCreateOrUpdate(ctx, testGroup, testVM, params, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, poll)
		}
		return err
	}
	code := func(err error) string {
		var re *azcore.ResponseError
		if errors.As(err, &re) {
			return re.ErrorCode
		}
		return ""
	}
	if err := create("Standard_B2s"); code(err) != "SkuNotAvailable" {
		t.Errorf("restricted size: %v, want SkuNotAvailable", err)
	}
	if err := create("Standard_Z99"); code(err) != "SkuNotAvailable" {
		t.Errorf("unknown size: %v, want SkuNotAvailable", err)
	}
	e.SetQuota(testLocation, "standardDSv5Family", 1)
	if err := create("Standard_D2s_v5"); code(err) != "OperationNotAllowed" || !strings.Contains(err.Error(), "standardDSv5Family Cores quota") {
		t.Errorf("over the family quota: %v", err)
	}
	e.SetQuota(testLocation, "standardDSv5Family", 2)
	if err := create("Standard_D2s_v5"); err != nil {
		t.Fatalf("within the quota: %v", err)
	}
	got := map[string][2]int64{}
	up := usages.NewListPager(testLocation, nil)
	for up.More() {
		page, err := up.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Value {
			got[*u.Name.Value] = [2]int64{int64(*u.CurrentValue), *u.Limit}
		}
	}
	if got["cores"] != [2]int64{2, DefaultRegionalVCPUs} || got["standardDSv5Family"] != [2]int64{2, 2} {
		t.Errorf("usages = %v", got)
	}
}
