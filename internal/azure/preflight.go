package azure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// preflightOutcome is what the checks found: a refusal, or notes when a check could not run.
type preflightOutcome struct {
	err   error
	notes []string
}

// preflight checks, before the first PUT, that s.Size is offered in s.Location for this
// subscription and that the regional and family vCPU quotas have room for it, so a refusal
// leaves nothing behind. It reads the Resource SKUs API (restrictions of type Location, or of
// type Zone in every zone, reason NotAvailableForSubscription) and the Usage API (Microsoft
// Learn, "Resolve errors for SKU not available", "Check vCPU quotas"). A check that cannot run
// (no read permission on the subscription, an API this cloud lacks) is skipped with a note:
// Azure itself stays the judge when the VM is created.
func (p *Provisioner) preflight(ctx context.Context, s *Spec) preflightOutcome {
	var out preflightOutcome
	// The two reads do not depend on each other: run them together.
	type usagesResult struct {
		m   map[string]usage
		err error
	}
	usagesDone := make(chan usagesResult, 1)
	go func() {
		m, err := p.usages(ctx, s.Location)
		usagesDone <- usagesResult{m, err}
	}()
	sku, found, err := p.findSKU(ctx, s.Size, s.Location)
	switch {
	case err != nil:
		out.notes = append(out.notes, "pre-flight: could not list the VM sizes of "+s.Location+" ("+shortErr(err)+"); Azure checks the size when the VM is created")
		return out
	case !found:
		out.err = p.sizeNotOffered(ctx, s)
		return out
	}
	if reason := restriction(sku, s.Location); reason != "" {
		out.err = &HintError{Code: "SkuNotAvailable",
			Err: fmt.Errorf("VM size %q is not available in location %q for subscription %q (%s)", s.Size, s.Location, p.subscriptionID, reason),
			Hint: fmt.Sprintf("pick another size or location (`az vm list-skus --location %s --size %s --all --output table` shows the restrictions), or ask Azure support to enable it: https://aka.ms/azureskunotavailable",
				s.Location, sizePrefix(s.Size))}
		return out
	}
	vcpus, family := capabilityInt(sku, "vCPUs"), deref(sku.Family)
	if vcpus == 0 || family == "" {
		return out
	}
	ur := <-usagesDone
	usages, err := ur.m, ur.err
	if err != nil {
		out.notes = append(out.notes, "pre-flight: could not read the vCPU quotas of "+s.Location+" ("+shortErr(err)+"); Azure checks them when the VM is created")
		return out
	}
	for _, q := range []struct{ name, what string }{{"cores", "regional vCPU"}, {family, family + " vCPU"}} {
		u, ok := usages[strings.ToLower(q.name)]
		if !ok {
			continue
		}
		if u.current+int64(vcpus) > u.limit {
			out.err = &HintError{Code: "QuotaExceeded",
				Err: fmt.Errorf("the %s quota in %q has no room for size %q: %d of %d vCPUs are in use and it needs %d", q.what, s.Location, s.Size, u.current, u.limit, vcpus),
				Hint: fmt.Sprintf("request at least %d at https://aka.ms/quotas (Quotas > Compute > %s, location %s), pick a smaller size or another family, or delete unused VMs (`az vm list-usage --location %s --output table`)",
					u.current+int64(vcpus), q.name, s.Location, s.Location)}
			return out
		}
	}
	return out
}

// findSKU looks the size up among the location's virtual machine SKUs.
func (p *Provisioner) findSKU(ctx context.Context, size, location string) (*armcompute.ResourceSKU, bool, error) {
	skus, err := p.vmSKUs(ctx, location)
	if err != nil {
		return nil, false, err
	}
	for _, sku := range skus {
		if strings.EqualFold(deref(sku.Name), size) {
			return sku, true, nil
		}
	}
	return nil, false, nil
}

// vmSKUs lists the virtual machine SKUs of a location. The API filters on location only
// (azure-rest-api-specs, Microsoft.Compute Skus: "Only location filter is supported currently").
func (p *Provisioner) vmSKUs(ctx context.Context, location string) ([]*armcompute.ResourceSKU, error) {
	pager := p.skus.NewListPager(&armcompute.ResourceSKUsClientListOptions{Filter: to(fmt.Sprintf("location eq '%s'", location))})
	var out []*armcompute.ResourceSKU
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, sku := range page.Value {
			if sku != nil && strings.EqualFold(deref(sku.ResourceType), "virtualMachines") && offeredIn(sku, location) {
				out = append(out, sku)
			}
		}
	}
	return out, nil
}

