package azure

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// failOn answers the first request matching method and path suffix with resp, then lets the
// fake serve the rest.
func failOn(method, suffix string, times int, resp func(*http.Request) *http.Response) (func(*http.Request, []byte) *http.Response, *atomic.Int32) {
	var n atomic.Int32
	return func(req *http.Request, _ []byte) *http.Response {
		if req.Method != method || !strings.HasSuffix(strings.ToLower(req.URL.Path), strings.ToLower(suffix)) {
			return nil
		}
		if int(n.Add(1)) > times {
			return nil
		}
		return resp(req)
	}, &n
}

func TestProvisionExplainsAzureErrors(t *testing.T) {
	t.Parallel()
	const sub = "00000000-0000-0000-0000-000000000001"
	tests := []struct {
		name       string
		method     string
		path       string
		status     int
		code       string
		message    string
		wantOp     string
		wantHint   []string
		wantVMSeen bool
		times      int // how many requests fail; 0 means 1
	}{
		{
			name: "sku not available", method: http.MethodPut, path: "/virtualMachines/az-nixos", status: 409,
			code:     "SkuNotAvailable",
			message:  "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: Standard_B2s' is currently not available in location 'westeurope'. Please try another size or deploy to a different location or different zone.",
			wantOp:   `failed to create virtual machine "az-nixos"`,
			wantHint: []string{`VM size "Standard_B2s" is not available in location "westeurope"`, "az vm list-skus --location westeurope --size B2s"},
		},
		{
			name: "quota exceeded names the family", method: http.MethodPut, path: "/virtualMachines/az-nixos", status: 409,
			code:     "QuotaExceeded",
			message:  "Operation could not be completed as it results in exceeding approved standardBSFamily Cores quota. Additional details - Deployment Model: Resource Manager, Location: westeurope, Current Limit: 4, Current Usage: 4, Additional Required: 2, (Minimum) New Limit Required: 6.",
			wantOp:   `failed to create virtual machine "az-nixos"`,
			wantHint: []string{"the standardBSFamily quota", "https://aka.ms/quotas"},
		},
		{
			name: "operation not allowed for regional quota", method: http.MethodPut, path: "/virtualMachines/az-nixos", status: 409,
			code:     "OperationNotAllowed",
			message:  "Operation could not be completed as it results in exceeding quota limits of Total Regional Cores. Maximum allowed: 4, Current in use: 4, Additional requested: 2.",
			wantOp:   `failed to create virtual machine "az-nixos"`,
			wantHint: []string{"the Total Regional Cores quota", `"westeurope"`},
		},
		{
			name: "authorization failed names role and scope", method: http.MethodGet, path: "/resourcegroups/az-nixos-rg", status: 403,
			code:     "AuthorizationFailed",
			message:  "The client '11111111-2222-3333-4444-555555555555' with object id 'abc' does not have authorization to perform action 'Microsoft.Resources/subscriptions/resourcegroups/read' over scope '/subscriptions/" + sub + "/resourcegroups/az-nixos-rg' or the scope is invalid.",
			wantOp:   `failed to read resource group "az-nixos-rg"`,
			wantHint: []string{"Microsoft.Resources/subscriptions/resourcegroups/read", "assign Contributor on /subscriptions/" + sub, "--assignee 11111111-2222-3333-4444-555555555555"},
		},
		{
			name: "security type refused, standard and trusted launch", method: http.MethodPut, path: "/virtualMachines/az-nixos", status: 400, times: 2,
			code:     "InvalidParameter",
			message:  "Use of 'Standard' as a value for securityType property is not allowed.",
			wantOp:   `failed to create virtual machine "az-nixos"`,
			wantHint: []string{"Trusted Launch with Secure Boot off", "neither was accepted"},
		},
		{
			// Microsoft Learn, "Resolve errors for request disallowed by policy": 403, the
			// policy in the message's identifiers and in the PolicyViolation additional info.
			name: "request disallowed by policy names it", method: http.MethodPut, path: "/publicIPAddresses/az-nixos-ip", status: 403,
			code:     "RequestDisallowedByPolicy",
			message:  `Resource 'az-nixos-ip' was disallowed by policy. Policy identifiers: '[{"policyAssignment":{"name":"No public IPs","id":"/subscriptions/` + sub + `/providers/Microsoft.Authorization/policyAssignments/abc"},"policyDefinition":{"name":"Deny public IP addresses","id":"/providers/Microsoft.Authorization/policyDefinitions/6c112d4e"}}]'.`,
			wantOp:   `failed to create public IP "az-nixos-ip"`,
			wantHint: []string{`assignment "No public IPs"`, `definition "Deny public IP addresses"`, `"az-nixos-rg"`},
		},
		{
			name: "resource group being deleted", method: http.MethodPut, path: "/networkSecurityGroups/az-nixos-nsg", status: 409,
			code:     "ResourceGroupBeingDeleted",
			message:  "The resource group 'az-nixos-rg' is in deprovisioning state and cannot perform this operation.",
			wantOp:   `failed to create network security group "az-nixos-nsg"`,
			wantHint: []string{`resource group "az-nixos-rg" is still being deleted`, "az group show -n az-nixos-rg"},
		},
		{
			// The message ARM sends for an API version a cloud does not have (Azure Stack Hub,
			// a sovereign cloud that lags).
			name: "no registered provider for the api version", method: http.MethodPut, path: "/virtualMachines/az-nixos", status: 400,
			code:     "NoRegisteredProviderFound",
			message:  "No registered resource provider found for location 'westeurope' and API version '2026-04-01' for type 'virtualMachines'. The supported api-versions are '2020-06-01, 2020-12-01'. The supported locations are 'westeurope'.",
			wantOp:   `failed to create virtual machine "az-nixos"`,
			wantHint: []string{"API version 2026-04-01 for virtualMachines", "2020-06-01, 2020-12-01"},
		},
		{
			name: "ssh key refused", method: http.MethodPut, path: "/virtualMachines/az-nixos", status: 400,
			code:     "InvalidParameter",
			message:  "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.",
			wantOp:   `failed to create virtual machine "az-nixos"`,
			wantHint: []string{"ssh-rsa keys of at least 2048 bits and ssh-ed25519"},
		},
		{
			name: "dns label taken", method: http.MethodPut, path: "/publicIPAddresses/az-nixos-ip", status: 400,
			code:     "DnsRecordInUse",
			message:  "DNS record az-nixos.westeurope.cloudapp.azure.com is already used by another public IP.",
			wantOp:   `failed to create public IP "az-nixos-ip"`,
			wantHint: []string{`label "az-nixos" (the VM name) is taken`, "scoped to the resource group", "choose another vm-name"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeARM()
			f.intercept, _ = failOn(tc.method, tc.path, max(tc.times, 1), func(r *http.Request) *http.Response {
				return armErrorResp(r, tc.status, tc.code, tc.message)
			})
			_, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil)
			var he *HintError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v (%T), want *HintError", err, err)
			}
			if he.Code != tc.code {
				t.Errorf("code = %q, want %q", he.Code, tc.code)
			}
			if !strings.HasPrefix(err.Error(), tc.wantOp) {
				t.Errorf("error %q does not start with %q", err, tc.wantOp)
			}
			for _, w := range tc.wantHint {
				if !strings.Contains(he.Hint, w) {
					t.Errorf("hint %q lacks %q", he.Hint, w)
				}
			}
		})
	}
}

