package azure

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
)

// DefaultOSDiskSizeGB is used when Spec.OSDiskSizeGB is 0.
const DefaultOSDiskSizeGB = 64

// maxCustomData is Azure's limit on base64-encoded custom data.
const maxCustomData = 87380

// ErrNotFound is wrapped by LookupVM when the group or VM does not exist.
var ErrNotFound = errors.New("not found")

func (p *Provisioner) getVM(ctx context.Context, rg, name string, instanceView bool) (*armcompute.VirtualMachine, error) {
	var opts *armcompute.VirtualMachinesClientGetOptions
	if instanceView {
		opts = &armcompute.VirtualMachinesClientGetOptions{Expand: to(armcompute.InstanceViewTypesInstanceView)}
	}
	got, err := p.vms.Get(ctx, rg, name, opts)
	if err != nil {
		return nil, err
	}
	return &got.VirtualMachine, nil
}

// vmBody is the VM's full definition.
func vmBody(s *Spec, nicID string) (armcompute.VirtualMachine, error) {
	parts := strings.Split(s.ImageURN, ":")
	if len(parts) != 4 {
		return armcompute.VirtualMachine{}, fmt.Errorf("image %q: must be publisher:offer:sku:version", s.ImageURN)
	}
	customData := base64.StdEncoding.EncodeToString(s.CustomData)
	if len(customData) > maxCustomData {
		return armcompute.VirtualMachine{}, fmt.Errorf("cloud-init custom data is %d bytes base64-encoded; Azure accepts at most %d", len(customData), maxCustomData)
	}
	disk := s.OSDiskSizeGB
	if disk == 0 {
		disk = DefaultOSDiskSizeGB
	}
	keys := make([]*armcompute.SSHPublicKey, 0, len(s.AdminKeys))
	for _, k := range s.AdminKeys {
		keys = append(keys, &armcompute.SSHPublicKey{
			Path:    to("/home/" + s.AdminUser + "/.ssh/authorized_keys"),
			KeyData: to(strings.TrimSpace(k)),
		})
	}
	tags := s.tags()
	if s.HostKeyPublic != "" {
		tags[TagHostKey] = to(strings.TrimSpace(s.HostKeyPublic))
	}
	var osProfileCustomData *string
	if len(s.CustomData) > 0 {
		osProfileCustomData = to(customData)
	}
	return armcompute.VirtualMachine{
		Location: to(s.Location),
		Tags:     tags,
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to(armcompute.VirtualMachineSizeTypes(s.Size))},
			StorageProfile: &armcompute.StorageProfile{
				ImageReference: &armcompute.ImageReference{
					Publisher: to(parts[0]), Offer: to(parts[1]), SKU: to(parts[2]), Version: to(parts[3]),
				},
				OSDisk: &armcompute.OSDisk{
					Name:         to(s.VMName + "-osdisk"),
					CreateOption: to(armcompute.DiskCreateOptionTypesFromImage),
					Caching:      to(armcompute.CachingTypesReadWrite),
					DiskSizeGB:   to(disk),
					DeleteOption: to(armcompute.DiskDeleteOptionTypesDelete),
					ManagedDisk:  &armcompute.ManagedDiskParameters{StorageAccountType: to(armcompute.StorageAccountTypesStandardSSDLRS)},
				},
			},
			OSProfile: &armcompute.OSProfile{
				ComputerName:  to(s.VMName),
				AdminUsername: to(s.AdminUser),
				CustomData:    osProfileCustomData,
				LinuxConfiguration: &armcompute.LinuxConfiguration{
					DisablePasswordAuthentication: to(true),
					SSH:                           &armcompute.SSHConfiguration{PublicKeys: keys},
				},
			},
			NetworkProfile: &armcompute.NetworkProfile{
				NetworkInterfaces: []*armcompute.NetworkInterfaceReference{{
					ID: to(nicID),
					Properties: &armcompute.NetworkInterfaceReferenceProperties{
						Primary:      to(true),
						DeleteOption: to(armcompute.DeleteOptionsDelete),
					},
				}},
			},
			SecurityProfile: securityProfile(s.SecurityType),
			// Managed boot diagnostics: no storage account, the serial log is fetched through
			// RetrieveBootDiagnosticsData.
			DiagnosticsProfile: &armcompute.DiagnosticsProfile{
				BootDiagnostics: &armcompute.BootDiagnostics{Enabled: to(true)},
			},
		},
	}, nil
}

