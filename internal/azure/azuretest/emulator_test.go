package azuretest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
	"github.com/google/go-cmp/cmp"
)

func TestMetadataDiscovery(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{Audience: "https://management.local.azurestack.external/abc"})
	tests := []struct {
		name       string
		query      string
		wantStatus int
		want       *metadata
	}{
		{
			name: "azure stack hub document", query: "?api-version=2022-09-01", wantStatus: http.StatusOK,
			want: &metadata{
				GalleryEndpoint: e.URL() + "/gallery/",
				GraphEndpoint:   "https://graph.windows.net/",
				PortalEndpoint:  e.URL() + "/portal/",
				Authentication: metadataAuthen{
					LoginEndpoint: e.URL() + "/",
					Audiences:     []string{"https://management.local.azurestack.external/abc"},
				},
			},
		},
		{name: "api-version required", query: "", wantStatus: http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := e.HTTPClient().Get(e.URL() + "/metadata/endpoints" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.want == nil {
				return
			}
			var got metadata
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*tc.want, got); diff != "" {
				t.Errorf("metadata mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCACertificateTrust(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := e.WriteCACert(path); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pem, e.CACertPEM()) {
		t.Error("written CA differs from CACertPEM()")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: newTLSConfig(pool)}}
	resp, err := trusting.Get(e.URL() + "/metadata/endpoints?api-version=2022-09-01")
	if err != nil {
		t.Fatalf("client trusting the CA file failed: %v", err)
	}
	resp.Body.Close()
	// Without the CA, verification must fail: the emulator is not trusted by accident.
	_, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: newTLSConfig(x509.NewCertPool())}}).Get(e.URL() + "/metadata/endpoints")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("client without the CA: err = %v, want x509.UnknownAuthorityError", err)
	}
}

// TestCredentialFlow shows what azidentity's client-secret credential asks for against an authority that
// is not a public Entra host (DisableInstanceDiscovery, as for Azure Stack Hub), and that the secret never
// reaches the recorded requests.
func TestCredentialFlow(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	cfg := discover(t, e)
	cred, err := azidentity.NewClientSecretCredential(DefaultTenantID, DefaultClientID, DefaultClientSecret,
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            policy.ClientOptions{Cloud: cfg, Transport: e.HTTPClient()},
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatal(err)
	}
	e.ResetRequests()
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{DefaultAudience + "/.default"}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if tok.Token == "" {
		t.Fatal("empty token")
	}
	var got []string
	for _, r := range e.Requests() {
		got = append(got, r.Method+" "+r.Path)
		t.Logf("azidentity requested %s %s -> %d", r.Method, r.Path, r.Status)
		if strings.Contains(string(r.Body), DefaultClientSecret) {
			t.Errorf("recorded request %s %s contains the client secret", r.Method, r.Path)
		}
	}
	want := []string{
		"GET /" + DefaultTenantID + "/v2.0/.well-known/openid-configuration",
		"POST /" + DefaultTenantID + "/oauth2/v2.0/token",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requested paths mismatch (-want +got):\n%s", diff)
	}
}

