package azure

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
)

// Address plan of the deployment's private network.
const (
	vnetPrefix   = "10.0.0.0/16"
	subnetPrefix = "10.0.0.0/24"
)

// DNSLabelScope makes the public IP's DNS name unique to this resource group. A bare DNS label
// is unique per region across every Azure customer, so the second person who keeps the default
// vm-name in a region gets DnsRecordInUse; with a scope Azure puts a hash of tenant,
// subscription, resource group and label between the label and the region
// (<vm>.<hash>.<location>.cloudapp.azure.com, MicrosoftDocs azure-docs
// articles/virtual-network/ip-services/public-ip-addresses.md, "Domain Name Label Scope"), the
// same hash every time the group is deployed again, and returns the name in dnsSettings.fqdn.
const DNSLabelScope = armnetwork.PublicIPAddressDNSSettingsDomainNameLabelScopeResourceGroupReuse

// ensurePublicIP reads or creates the Standard, static public IP whose DNS label is the VM name,
// scoped to the resource group (DNSLabelScope). The FQDN is Azure's answer, never computed.
func (p *Provisioner) ensurePublicIP(ctx context.Context, s *Spec) (*armnetwork.PublicIPAddress, Action, error) {
	name := PublicIPName(s.VMName)
	got, err := p.pips.Get(ctx, s.ResourceGroup, name, nil)
	if err == nil {
		return &got.PublicIPAddress, ActionReused, nil
	}
	if !isNotFound(err) {
		return nil, "", explain(err, p.ec(fmt.Sprintf("read public IP %q", name), s))
	}
	poller, err := p.pips.BeginCreateOrUpdate(ctx, s.ResourceGroup, name, armnetwork.PublicIPAddress{
		Location: to(s.Location),
		Tags:     s.tags(),
		SKU: &armnetwork.PublicIPAddressSKU{
			Name: to(armnetwork.PublicIPAddressSKUNameStandard),
			Tier: to(armnetwork.PublicIPAddressSKUTierRegional),
		},
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{
			PublicIPAllocationMethod: to(armnetwork.IPAllocationMethodStatic),
			PublicIPAddressVersion:   to(armnetwork.IPVersionIPv4),
			DNSSettings: &armnetwork.PublicIPAddressDNSSettings{
				DomainNameLabel:      to(s.VMName),
				DomainNameLabelScope: to(DNSLabelScope),
			},
		},
	}, nil)
	ec := p.ec(fmt.Sprintf("create public IP %q", name), s)
	if err != nil {
		return nil, "", explain(err, ec)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return nil, "", explain(err, ec)
	}
	return &res.PublicIPAddress, ActionCreated, nil
}

// ensureNSG reads or creates the security group that lets SSH (22/tcp) in.
func (p *Provisioner) ensureNSG(ctx context.Context, s *Spec) (string, Action, error) {
	name := NSGName(s.VMName)
	got, err := p.nsgs.Get(ctx, s.ResourceGroup, name, nil)
	if err == nil {
		return deref(got.ID), ActionReused, nil
	}
	if !isNotFound(err) {
		return "", "", explain(err, p.ec(fmt.Sprintf("read network security group %q", name), s))
	}
	ec := p.ec(fmt.Sprintf("create network security group %q", name), s)
	poller, err := p.nsgs.BeginCreateOrUpdate(ctx, s.ResourceGroup, name, armnetwork.SecurityGroup{
		Location: to(s.Location),
		Tags:     s.tags(),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{
			SecurityRules: []*armnetwork.SecurityRule{{
				Name: to("allow-ssh"),
				Properties: &armnetwork.SecurityRulePropertiesFormat{
					Description:              to("SSH for nixos-anywhere and the admin user"),
					Priority:                 to[int32](1000),
					Direction:                to(armnetwork.SecurityRuleDirectionInbound),
					Access:                   to(armnetwork.SecurityRuleAccessAllow),
					Protocol:                 to(armnetwork.SecurityRuleProtocolTCP),
					SourceAddressPrefix:      to("*"),
					SourcePortRange:          to("*"),
					DestinationAddressPrefix: to("*"),
					DestinationPortRange:     to("22"),
				},
			}},
		},
	}, nil)
	if err != nil {
		return "", "", explain(err, ec)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return "", "", explain(err, ec)
	}
	return deref(res.ID), ActionCreated, nil
}

// ensureVNet reads or creates the virtual network with its one subnet; it returns both IDs.
func (p *Provisioner) ensureVNet(ctx context.Context, s *Spec) (vnetID, subnetID string, _ Action, _ error) {
	name := VNetName(s.VMName)
	got, err := p.vnets.Get(ctx, s.ResourceGroup, name, nil)
	if err == nil {
		sid, err := findSubnet(&got.VirtualNetwork)
		if err != nil {
			return "", "", "", err
		}
		return deref(got.ID), sid, ActionReused, nil
	}
	if !isNotFound(err) {
		return "", "", "", explain(err, p.ec(fmt.Sprintf("read virtual network %q", name), s))
	}
	ec := p.ec(fmt.Sprintf("create virtual network %q", name), s)
	poller, err := p.vnets.BeginCreateOrUpdate(ctx, s.ResourceGroup, name, armnetwork.VirtualNetwork{
		Location: to(s.Location),
		Tags:     s.tags(),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to(vnetPrefix)}},
			Subnets: []*armnetwork.Subnet{{
				Name:       to(SubnetName),
				Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to(subnetPrefix)},
			}},
		},
	}, nil)
	if err != nil {
		return "", "", "", explain(err, ec)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return "", "", "", explain(err, ec)
	}
	sid, err := findSubnet(&res.VirtualNetwork)
	if err != nil {
		return "", "", "", err
	}
	return deref(res.ID), sid, ActionCreated, nil
}

func findSubnet(v *armnetwork.VirtualNetwork) (string, error) {
	if v.Properties != nil {
		for _, sn := range v.Properties.Subnets {
			if sn != nil && deref(sn.Name) == SubnetName && sn.ID != nil {
				return *sn.ID, nil
			}
		}
	}
	return "", fmt.Errorf("virtual network %q has no subnet %q: delete the resource group and deploy again", deref(v.Name), SubnetName)
}

// ensureNIC reads or creates the NIC that joins the public IP, the NSG and the subnet.
func (p *Provisioner) ensureNIC(ctx context.Context, s *Spec, pipID, nsgID, subnetID string) (string, Action, error) {
	name := NICName(s.VMName)
	got, err := p.nics.Get(ctx, s.ResourceGroup, name, nil)
	if err == nil {
		return deref(got.ID), ActionReused, nil
	}
	if !isNotFound(err) {
		return "", "", explain(err, p.ec(fmt.Sprintf("read network interface %q", name), s))
	}
	ec := p.ec(fmt.Sprintf("create network interface %q", name), s)
	poller, err := p.nics.BeginCreateOrUpdate(ctx, s.ResourceGroup, name, armnetwork.Interface{
		Location: to(s.Location),
		Tags:     s.tags(),
		Properties: &armnetwork.InterfacePropertiesFormat{
			NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: to(nsgID)},
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
				Name: to("ipconfig1"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
					Primary:                   to(true),
					PrivateIPAllocationMethod: to(armnetwork.IPAllocationMethodDynamic),
					Subnet:                    &armnetwork.Subnet{ID: to(subnetID)},
					PublicIPAddress:           &armnetwork.PublicIPAddress{ID: to(pipID)},
				},
			}},
		},
	}, nil)
	if err != nil {
		return "", "", explain(err, ec)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return "", "", explain(err, ec)
	}
	return deref(res.ID), ActionCreated, nil
}
