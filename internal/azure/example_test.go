package azure_test

import (
	"context"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
)

// The wiring a caller does: resolve the cloud, pick a credential, provision, and on failure
// read the serial log. The emulator stands in for an Azure Stack Hub here.
func Example() {
	emu := azuretest.New(azuretest.Options{})
	defer emu.Close()
	ctx := context.Background()
	o := emu.Options()

	rc, err := azure.ResolveCloud(ctx, azure.Cloud{Name: "AzureStack", ARMEndpoint: emu.URL()}, emu.HTTPClient())
	if err != nil {
		panic(err)
	}
	cred, method, err := azure.NewCredential(ctx, rc, azure.Credentials{
		ClientID: o.ClientID, TenantID: o.TenantID, ClientSecret: o.ClientSecret,
		Subject: "repo:octo/infra:ref:refs/heads/main",
	}, &azure.CredentialOptions{ClientOptions: azcore.ClientOptions{Transport: emu.HTTPClient()}})
	if err != nil {
		panic(err)
	}
	opts := rc.ClientOptions()
	opts.Transport = emu.HTTPClient()
	p, err := azure.NewProvisioner(o.SubscriptionID, cred, opts,
		azure.WithPollFrequency(10*time.Millisecond), azure.WithHTTPClient(emu.HTTPClient()))
	if err != nil {
		panic(err)
	}
	spec := azure.Spec{
		ResourceGroup: "demo-rg", Location: "uksouth", VMName: "demo", Size: "Standard_B2s",
		ImageURN: "Canonical:ubuntu-24_04-lts:server:latest", AdminUser: "nixos",
		AdminKeys:  []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
		CustomData: []byte("#cloud-config\n"),
	}
	res, err := p.Provision(ctx, spec, func(e azure.Event) {
		if e.Phase == azure.PhaseDone {
			fmt.Printf("%s %s %s\n", e.Action, e.Kind, e.Name)
		}
	})
	if err != nil {
		if res != nil && res.VMID != "" {
			log, _ := p.SerialLog(ctx, spec.ResourceGroup, spec.VMName, 50)
			fmt.Println(log)
		}
		panic(err)
	}
	fmt.Println(method, res.FQDN)
	// Unordered output:
	// created resource-group demo-rg
	// created public-ip demo-ip
	// created network-security-group demo-nsg
	// created virtual-network demo-vnet
	// created network-interface demo-nic
	// created virtual-machine demo
	// client-secret demo.yr6py7cz6dimxghm.uksouth.cloudapp.azure.com
}
