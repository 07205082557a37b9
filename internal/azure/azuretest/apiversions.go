package azuretest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// APIVersions lists, per resource type ("Microsoft.Compute/virtualMachines"), the api-versions an
// ARM endpoint offers; its provider documents (GET /subscriptions/{s}/providers/{namespace})
// list them, as ARM does, and a request for another version of that type is refused with 400
// NoRegisteredProviderFound.
type APIVersions map[string][]string

// PublicAzureAPIVersions are versions public Azure offers for the types this project uses,
// including those the SDK modules in go.mod send (a dependency bump that moves to a newer version
// must add it here: the AzureStack path checks them first and says which is missing).
var PublicAzureAPIVersions = APIVersions{
	"Microsoft.Resources/providers":           {"2025-04-01", "2021-04-01", "2019-10-01", "2016-06-01"},
	"Microsoft.Resources/resourceGroups":      {"2025-04-01", "2024-11-01", "2021-04-01", "2019-10-01", "2016-06-01"},
	"Microsoft.Compute/virtualMachines":       {"2026-04-01", "2025-04-01", "2024-11-01", "2024-07-01", "2020-06-01"},
	"Microsoft.Compute/skus":                  {"2021-07-01", "2019-04-01"},
	"Microsoft.Compute/locations/usages":      {"2026-04-01", "2025-04-01", "2024-07-01", "2020-06-01"},
	"Microsoft.Network/publicIPAddresses":     {"2025-05-01", "2024-07-01", "2024-05-01", "2018-11-01"},
	"Microsoft.Network/networkSecurityGroups": {"2025-05-01", "2024-07-01", "2024-05-01", "2018-11-01"},
	"Microsoft.Network/virtualNetworks":       {"2025-05-01", "2024-07-01", "2024-05-01", "2018-11-01"},
	"Microsoft.Network/networkInterfaces":     {"2025-05-01", "2024-07-01", "2024-05-01", "2018-11-01"},
	"Microsoft.DevTestLab/schedules":          {"2018-09-15", "2016-05-15"},
}

// AzureStackHubProfile is what an Azure Stack Hub on the 2020-09-01-hybrid API profile offers for
// those types: Microsoft.Compute 2020-06-01, Microsoft.Network 2018-11-01, Microsoft.Resources
// 2016-06-01 and 2019-10-01, no DevTestLab and no Resource SKUs for virtual machines
// (MicrosoftDocs azure-stack-docs, azure-stack/user/azure-stack-profiles-azure-resource-manager-versions.md).
var AzureStackHubProfile = APIVersions{
	"Microsoft.Resources/providers":           {"2019-10-01", "2016-06-01"},
	"Microsoft.Resources/resourceGroups":      {"2019-10-01", "2016-06-01"},
	"Microsoft.Compute/virtualMachines":       {"2020-06-01"},
	"Microsoft.Compute/locations/usages":      {"2020-06-01"},
	"Microsoft.Network/publicIPAddresses":     {"2018-11-01"},
	"Microsoft.Network/networkSecurityGroups": {"2018-11-01"},
	"Microsoft.Network/virtualNetworks":       {"2018-11-01"},
	"Microsoft.Network/networkInterfaces":     {"2018-11-01"},
}

func (e *Emulator) apiVersions() APIVersions {
	if e.opts.APIVersions != nil {
		return e.opts.APIVersions
	}
	return PublicAzureAPIVersions
}

// serveProvider answers GET /subscriptions/{s}/providers/{namespace} with the namespace's
// resource types and their api-versions, and POST .../register.
func (e *Emulator) serveProvider(w http.ResponseWriter, c *call) *apiError {
	ns := c.t.ns
	var types []any
	for _, full := range sortedKeys(e.apiVersions()) {
		n, typ, _ := strings.Cut(full, "/")
		if !strings.EqualFold(n, ns) {
			continue
		}
		ns = n
		types = append(types, map[string]any{"resourceType": typ, "locations": e.opts.Locations, "apiVersions": e.apiVersions()[full]})
	}
	if len(types) == 0 && e.opts.APIVersions != nil {
		return newAPIError(http.StatusNotFound, "InvalidResourceNamespace", fmt.Sprintf("The resource namespace '%s' is invalid.", c.t.ns))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": "/subscriptions/" + c.t.sub + "/providers/" + ns, "namespace": ns,
		"registrationState": "Registered", "resourceTypes": nonNil(types),
	})
	return nil
}

// checkAPIVersion refuses a request for an api-version its resource type does not offer, as ARM
// does (400 NoRegisteredProviderFound, "The supported api-versions are ..."). Only when Options
// sets APIVersions: by default every version is served.
func (e *Emulator) checkAPIVersion(c *call) *apiError {
	if e.opts.APIVersions == nil {
		return nil
	}
	typ := ""
	switch c.t.kind {
	case kindProvider:
		typ = "Microsoft.Resources/providers"
	case kindResourceGroup, kindResourceGroups:
		typ = "Microsoft.Resources/resourceGroups"
	case kindResource, kindCollection, kindAction:
		typ = c.t.resourceType()
		// A child or an action goes with its top-level type.
		if parts := strings.Split(typ, "/"); len(parts) > 2 {
			typ = parts[0] + "/" + parts[1]
		}
	case kindLocationCollection:
		typ = c.t.ns + "/locations/" + c.t.action
	default:
		return nil
	}
	var offered []string
	for k, v := range e.opts.APIVersions {
		if strings.EqualFold(k, typ) {
			offered = v
		}
	}
	version := c.r.URL.Query().Get("api-version")
	if slices.Contains(offered, version) {
		return nil
	}
	name := typ[strings.IndexByte(typ, '/')+1:]
	msg := fmt.Sprintf("No registered resource provider found for location '%s' and API version '%s' for type '%s'.", c.str("location"), version, name)
	if len(offered) > 0 {
		msg += fmt.Sprintf(" The supported api-versions are '%s'.", strings.Join(offered, ", "))
	}
	return newAPIError(http.StatusBadRequest, "NoRegisteredProviderFound", msg)
}

func sortedKeys(m APIVersions) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