func TestADFSCredentialFlow(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{ADFS: true})
	cfg := discover(t, e)
	if got, want := cfg.ActiveDirectoryAuthorityHost, e.URL()+"/adfs"; got != want {
		t.Fatalf("loginEndpoint = %q, want %q", got, want)
	}
	// azidentity wants the host as authority and the tenant "adfs", as internal/azure resolves it.
	cfg.ActiveDirectoryAuthorityHost = e.URL() + "/"
	cred, err := azidentity.NewClientSecretCredential("adfs", DefaultClientID, DefaultClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: policy.ClientOptions{Cloud: cfg, Transport: e.HTTPClient()}})
	if err != nil {
		t.Fatal(err)
	}
	e.ResetRequests()
	c := clientsFor(t, e, cred, cfg, nil)
	if _, err := c.groups.CreateOrUpdate(context.Background(), testGroup, armresources.ResourceGroup{Location: to.Ptr(testLocation)}, nil); err != nil {
		t.Fatalf("ARM call with an AD FS token: %v", err)
	}
	var got []string
	for _, r := range e.Requests() {
		got = append(got, r.Method+" "+r.Path)
	}
	want := []string{
		"GET /adfs/.well-known/openid-configuration",
		"POST /adfs/oauth2/token",
		"PUT /subscriptions/" + DefaultSubscriptionID + "/resourcegroups/" + testGroup,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestTokenEndpointRejects(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	tests := []struct {
		name                   string
		tenant, client, secret string
		scope                  string
		wantInError            string
	}{
		{"wrong secret", DefaultTenantID, DefaultClientID, "nope", DefaultAudience + "/.default", "AADSTS7000215"},
		{"unknown client", DefaultTenantID, "99999999-9999-4999-8999-999999999999", DefaultClientSecret, DefaultAudience + "/.default", "AADSTS700016"},
		{"unknown tenant", "99999999-9999-4999-8999-999999999999", DefaultClientID, DefaultClientSecret, DefaultAudience + "/.default", "AADSTS90002"},
		{"wrong audience", DefaultTenantID, DefaultClientID, DefaultClientSecret, "https://management.azure.com/.default", "AADSTS1002012"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cred, err := azidentity.NewClientSecretCredential(tc.tenant, tc.client, tc.secret, &azidentity.ClientSecretCredentialOptions{
				ClientOptions:            policy.ClientOptions{Cloud: e.Cloud(), Transport: e.HTTPClient()},
				DisableInstanceDiscovery: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{tc.scope}})
			if err == nil || !strings.Contains(err.Error(), tc.wantInError) {
				t.Errorf("GetToken err = %v, want it to contain %q", err, tc.wantInError)
			}
		})
	}
}

func TestARMRequiresBearerToken(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	url := e.URL() + "/subscriptions/" + DefaultSubscriptionID + "/resourcegroups?api-version=2024-11-01"
	tests := []struct {
		name, auth string
		wantStatus int
		wantCode   string
	}{
		{"missing", "", http.StatusUnauthorized, "AuthenticationFailed"},
		{"not bearer", "Basic Zm9vOmJhcg==", http.StatusUnauthorized, "AuthenticationFailedInvalidHeader"},
		{"unknown token", "Bearer forged", http.StatusUnauthorized, "InvalidAuthenticationToken"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := e.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body errorBody
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.wantStatus || body.Error.Code != tc.wantCode {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body.Error.Code, tc.wantStatus, tc.wantCode)
			}
		})
	}
	t.Run("expired token through the SDK", func(t *testing.T) {
		t.Parallel()
		e := newEmulator(t, Options{})
		c := newClients(t, e)
		ctx := context.Background()
		if _, err := c.groups.CreateOrUpdate(ctx, "rg", armresources.ResourceGroup{Location: to.Ptr(testLocation)}, nil); err != nil {
			t.Fatal(err)
		}
		e.ExpireTokens()
		_, err := c.groups.Get(ctx, "rg", nil)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusUnauthorized || re.ErrorCode != "ExpiredAuthenticationToken" {
			t.Errorf("err = %v, want 401 ExpiredAuthenticationToken", err)
		}
	})
	t.Run("other subscription", func(t *testing.T) {
		t.Parallel()
		e := newEmulator(t, Options{})
		c := newClients(t, e)
		other, err := armresources.NewResourceGroupsClient("55555555-5555-4555-8555-555555555555", mustCred(t, e), e.ClientOptions())
		if err != nil {
			t.Fatal(err)
		}
		_ = c
		_, err = other.Get(context.Background(), "rg", nil)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.ErrorCode != "SubscriptionNotFound" {
			t.Errorf("err = %v, want SubscriptionNotFound", err)
		}
	})
}