// TestProvisionAllocationFailedKeepsVMID: the VM's long-running operation fails after the VM
// exists; the hint explains and the result still names the VM so the caller can read its
// serial log.
func TestProvisionAllocationFailedKeepsVMID(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	f.vmPolls = 1
	f.vmFailAsync = "AllocationFailed"
	res, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil)
	var he *HintError
	if !errors.As(err, &he) || he.Code != "AllocationFailed" {
		t.Fatalf("err = %v, want AllocationFailed HintError", err)
	}
	if !strings.Contains(he.Hint, `no capacity for size "Standard_B2s" in "westeurope"`) {
		t.Errorf("hint = %q", he.Hint)
	}
	if res == nil || !strings.HasSuffix(res.VMID, "/virtualMachines/az-nixos") {
		t.Errorf("result VMID = %+v, want the failed VM's ID", res)
	}
}

// TestSDKRetriesThrottlingAndServerErrors shows the SDK's retry policy at work: a 429 with
// Retry-After, and a 503, are each answered once and the call still succeeds.
func TestSDKRetriesThrottlingAndServerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		resp func(*http.Request) *http.Response
	}{
		{"429 with retry-after", func(r *http.Request) *http.Response {
			resp := armErrorResp(r, http.StatusTooManyRequests, "TooManyRequests", "Rate limit exceeded.")
			resp.Header.Set("Retry-After", "1")
			resp.Header.Set("Retry-After-Ms", "5") // preferred by azcore, keeps the test fast
			return resp
		}},
		{"503", func(r *http.Request) *http.Response {
			return armErrorResp(r, http.StatusServiceUnavailable, "ServiceUnavailable", "try again")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeARM()
			var n *atomic.Int32
			f.intercept, n = failOn(http.MethodPut, "/virtualMachines/az-nixos", 1, tc.resp)
			if _, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil); err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if got := n.Load(); got != 2 {
				t.Errorf("VM PUT attempts = %d, want 2 (one failure, one retry)", got)
			}
		})
	}
}

