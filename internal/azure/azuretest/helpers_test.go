package azuretest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
)

const (
	testLocation = "westeurope"
	testGroup    = "rg-az-nixos"
	testVM       = "az-nixos"
)

// poll is a poll frequency small enough for tests (the SDK allows < 1 s only under `go test`).
var poll = &runtime.PollUntilDoneOptions{Frequency: 2 * time.Millisecond}

func newEmulator(t testing.TB, opts Options) *Emulator {
	t.Helper()
	e := New(opts)
	t.Cleanup(e.Close)
	return e
}

// discover reads the metadata endpoint the way the Azure CLI (and our action) does for AzureStack and
// returns the cloud configuration it implies.
func discover(t testing.TB, e *Emulator) cloud.Configuration {
	t.Helper()
	resp, err := e.HTTPClient().Get(e.URL() + "/metadata/endpoints?api-version=2022-09-01")
	if err != nil {
		t.Fatalf("failed to get metadata: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: status %d", resp.StatusCode)
	}
	var md metadata
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatalf("failed to decode metadata: %v", err)
	}
	if len(md.Authentication.Audiences) == 0 {
		t.Fatal("metadata has no audiences")
	}
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: md.Authentication.LoginEndpoint,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: e.URL() + "/", Audience: md.Authentication.Audiences[0]},
		},
	}
}

type clients struct {
	groups   *armresources.ResourceGroupsClient
	generic  *armresources.Client
	pips     *armnetwork.PublicIPAddressesClient
	nsgs     *armnetwork.SecurityGroupsClient
	vnets    *armnetwork.VirtualNetworksClient
	subnets  *armnetwork.SubnetsClient
	nics     *armnetwork.InterfacesClient
	vms      *armcompute.VirtualMachinesClient
	credOpts *azidentity.ClientSecretCredentialOptions
}

// newClients builds the real SDK clients the production code uses, from discovered metadata, with an
// azidentity client-secret credential against the emulator's token endpoint.
func newClients(t testing.TB, e *Emulator) clients {
	t.Helper()
	cfg := discover(t, e)
	o := e.Options()
	credOpts := &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cfg, Transport: e.HTTPClient()},
		DisableInstanceDiscovery: true,
	}
	cred, err := azidentity.NewClientSecretCredential(o.TenantID, o.ClientID, o.ClientSecret, credOpts)
	if err != nil {
		t.Fatalf("failed to create credential: %v", err)
	}
	return clientsFor(t, e, cred, cfg, credOpts)
}

func clientsFor(t testing.TB, e *Emulator, cred azcore.TokenCredential, cfg cloud.Configuration, credOpts *azidentity.ClientSecretCredentialOptions) clients {
	t.Helper()
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud:     cfg,
		Transport: e.HTTPClient(),
		Retry:     policy.RetryOptions{RetryDelay: time.Millisecond, MaxRetryDelay: 20 * time.Millisecond},
	}}
	sub := e.Options().SubscriptionID
	must := func(err error) {
		if err != nil {
			t.Fatalf("failed to create client: %v", err)
		}
	}
	var c clients
	var err error
	c.credOpts = credOpts
	c.groups, err = armresources.NewResourceGroupsClient(sub, cred, opts)
	must(err)
	c.generic, err = armresources.NewClient(sub, cred, opts)
	must(err)
	c.pips, err = armnetwork.NewPublicIPAddressesClient(sub, cred, opts)
	must(err)
	c.nsgs, err = armnetwork.NewSecurityGroupsClient(sub, cred, opts)
	must(err)
	c.vnets, err = armnetwork.NewVirtualNetworksClient(sub, cred, opts)
	must(err)
	c.subnets, err = armnetwork.NewSubnetsClient(sub, cred, opts)
	must(err)
	c.nics, err = armnetwork.NewInterfacesClient(sub, cred, opts)
	must(err)
	c.vms, err = armcompute.NewVirtualMachinesClient(sub, cred, opts)
	must(err)
	return c
}

