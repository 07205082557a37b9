package azure

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// HintError is an error with advice the user can act on. Code is the ARM error code when the
// error came from Azure ("SkuNotAvailable", "AuthorizationFailed", ...), else "".
type HintError struct {
	Err  error
	Code string
	Hint string
}

func (e *HintError) Error() string {
	if e.Hint == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + "\nhint: " + e.Hint
}

func (e *HintError) Unwrap() error { return e.Err }

// armFailure is an ARM error as users read it: the operation, Azure's code
// and message.
type armFailure struct {
	op, code, message string
	err               error
}

func (e *armFailure) Error() string {
	msg := fmt.Sprintf("failed to %s: %s", e.op, e.code)
	if e.message != "" {
		msg += ": " + e.message
	}
	return msg
}

func (e *armFailure) Unwrap() error { return e.err }

// ForeignResourceError reports a resource of the wanted name that this tool did not create.
// It is never modified.
type ForeignResourceError struct {
	Kind, Name, ID string
}

func (e *ForeignResourceError) Error() string {
	return fmt.Sprintf("%s %q exists but is not tagged %s=%s, so it was not created by nixos-cloud-deploy and will not be touched: choose another name, or tag it yourself if it really is yours (ID %s)",
		e.Kind, e.Name, TagManagedBy, ManagedByValue, e.ID)
}

// armError is one node of an ARM error body ({"error": {...}}, also inside failed LRO status bodies).
type armError struct {
	Code           string     `json:"code"`
	Message        string     `json:"message"`
	Target         string     `json:"target"`
	Details        []armError `json:"details"`
	AdditionalInfo []struct {
		Type string         `json:"type"`
		Info map[string]any `json:"info"`
	} `json:"additionalInfo"`
}

// flatten returns e and its details, depth first.
func (e armError) flatten() []armError {
	out := []armError{e}
	for _, d := range e.Details {
		out = append(out, d.flatten()...)
	}
	return out
}

// responseErrors extracts the ARM error tree from an SDK error; ok is false when err did not come
// from ARM.
func responseErrors(err error) (status int, errs []armError, ok bool) {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return 0, nil, false
	}
	top := armError{Code: re.ErrorCode}
	if re.RawResponse != nil {
		if body, perr := runtime.Payload(re.RawResponse); perr == nil && len(body) > 0 {
			var env struct {
				Error *armError `json:"error"`
			}
			if json.Unmarshal(body, &env) == nil && env.Error != nil {
				top = *env.Error
				if top.Code == "" {
					top.Code = re.ErrorCode
				}
			}
		}
	}
	return re.StatusCode, top.flatten(), true
}

// explainContext is what a hint may mention.
type explainContext struct {
	op             string // "create virtual machine \"x\""
	subscriptionID string
	resourceGroup  string
	location       string
	size           string
	vmName         string
	clientID       string
}

var (
	reQuotaFamily = regexp.MustCompile(`(?i)approved\s+(\S+)\s+Cores quota`)
	reQuotaOther  = regexp.MustCompile(`(?i)exceeding quota limits of\s+([^.]+?)\.`)
	reNamespace   = regexp.MustCompile(`(?i)namespace\s+'([^']+)'`)
	reAuthAction  = regexp.MustCompile(`(?i)perform action\s+'([^']+)'`)
	reAuthScope   = regexp.MustCompile(`(?i)over scope\s+'([^']+)'`)
	rePolicyIDs   = regexp.MustCompile(`Policy identifiers: '(\[.*\])'`)
	reNoProvider  = regexp.MustCompile(`(?i)API version '([^']+)' for type '([^']+)'`)
	reSupported   = regexp.MustCompile(`(?i)supported api-versions are '([^']+)'`)
)

// explain wraps an SDK error with "failed to <op>" and, when the ARM error code is one users
// hit, the fix. Errors not from ARM are wrapped unchanged.
func explain(err error, ec explainContext) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("failed to %s: %w", ec.op, err)
	status, errs, ok := responseErrors(err)
	if !ok {
		return wrapped
	}
	if len(errs) > 0 && errs[0].Code != "" {
		// Lead with what Azure said, not with the request line the SDK's
		// error starts with; the SDK error stays reachable through Unwrap.
		wrapped = &armFailure{op: ec.op, code: errs[0].Code, message: errs[0].Message, err: err}
	}
	for _, e := range errs {
		if hint := hintFor(e, ec); hint != "" {
			return &HintError{Err: wrapped, Code: e.Code, Hint: hint}
		}
	}
	code := ""
	if len(errs) > 0 {
		code = errs[0].Code
	}
	if status == 401 {
		return &HintError{Err: wrapped, Code: code, Hint: "the token was rejected: check azure-tenant-id and azure-subscription-id belong together"}
	}
	return &HintError{Err: wrapped, Code: code}
}

