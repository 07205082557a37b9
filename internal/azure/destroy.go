package azure

import (
	"context"
	"fmt"
	"sort"
)

// DestroyResult reports what Destroy did.
type DestroyResult struct {
	ResourceGroup string
	Deleted       bool
	// Resources lists the IDs in the group before deletion ("type/name"), sorted.
	Resources []string
	// Note explains a no-op, such as a group that did not exist.
	Note string
}

// Destroy deletes the resource group and everything in it, but only when the group is tagged
// managed-by=nixos-cloud-deploy. A missing group is success with a note. It waits until Azure
// reports the deletion done.
func (p *Provisioner) Destroy(ctx context.Context, resourceGroup string) (DestroyResult, error) {
	out := DestroyResult{ResourceGroup: resourceGroup}
	ec := p.ec(fmt.Sprintf("delete resource group %q", resourceGroup), nil)
	ec.resourceGroup = resourceGroup
	got, err := p.groups.Get(ctx, resourceGroup, nil)
	if err != nil {
		// Only ResourceGroupNotFound means there is nothing to delete; a wrong subscription
		// (404 SubscriptionNotFound) is an error that names it.
		if isGroupNotFound(err) {
			out.Note = fmt.Sprintf("resource group %q does not exist; nothing to delete", resourceGroup)
			return out, nil
		}
		return out, explain(err, ec)
	}
	if !isOurs(got.Tags) {
		return out, &ForeignResourceError{Kind: "resource group", Name: resourceGroup, ID: deref(got.ID)}
	}
	pager := p.resources.NewListByResourceGroupPager(resourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return out, explain(err, p.ec(fmt.Sprintf("list resources in group %q", resourceGroup), nil))
		}
		for _, r := range page.Value {
			if r != nil {
				out.Resources = append(out.Resources, deref(r.Type)+"/"+deref(r.Name))
			}
		}
	}
	sort.Strings(out.Resources)
	poller, err := p.groups.BeginDelete(ctx, resourceGroup, nil)
	if err != nil {
		if isGroupNotFound(err) {
			out.Note = fmt.Sprintf("resource group %q disappeared before it could be deleted", resourceGroup)
			return out, nil
		}
		return out, explain(err, ec)
	}
	if _, err := poller.PollUntilDone(ctx, p.pollOpts()); err != nil {
		return out, explain(err, ec)
	}
	out.Deleted = true
	return out, nil
}