func tags() map[string]*string {
	return map[string]*string{"managed-by": to.Ptr("nixos-cloud-deploy"), "vm-name": to.Ptr(testVM)}
}

// graph holds the IDs of a created deployment.
type graph struct {
	pip, nsg, vnet, subnet, nic string
}

// createNetwork creates the resource group, then the public IP, NSG and VNet in parallel, then the NIC,
// as the provisioner does.
func createNetwork(ctx context.Context, t testing.TB, c clients) graph {
	t.Helper()
	if _, err := c.groups.CreateOrUpdate(ctx, testGroup, armresources.ResourceGroup{Location: to.Ptr(testLocation), Tags: tags()}, nil); err != nil {
		t.Fatalf("failed to create resource group: %v", err)
	}
	var g graph
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		p, err := c.pips.BeginCreateOrUpdate(ctx, testGroup, testVM+"-ip", armnetwork.PublicIPAddress{
			Location: to.Ptr(testLocation), Tags: tags(),
			SKU: &armnetwork.PublicIPAddressSKU{Name: to.Ptr(armnetwork.PublicIPAddressSKUNameStandard)},
			Properties: &armnetwork.PublicIPAddressPropertiesFormat{
				PublicIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodStatic),
				DNSSettings:              &armnetwork.PublicIPAddressDNSSettings{DomainNameLabel: to.Ptr(testVM)},
			},
		}, nil)
		if err == nil {
			var r armnetwork.PublicIPAddressesClientCreateOrUpdateResponse
			r, err = p.PollUntilDone(ctx, poll)
			if err == nil {
				g.pip = *r.ID
			}
		}
		errs <- err
	})
	wg.Go(func() {
		p, err := c.nsgs.BeginCreateOrUpdate(ctx, testGroup, testVM+"-nsg", armnetwork.SecurityGroup{
			Location: to.Ptr(testLocation), Tags: tags(),
			Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{{
				Name: to.Ptr("ssh"),
				Properties: &armnetwork.SecurityRulePropertiesFormat{
					Protocol: to.Ptr(armnetwork.SecurityRuleProtocolTCP), Access: to.Ptr(armnetwork.SecurityRuleAccessAllow),
					Direction: to.Ptr(armnetwork.SecurityRuleDirectionInbound), Priority: to.Ptr[int32](1000),
					SourceAddressPrefix: to.Ptr("*"), SourcePortRange: to.Ptr("*"),
					DestinationAddressPrefix: to.Ptr("*"), DestinationPortRange: to.Ptr("22"),
				},
			}}},
		}, nil)
		if err == nil {
			var r armnetwork.SecurityGroupsClientCreateOrUpdateResponse
			r, err = p.PollUntilDone(ctx, poll)
			if err == nil {
				g.nsg = *r.ID
			}
		}
		errs <- err
	})
	wg.Go(func() {
		p, err := c.vnets.BeginCreateOrUpdate(ctx, testGroup, testVM+"-vnet", armnetwork.VirtualNetwork{
			Location: to.Ptr(testLocation), Tags: tags(),
			Properties: &armnetwork.VirtualNetworkPropertiesFormat{
				AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr("10.0.0.0/16")}},
				Subnets: []*armnetwork.Subnet{{Name: to.Ptr("default"), Properties: &armnetwork.SubnetPropertiesFormat{
					AddressPrefix: to.Ptr("10.0.0.0/24"),
				}}},
			},
		}, nil)
		if err == nil {
			var r armnetwork.VirtualNetworksClientCreateOrUpdateResponse
			r, err = p.PollUntilDone(ctx, poll)
			if err == nil {
				g.vnet = *r.ID
				g.subnet = *r.Properties.Subnets[0].ID
			}
		}
		errs <- err
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("failed to create network resource: %v", err)
		}
	}
	p, err := c.nics.BeginCreateOrUpdate(ctx, testGroup, testVM+"-nic", armnetwork.Interface{
		Location: to.Ptr(testLocation), Tags: tags(),
		Properties: &armnetwork.InterfacePropertiesFormat{
			NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: to.Ptr(g.nsg)},
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
				Name: to.Ptr("ipconfig1"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
					Subnet:          &armnetwork.Subnet{ID: to.Ptr(g.subnet)},
					PublicIPAddress: &armnetwork.PublicIPAddress{ID: to.Ptr(g.pip)},
				},
			}},
		},
	}, nil)
	if err != nil {
		t.Fatalf("failed to start NIC creation: %v", err)
	}
	r, err := p.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatalf("failed to create NIC: %v", err)
	}
	g.nic = *r.ID
	return g
}

