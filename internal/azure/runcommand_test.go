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

// TestRunShellScriptAndStart drives Run Command and start through the real
// SDK against the ARM emulator: a VM is provisioned, deallocated, started,
// and runs a script whose output and exit status come back.
func TestRunShellScriptAndStart(t *testing.T) {
	t.Parallel()
	var gotScript []string
	emu := azuretest.New(azuretest.Options{RunCommand: func(_ context.Context, c azuretest.RunCommand) azuretest.RunCommandResult {
		gotScript = c.Script
		if strings.Contains(strings.Join(c.Script, "\n"), "exit 3") {
			return azuretest.RunCommandResult{Stdout: "partial\n", Stderr: "boom\n", ExitCode: 3}
		}
		return azuretest.RunCommandResult{Stdout: "hostkey ssh-ed25519 AAAA\nmemkb 16384000\n"}
	}})
	t.Cleanup(emu.Close)
	cred, err := emu.Credential()
	if err != nil {
		t.Fatal(err)
	}
	opts := emu.ClientOptions()
	opts.Transport = emu.HTTPClient()
	p, err := azure.NewProvisioner(azuretest.DefaultSubscriptionID, cred, opts, azure.WithPollFrequency(10*time.Millisecond), azure.WithHTTPClient(emu.HTTPClient()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := azure.Spec{ResourceGroup: "rg", Location: "uksouth", VMName: "vm1", Size: "Standard_B2s",
		ImageURN: "Canonical:ubuntu-24_04-lts:server:latest", OSDiskSizeGB: 64, AdminUser: "nixos",
		AdminKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}, CustomData: []byte("#cloud-config\n")}
	if _, err := p.Provision(ctx, spec, nil); err != nil {
		t.Fatal(err)
	}

	out, err := p.RunShellScript(ctx, "rg", "vm1", "echo hi")
	if err != nil || out != "hostkey ssh-ed25519 AAAA\nmemkb 16384000\n" {
		t.Fatalf("RunShellScript = %q, %v", out, err)
	}
	if strings.Join(gotScript, "\n") != "echo hi" {
		t.Errorf("script sent: %q", gotScript)
	}
	_, err = p.RunShellScript(ctx, "rg", "vm1", "exit 3")
	var rce *azure.RunCommandError
	if !errors.As(err, &rce) || rce.ExitCode != "3" || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("failing script: %v", err)
	}

	if err := p.StartVM(ctx, "rg", "vm1"); err != nil {
		t.Fatal(err)
	}
	info, err := p.LookupVM(ctx, "rg", "vm1")
	if err != nil || info.PowerState != "running" {
		t.Fatalf("after start: %+v %v", info, err)
	}
	if err := p.StartVM(ctx, "rg", "missing"); err == nil {
		t.Fatal("starting a missing VM succeeded")
	}
}
