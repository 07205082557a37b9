package azure_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
)

// emulatorProvisioner wires the package's public API to the HTTPS ARM emulator the way the
// action does for an Azure Stack Hub: discovery, client-secret credential, provisioner.
func emulatorProvisioner(t testing.TB, emu *azuretest.Emulator, more ...azure.Option) *azure.Provisioner {
	t.Helper()
	ctx := context.Background()
	rc, err := azure.ResolveCloud(ctx, azure.Cloud{Name: azure.CloudStack, ARMEndpoint: emu.URL()}, emu.HTTPClient())
	if err != nil {
		t.Fatal(err)
	}
	o := emu.Options()
	cred, method, err := azure.NewCredential(ctx, rc, azure.Credentials{ClientID: o.ClientID, TenantID: o.TenantID, ClientSecret: o.ClientSecret},
		&azure.CredentialOptions{ClientOptions: azcore.ClientOptions{Transport: emu.HTTPClient()}})
	if err != nil || method != azure.MethodClientSecret {
		t.Fatalf("NewCredential = %q, %v", method, err)
	}
	opts := rc.ClientOptions()
	opts.Transport = emu.HTTPClient()
	opts.Retry = policy.RetryOptions{RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond}
	p, err := azure.NewProvisioner(o.SubscriptionID, cred, opts,
		append([]azure.Option{azure.WithPollFrequency(5 * time.Millisecond), azure.WithHTTPClient(emu.HTTPClient())}, more...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func emulatorSpec() azure.Spec {
	return azure.Spec{
		ResourceGroup: "az-nixos-rg", Location: "uksouth", VMName: "az-nixos", Size: "Standard_B2s",
		ImageURN: "Canonical:ubuntu-24_04-lts:server:latest", AdminUser: "nixos",
		AdminKeys:     []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
		CustomData:    []byte("#cloud-config\n"),
		RunURL:        "https://github.com/o/r/actions/runs/7",
		AutoShutdown:  "22:00",
		HostKeyPublic: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey",
	}
}

// TestEmulatorLifecycle runs deploy, re-run, lookup, serial log and destroy over HTTPS with
// real tokens, long-running operations and one throttled PUT.
func TestEmulatorLifecycle(t *testing.T) {
	t.Parallel()
	emu := azuretest.New(azuretest.Options{})
	t.Cleanup(emu.Close)
	emu.InjectFault(azuretest.Throttle(1, 10*time.Millisecond, azuretest.Match{Method: "PUT", ResourceType: "Microsoft.Compute/virtualMachines"}))
	p := emulatorProvisioner(t, emu)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	res, err := p.Provision(ctx, emulatorSpec(), nil)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if res.PublicIP == "" || !strings.HasPrefix(res.FQDN, "az-nixos.") || res.VMID == "" {
		t.Errorf("result = %+v", res)
	}
	throttled := 0
	for _, r := range emu.Requests() {
		if r.Status == 429 {
			throttled++
		}
	}
	if throttled != 1 {
		t.Errorf("%d throttled requests, want 1 (retried by the SDK)", throttled)
	}
	again, err := p.Provision(ctx, emulatorSpec(), nil)
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	for _, r := range again.Resources {
		if r.Action != azure.ActionReused {
			t.Errorf("re-run: %s %s", r.Kind, r.Action)
		}
	}
	if vms := emu.VMs(); len(vms) != 1 {
		t.Errorf("emulator has %d VMs, want 1", len(vms))
	}

	info, err := p.LookupVM(ctx, "az-nixos-rg", "az-nixos")
	if err != nil {
		t.Fatalf("LookupVM: %v", err)
	}
	if !info.Managed || info.HostKey != emulatorSpec().HostKeyPublic || info.PublicIP != res.PublicIP || info.FQDN != res.FQDN {
		t.Errorf("LookupVM = %+v", info)
	}
	// The instance view's vmAgent, as ARM reports a VM whose agent runs.
	if info.AgentStatus != "Ready" {
		t.Errorf("LookupVM agent status %q, want Ready", info.AgentStatus)
	}

	log, err := p.SerialLog(ctx, "az-nixos-rg", "az-nixos", 1)
	if err != nil {
		t.Fatalf("SerialLog: %v", err)
	}
	if !strings.Contains(log, "ttyS0") {
		t.Errorf("serial log tail = %q", log)
	}

	d, err := p.Destroy(ctx, "az-nixos-rg")
	if err != nil || !d.Deleted || len(d.Resources) == 0 {
		t.Fatalf("Destroy = %+v, %v", d, err)
	}
	if ids := emu.ResourceIDs(); len(ids) != 0 {
		t.Errorf("left after destroy: %v", ids)
	}
	d, err = p.Destroy(ctx, "az-nixos-rg")
	if err != nil || d.Deleted || d.Note == "" {
		t.Errorf("second Destroy = %+v, %v", d, err)
	}
}

// BenchmarkProvisionEmulator is BenchmarkProvision over HTTPS against the emulator, whose
// long-running operations are really polled (every 5 ms here).
func BenchmarkProvisionEmulator(b *testing.B) {
	lat := azuretest.Latency{
		ResourceGroup: 20 * time.Millisecond, PublicIP: 300 * time.Millisecond, NSG: 200 * time.Millisecond,
		VNet: 400 * time.Millisecond, NIC: 200 * time.Millisecond, VM: 1500 * time.Millisecond,
	}
	critical := lat.ResourceGroup + max(lat.PublicIP, lat.NSG, lat.VNet) + lat.NIC + lat.VM
	sequential := lat.ResourceGroup + lat.PublicIP + lat.NSG + lat.VNet + lat.NIC + lat.VM
	s := emulatorSpec()
	s.AutoShutdown = ""
	var total time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		emu := azuretest.New(azuretest.Options{Latency: lat})
		p := emulatorProvisioner(b, emu)
		b.StartTimer()
		start := time.Now()
		_, err := p.Provision(context.Background(), s, nil)
		total += time.Since(start)
		n++
		b.StopTimer()
		emu.Close()
		b.StartTimer()
		if err != nil {
			b.Fatal(err)
		}
	}
	wall := total / time.Duration(n)
	ratio := float64(wall) / float64(critical)
	b.ReportMetric(float64(wall.Milliseconds()), "wall-ms")
	b.ReportMetric(float64(critical.Milliseconds()), "critical-ms")
	b.ReportMetric(ratio, "wall/critical")
	b.ReportMetric(float64(sequential)/float64(wall), "sequential/wall")
	b.ReportMetric(0, "ns/op")
	if ratio > 1.15 {
		b.Errorf("wall %v is %.3f × the critical path %v; want <= 1.15", wall, ratio, critical)
	}
}

// TestDNSLabelScopedToTheGroup (issue 14): a bare DNS label is unique per region across all of
// Azure, so another customer holding az-nixos.uksouth.cloudapp.azure.com would make the default
// deploy fail with DnsRecordInUse. The label is scoped to the resource group: the FQDN carries
// Azure's hash, comes from Azure's answer, and stays the same when the group is deployed again.
func TestDNSLabelScopedToTheGroup(t *testing.T) {
	t.Parallel()
	emu := azuretest.New(azuretest.Options{})
	t.Cleanup(emu.Close)
	emu.TakeDNSName("az-nixos.uksouth.cloudapp.azure.com") // someone else's, unscoped
	p := emulatorProvisioner(t, emu)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := emulatorSpec()
	s.AutoShutdown = ""
	res, err := p.Provision(ctx, s, nil)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if !regexp.MustCompile(`^az-nixos\.[a-z0-9]{16}\.uksouth\.cloudapp\.azure\.com$`).MatchString(res.FQDN) {
		t.Fatalf("FQDN = %q, want the label, Azure's hash and the region", res.FQDN)
	}
	first := res.FQDN

	// Destroy and deploy the same group again: the same name (ResourceGroupReuse).
	if _, err := p.Destroy(ctx, s.ResourceGroup); err != nil {
		t.Fatal(err)
	}
	if res, err = p.Provision(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	if res.FQDN != first {
		t.Errorf("FQDN after destroy and deploy = %q, want %q again", res.FQDN, first)
	}

	// Another group's public IP cannot take it; the hint says why.
	if _, err := p.Destroy(ctx, s.ResourceGroup); err != nil {
		t.Fatal(err)
	}
	emu.TakeDNSName(first)
	_, err = p.Provision(ctx, s, nil)
	var he *azure.HintError
	if !errors.As(err, &he) || he.Code != "DnsRecordInUse" || !strings.Contains(he.Hint, "scoped to the resource group") {
		t.Fatalf("err = %v, want DnsRecordInUse with the hint", err)
	}
}

// TestPreflightAgainstTheEmulator: the emulator lists its sizes and quotas and refuses a VM the
// way the compute RP does; the pre-flight reads the same and refuses first, with nothing created.
func TestPreflightAgainstTheEmulator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spec := func(rg, location, size string) azure.Spec {
		s := emulatorSpec()
		s.ResourceGroup, s.Location, s.Size, s.AutoShutdown = rg, location, size, ""
		return s
	}
	t.Run("quota used by another VM", func(t *testing.T) {
		t.Parallel()
		emu := azuretest.New(azuretest.Options{})
		t.Cleanup(emu.Close)
		emu.SetQuota("uksouth", "standardBSFamily", 6)
		p := emulatorProvisioner(t, emu)
		if _, err := p.Provision(ctx, spec("first", "uksouth", "Standard_B4ms"), nil); err != nil {
			t.Fatal(err)
		}
		before := emu.ResourceIDs()
		_, err := p.Provision(ctx, spec("second", "uksouth", "Standard_B4ms"), nil)
		var pe *azure.HintError
		if !errors.As(err, &pe) || pe.Code != "QuotaExceeded" || !strings.Contains(err.Error(), "4 of 6 vCPUs are in use and it needs 4") {
			t.Fatalf("err = %v, want the family quota refusal", err)
		}
		if after := emu.ResourceIDs(); len(after) != len(before) {
			t.Errorf("resources %d -> %d: the refusal created something", len(before), len(after))
		}
		// Another family still has room.
		if _, err := p.Provision(ctx, spec("second", "uksouth", "Standard_D2s_v5"), nil); err != nil {
			t.Errorf("a D2s_v5 next to it: %v", err)
		}
	})
	t.Run("restricted size", func(t *testing.T) {
		t.Parallel()
		emu := azuretest.New(azuretest.Options{})
		t.Cleanup(emu.Close)
		emu.RestrictSKU("Standard_B2s", "uksouth")
		p := emulatorProvisioner(t, emu)
		_, err := p.Provision(ctx, spec("rg", "uksouth", "Standard_B2s"), nil)
		var pe *azure.HintError
		if !errors.As(err, &pe) || pe.Code != "SkuNotAvailable" {
			t.Fatalf("err = %v, want SkuNotAvailable", err)
		}
		if ids := emu.ResourceIDs(); len(ids) != 0 {
			t.Errorf("left behind: %v", ids)
		}
	})
	t.Run("location azure does not have", func(t *testing.T) {
		t.Parallel()
		emu := azuretest.New(azuretest.Options{})
		t.Cleanup(emu.Close)
		p := emulatorProvisioner(t, emu)
		_, err := p.Provision(ctx, spec("rg", "marsnorth", "Standard_B2s"), nil)
		if err == nil || !strings.Contains(err.Error(), `location "marsnorth" offers no VM sizes`) || !strings.Contains(err.Error(), "az account list-locations") {
			t.Fatalf("err = %v", err)
		}
		if ids := emu.ResourceIDs(); len(ids) != 0 {
			t.Errorf("left behind: %v", ids)
		}
	})
}

// TestFailedVMIsNotReused: a VM whose create operation failed stays in provisioning state Failed
// (the emulator keeps it, as Azure does); a re-run refuses to reuse it, says why with the instance
// view's message, and keeps its ID so the caller can read its serial log.
func TestFailedVMIsNotReused(t *testing.T) {
	t.Parallel()
	emu := azuretest.New(azuretest.Options{})
	t.Cleanup(emu.Close)
	emu.InjectFault(azuretest.FailOperation("AllocationFailed", azuretest.Match{Method: "PUT", ResourceType: "Microsoft.Compute/virtualMachines"}))
	p := emulatorProvisioner(t, emu)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := emulatorSpec()
	s.AutoShutdown = ""
	if _, err := p.Provision(ctx, s, nil); err == nil {
		t.Fatal("the first create succeeded despite the fault")
	}
	emu.ResetRequests()
	res, err := p.Provision(ctx, s, nil)
	var he *azure.HintError
	if !errors.As(err, &he) || he.Code != "VMProvisioningFailed" {
		t.Fatalf("re-run: err = %v, want the failed VM refused", err)
	}
	for _, w := range []string{"creation failed (provisioning state Failed)", "AllocationFailed", "command: destroy", "cleanup-on-failure"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %v\nwant %q", err, w)
		}
	}
	if res == nil || res.VMID == "" {
		t.Errorf("result %+v: want the VM's ID for its serial log", res)
	}
	for _, r := range emu.Requests() {
		if r.Method == "PUT" {
			t.Errorf("re-run sent %s %s", r.Method, r.Path)
		}
	}
	info, err := p.LookupVM(ctx, s.ResourceGroup, s.VMName)
	if err != nil || info.ProvisioningState != "Failed" || !strings.Contains(info.StatusMessage, "AllocationFailed") {
		t.Errorf("LookupVM = %+v, %v", info, err)
	}
}

// TestSerialLogTailReadsTheEnd: the serial log grows through every boot; its tail is read from the
// end of the blob with a Range request the Blob service accepts, not from its first megabytes.
func TestSerialLogTailReadsTheEnd(t *testing.T) {
	t.Parallel()
	emu := azuretest.New(azuretest.Options{})
	t.Cleanup(emu.Close)
	p := emulatorProvisioner(t, emu)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := emulatorSpec()
	s.AutoShutdown = ""
	if _, err := p.Provision(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	log.WriteString("[    0.000000] first boot\r\n")
	for i := 0; log.Len() < 12<<20; i++ {
		fmt.Fprintf(&log, "[%10d.000000] a boot that went on for a while, line %d\r\n", i, i)
	}
	log.WriteString("[ 9999.000000] kexec_core: Starting new kernel\r\n[ 9999.500000] the last line\r\n")
	emu.SetSerialLog(s.VMName, log.String())
	emu.ResetRequests()
	got, err := p.SerialLog(ctx, s.ResourceGroup, s.VMName, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[ 9999.000000] kexec_core: Starting new kernel\r\n[ 9999.500000] the last line\r\n"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
	for _, r := range emu.Requests() {
		if strings.HasPrefix(r.Path, "/bootdiagnostics/") && r.Method == "GET" && r.Status != 206 {
			t.Errorf("GET of the blob answered %d, want 206 (a range of its end)", r.Status)
		}
	}
}

// TestAzureStackHubIsRefusedBeforeAnythingIsCreated (issue 14): an Azure Stack Hub on its newest
// API profile (2020-09-01-hybrid) offers none of the API versions the SDK sends; the AzureStack
// path reads the providers first and refuses, naming what is missing, with nothing created. An
// endpoint that offers them (the default emulator) passes.
func TestAzureStackHubIsRefusedBeforeAnythingIsCreated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		profile azuretest.APIVersions
		want    []string
	}{
		{"hub profile", azuretest.AzureStackHubProfile, []string{"Microsoft.Compute/virtualMachines 2026-04-01 (it offers 2020-06-01)",
			"Microsoft.Network/publicIPAddresses 2025-05-01 (it offers 2018-11-01)", "Microsoft.DevTestLab/schedules 2018-09-15 (the type is not offered)", "not supported"}},
		{"current versions", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			emu := azuretest.New(azuretest.Options{APIVersions: tc.profile})
			t.Cleanup(emu.Close)
			p := emulatorProvisioner(t, emu, azure.WithAPIVersionCheck())
			_, err := p.Provision(ctx, emulatorSpec(), nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Provision: %v", err)
				}
				return
			}
			var he *azure.HintError
			if !errors.As(err, &he) || he.Code != "NoRegisteredProviderFound" {
				t.Fatalf("err = %v, want the API versions refused", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant %q", err, w)
				}
			}
			if ids := emu.ResourceIDs(); len(ids) != 0 {
				t.Errorf("left behind: %v", ids)
			}
		})
	}
}