// TestProvisionMissingRegistration: ARM answers 409 MissingSubscriptionRegistration; the SDK's
// registration policy then registers the provider itself. When the identity may register, the
// deployment goes on; when it may not, the hint says how to register.
func TestProvisionMissingRegistration(t *testing.T) {
	t.Parallel()
	const sub = "00000000-0000-0000-0000-000000000001"
	unregistered := func(r *http.Request) *http.Response {
		return armErrorResp(r, http.StatusConflict, "MissingSubscriptionRegistration",
			"The subscription is not registered to use namespace 'Microsoft.Network'. See https://aka.ms/rps-not-found for how to register subscriptions.")
	}
	tests := []struct {
		name     string
		register func(*http.Request) *http.Response
		wantCode string
		wantHint string
	}{
		{
			name: "sdk registers the provider",
			register: func(r *http.Request) *http.Response {
				return armJSON(r, http.StatusOK, `{"namespace":"Microsoft.Network","registrationState":"Registered"}`)
			},
		},
		{
			name: "identity may not register",
			register: func(r *http.Request) *http.Response {
				return armErrorResp(r, http.StatusForbidden, "AuthorizationFailed",
					"The client 'x' with object id 'y' does not have authorization to perform action 'Microsoft.Network/register/action' over scope '/subscriptions/"+sub+"' or the scope is invalid.")
			},
			wantCode: "AuthorizationFailed",
			wantHint: "az provider register -n Microsoft.Network --subscription " + sub,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeARM()
			putFail, _ := failOn(http.MethodPut, "/publicIPAddresses/az-nixos-ip", 1, unregistered)
			f.intercept = func(r *http.Request, body []byte) *http.Response {
				if strings.Contains(strings.ToLower(r.URL.Path), "/providers/microsoft.network/register") ||
					strings.HasSuffix(strings.ToLower(r.URL.Path), "/providers/microsoft.network") {
					return tc.register(r)
				}
				return putFail(r, body)
			}
			_, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("Provision: %v", err)
				}
				return
			}
			var he *HintError
			if !errors.As(err, &he) || he.Code != tc.wantCode || !strings.Contains(he.Hint, tc.wantHint) {
				t.Fatalf("err = %v, want %s with hint containing %q", err, tc.wantCode, tc.wantHint)
			}
		})
	}
}

// TestExplainMissingSubscriptionRegistration covers the code when it reaches us unhandled (the
// SDK's registration policy gave up).
func TestExplainMissingSubscriptionRegistration(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest(http.MethodPut, "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.DevTestLab/schedules/x", nil)
	resp := armErrorResp(req, http.StatusConflict, "MissingSubscriptionRegistration",
		"The subscription is not registered to use namespace 'Microsoft.DevTestLab'. See https://aka.ms/rps-not-found for how to register subscriptions.")
	err := explain(runtime.NewResponseError(resp), explainContext{op: "create auto-shutdown schedule", subscriptionID: "s"})
	var he *HintError
	if !errors.As(err, &he) || he.Code != "MissingSubscriptionRegistration" {
		t.Fatalf("err = %v", err)
	}
	if want := "az provider register -n Microsoft.DevTestLab --subscription s"; !strings.Contains(he.Hint, want) {
		t.Errorf("hint %q lacks %q", he.Hint, want)
	}
}

func TestExplainLeavesOtherErrorsAlone(t *testing.T) {
	t.Parallel()
	err := explain(errors.New("dial tcp: timeout"), explainContext{op: `create virtual machine "x"`})
	if got, want := err.Error(), `failed to create virtual machine "x": dial tcp: timeout`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var he *HintError
	if errors.As(err, &he) {
		t.Errorf("plain error became a HintError: %+v", he)
	}
}

// TestStandardSecurityTypeRefusedFallsBackToTrustedLaunch: when Azure refuses securityType
// Standard, the VM is created with Trusted Launch and Secure Boot off (kexec still works), and
// the result says so.
func TestStandardSecurityTypeRefusedFallsBackToTrustedLaunch(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	var n *atomic.Int32
	f.intercept, n = failOn(http.MethodPut, "/virtualMachines/az-nixos", 1, func(r *http.Request) *http.Response {
		return armErrorResp(r, 400, "InvalidParameter", "Use of 'Standard' as a value for securityType property is not allowed.")
	})
	res, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 {
		t.Errorf("VM PUTs = %d, want 2", n.Load())
	}
	f.mu.Lock()
	body := string(f.bodies[KindVM])
	f.mu.Unlock()
	if !strings.Contains(body, `"securityType":"TrustedLaunch"`) || !strings.Contains(body, `"secureBootEnabled":false`) {
		t.Errorf("second VM body: %s", body)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "created with Trusted Launch and Secure Boot off") {
		t.Errorf("notes = %q", res.Notes)
	}
}
