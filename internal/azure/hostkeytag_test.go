package azure_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
)

// TestSetHostKeyTag: after the pipeline rotates the host key, the VM's tag
// names the new key, its other tags stay, and the VM is not PUT again (its
// custom data could not change anyway).
func TestSetHostKeyTag(t *testing.T) {
	t.Parallel()
	emu := azuretest.New(azuretest.Options{})
	t.Cleanup(emu.Close)
	p := emulatorProvisioner(t, emu)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := emulatorSpec()
	if _, err := p.Provision(ctx, spec, nil); err != nil {
		t.Fatal(err)
	}
	puts := func() int {
		n := 0
		for _, r := range emu.Requests() {
			if r.Method == "PUT" && strings.Contains(strings.ToLower(r.Path), "virtualmachines/") {
				n++
			}
		}
		return n
	}
	before := puts()
	const rotated = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRotatedOnTheVM"
	if err := p.SetHostKeyTag(ctx, spec.ResourceGroup, spec.VMName, rotated+"\n"); err != nil {
		t.Fatalf("SetHostKeyTag: %v", err)
	}
	info, err := p.LookupVM(ctx, spec.ResourceGroup, spec.VMName)
	if err != nil {
		t.Fatal(err)
	}
	if info.HostKey != rotated {
		t.Errorf("ssh-host-key tag = %q, want %q", info.HostKey, rotated)
	}
	if !info.Managed || info.Tags[azure.TagVMName] != spec.VMName || info.Tags[azure.TagRunURL] != spec.RunURL {
		t.Errorf("the other tags did not stay: %v", info.Tags)
	}
	if n := puts(); n != before {
		t.Errorf("the VM was PUT %d more time(s); only its tags may change", n-before)
	}
}

func TestSetHostKeyTagMissingVM(t *testing.T) {
	t.Parallel()
	emu := azuretest.New(azuretest.Options{})
	t.Cleanup(emu.Close)
	p := emulatorProvisioner(t, emu)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := p.SetHostKeyTag(ctx, "nope", "nope", "ssh-ed25519 AAAA")
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v, want one naming the missing VM", err)
	}
	var fe *azure.ForeignResourceError
	if errors.As(err, &fe) {
		t.Fatalf("a missing VM is not a foreign one: %v", err)
	}
}