func mustCred(t testing.TB, e *Emulator) azcore.TokenCredential {
	t.Helper()
	cred, err := e.Credential()
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func TestFullGraph(t *testing.T) {
	t.Parallel()
	created := make(chan VMRecord, 1)
	e := newEmulator(t, Options{
		Latency:     Latency{PublicIP: 3e6, NSG: 2e6, VNet: 4e6, NIC: 2e6, VM: 5e6},
		OnVMCreated: func(vm VMRecord) { created <- vm },
	})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	vm := createVM(ctx, t, c, g.nic)

	if got := *vm.Properties.ProvisioningState; got != "Succeeded" {
		t.Errorf("VM provisioningState = %q, want Succeeded", got)
	}
	if vm.Properties.OSProfile.CustomData != nil {
		t.Error("GET of a VM returned customData; Azure never does")
	}
	rec := <-created
	wantRec := VMRecord{
		ID:                vmIDFor(testVM),
		Name:              testVM,
		ResourceGroup:     testGroup,
		Location:          testLocation,
		CustomData:        []byte(testCustomData),
		AdminUsername:     "nixos",
		Tags:              map[string]string{"managed-by": "nixos-cloud-deploy", "vm-name": testVM},
		PublicIPs:         []string{"10.200.0.4"},
		FQDNs:             []string{"az-nixos.westeurope.cloudapp.azure.com"},
		PrivateIPs:        []string{"10.0.0.4"},
		ProvisioningState: "Creating",
	}
	if diff := cmp.Diff(wantRec, rec, cmpIgnoreRequest); diff != "" {
		t.Errorf("OnVMCreated record mismatch (-want +got):\n%s", diff)
	}
	var sent map[string]any
	if err := json.Unmarshal(rec.Request, &sent); err != nil {
		t.Fatalf("VMRecord.Request is not JSON: %v", err)
	}
	if got := str(sent, "properties", "osProfile", "customData"); got == "" {
		t.Error("VMRecord.Request lost osProfile.customData")
	}
	if got, _ := mapAt(sent, "properties", "securityProfile", "uefiSettings")["secureBootEnabled"].(bool); got {
		t.Error("VMRecord.Request: secureBootEnabled = true, want false as sent")
	}

	pip, err := c.pips.Get(ctx, testGroup, testVM+"-ip", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := *pip.Properties.IPAddress; got != "10.200.0.4" {
		t.Errorf("public IP = %q, want 10.200.0.4", got)
	}
	if got := *pip.Properties.DNSSettings.Fqdn; got != "az-nixos.westeurope.cloudapp.azure.com" {
		t.Errorf("fqdn = %q", got)
	}
	sub, err := c.subnets.Get(ctx, testGroup, testVM+"-vnet", "default", nil)
	if err != nil {
		t.Fatalf("subnet GET: %v", err)
	}
	if *sub.ID != g.subnet || *sub.Properties.ProvisioningState != "Succeeded" {
		t.Errorf("subnet = %s %s", *sub.ID, *sub.Properties.ProvisioningState)
	}

	withView, err := c.vms.Get(ctx, testGroup, testVM, &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesInstanceView)})
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, s := range withView.Properties.InstanceView.Statuses {
		codes = append(codes, *s.Code)
	}
	if diff := cmp.Diff([]string{"ProvisioningState/succeeded", "PowerState/running"}, codes); diff != "" {
		t.Errorf("instance view statuses (-want +got):\n%s", diff)
	}
	iv, err := c.vms.InstanceView(ctx, testGroup, testVM, nil)
	if err != nil || len(iv.Statuses) != 2 {
		t.Errorf("InstanceView = %v, %v", iv.Statuses, err)
	}

	// Auto-shutdown schedule through the generic resources client, as there is no DevTestLab SDK here.
	schedID := "/subscriptions/" + DefaultSubscriptionID + "/resourceGroups/" + testGroup + "/providers/Microsoft.DevTestLab/schedules/shutdown-computevm-" + testVM
	sp, err := c.generic.BeginCreateOrUpdateByID(ctx, schedID, "2018-09-15", armresources.GenericResource{
		Location: to.Ptr(testLocation),
		Properties: map[string]any{
			"status": "Enabled", "taskType": "ComputeVmShutdownTask", "dailyRecurrence": map[string]any{"time": "2200"},
			"timeZoneId": "UTC", "targetResourceId": *vm.ID,
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(ctx, poll); err != nil {
		t.Fatalf("schedule: %v", err)
	}

	wantIDs := []string{
		"/subscriptions/" + DefaultSubscriptionID + "/resourceGroups/" + testGroup,
		"/subscriptions/" + DefaultSubscriptionID + "/resourceGroups/" + testGroup + "/providers/Microsoft.Compute/disks/" + *vm.Properties.StorageProfile.OSDisk.Name,
		vmIDFor(testVM),
		schedID,
		g.nic, g.nsg, g.pip, g.vnet,
	}
	slices.SortFunc(wantIDs, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	if diff := cmp.Diff(wantIDs, e.ResourceIDs()); diff != "" {
		t.Errorf("stored resources (-want +got):\n%s", diff)
	}

	// Every network and compute PUT was a long-running operation polled through Azure-AsyncOperation.
	var polls int
	for _, r := range e.Requests() {
		if r.Method == http.MethodGet && strings.Contains(r.Path, "/locations/westeurope/operations/") {
			polls++
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("recorded %s %s kept its Authorization header", r.Method, r.Path)
		}
	}
	if polls < 5 {
		t.Errorf("saw %d operation polls, want at least one per network/compute PUT (5)", polls)
	}
}

var cmpIgnoreRequest = cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Request" }, cmp.Ignore())

func vmIDFor(name string) string {
	return "/subscriptions/" + DefaultSubscriptionID + "/resourceGroups/" + testGroup + "/providers/Microsoft.Compute/virtualMachines/" + name
}

// TestLongRunningOperation follows one VM creation step by step: 201 with Azure-AsyncOperation, InProgress
// while the VM "boots" (the hook blocks), then Succeeded.
func TestLongRunningOperation(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEmulator(t, Options{OnVMCreated: func(VMRecord) { <-release }})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	p, err := c.vms.BeginCreateOrUpdate(ctx, testGroup, testVM, vmParams(g.nic, testCustomData), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	var st operationStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("status body %q: %v", body, err)
	}
	if st.Status != statusInProgress || p.Done() {
		t.Errorf("while booting: status %q, done %v; want InProgress, false", st.Status, p.Done())
	}
	if !strings.Contains(resp.Request.URL.Path, "/providers/Microsoft.Compute/locations/westeurope/operations/") {
		t.Errorf("polled %s, want the Azure-AsyncOperation URL", resp.Request.URL.Path)
	}
	vm, err := c.vms.Get(ctx, testGroup, testVM, nil)
	if err != nil || *vm.Properties.ProvisioningState != "Creating" {
		t.Errorf("GET while creating: %v %v, want Creating", vm.Properties, err)
	}
	close(release)
	res, err := p.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	if got := *res.Properties.ProvisioningState; got != "Succeeded" {
		t.Errorf("final provisioningState = %q", got)
	}
	var first *Request
	for _, r := range e.Requests() {
		if r.Method == http.MethodPut && strings.HasSuffix(r.Path, "/virtualMachines/"+testVM) {
			first = &r
			break
		}
	}
	if first == nil || first.Status != http.StatusCreated {
		t.Errorf("VM PUT answered %v, want 201", first)
	}
}

func TestRetriedFaults(t *testing.T) {
	t.Parallel()
	rgPut := Match{Method: http.MethodPut, ResourceType: "Microsoft.Resources/resourceGroups"}
	tests := []struct {
		name  string
		fault Fault
		want  []int
	}{
		{"429 with Retry-After", Throttle(2, 3e6, rgPut), []int{429, 429, 201}},
		{"500", ServerError(1, rgPut), []int{500, 201}},
		{"503 by code", Fault{Match: rgPut, Code: "ServiceUnavailable", RetryAfter: 1e6}, []int{503, 201}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEmulator(t, Options{})
			c := newClients(t, e)
			e.InjectFault(tc.fault)
			if _, err := c.groups.CreateOrUpdate(context.Background(), testGroup, armresources.ResourceGroup{Location: to.Ptr(testLocation)}, nil); err != nil {
				t.Fatalf("the SDK's retry policy should have retried: %v", err)
			}
			var got []int
			for _, r := range e.Requests() {
				if r.Method == http.MethodPut {
					got = append(got, r.Status)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("PUT statuses (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("Retry-After headers", func(t *testing.T) {
		t.Parallel()
		e := newEmulator(t, Options{})
		e.InjectFault(Throttle(1, 1500e6, Match{}))
		req, _ := http.NewRequest(http.MethodGet, e.URL()+"/subscriptions/"+DefaultSubscriptionID+"/resourcegroups?api-version=1", nil)
		tok, _ := mustCred(t, e).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{DefaultAudience + "/.default"}})
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := e.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := []string{resp.Status, resp.Header.Get("Retry-After"), resp.Header.Get("retry-after-ms")}
		if diff := cmp.Diff([]string{"429 Too Many Requests", "2", "1500"}, got); diff != "" {
			t.Errorf("throttled response (-want +got):\n%s", diff)
		}
	})
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	vmPut := Match{Method: http.MethodPut, ResourceType: "Microsoft.Compute/virtualMachines"}
	tests := []struct {
		name        string
		fault       Fault
		wantStatus  int
		wantCode    string
		wantMessage string
		wantState   string // provisioningState of the VM afterwards, "" when it must not exist
	}{
		{"AllocationFailed ends the operation", FailOperation("AllocationFailed", vmPut), http.StatusOK, "AllocationFailed", "sufficient capacity", "Failed"},
		{"OSProvisioningTimedOut ends the operation", FailOperation("OSProvisioningTimedOut", vmPut), http.StatusOK, "OSProvisioningTimedOut", "az-nixos", "Failed"},
		{"SkuNotAvailable", Reject("SkuNotAvailable", vmPut), http.StatusConflict, "SkuNotAvailable", "Standard_D2s_v5", ""},
		{"QuotaExceeded", Reject("QuotaExceeded", vmPut), http.StatusConflict, "QuotaExceeded", "Location: westeurope", ""},
		{"AuthorizationFailed", Reject("AuthorizationFailed", vmPut), http.StatusForbidden, "AuthorizationFailed", "Microsoft.Compute/virtualMachines/write", ""},
		{"InvalidParameter", Reject("InvalidParameter", vmPut), http.StatusBadRequest, "InvalidParameter", "securityType", ""},
		{"AllocationFailed at once", Reject("AllocationFailed", vmPut), http.StatusConflict, "AllocationFailed", "capacity for the requested VM size in this region. Read", ""},
		{"custom message", Fault{Match: vmPut, Code: "Whatever", Status: 418, Message: "teapot"}, 418, "Whatever", "teapot", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hooked atomic.Bool
			e := newEmulator(t, Options{OnVMCreated: func(VMRecord) { hooked.Store(true) }})
			c := newClients(t, e)
			ctx := context.Background()
			g := createNetwork(ctx, t, c)
			e.InjectFault(tc.fault)
			p, err := c.vms.BeginCreateOrUpdate(ctx, testGroup, testVM, vmParams(g.nic, testCustomData), nil)
			if err == nil {
				_, err = p.PollUntilDone(ctx, poll)
			}
			var re *azcore.ResponseError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want *azcore.ResponseError", err)
			}
			if strings.Contains(err.Error(), "%!") {
				t.Errorf("badly formatted message:\n%v", err)
			}
			if re.ErrorCode != tc.wantCode || re.StatusCode != tc.wantStatus || !strings.Contains(err.Error(), tc.wantMessage) {
				t.Errorf("got %d %q, want %d %q with %q in:\n%v", re.StatusCode, re.ErrorCode, tc.wantStatus, tc.wantCode, tc.wantMessage, err)
			}
			vm, gerr := c.vms.Get(ctx, testGroup, testVM, &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesInstanceView)})
			switch {
			case tc.wantState == "" && gerr == nil:
				t.Error("a rejected VM exists")
			case tc.wantState != "" && gerr != nil:
				t.Errorf("failed VM: %v", gerr)
			case tc.wantState != "":
				if got := *vm.Properties.ProvisioningState; got != tc.wantState {
					t.Errorf("provisioningState = %q, want %q", got, tc.wantState)
				}
				if got := *vm.Properties.InstanceView.Statuses[0].Code; got != "ProvisioningState/failed/"+tc.wantCode {
					t.Errorf("instance view status = %q", got)
				}
			}
			if hooked.Load() {
				t.Error("OnVMCreated fired for a VM that was not created")
			}
		})
	}
}

func TestBootDiagnostics(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{SerialLog: func(vm VMRecord) string { return "boot log of " + vm.Name }})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	createVM(ctx, t, c, g.nic)
	res, err := c.vms.RetrieveBootDiagnosticsData(ctx, testGroup, testVM, &armcompute.VirtualMachinesClientRetrieveBootDiagnosticsDataOptions{SasURIExpirationTimeInMinutes: to.Ptr[int32](5)})
	if err != nil {
		t.Fatal(err)
	}
	sas := *res.SerialConsoleLogBlobURI
	tests := []struct {
		name       string
		url        string
		auth       string
		wantStatus int
		wantBody   string
	}{
		{"anonymous SAS GET", sas, "", http.StatusOK, "boot log of az-nixos"},
		{"bearer token refused", sas, "Bearer x", http.StatusBadRequest, "InvalidAuthenticationInfo"},
		{"forged signature", strings.Replace(sas, "sig=", "sig=00", 1), "", http.StatusForbidden, "AuthenticationFailed"},
		{"screenshot", *res.ConsoleScreenshotBlobURI, "", http.StatusOK, "BM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := e.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
	t.Run("SetSerialLog overrides", func(t *testing.T) {
		e.SetSerialLog(testVM, "kexec: Permission denied\n")
		resp, err := e.HTTPClient().Get(sas)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "kexec: Permission denied\n" {
			t.Errorf("body = %q", body)
		}
	})
}

func TestRunCommand(t *testing.T) {
	t.Parallel()
	var got RunCommand
	e := newEmulator(t, Options{RunCommand: func(_ context.Context, cmd RunCommand) RunCommandResult {
		got = cmd
		return RunCommandResult{Stdout: "/dev/disk/by-id/nvme-root\n"}
	}})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	createVM(ctx, t, c, g.nic)
	p, err := c.vms.BeginRunCommand(ctx, testGroup, testVM, armcompute.RunCommandInput{
		CommandID:  to.Ptr("RunShellScript"),
		Script:     []*string{to.Ptr("findmnt -no SOURCE /")},
		Parameters: []*armcompute.RunCommandInputParameter{{Name: to.Ptr("x"), Value: to.Ptr("1")}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Value) != 1 || !strings.Contains(*res.Value[0].Message, "[stdout]\n/dev/disk/by-id/nvme-root\n") {
		t.Errorf("run command result = %+v", res.Value)
	}
	if diff := cmp.Diff(RunCommand{CommandID: "RunShellScript", Script: []string{"findmnt -no SOURCE /"}, Parameters: map[string]string{"x": "1"}},
		got, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "VM" }, cmp.Ignore())); diff != "" {
		t.Errorf("hook input (-want +got):\n%s", diff)
	}
	if got.VM.Name != testVM {
		t.Errorf("hook VM = %q", got.VM.Name)
	}
}

func TestResourceGroupDeleteCascades(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{Latency: Latency{ResourceGroupDelete: 2e6}})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	createVM(ctx, t, c, g.nic)
	if _, err := c.groups.CreateOrUpdate(ctx, "other", armresources.ResourceGroup{Location: to.Ptr(testLocation)}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := c.groups.BeginDelete(ctx, testGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, poll); err != nil {
		t.Fatalf("delete: %v", err)
	}
	want := []string{"/subscriptions/" + DefaultSubscriptionID + "/resourceGroups/other"}
	if diff := cmp.Diff(want, e.ResourceIDs()); diff != "" {
		t.Errorf("left after delete (-want +got):\n%s", diff)
	}
	ex, err := c.groups.CheckExistence(ctx, testGroup, nil)
	if err != nil || ex.Success {
		t.Errorf("CheckExistence = %v, %v; want false", ex.Success, err)
	}
	_, err = c.pips.Get(ctx, testGroup, testVM+"-ip", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "ResourceGroupNotFound" {
		t.Errorf("GET in deleted group: %v, want 404 ResourceGroupNotFound", err)
	}
	_, err = c.groups.BeginDelete(ctx, testGroup, nil)
	if !errors.As(err, &re) || re.ErrorCode != "ResourceGroupNotFound" {
		t.Errorf("second delete: %v, want ResourceGroupNotFound", err)
	}
	var sawLocation bool
	for _, r := range e.Requests() {
		if strings.Contains(r.Path, "/operationResults/") {
			sawLocation = true
		}
	}
	if !sawLocation {
		t.Error("resource group delete was not polled through its Location header")
	}
}

func TestConsistencyRules(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	createVM(ctx, t, c, g.nic)
	codeOf := func(err error) string {
		var re *azcore.ResponseError
		if errors.As(err, &re) {
			return re.ErrorCode
		}
		return ""
	}
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"same custom data converges", func() error {
			p, err := c.vms.BeginCreateOrUpdate(ctx, testGroup, testVM, vmParams(g.nic, testCustomData), nil)
			if err == nil {
				_, err = p.PollUntilDone(ctx, poll)
			}
			return err
		}, ""},
		{"changed custom data", func() error {
			_, err := c.vms.BeginCreateOrUpdate(ctx, testGroup, testVM, vmParams(g.nic, "#cloud-config\n"), nil)
			return err
		}, "PropertyChangeNotAllowed"},
		{"NIC in use", func() error {
			_, err := c.nics.BeginDelete(ctx, testGroup, testVM+"-nic", nil)
			return err
		}, "NicInUse"},
		{"subnet in use", func() error {
			_, err := c.subnets.BeginDelete(ctx, testGroup, testVM+"-vnet", "default", nil)
			return err
		}, "InUseSubnetCannotBeDeleted"},
		{"VNet in use", func() error {
			_, err := c.vnets.BeginDelete(ctx, testGroup, testVM+"-vnet", nil)
			return err
		}, "InUseSubnetCannotBeDeleted"},
		{"public IP in use", func() error {
			_, err := c.pips.BeginDelete(ctx, testGroup, testVM+"-ip", nil)
			return err
		}, "PublicIPAddressCannotBeDeleted"},
		{"group location change", func() error {
			_, err := c.groups.CreateOrUpdate(ctx, testGroup, armresources.ResourceGroup{Location: to.Ptr("eastus")}, nil)
			return err
		}, "InvalidResourceGroupLocation"},
		{"DNS label taken", func() error {
			_, err := c.pips.BeginCreateOrUpdate(ctx, testGroup, "second-ip", pipParams(testVM), nil)
			return err
		}, "DnsRecordInUse"},
		{"missing group", func() error {
			_, err := c.pips.BeginCreateOrUpdate(ctx, "nope", "ip", pipParams("x"), nil)
			return err
		}, "ResourceGroupNotFound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := codeOf(tc.do()); got != tc.want {
				t.Errorf("error code = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestVMDeleteTakesNICAndDisk(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	createVM(ctx, t, c, g.nic)
	p, err := c.vms.BeginDelete(ctx, testGroup, testVM, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	want := []string{"/subscriptions/" + DefaultSubscriptionID + "/resourceGroups/" + testGroup, g.nsg, g.pip, g.vnet}
	if diff := cmp.Diff(want, e.ResourceIDs()); diff != "" {
		t.Errorf("left after VM delete (-want +got):\n%s", diff)
	}
	// The public IP is free again, so it can go too.
	pp, err := c.pips.BeginDelete(ctx, testGroup, testVM+"-ip", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pp.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
}

func TestNICNeedsProvisionedReferences(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	// A public IP whose operation does not end while the test looks.
	e.SetLatency(Latency{PublicIP: 1 << 40})
	if _, err := c.pips.BeginCreateOrUpdate(ctx, testGroup, "slow-ip", pipParams("slow"), nil); err != nil {
		t.Fatal(err)
	}
	slowID := strings.Replace(g.pip, testVM+"-ip", "slow-ip", 1)
	for _, tc := range []struct{ name, pip, want string }{
		{"missing", strings.Replace(g.pip, testVM+"-ip", "missing-ip", 1), "InvalidResourceReference"},
		{"still updating", slowID, "ReferencedResourceNotProvisioned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.nics.BeginCreateOrUpdate(ctx, testGroup, "nic2", nicParams(g.subnet, tc.pip), nil)
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.ErrorCode != tc.want {
				t.Errorf("err = %v, want %s", err, tc.want)
			}
		})
	}
}

// TestProviderRegistration: on MissingSubscriptionRegistration the SDK registers the namespace itself and
// retries; the emulator answers the register and provider GET calls it makes.
func TestProviderRegistration(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	c := newClients(t, e)
	ctx := context.Background()
	g := createNetwork(ctx, t, c)
	e.InjectFault(Reject("MissingSubscriptionRegistration", Match{Method: http.MethodPut, ResourceType: "Microsoft.Compute/virtualMachines"}))
	createVM(ctx, t, c, g.nic)
	var got []string
	for _, r := range e.Requests() {
		if strings.Contains(r.Path, "/providers/Microsoft.Compute") && !strings.Contains(r.Path, "/resourceGroups/") {
			if !strings.Contains(r.Path, "/locations/") {
				got = append(got, r.Method+" "+strings.TrimPrefix(r.Path, "/subscriptions/"+DefaultSubscriptionID))
			}
		}
	}
	want := []string{"POST /providers/Microsoft.Compute/register", "GET /providers/Microsoft.Compute"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("registration calls (-want +got):\n%s", diff)
	}
}
