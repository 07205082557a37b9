package azuretest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// SKU is a VM size as the Resource SKUs API describes it.
type SKU struct {
	Name     string  // Standard_B2s
	Family   string  // standardBSFamily: the name of its vCPU quota in the Usage API
	VCPUs    int     // capability vCPUs
	MemoryGB float64 // capability MemoryGB
}

// DefaultSKUs are the sizes the emulator offers in every location of DefaultLocations: the
// action's default and the sizes the tests use, with Azure's figures (Microsoft Learn, the B-series
// and Dv5 size pages).
var DefaultSKUs = []SKU{
	{"Standard_B1s", "standardBSFamily", 1, 1},
	{"Standard_B1ms", "standardBSFamily", 1, 2},
	{"Standard_B2s", "standardBSFamily", 2, 4},
	{"Standard_B2ms", "standardBSFamily", 2, 8},
	{"Standard_B4ms", "standardBSFamily", 4, 16},
	{"Standard_D2s_v5", "standardDSv5Family", 2, 8},
	{"Standard_D4s_v5", "standardDSv5Family", 4, 16},
	{"Standard_D2as_v5", "standardDASv5Family", 2, 8},
	{"Standard_E2s_v5", "standardESv5Family", 2, 16},
}

// DefaultLocations are the regions the emulator's subscription can use; any other location has no
// SKUs, as a name Azure does not know has none.
var DefaultLocations = []string{"uksouth", "ukwest", "westeurope", "northeurope", "eastus", "eastus2", "westus2", "swedencentral", "local"}

// Quota defaults of a new pay-as-you-go subscription (Microsoft Learn, "Azure subscription and
// service limits": 20 regional vCPUs, and per-family limits of the same order).
const (
	DefaultRegionalVCPUs = 20
	DefaultFamilyVCPUs   = 20
)

type skuRestriction struct {
	location string
	zones    []string // nil: the whole location
}

// RestrictSKU makes size unavailable to the subscription in location (Resource SKUs restriction
// of type Location, reason NotAvailableForSubscription), or in the given zones only (type Zone).
// A VM of that size is then refused with SkuNotAvailable.
func (e *Emulator) RestrictSKU(size, location string, zones ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.restricted == nil {
		e.restricted = map[string][]skuRestriction{}
	}
	k := strings.ToLower(size)
	e.restricted[k] = append(e.restricted[k], skuRestriction{location: normLocation(location), zones: zones})
}

// SetQuota sets a vCPU limit in location: family is a SKU family ("standardBSFamily") or "cores"
// for the regional total. Usage is what the location's VMs use.
func (e *Emulator) SetQuota(location, family string, limit int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.quotas == nil {
		e.quotas = map[string]int{}
	}
	e.quotas[normLocation(location)+"/"+strings.ToLower(family)] = limit
}

func (e *Emulator) skuLocked(name string) (SKU, bool) {
	for _, s := range e.opts.SKUs {
		if strings.EqualFold(s.Name, name) {
			return s, true
		}
	}
	return SKU{}, false
}

func (e *Emulator) locationKnown(loc string) bool {
	return slices.ContainsFunc(e.opts.Locations, func(l string) bool { return normLocation(l) == normLocation(loc) })
}

// zonesOf are a location's availability zones: three in a region, none for "local".
func zonesOf(loc string) []string {
	if normLocation(loc) == "local" {
		return nil
	}
	return []string{"1", "2", "3"}
}

// restrictedLocked reports whether size cannot be used in location: restricted there, or in
// every one of its zones.
func (e *Emulator) restrictedLocked(size, loc string) bool {
	zones := map[string]bool{}
	for _, r := range e.restricted[strings.ToLower(size)] {
		if r.location != normLocation(loc) {
			continue
		}
		if r.zones == nil {
			return true
		}
		for _, z := range r.zones {
			zones[z] = true
		}
	}
	all := zonesOf(loc)
	return len(all) > 0 && len(zones) >= len(all)
}

func (e *Emulator) limitLocked(loc, family string) int {
	if l, ok := e.quotas[normLocation(loc)+"/"+strings.ToLower(family)]; ok {
		return l
	}
	if family == "cores" {
		return DefaultRegionalVCPUs
	}
	return DefaultFamilyVCPUs
}

// usedLocked is the vCPUs the location's VMs (all but skip) use, in total and by family.
func (e *Emulator) usedLocked(loc, skip string) (total int, byFamily map[string]int) {
	byFamily = map[string]int{}
	for _, r := range e.resources {
		if r.typ != "Microsoft.Compute/virtualMachines" || strings.EqualFold(r.id, skip) || normLocation(str(r.doc, "location")) != normLocation(loc) {
			continue
		}
		if s, ok := e.skuLocked(str(r.doc, "properties", "hardwareProfile", "vmSize")); ok {
			total += s.VCPUs
			byFamily[strings.ToLower(s.Family)] += s.VCPUs
		}
	}
	return total, byFamily
}

