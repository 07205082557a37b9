package azure

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
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
	var all []*armresources.GenericResourceExpanded
	pager := p.resources.NewListByResourceGroupPager(resourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return out, explain(err, p.ec(fmt.Sprintf("list resources in group %q", resourceGroup), nil))
		}
		for _, r := range page.Value {
			if r != nil {
				all = append(all, r)
				out.Resources = append(out.Resources, deref(r.Type)+"/"+deref(r.Name))
			}
		}
	}
	sort.Strings(out.Resources)
	// Deleting the group deletes everything in it. The group being ours does not make what
	// someone put in it later ours: refuse, and list them.
	if foreign := foreignResources(all); len(foreign) > 0 {
		return out, &HintError{Code: "ForeignResourcesInGroup",
			Err: fmt.Errorf("resource group %q holds %d resource(s) nixos-cloud-deploy did not make (not tagged %s=%s): %s; nothing was deleted",
				resourceGroup, len(foreign), TagManagedBy, ManagedByValue, strings.Join(foreign, ", ")),
			Hint: fmt.Sprintf("destroy deletes the whole group: move those resources to another group or delete them yourself, or tag them %s=%s if they may go with it (az resource tag --ids ID --tags %s=%s --is-incremental)",
				TagManagedBy, ManagedByValue, TagManagedBy, ManagedByValue)}
	}
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

// foreignResources lists ("type/name") the resources of a group that are not ours: not tagged
// managed-by=nixos-cloud-deploy, not managed by a resource that is (a VM's OS disk carries no tags
// of its own but its managedBy names the VM), and not a child of one (a VM's extensions, such as
// the one Run Command installs).
func foreignResources(all []*armresources.GenericResourceExpanded) []string {
	ours := map[string]bool{}
	for _, r := range all {
		if isOurs(r.Tags) {
			ours[strings.ToLower(deref(r.ID))] = true
		}
	}
	var out []string
	for _, r := range all {
		id := strings.ToLower(deref(r.ID))
		switch {
		case ours[id]:
		case ours[strings.ToLower(deref(r.ManagedBy))]:
		case ours[parentID(id)]:
		default:
			out = append(out, deref(r.Type)+"/"+deref(r.Name))
		}
	}
	sort.Strings(out)
	return out
}

// parentID is the ID of a child resource's parent (.../virtualMachines/vm/extensions/x ->
// .../virtualMachines/vm), or "".
func parentID(id string) string {
	_, rest, ok := strings.Cut(id, "/providers/")
	if !ok || strings.Count(rest, "/") < 4 {
		return ""
	}
	i := strings.LastIndexByte(id, '/')
	j := strings.LastIndexByte(id[:i], '/')
	return id[:j]
}
