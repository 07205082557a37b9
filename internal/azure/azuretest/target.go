package azuretest

import (
	"net/url"
	"strings"
)

type targetKind int

const (
	kindUnknown            targetKind = iota
	kindResourceGroups                // /subscriptions/{s}/resourcegroups
	kindResourceGroup                 // /subscriptions/{s}/resourcegroups/{rg}
	kindGroupResources                // /subscriptions/{s}/resourcegroups/{rg}/resources
	kindResource                      // .../providers/{ns}/{type}/{name}[/{type}/{name}...]
	kindCollection                    // .../providers/{ns}/{type}[/{name}/{type}...] (GET: list)
	kindAction                        // .../providers/{ns}/{type}/{name}/{action} (POST)
	kindOperation                     // /subscriptions/{s}/providers/{ns}/locations/{loc}/operations/{id}
	kindOperationResult               // /subscriptions/{s}/providers/{ns}/locations/{loc}/operationResults/{id}
	kindProvider                      // /subscriptions/{s}/providers/{ns}[/register]
	kindLocationCollection            // /subscriptions/{s}/providers/{ns}/locations/{loc}/{collection}, e.g. usages
)

// target is a parsed ARM path.
type target struct {
	kind   targetKind
	sub    string
	rg     string
	ns     string   // provider namespace as sent
	types  []string // type segments after the namespace, canonical casing where known
	names  []string
	action string // the trailing action or sub-collection (instanceView, runCommand, register, ...)
	opID   string
	loc    string
}

// canonical type names, so IDs and "type" fields look like Azure's whatever casing a client sends.
var canonicalTypes = map[string]string{}

func init() {
	for _, t := range []string{
		"Microsoft.Network/publicIPAddresses",
		"Microsoft.Network/networkSecurityGroups",
		"Microsoft.Network/networkSecurityGroups/securityRules",
		"Microsoft.Network/virtualNetworks",
		"Microsoft.Network/virtualNetworks/subnets",
		"Microsoft.Network/networkInterfaces",
		"Microsoft.Compute/virtualMachines",
		"Microsoft.Compute/disks",
		"Microsoft.DevTestLab/schedules",
		"Microsoft.Resources/resourceGroups",
	} {
		canonicalTypes[strings.ToLower(t)] = t
	}
}

func parseTarget(path string) target {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		if u, err := url.PathUnescape(s); err == nil {
			segs[i] = u
		}
	}
	var t target
	if len(segs) < 2 || !strings.EqualFold(segs[0], "subscriptions") {
		return t
	}
	t.sub = segs[1]
	rest := segs[2:]
	if len(rest) == 0 {
		return t
	}
	switch strings.ToLower(rest[0]) {
	case "resources":
		if len(rest) == 1 {
			t.kind = kindGroupResources // subscription-wide: rg stays ""
		}
		return t
	case "resourcegroups":
		switch len(rest) {
		case 1:
			t.kind = kindResourceGroups
			return t
		case 2:
			t.kind, t.rg = kindResourceGroup, rest[1]
			return t
		}
		t.rg = rest[1]
		if len(rest) == 3 && strings.EqualFold(rest[2], "resources") {
			t.kind = kindGroupResources
			return t
		}
		if !strings.EqualFold(rest[2], "providers") || len(rest) < 5 {
			return t
		}
		t.parseProvider(rest[3:])
	case "providers":
		if len(rest) < 2 {
			return t
		}
		t.ns = rest[1]
		p := rest[2:]
		switch {
		case len(p) == 0:
			t.kind = kindProvider
		case len(p) == 1 && !strings.EqualFold(p[0], "register"):
			// subscription-wide list, e.g. /providers/Microsoft.Compute/virtualMachines
			t.kind, t.types = kindCollection, []string{p[0]}
			full := canonicalType(t.ns + "/" + p[0])
			if i := strings.IndexByte(full, '/'); i > 0 {
				t.ns, t.types = full[:i], []string{full[i+1:]}
			}
		case len(p) == 1 && strings.EqualFold(p[0], "register"):
			t.kind, t.action = kindProvider, "register"
		case len(p) == 3 && strings.EqualFold(p[0], "locations"):
			t.kind, t.loc, t.action = kindLocationCollection, p[1], p[2]
		case len(p) == 4 && strings.EqualFold(p[0], "locations") && strings.EqualFold(p[2], "operations"):
			t.kind, t.loc, t.opID = kindOperation, p[1], p[3]
		case len(p) == 4 && strings.EqualFold(p[0], "locations") && strings.EqualFold(p[2], "operationResults"):
			t.kind, t.loc, t.opID = kindOperationResult, p[1], p[3]
		}
	}
	return t
}