// securityProfile turns Secure Boot off explicitly. With Secure Boot the Ubuntu kernel runs in
// lockdown mode and kexec_load fails with "Permission denied", so nixos-anywhere cannot switch
// into its installer. Leaving the field out is not enough: new subscriptions default to Trusted
// Launch with Secure Boot on.
func securityProfile(kind string) *armcompute.SecurityProfile {
	if kind == string(armcompute.SecurityTypesTrustedLaunch) {
		return &armcompute.SecurityProfile{
			SecurityType: to(armcompute.SecurityTypesTrustedLaunch),
			UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to(false), VTpmEnabled: to(true)},
		}
	}
	return &armcompute.SecurityProfile{SecurityType: to(armcompute.SecurityTypesStandard)}
}

// createVM PUTs the VM once. When the PUT or its polling fails, res.VMID is still set if the VM
// exists, so the caller can fetch its serial log.
func (p *Provisioner) createVM(ctx context.Context, s *Spec, nicID string, res *Result) (string, error) {
	body, err := vmBody(s, nicID)
	if err != nil {
		return "", err
	}
	ec := p.ec(fmt.Sprintf("create virtual machine %q", s.VMName), s)
	poller, err := p.vms.BeginCreateOrUpdate(ctx, s.ResourceGroup, s.VMName, body, nil)
	if err != nil && s.SecurityType != string(armcompute.SecurityTypesTrustedLaunch) && isSecurityTypeRefusal(err) {
		// Standard was refused (an image or a subscription that wants Trusted Launch): Trusted
		// Launch with Secure Boot off still lets kexec run. The refusal was synchronous, so no VM
		// exists and this is a first PUT, not a changed one.
		first := err
		tl := *s
		tl.SecurityType = string(armcompute.SecurityTypesTrustedLaunch)
		if body, err = vmBody(&tl, nicID); err != nil {
			return "", err
		}
		if poller, err = p.vms.BeginCreateOrUpdate(ctx, s.ResourceGroup, s.VMName, body, nil); err == nil {
			res.Notes = append(res.Notes, fmt.Sprintf("virtual machine %q: security type Standard was refused (%s); it was created with Trusted Launch and Secure Boot off", s.VMName, firstMessage(first)))
		}
	}
	if err != nil {
		return "", explain(err, ec)
	}
	vm, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		if got, gerr := p.getVM(ctx, s.ResourceGroup, s.VMName, false); gerr == nil {
			res.VMID = deref(got.ID)
		}
		return "", explain(err, ec)
	}
	res.VMID = deref(vm.ID)
	return res.VMID, nil
}

// schedule API version of Microsoft.DevTestLab/schedules, the resource the portal's
// "Auto-shutdown" blade and `az vm auto-shutdown` create.
const scheduleAPIVersion = "2018-09-15"

func ScheduleName(vm string) string { return "shutdown-computevm-" + vm }

