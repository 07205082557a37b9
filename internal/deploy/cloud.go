package deploy

import (
	"context"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
)

// Cloud is what the pipeline needs from Azure; *azure.Provisioner has it.
type Cloud interface {
	// LookupVM reads an existing VM; a missing one is an error wrapping
	// azure.ErrNotFound.
	LookupVM(ctx context.Context, rg, vm string) (*azure.VMInfo, error)
	Provision(ctx context.Context, s azure.Spec, progress func(azure.Event)) (*azure.Result, error)
	SerialLog(ctx context.Context, rg, vm string, tailLines int) (string, error)
	Destroy(ctx context.Context, rg string) (azure.DestroyResult, error)
	// RunShellScript runs a script as root through Azure Run Command.
	RunShellScript(ctx context.Context, rg, vm, script string) (string, error)
	StartVM(ctx context.Context, rg, vm string) error
	// SetHostKeyTag sets the VM's ssh-host-key tag, keeping its other tags.
	SetHostKeyTag(ctx context.Context, rg, vm, hostKey string) error
}

var _ Cloud = (*azure.Provisioner)(nil)
