package azuretest

import (
	"context"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
	"github.com/google/go-cmp/cmp"
)

func TestListing(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	vm := createVM(ctx, t, c, g.nic)
	if _, err := c.groups.CreateOrUpdate(ctx, "foreign", armresources.ResourceGroup{Location: to.Ptr(testLocation), Tags: map[string]*string{"owner": to.Ptr("someone")}}, nil); err != nil {
		t.Fatal(err)
	}
	var groups []string
	for p := c.groups.NewListPager(nil); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.Value {
			groups = append(groups, *g.Name)
		}
	}
	if diff := cmp.Diff([]string{"foreign", testGroup}, groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}

	tests := []struct {
		name string
		list func() ([]string, error)
		want []string
	}{
		{"VMs in the group", func() ([]string, error) {
			var out []string
			for p := c.vms.NewListPager(testGroup, nil); p.More(); {
				page, err := p.NextPage(ctx)
				if err != nil {
					return nil, err
				}
				for _, v := range page.Value {
					out = append(out, *v.ID)
				}
			}
			return out, nil
		}, []string{*vm.ID}},
		{"VMs in the subscription", func() ([]string, error) {
			var out []string
			for p := c.vms.NewListAllPager(&armcompute.VirtualMachinesClientListAllOptions{}); p.More(); {
				page, err := p.NextPage(ctx)
				if err != nil {
					return nil, err
				}
				for _, v := range page.Value {
					out = append(out, *v.ID)
				}
			}
			return out, nil
		}, []string{*vm.ID}},
		{"resources by tag in the subscription", func() ([]string, error) {
			var out []string
			f := "tagName eq 'managed-by' and tagValue eq 'nixos-cloud-deploy' and resourceType eq 'Microsoft.Network/publicIPAddresses'"
			for p := c.generic.NewListPager(&armresources.ClientListOptions{Filter: to.Ptr(f)}); p.More(); {
				page, err := p.NextPage(ctx)
				if err != nil {
					return nil, err
				}
				for _, r := range page.Value {
					out = append(out, *r.ID)
				}
			}
			return out, nil
		}, []string{g.pip}},
		{"resources in the group", func() ([]string, error) {
			var out []string
			for p := c.generic.NewListByResourceGroupPager(testGroup, nil); p.More(); {
				page, err := p.NextPage(ctx)
				if err != nil {
					return nil, err
				}
				for _, r := range page.Value {
					out = append(out, *r.Type)
				}
			}
			return out, nil
		}, []string{"Microsoft.Compute/disks", "Microsoft.Compute/virtualMachines", "Microsoft.Network/networkInterfaces",
			"Microsoft.Network/networkSecurityGroups", "Microsoft.Network/publicIPAddresses", "Microsoft.Network/virtualNetworks"}},
		{"subnets", func() ([]string, error) {
			var out []string
			for p := c.subnets.NewListPager(testGroup, testVM+"-vnet", nil); p.More(); {
				page, err := p.NextPage(ctx)
				if err != nil {
					return nil, err
				}
				for _, s := range page.Value {
					out = append(out, *s.ID)
				}
			}
			return out, nil
		}, []string{g.subnet}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.list()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