func offeredIn(sku *armcompute.ResourceSKU, location string) bool {
	for _, l := range sku.Locations {
		if strings.EqualFold(deref(l), location) {
			return true
		}
	}
	return false
}

// sizeNotOffered refuses a size the location does not list, with the nearest names it does.
func (p *Provisioner) sizeNotOffered(ctx context.Context, s *Spec) error {
	skus, _ := p.vmSKUs(ctx, s.Location)
	if len(skus) == 0 {
		return &HintError{Code: "SkuNotAvailable",
			Err:  fmt.Errorf("location %q offers no VM sizes to subscription %q", s.Location, p.subscriptionID),
			Hint: "it is not a region of this cloud, or this subscription may not use it: `az account list-locations --output table` lists the regions"}
	}
	var names []string
	for _, sku := range skus {
		if restriction(sku, s.Location) == "" {
			names = append(names, deref(sku.Name))
		}
	}
	slices.Sort(names)
	names = nearest(s.Size, names, 5)
	return &HintError{Code: "SkuNotAvailable",
		Err:  fmt.Errorf("VM size %q is not offered in location %q", s.Size, s.Location),
		Hint: fmt.Sprintf("sizes offered there include %s (all: `az vm list-skus --location %s --resource-type virtualMachines --output table`)", strings.Join(names, ", "), s.Location)}
}

// restriction says why the SKU cannot be used in location, or "". A regional VM needs the location
// and at least one of its zones.
func restriction(sku *armcompute.ResourceSKU, location string) string {
	var zones []string
	for _, li := range sku.LocationInfo {
		if li != nil && strings.EqualFold(deref(li.Location), location) {
			for _, z := range li.Zones {
				zones = append(zones, deref(z))
			}
		}
	}
	restricted := map[string]bool{}
	for _, r := range sku.Restrictions {
		if r == nil || r.RestrictionInfo == nil || !containsFold(r.RestrictionInfo.Locations, location) {
			continue
		}
		switch deref(r.Type) {
		case armcompute.ResourceSKURestrictionsTypeLocation:
			return fmt.Sprintf("restricted in the location: %s", deref(r.ReasonCode))
		case armcompute.ResourceSKURestrictionsTypeZone:
			for _, z := range r.RestrictionInfo.Zones {
				restricted[deref(z)] = true
			}
		}
	}
	if len(zones) > 0 && len(restricted) >= len(zones) {
		return "restricted in every zone: NotAvailableForSubscription"
	}
	return ""
}

func containsFold(list []*string, v string) bool {
	return slices.ContainsFunc(list, func(s *string) bool { return strings.EqualFold(deref(s), v) })
}

func capabilityInt(sku *armcompute.ResourceSKU, name string) int {
	for _, c := range sku.Capabilities {
		if c != nil && strings.EqualFold(deref(c.Name), name) {
			n, _ := strconv.Atoi(deref(c.Value))
			return n
		}
	}
	return 0
}

type usage struct{ current, limit int64 }

// usages reads the location's compute quotas by name ("cores" is the regional total).
func (p *Provisioner) usages(ctx context.Context, location string) (map[string]usage, error) {
	out := map[string]usage{}
	pager := p.usage.NewListPager(location, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, u := range page.Value {
			if u != nil && u.Name != nil {
				out[strings.ToLower(deref(u.Name.Value))] = usage{current: int64(deref(u.CurrentValue)), limit: deref(u.Limit)}
			}
		}
	}
	return out, nil
}

// shortErr is an SDK error's ARM code, or its first line.
func shortErr(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

// nearest returns up to n candidates closest to s (edit distance), in that order.
func nearest(s string, candidates []string, n int) []string {
	type scored struct {
		name string
		d    int
	}
	var all []scored
	for _, c := range candidates {
		all = append(all, scored{c, editDistance(strings.ToLower(s), strings.ToLower(c))})
	}
	slices.SortStableFunc(all, func(a, b scored) int { return a.d - b.d })
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, all[i].name)
	}
	return out
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