func hintFor(e armError, ec explainContext) string {
	msg := e.Message
	lower := strings.ToLower(msg + " " + e.Target)
	sub := "/subscriptions/" + ec.subscriptionID
	switch e.Code {
	case "SkuNotAvailable":
		return fmt.Sprintf("VM size %q is not available in location %q for this subscription: pick another size or location (list them with `az vm list-skus --location %s --size %s --all --output table`)",
			ec.size, ec.location, ec.location, sizePrefix(ec.size))
	case "QuotaExceeded", "OperationNotAllowed":
		if e.Code == "OperationNotAllowed" && !strings.Contains(lower, "quota") {
			return ""
		}
		family := "regional vCPU"
		if m := reQuotaFamily.FindStringSubmatch(msg); m != nil {
			family = m[1]
		} else if m := reQuotaOther.FindStringSubmatch(msg); m != nil {
			family = strings.TrimSpace(m[1])
		}
		return fmt.Sprintf("the %s quota in %q is exhausted for size %q: request more at https://aka.ms/quotas (Quotas > Compute > %s), pick a size of another family, or delete unused VMs (`az vm list-usage --location %s --output table`)",
			family, ec.location, ec.size, family, ec.location)
	case "AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest", "OverconstrainedZonalAllocationRequest":
		return fmt.Sprintf("Azure has no capacity for size %q in %q right now: retry later, or pick another size or location", ec.size, ec.location)
	case "AuthorizationFailed", "LinkedAuthorizationFailed":
		action, scope := "", sub
		if m := reAuthAction.FindStringSubmatch(msg); m != nil {
			action = m[1]
		}
		if m := reAuthScope.FindStringSubmatch(msg); m != nil {
			scope = m[1]
		}
		if ns, ok := strings.CutSuffix(action, "/register/action"); ok {
			// The SDK registers missing resource providers by itself; this identity may not.
			return fmt.Sprintf("subscription %q is not registered for %s and the identity may not register it: run `az provider register -n %s --subscription %s` once as an owner, or assign Contributor on %s (az role assignment create --assignee %s --role Contributor --scope %s)",
				ec.subscriptionID, ns, ns, ec.subscriptionID, sub, assigneeOr(ec.clientID), sub)
		}
		h := "the identity lacks a role"
		if action != "" {
			h = fmt.Sprintf("the identity may not perform %q on %q", action, scope)
		}
		return fmt.Sprintf("%s: assign Contributor on %s (az role assignment create --assignee %s --role Contributor --scope %s); new assignments take a few minutes",
			h, sub, assigneeOr(ec.clientID), sub)
	case "MissingSubscriptionRegistration":
		ns := "the resource provider"
		if m := reNamespace.FindStringSubmatch(msg); m != nil {
			ns = m[1]
		}
		return fmt.Sprintf("subscription %q is not registered for %s: run `az provider register -n %s --subscription %s` once (Microsoft.Compute, Microsoft.Network and Microsoft.DevTestLab are needed)",
			ec.subscriptionID, ns, ns, ec.subscriptionID)
	case "InvalidParameter", "BadRequest", "FeatureNotEnabled", "OperationNotAllowedSecurityType":
		switch {
		case strings.Contains(lower, "publickeys.keydata"):
			// Microsoft Learn, "Detailed steps: create and manage SSH keys": osProfile takes
			// ssh-rsa of at least 2048 bits and ssh-ed25519 only.
			return "Azure accepts only ssh-rsa keys of at least 2048 bits and ssh-ed25519 keys in a VM's osProfile; the action sends it only those and gives every key in ssh-public-keys to the installed NixOS, so this means a key it judged acceptable was refused: check ssh-public-keys"
		case isSecurityTypeText(lower):
			return "Azure refused the VM's security type. The action asks for securityType Standard and, when that is refused, Trusted Launch with Secure Boot off (kexec cannot start the installer under Secure Boot's kernel lockdown); here neither was accepted: check that the image is a Gen2 image that supports both (Canonical:ubuntu-24_04-lts:server:latest does) and whether an Azure Policy requires Secure Boot"
		}
		return ""
	case "RequestDisallowedByPolicy":
		return fmt.Sprintf("an Azure Policy refused it: %s; ask the policy's owner for an exemption for resource group %q, or deploy where it does not apply", policyNames(e), ec.resourceGroup)
	case "ResourceGroupBeingDeleted":
		return fmt.Sprintf("resource group %q is still being deleted (an earlier destroy or cleanup-on-failure): wait until `az group show -n %s` says it does not exist, then run again", ec.resourceGroup, ec.resourceGroup)
	case "Conflict":
		if strings.Contains(lower, "run command") {
			return "Azure runs one Run Command at a time per VM and another is still running (from a cancelled run, perhaps; a script may run up to 90 minutes): wait and run again, or restart the VM (az vm restart) to end it"
		}
		return ""
	case "NoRegisteredProviderFound":
		version, typ := "", "this resource type"
		if m := reNoProvider.FindStringSubmatch(msg); m != nil {
			version, typ = m[1], m[2]
		}
		supported := ""
		if m := reSupported.FindStringSubmatch(msg); m != nil {
			supported = " (it offers " + m[1] + ")"
		}
		return fmt.Sprintf("this cloud does not offer API version %s for %s in %q%s: the Azure SDK this action is built with needs it; sovereign clouds and Azure Stack Hub lag behind public Azure, and an Azure Stack Hub is not supported", version, typ, ec.location, supported)
	case "SubscriptionNotFound", "InvalidAuthenticationTokenTenant":
		return fmt.Sprintf("subscription %q is not visible to this identity: check that azure-subscription-id belongs to azure-tenant-id and that the identity has a role on it", ec.subscriptionID)
	case "DnsRecordInUse", "DnsRecordCreateConflict", "DomainNameLabelUnavailable", "DomainNameLabelNotAvailable", "DnsRecordAlreadyExists":
		return fmt.Sprintf("the DNS name of label %q (the VM name) is taken in %q: the label is scoped to the resource group (Azure adds a hash of tenant, subscription, group and label), so another public IP of this resource group, or an older one of another tool, holds it: delete that public IP, or choose another vm-name or resource-group", ec.vmName, ec.location)
	}
	return ""
}