const testCustomData = "#cloud-config\ndisable_root: false\n"

// testUserKey is an ed25519 key, a kind Azure takes in osProfile.
const testUserKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"

func vmParams(nicID, customData string) armcompute.VirtualMachine {
	return armcompute.VirtualMachine{
		Location: to.Ptr(testLocation),
		Tags:     tags(),
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_D2s_v5"))},
			StorageProfile: &armcompute.StorageProfile{
				ImageReference: &armcompute.ImageReference{
					Publisher: to.Ptr("Canonical"), Offer: to.Ptr("ubuntu-24_04-lts"), SKU: to.Ptr("server"), Version: to.Ptr("latest"),
				},
				OSDisk: &armcompute.OSDisk{
					CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
					DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDelete),
					DiskSizeGB:   to.Ptr[int32](64),
				},
			},
			OSProfile: &armcompute.OSProfile{
				ComputerName:  to.Ptr(testVM),
				AdminUsername: to.Ptr("nixos"),
				CustomData:    to.Ptr(base64.StdEncoding.EncodeToString([]byte(customData))),
				LinuxConfiguration: &armcompute.LinuxConfiguration{
					DisablePasswordAuthentication: to.Ptr(true),
					SSH: &armcompute.SSHConfiguration{PublicKeys: []*armcompute.SSHPublicKey{{
						Path:    to.Ptr("/home/nixos/.ssh/authorized_keys"),
						KeyData: to.Ptr(testUserKey),
					}}},
				},
			},
			SecurityProfile: &armcompute.SecurityProfile{
				SecurityType: to.Ptr(armcompute.SecurityTypesTrustedLaunch),
				UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(false), VTpmEnabled: to.Ptr(true)},
			},
			DiagnosticsProfile: &armcompute.DiagnosticsProfile{BootDiagnostics: &armcompute.BootDiagnostics{Enabled: to.Ptr(true)}},
			NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{{
				ID:         to.Ptr(nicID),
				Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: to.Ptr(true), DeleteOption: to.Ptr(armcompute.DeleteOptionsDelete)},
			}}},
		},
	}
}

func createVM(ctx context.Context, t testing.TB, c clients, nicID string) armcompute.VirtualMachine {
	t.Helper()
	p, err := c.vms.BeginCreateOrUpdate(ctx, testGroup, testVM, vmParams(nicID, testCustomData), nil)
	if err != nil {
		t.Fatalf("failed to start VM creation: %v", err)
	}
	r, err := p.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatalf("failed to create VM: %v", err)
	}
	return r.VirtualMachine
}

func pipParams(label string) armnetwork.PublicIPAddress {
	return armnetwork.PublicIPAddress{
		Location: to.Ptr(testLocation),
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{
			DNSSettings: &armnetwork.PublicIPAddressDNSSettings{DomainNameLabel: to.Ptr(label)},
		},
	}
}

func nicParams(subnet, pip string) armnetwork.Interface {
	return armnetwork.Interface{
		Location: to.Ptr(testLocation),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
			Name: to.Ptr("ipconfig1"),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
				Subnet:          &armnetwork.Subnet{ID: to.Ptr(subnet)},
				PublicIPAddress: &armnetwork.PublicIPAddress{ID: to.Ptr(pip)},
			},
		}}},
	}
}

func newTLSConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