// parseProvider parses "{ns}/{type}/{name}/...".
func (t *target) parseProvider(p []string) {
	t.ns = p[0]
	p = p[1:]
	for len(p) >= 2 {
		t.types = append(t.types, p[0])
		t.names = append(t.names, p[1])
		p = p[2:]
	}
	switch {
	case len(p) == 1 && len(t.names) > 0 && !isChildCollection(t.typeKey()+"/"+strings.ToLower(p[0])):
		t.kind, t.action = kindAction, p[0]
	case len(p) == 1:
		t.kind = kindCollection
		t.types = append(t.types, p[0])
	default:
		t.kind = kindResource
	}
	full := canonicalType(t.ns + "/" + strings.Join(t.types, "/"))
	if i := strings.IndexByte(full, '/'); i > 0 {
		t.ns = full[:i]
		t.types = strings.Split(full[i+1:], "/")
	}
}

func isChildCollection(lowerType string) bool {
	_, ok := canonicalTypes[lowerType]
	return ok
}

func canonicalType(t string) string {
	if c, ok := canonicalTypes[strings.ToLower(t)]; ok {
		return c
	}
	return t
}

// typeKey is the lower-case full type, e.g. "microsoft.network/virtualnetworks/subnets".
func (t target) typeKey() string { return strings.ToLower(t.ns + "/" + strings.Join(t.types, "/")) }

// resourceType is the full type as Azure spells it.
func (t target) resourceType() string {
	switch t.kind {
	case kindResourceGroup, kindResourceGroups:
		return "Microsoft.Resources/resourceGroups"
	case kindGroupResources:
		return "Microsoft.Resources/resources"
	case kindOperation, kindOperationResult:
		return "operations"
	case kindProvider:
		return "Microsoft.Resources/providers"
	}
	if t.ns == "" {
		return ""
	}
	return canonicalType(t.ns + "/" + strings.Join(t.types, "/"))
}

func (t target) name() string {
	switch {
	case t.kind == kindResourceGroup:
		return t.rg
	case len(t.names) > 0 && t.kind != kindCollection:
		return t.names[len(t.names)-1]
	case len(t.names) > 0 && len(t.names) == len(t.types):
		return t.names[len(t.names)-1]
	}
	return ""
}

func groupID(sub, rg string) string { return "/subscriptions/" + sub + "/resourceGroups/" + rg }

// id is the resource ID of the addressed resource (for actions: of the resource acted on).
func (t target) id() string {
	switch t.kind {
	case kindResourceGroup:
		return groupID(t.sub, t.rg)
	case kindGroupResources:
		if t.rg == "" {
			return "/subscriptions/" + t.sub
		}
		return groupID(t.sub, t.rg)
	case kindResource, kindAction:
		return resourceID(t.sub, t.rg, t.ns, t.types, t.names)
	}
	return "/subscriptions/" + t.sub
}

func resourceID(sub, rg, ns string, types, names []string) string {
	var b strings.Builder
	b.WriteString(groupID(sub, rg))
	b.WriteString("/providers/")
	b.WriteString(ns)
	for i := range names {
		b.WriteString("/" + types[i] + "/" + names[i])
	}
	return b.String()
}

// parentID is the ID of the parent resource of a child (a subnet's VNet), or "".
func (t target) parentID() string {
	if len(t.names) < 2 {
		return ""
	}
	n := len(t.names) - 1
	return resourceID(t.sub, t.rg, t.ns, t.types[:n], t.names[:n])
}