// isSecurityTypeText reports an error about the VM's securityType (Standard or TrustedLaunch).
func isSecurityTypeText(lower string) bool {
	return strings.Contains(lower, "securitytype") || strings.Contains(lower, "security type")
}

// isSecurityTypeRefusal reports that ARM refused the VM's security type.
func isSecurityTypeRefusal(err error) bool {
	_, errs, ok := responseErrors(err)
	if !ok {
		return false
	}
	for _, e := range errs {
		switch e.Code {
		case "InvalidParameter", "BadRequest", "FeatureNotEnabled", "OperationNotAllowedSecurityType":
			if isSecurityTypeText(strings.ToLower(e.Message + " " + e.Target)) {
				return true
			}
		}
	}
	return false
}

// policyNames names the policies of a RequestDisallowedByPolicy error: from the message's "Policy
// identifiers: '[{"policyAssignment":{"name":...},"policyDefinition":{"name":...}}]'" and the
// PolicyViolation additional info (Microsoft Learn, "Resolve errors for request disallowed by
// policy").
func policyNames(e armError) string {
	var names []string
	add := func(kind, name string) {
		if name == "" {
			return
		}
		n := fmt.Sprintf("%s %q", kind, name)
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	if m := rePolicyIDs.FindStringSubmatch(e.Message); m != nil {
		var ids []struct {
			Assignment struct{ Name string } `json:"policyAssignment"`
			Definition struct{ Name string } `json:"policyDefinition"`
		}
		if json.Unmarshal([]byte(m[1]), &ids) == nil {
			for _, id := range ids {
				add("assignment", id.Assignment.Name)
				add("definition", id.Definition.Name)
			}
		}
	}
	for _, ai := range e.AdditionalInfo {
		if ai.Type != "PolicyViolation" {
			continue
		}
		if v, _ := ai.Info["policyAssignmentDisplayName"].(string); v != "" {
			add("assignment", v)
		}
		if v, _ := ai.Info["policyDefinitionDisplayName"].(string); v != "" {
			add("definition", v)
		}
	}
	if len(names) == 0 {
		return "the error does not name the policy (see the activity log of the subscription)"
	}
	return "policy " + strings.Join(names, ", ")
}

func assigneeOr(clientID string) string {
	if clientID == "" {
		return "<client-id>"
	}
	return clientID
}

// sizePrefix turns Standard_B2s into B2s for `az vm list-skus --size`, which matches substrings.
func sizePrefix(size string) string {
	if s, ok := strings.CutPrefix(size, "Standard_"); ok {
		return s
	}
	return size
}

// ARM answers 404 for more than a missing resource: a mistyped subscription is 404
// SubscriptionNotFound, and a resource type the cloud does not know can be 404 too. Only these
// codes say the thing asked for does not exist (Microsoft Learn, "Troubleshoot common Azure
// deployment errors": ResourceGroupNotFound, ResourceNotFound, ParentResourceNotFound; the
// network and compute RPs answer NotFound for their own resources).
var notFoundCodes = map[string]bool{
	"ResourceGroupNotFound":  true,
	"ResourceNotFound":       true,
	"ParentResourceNotFound": true,
	"NotFound":               true,
}

// isNotFound reports an ARM answer that says the resource (or its group) does not exist. It
// decides on the error code, never on the status alone.
func isNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == 404 && notFoundCodes[re.ErrorCode]
}

// isGroupNotFound reports that the resource group does not exist.
func isGroupNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == 404 && re.ErrorCode == "ResourceGroupNotFound"
}
