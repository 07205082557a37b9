package azuretest

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Match selects ARM requests (paths under /subscriptions, operation polls included). Empty fields match
// anything; all set fields must match.
type Match struct {
	// Method is the HTTP method, e.g. "PUT".
	Method string
	// ResourceType is the type of the addressed resource, case-insensitive, e.g.
	// "Microsoft.Compute/virtualMachines", "Microsoft.Network/virtualNetworks/subnets" or
	// "Microsoft.Resources/resourceGroups". Operation status polls have type "operations".
	ResourceType string
	// Name is the name of the addressed resource (the last name in its ID), case-insensitive.
	Name string
	// Action is the trailing action of a POST, e.g. "runCommand" or "retrieveBootDiagnosticsData".
	Action string
	// Func, when set, must also return true.
	Func func(r *http.Request) bool
}

func (m Match) matches(r *http.Request, t target) bool {
	return (m.Method == "" || strings.EqualFold(m.Method, r.Method)) &&
		(m.ResourceType == "" || strings.EqualFold(m.ResourceType, t.resourceType())) &&
		(m.Name == "" || strings.EqualFold(m.Name, t.name())) &&
		(m.Action == "" || strings.EqualFold(m.Action, t.action)) &&
		(m.Func == nil || m.Func(r))
}

// Fault answers the next Times requests that Match selects with an error.
//
// With Async false, the request is answered at once with Status and an ARM error body (429 and 503 also
// carry Retry-After). With Async true the request is accepted as usual and the long-running operation it
// starts ends Failed with Code, as AllocationFailed does on Azure; such a fault is only consumed by
// requests that start an operation.
type Fault struct {
	Match Match
	// Times is how many matching requests fail; 0 means 1, a negative value means every one.
	Times int
	// Status is the HTTP status of a synchronous fault; 0 takes it from the table of known codes
	// (SkuNotAvailable 409, AuthorizationFailed 403, ...), or 400.
	Status int
	// Code is the ARM error code; Message defaults to a realistic message for known codes.
	Code, Message string
	// RetryAfter is sent as Retry-After (seconds, rounded up) and retry-after-ms.
	RetryAfter time.Duration
	// Async makes the fault an operation failure instead of an error response.
	Async bool
}

// Throttle answers the next n matching requests with 429 TooManyRequests and Retry-After.
func Throttle(n int, retryAfter time.Duration, m Match) Fault {
	return Fault{Match: m, Times: n, Status: http.StatusTooManyRequests, Code: "TooManyRequests", RetryAfter: retryAfter}
}

// ServerError answers the next n matching requests with 500 InternalServerError.
func ServerError(n int, m Match) Fault {
	return Fault{Match: m, Times: n, Status: http.StatusInternalServerError, Code: "InternalServerError"}
}

// Reject answers the next matching request at once with the ARM error code (status from the table of
// known codes), e.g. Reject("SkuNotAvailable", Match{ResourceType: "Microsoft.Compute/virtualMachines"}).
func Reject(code string, m Match) Fault {
	return Fault{Match: m, Times: 1, Code: code}
}

// FailOperation lets the next matching request start its operation, which then ends Failed with code,
// e.g. FailOperation("AllocationFailed", Match{Method: "PUT", ResourceType: "Microsoft.Compute/virtualMachines"}).
func FailOperation(code string, m Match) Fault {
	return Fault{Match: m, Times: 1, Code: code, Async: true}
}