// ensureAutoShutdown creates or updates the daily shutdown schedule through the generic
// resources client, so no DevTestLab module is needed.
func (p *Provisioner) ensureAutoShutdown(ctx context.Context, s *Spec, vmID string) (string, Action, error) {
	id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DevTestLab/schedules/%s",
		p.subscriptionID, s.ResourceGroup, ScheduleName(s.VMName))
	want := strings.ReplaceAll(s.AutoShutdown, ":", "")
	action := ActionCreated
	got, err := p.resources.GetByID(ctx, id, scheduleAPIVersion, nil)
	switch {
	case err == nil:
		if scheduleTime(got.Properties) == want {
			return deref(got.ID), ActionReused, nil
		}
		action = ActionUpdated
	case !isNotFound(err):
		return "", "", explain(err, p.ec(fmt.Sprintf("read auto-shutdown schedule %q", ScheduleName(s.VMName)), s))
	}
	ec := p.ec(fmt.Sprintf("create auto-shutdown schedule %q", ScheduleName(s.VMName)), s)
	poller, err := p.resources.BeginCreateOrUpdateByID(ctx, id, scheduleAPIVersion, armresources.GenericResource{
		Location: to(s.Location),
		Tags:     s.tags(),
		Properties: map[string]any{
			"status":           "Enabled",
			"taskType":         "ComputeVmShutdownTask",
			"dailyRecurrence":  map[string]any{"time": want},
			"timeZoneId":       "UTC",
			"targetResourceId": vmID,
			"notificationSettings": map[string]any{
				"status":        "Disabled",
				"timeInMinutes": 30,
			},
		},
	}, nil)
	if err != nil {
		return "", "", explain(err, ec)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return "", "", explain(err, ec)
	}
	return deref(res.ID), action, nil
}

func scheduleTime(props any) string {
	m, ok := props.(map[string]any)
	if !ok {
		return ""
	}
	dr, ok := m["dailyRecurrence"].(map[string]any)
	if !ok {
		return ""
	}
	t, _ := dr["time"].(string)
	return t
}

// VMInfo is what a later run learns about a deployed VM from Azure.
type VMInfo struct {
	ID                string
	Name              string
	ResourceGroup     string
	Location          string
	Size              string
	Tags              map[string]string
	Managed           bool   // tagged managed-by=nixos-cloud-deploy
	HostKey           string // the ssh-host-key tag, a public key "ssh-ed25519 AAAA..."
	PublicIP          string
	FQDN              string
	PowerState        string // "running", "deallocated", ... ("" when unknown)
	ProvisioningState string
	// AgentStatus is the Azure VM agent's display status in the instance
	// view ("Ready", "Not Ready"; "" when Azure reports none). Run Command
	// and every other extension run through the agent only.
	AgentStatus string
	// StatusMessage is the instance view's provisioning status when it is not a success:
	// "failed/AllocationFailed: Allocation failed. ...".
	StatusMessage string
}

// FailedVMHint says what to do with a VM whose creation failed.
const FailedVMHint = "a VM whose creation failed is not reused as if it were healthy: remove it with command: destroy and deploy again, or re-run with cleanup-on-failure: true, which deletes the resource group when a deploy fails; the serial log shows what the VM did"

// failedVMError reports a VM in provisioning state Failed, with the instance view's status.
func (p *Provisioner) failedVMError(ctx context.Context, s *Spec) error {
	msg := ""
	if vm, err := p.getVM(ctx, s.ResourceGroup, s.VMName, true); err == nil && vm.Properties != nil {
		msg = provisioningStatus(vm.Properties.InstanceView)
	}
	err := fmt.Errorf("virtual machine %q exists but its creation failed (provisioning state Failed)", s.VMName)
	if msg != "" {
		err = fmt.Errorf("virtual machine %q exists but its creation failed (provisioning state Failed): %s", s.VMName, msg)
	}
	return &HintError{Err: err, Code: "VMProvisioningFailed", Hint: FailedVMHint}
}

// provisioningStatus is the instance view's provisioning status when it is not a success.
func provisioningStatus(iv *armcompute.VirtualMachineInstanceView) string {
	if iv == nil {
		return ""
	}
	for _, st := range iv.Statuses {
		code := deref(st.Code)
		if strings.HasPrefix(code, "ProvisioningState/") && !strings.EqualFold(code, "ProvisioningState/succeeded") {
			if m := deref(st.Message); m != "" {
				return strings.TrimPrefix(code, "ProvisioningState/") + ": " + m
			}
			return strings.TrimPrefix(code, "ProvisioningState/")
		}
	}
	return ""
}

