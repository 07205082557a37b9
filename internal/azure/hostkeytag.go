package azure

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
)

// SetHostKeyTag sets the ssh-host-key tag of a VM that is ours, after the
// pipeline replaced the host key that travelled in custom data. It goes
// through ARM's tags resource with operation Merge, which adds or updates the
// named tags and keeps the others (REST "Tags - Update At Scope"), so the
// VM itself is never PUT again.
func (p *Provisioner) SetHostKeyTag(ctx context.Context, rg, vm, hostKey string) error {
	got, err := p.getVM(ctx, rg, vm, false)
	if err != nil {
		return explain(err, p.ec(fmt.Sprintf("read virtual machine %q", vm), nil))
	}
	if !isOurs(got.Tags) {
		return &ForeignResourceError{Kind: "virtual machine", Name: vm, ID: deref(got.ID)}
	}
	poller, err := p.tags.BeginUpdateAtScope(ctx, deref(got.ID), armresources.TagsPatchResource{
		Operation:  to(armresources.TagsPatchOperationMerge),
		Properties: &armresources.Tags{Tags: map[string]*string{TagHostKey: to(strings.TrimSpace(hostKey))}},
	}, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, p.pollOpts())
	}
	if err != nil {
		return explain(err, p.ec(fmt.Sprintf("set the %s tag of virtual machine %q", TagHostKey, vm), nil))
	}
	return nil
}