// known error codes: HTTP status of the synchronous answer and a message in the words Azure uses.
var knownCodes = map[string]struct {
	status int
	msg    string
}{
	"TooManyRequests":     {429, "The request is being throttled as the limit has been reached for operation type - Write. For more information, see - https://aka.ms/srpthrottlinglimits"},
	"InternalServerError": {500, "An internal server error occurred. Please try again later."},
	"ServiceUnavailable":  {503, "The service is currently unavailable. Please try again later."},
	"SkuNotAvailable": {409, "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: %[1]s' is currently not available in location '%[2]s'. " +
		"Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details."},
	"QuotaExceeded": {409, "Operation could not be completed as it results in exceeding approved Total Regional Cores quota. Additional details - Deployment Model: Resource Manager, " +
		"Location: %[2]s, Current Limit: 4, Current Usage: 4, Additional Required: 2, (Minimum) New Limit Required: 6. Setup Alerts when Quota reaches threshold. " +
		"Learn more at https://aka.ms/quotamonitoringalerting . Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView"},
	"OperationNotAllowed": {409, "Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota. Additional details - Deployment Model: Resource Manager, " +
		"Location: %[2]s, Current Limit: 0, Current Usage: 0, Additional Required: 2, (Minimum) New Limit Required: 2."},
	"AuthorizationFailed": {403, "The client '%[3]s' with object id '%[3]s' does not have authorization to perform action '%[4]s' over scope '%[5]s' or the scope is invalid. " +
		"If access was recently granted, please refresh your credentials."},
	"MissingSubscriptionRegistration": {409, "The subscription is not registered to use namespace '%[6]s'. See https://aka.ms/rps-not-found for how to register subscriptions."},
	"InvalidParameter":                {400, "The value of parameter securityProfile.securityType is invalid."},
	"DnsRecordInUse":                  {400, "DNS record %[7]s.%[2]s.cloudapp.azure.com is already used by another public IP."},
	"AllocationFailed": {409, "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. " +
		"Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"},
	"ZonalAllocationFailed":    {409, "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone."},
	"OSProvisioningTimedOut":   {409, "OS Provisioning for VM '%[7]s' did not finish in the allotted time. The VM may still finish provisioning successfully."},
	"ResourceGroupNotFound":    {404, "Resource group '%[7]s' could not be found."},
	"PropertyChangeNotAllowed": {409, "Changing property 'customData' is not allowed."},
	// Microsoft Learn, "Resolve errors for request disallowed by policy".
	"RequestDisallowedByPolicy": {403, "Resource '%[7]s' was disallowed by policy. Policy identifiers: '[{\"policyAssignment\":{\"name\":\"Allowed locations\",\"id\":\"/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Authorization/policyAssignments/allowed-locations\"},\"policyDefinition\":{\"name\":\"Allowed locations\",\"id\":\"/providers/Microsoft.Authorization/policyDefinitions/e56962a6-4747-49cd-b67b-bf8b01975c4c\"}}]'."},
	"ResourceGroupBeingDeleted": {409, "The resource group is in deprovisioning state and cannot perform this operation."},
	// The answer for an api-version the cloud does not have (Azure Stack Hub, a sovereign cloud).
	"NoRegisteredProviderFound": {400, "No registered resource provider found for location '%[2]s' and API version '%[8]s' for type '%[9]s'. The supported api-versions are '2020-06-01, 2020-12-01'. The supported locations are '%[2]s'."},
	// One Run Command at a time per VM (Azure/azure-cli#32305).
	"Conflict": {409, "Run command extension execution is in progress. Please wait for completion before invoking a run command."},
}

type faultState struct {
	f    Fault
	left int // < 0: unlimited
}

// InjectFault adds a fault. Faults are checked in the order they were added.
func (e *Emulator) InjectFault(f Fault) {
	left := f.Times
	if left == 0 {
		left = 1
	}
	e.mu.Lock()
	e.faults = append(e.faults, &faultState{f: f, left: left})
	e.mu.Unlock()
}

// ClearFaults removes every fault not yet used up.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	e.faults = nil
	e.mu.Unlock()
}

// takeFault consumes and returns the first fault of the given kind matching the request, or nil.
func (e *Emulator) takeFault(r *http.Request, t target, async bool) *Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, fs := range e.faults {
		if fs.f.Async != async || !fs.f.Match.matches(r, t) {
			continue
		}
		if fs.left > 0 {
			fs.left--
			if fs.left == 0 {
				e.faults = append(e.faults[:i:i], e.faults[i+1:]...)
			}
		}
		f := fs.f
		return &f
	}
	return nil
}

// armError renders the fault's code and message for the request.
func (f *Fault) armError(e *Emulator, c *call, location string) (int, armError) {
	r, t := c.r, c.t
	status, msg := f.Status, f.Message
	if k, ok := knownCodes[f.Code]; ok {
		if status == 0 {
			status = k.status
		}
		if msg == "" {
			msg = k.msg
			if strings.Contains(msg, "%[") {
				msg = fmt.Sprintf(msg, c.str("properties", "hardwareProfile", "vmSize"), location, e.opts.ClientID, permission(r, t), t.id(), t.ns, t.name(),
					r.URL.Query().Get("api-version"), strings.Join(t.types, "/"))
			}
		}
	}
	if status == 0 {
		status = http.StatusBadRequest
	}
	if msg == "" {
		msg = fmt.Sprintf("Injected fault %s.", f.Code)
	}
	return status, armError{Code: f.Code, Message: msg}
}

func (f *Fault) writeHeaders(w http.ResponseWriter) {
	if f.RetryAfter <= 0 {
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
	w.Header().Set("retry-after-ms", strconv.FormatInt(f.RetryAfter.Milliseconds(), 10))
}

// permission is the RBAC action a request needs, for AuthorizationFailed messages.
func permission(r *http.Request, t target) string {
	typ := t.resourceType()
	if t.kind == kindResourceGroup {
		typ = "Microsoft.Resources/subscriptions/resourcegroups"
	}
	switch {
	case t.action != "" && r.Method == http.MethodPost:
		return typ + "/" + t.action + "/action"
	case r.Method == http.MethodPut || r.Method == http.MethodPatch:
		return typ + "/write"
	case r.Method == http.MethodDelete:
		return typ + "/delete"
	}
	return typ + "/read"
}