// checkSizeLocked applies what the compute RP checks of a new VM's size: that it is offered in the
// location to this subscription (409 SkuNotAvailable) and that the regional and family vCPU quotas
// have room (409 OperationNotAllowed, "exceeding approved ... Cores quota"), the errors users see
// (Microsoft Learn, "Resolve errors for SKU not available" and "Resolve errors for quotas").
func (e *Emulator) checkSizeLocked(size, loc, vmID string) *apiError {
	s, ok := e.skuLocked(size)
	if !ok || !e.locationKnown(loc) || e.restrictedLocked(size, loc) {
		return newAPIError(http.StatusConflict, "SkuNotAvailable", fmt.Sprintf(
			"The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: %s' is currently not available in location '%s'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details.", size, loc))
	}
	total, byFamily := e.usedLocked(loc, vmID)
	for _, q := range []struct{ name, display string }{{strings.ToLower(s.Family), s.Family}, {"cores", "Total Regional"}} {
		used := byFamily[q.name]
		if q.name == "cores" {
			used = total
		}
		if limit := e.limitLocked(loc, q.name); used+s.VCPUs > limit {
			return newAPIError(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf(
				"Operation could not be completed as it results in exceeding approved %s Cores quota. Additional details - Deployment Model: Resource Manager, Location: %s, Current Limit: %d, Current Usage: %d, Additional Required: %d, (Minimum) New Limit Required: %d. Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView",
				q.display, loc, limit, used, s.VCPUs, used+s.VCPUs))
		}
	}
	return nil
}

// serveSKUs answers GET /subscriptions/{s}/providers/Microsoft.Compute/skus (Resource SKUs,
// api-version 2021-07-01): the virtual machine sizes, their capabilities and the subscription's
// restrictions. Only "location eq '...'" is supported in $filter, as the API says
// (azure-rest-api-specs specification/compute/resource-manager/Microsoft.Compute/Skus).
func (e *Emulator) serveSKUs(w http.ResponseWriter, c *call) *apiError {
	if c.r.Method != http.MethodGet {
		return methodNotAllowed(c)
	}
	var only string
	if f := strings.TrimSpace(c.r.URL.Query().Get("$filter")); f != "" {
		field, value, ok := cutFold(f, " eq ")
		if !ok || !strings.EqualFold(strings.TrimSpace(field), "location") {
			return newAPIError(http.StatusBadRequest, "InvalidFilterInQueryString", fmt.Sprintf("The filter '%s' is not supported. Only location filter is supported.", f))
		}
		only = normLocation(strings.Trim(strings.TrimSpace(value), "'"))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []any
	for _, s := range e.opts.SKUs {
		for _, loc := range e.opts.Locations {
			loc = normLocation(loc)
			if only != "" && loc != only {
				continue
			}
			var restrictions []any
			for _, r := range e.restricted[strings.ToLower(s.Name)] {
				if r.location != loc {
					continue
				}
				info := map[string]any{"locations": []string{loc}}
				typ := "Location"
				if r.zones != nil {
					typ, info["zones"] = "Zone", r.zones
				}
				restrictions = append(restrictions, map[string]any{"type": typ, "values": []string{loc}, "restrictionInfo": info, "reasonCode": "NotAvailableForSubscription"})
			}
			tier, size, _ := strings.Cut(s.Name, "_")
			out = append(out, map[string]any{
				"resourceType": "virtualMachines", "name": s.Name, "tier": tier, "size": size, "family": s.Family,
				"locations":    []string{loc},
				"locationInfo": []any{map[string]any{"location": loc, "zones": nonNilStrings(zonesOf(loc)), "zoneDetails": []any{}}},
				"capabilities": []any{
					map[string]any{"name": "vCPUs", "value": strconv.Itoa(s.VCPUs)},
					map[string]any{"name": "MemoryGB", "value": strconv.FormatFloat(s.MemoryGB, 'f', -1, 64)},
					map[string]any{"name": "HyperVGenerations", "value": "V1,V2"},
				},
				"restrictions": nonNil(restrictions),
			})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": nonNil(out)})
	return nil
}

// serveUsages answers GET /subscriptions/{s}/providers/Microsoft.Compute/locations/{loc}/usages:
// the regional vCPUs ("cores") and each family's, limit and current use.
func (e *Emulator) serveUsages(w http.ResponseWriter, c *call) *apiError {
	if c.r.Method != http.MethodGet {
		return methodNotAllowed(c)
	}
	loc := normLocation(c.t.loc)
	if !e.locationKnown(loc) {
		return newAPIError(http.StatusNotFound, "NoRegisteredProviderFound", fmt.Sprintf(
			"No registered resource provider found for location '%s' and API version '%s' for type 'locations/usages'.", c.t.loc, c.r.URL.Query().Get("api-version")))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	total, byFamily := e.usedLocked(loc, "")
	item := func(name, display string, used int) any {
		return map[string]any{"unit": "Count", "currentValue": used, "limit": e.limitLocked(loc, name),
			"name": map[string]any{"value": name, "localizedValue": display}}
	}
	out := []any{item("cores", "Total Regional vCPUs", total)}
	seen := map[string]bool{}
	for _, s := range e.opts.SKUs {
		f := strings.ToLower(s.Family)
		if seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, item(s.Family, s.Family+" vCPUs", byFamily[f]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func nonNilStrings(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