// LookupVM reads a VM, its tags, power state, public IP and FQDN. A missing group or VM gives an
// error wrapping ErrNotFound.
func (p *Provisioner) LookupVM(ctx context.Context, rg, name string) (*VMInfo, error) {
	vm, err := p.getVM(ctx, rg, name, true)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("virtual machine %q in resource group %q: %w", name, rg, ErrNotFound)
		}
		return nil, explain(err, p.ec(fmt.Sprintf("read virtual machine %q", name), nil))
	}
	info := &VMInfo{
		ID: deref(vm.ID), Name: deref(vm.Name), ResourceGroup: rg, Location: deref(vm.Location),
		Tags: map[string]string{}, Managed: isOurs(vm.Tags),
	}
	for k, v := range vm.Tags {
		info.Tags[k] = deref(v)
	}
	info.HostKey = info.Tags[TagHostKey]
	if pr := vm.Properties; pr != nil {
		info.ProvisioningState = deref(pr.ProvisioningState)
		info.StatusMessage = provisioningStatus(pr.InstanceView)
		if pr.HardwareProfile != nil {
			info.Size = string(deref(pr.HardwareProfile.VMSize))
		}
		if iv := pr.InstanceView; iv != nil {
			for _, st := range iv.Statuses {
				if c, ok := strings.CutPrefix(deref(st.Code), "PowerState/"); ok {
					info.PowerState = c
				}
			}
			if a := iv.VMAgent; a != nil {
				for _, st := range a.Statuses {
					if st != nil && st.DisplayStatus != nil {
						info.AgentStatus = *st.DisplayStatus
						break
					}
				}
			}
		}
		if pr.NetworkProfile != nil {
			for _, ref := range pr.NetworkProfile.NetworkInterfaces {
				if ref == nil || ref.ID == nil {
					continue
				}
				if err := p.fillAddresses(ctx, *ref.ID, info); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	return info, nil
}

func (p *Provisioner) fillAddresses(ctx context.Context, nicID string, info *VMInfo) error {
	rid, err := arm.ParseResourceID(nicID)
	if err != nil {
		return fmt.Errorf("failed to parse network interface ID %q: %w", nicID, err)
	}
	nic, err := p.nics.Get(ctx, rid.ResourceGroupName, rid.Name, nil)
	if err != nil {
		return explain(err, p.ec(fmt.Sprintf("read network interface %q", rid.Name), nil))
	}
	if nic.Properties == nil {
		return nil
	}
	for _, ipc := range nic.Properties.IPConfigurations {
		if ipc == nil || ipc.Properties == nil || ipc.Properties.PublicIPAddress == nil || ipc.Properties.PublicIPAddress.ID == nil {
			continue
		}
		pid, err := arm.ParseResourceID(*ipc.Properties.PublicIPAddress.ID)
		if err != nil {
			return fmt.Errorf("failed to parse public IP ID %q: %w", *ipc.Properties.PublicIPAddress.ID, err)
		}
		pip, err := p.pips.Get(ctx, pid.ResourceGroupName, pid.Name, nil)
		if err != nil {
			return explain(err, p.ec(fmt.Sprintf("read public IP %q", pid.Name), nil))
		}
		if pp := pip.Properties; pp != nil {
			info.PublicIP = deref(pp.IPAddress)
			if pp.DNSSettings != nil {
				info.FQDN = deref(pp.DNSSettings.Fqdn)
			}
		}
		return nil
	}
	return nil
}

// firstMessage is ARM's message of err, or its text.
func firstMessage(err error) string {
	if _, errs, ok := responseErrors(err); ok && len(errs) > 0 && errs[0].Message != "" {
		return errs[0].Message
	}
	return err.Error()
}
