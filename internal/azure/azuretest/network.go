package azuretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// childProperty maps child types embedded in their parent to the parent's property holding them.
var childProperty = map[string]string{
	"microsoft.network/virtualnetworks/subnets":             "subnets",
	"microsoft.network/networksecuritygroups/securityrules": "securityRules",
}

func (e *Emulator) networkLatency(typeKey string) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch typeKey {
	case "microsoft.network/publicipaddresses":
		return e.latency.PublicIP
	case "microsoft.network/networksecuritygroups", "microsoft.network/networksecuritygroups/securityrules":
		return e.latency.NSG
	case "microsoft.network/virtualnetworks", "microsoft.network/virtualnetworks/subnets":
		return e.latency.VNet
	case "microsoft.network/networkinterfaces":
		return e.latency.NIC
	}
	return e.latency.Other
}

// putNetwork creates or updates a public IP, NSG, VNet or NIC: 201 (or 200) with Azure-AsyncOperation,
// provisioningState Updating until the operation completes.
func (e *Emulator) putNetwork(w http.ResponseWriter, c *call) *apiError {
	if c.str("location") == "" {
		return newAPIError(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	lat := e.networkLatency(c.t.typeKey())
	key := strings.ToLower(c.t.id())
	e.mu.Lock()
	old := e.resources[key]
	id := c.t.id()
	if old != nil {
		id = old.id
	}
	doc := baseDoc(c, id)
	doc["etag"] = etag()
	props := doc["properties"].(map[string]any)
	guid := e.newID()
	if old != nil {
		if g := str(old.doc, "properties", "resourceGuid"); g != "" {
			guid = g
		}
	}
	props["resourceGuid"] = guid
	var aerr *apiError
	switch c.t.typeKey() {
	case "microsoft.network/publicipaddresses":
		aerr = e.preparePublicIPLocked(doc, old)
	case "microsoft.network/networksecuritygroups":
		prepareNSG(doc)
	case "microsoft.network/virtualnetworks":
		prepareChildren(doc, "subnets", "Microsoft.Network/virtualNetworks/subnets")
	case "microsoft.network/networkinterfaces":
		aerr = e.prepareNICLocked(doc, old)
	}
	if aerr != nil {
		e.mu.Unlock()
		return aerr
	}
	r := &resource{id: id, typ: c.t.resourceType(), group: strings.ToLower(groupID(c.t.sub, c.t.rg)), doc: doc, request: bytes.Clone(c.body)}
	r.setState("Updating")
	e.resources[key] = r
	snapshot := deepCopy(doc)
	e.mu.Unlock()

	op := e.startOperation(c, c.str("location"), lat, func(_ context.Context, fail *armError) (*armError, any) {
		e.mu.Lock()
		defer e.mu.Unlock()
		state := "Succeeded"
		if fail != nil {
			state = "Failed"
		}
		r.setState(state)
		for _, ch := range slice(r.doc, "properties", "subnets") {
			ensure(ch.(map[string]any), "properties")["provisioningState"] = state
		}
		return fail, nil
	})
	status := http.StatusCreated
	if old != nil {
		status = http.StatusOK
	}
	e.writeAccepted(w, op, status, true, false, snapshot)
	return nil
}

func (e *Emulator) preparePublicIPLocked(doc map[string]any, old *resource) *apiError {
	props := doc["properties"].(map[string]any)
	if _, ok := props["publicIPAllocationMethod"]; !ok {
		props["publicIPAllocationMethod"] = "Dynamic"
	}
	if _, ok := props["publicIPAddressVersion"]; !ok {
		props["publicIPAddressVersion"] = "IPv4"
	}
	if _, ok := props["idleTimeoutInMinutes"]; !ok {
		props["idleTimeoutInMinutes"] = 4
	}
	if _, ok := doc["sku"]; !ok {
		doc["sku"] = map[string]any{"name": "Basic", "tier": "Regional"}
	}
	if old != nil {
		if ipc, ok := old.doc["properties"].(map[string]any)["ipConfiguration"]; ok {
			props["ipConfiguration"] = ipc
		}
	}
	ip := ""
	if old != nil {
		ip = str(old.doc, "properties", "ipAddress")
	}
	if ip == "" {
		a, err := e.allocatePublicIPLocked()
		if err != nil {
			return newAPIError(http.StatusBadRequest, "PublicIPCountLimitReached", err.Error())
		}
		ip = a
	}
	props["ipAddress"] = ip
	if label := str(props, "dnsSettings", "domainNameLabel"); label != "" {
		loc := str(doc, "location")
		scope := str(props, "dnsSettings", "domainNameLabelScope")
		if old != nil {
			// The scope is fixed when the public IP is created.
			if was := str(old.doc, "properties", "dnsSettings", "domainNameLabelScope"); !strings.EqualFold(was, scope) {
				return newAPIError(http.StatusBadRequest, "DomainNameLabelScopeCannotBeChanged",
					fmt.Sprintf("Domain name label scope of public IP %s cannot be changed from '%s' to '%s'.", str(doc, "id"), was, scope))
			}
		}
		hash, aerr := e.labelHash(scope, str(doc, "id"), label, old)
		if aerr != nil {
			return aerr
		}
		fqdn := strings.ToLower(label) + "." + loc + ".cloudapp.azure.com"
		if hash != "" {
			fqdn = strings.ToLower(label) + "." + hash + "." + loc + ".cloudapp.azure.com"
		}
		// A DNS name is unique per region across all of Azure: other customers hold names too.
		if e.dnsTakenLocked(fqdn) {
			return newAPIError(http.StatusBadRequest, "DnsRecordInUse",
				fmt.Sprintf("DNS record %s is already used by another public IP.", fqdn))
		}
		for _, r := range e.resources {
			if r.typ == "Microsoft.Network/publicIPAddresses" && !strings.EqualFold(r.id, str(doc, "id")) &&
				strings.EqualFold(str(r.doc, "properties", "dnsSettings", "fqdn"), fqdn) {
				return newAPIError(http.StatusBadRequest, "DnsRecordInUse",
					fmt.Sprintf("DNS record %s is already used by another public IP.", fqdn))
			}
		}
		ensure(props, "dnsSettings")["fqdn"] = fqdn
	}
	return nil
}

// labelHash is the string a domainNameLabelScope puts between the label and the region
// (MicrosoftDocs azure-docs articles/virtual-network/ip-services/public-ip-addresses.md: "an
// additional string in between the domainnamelabel and location fields, e.g.
// contoso.fjdng2acavhkevd8.westus.cloudapp.Azure.com", a hash of input specific to the
// subscription, resource group and label). TenantReuse hashes tenant and label,
// SubscriptionReuse adds the subscription, ResourceGroupReuse the group; NoReuse is new every
// time. "" for no scope.
func (e *Emulator) labelHash(scope, id, label string, old *resource) (string, *apiError) {
	t := parseTarget(id)
	var parts []string
	switch strings.ToLower(scope) {
	case "":
		return "", nil
	case "tenantreuse":
		parts = []string{e.opts.TenantID}
	case "subscriptionreuse":
		parts = []string{e.opts.TenantID, t.sub}
	case "resourcegroupreuse":
		parts = []string{e.opts.TenantID, t.sub, t.rg}
	case "noreuse":
		if old != nil {
			if f := str(old.doc, "properties", "dnsSettings", "fqdn"); f != "" {
				if p := strings.Split(f, "."); len(p) > 2 {
					return p[1], nil
				}
			}
		}
		parts = []string{e.newID()}
	default:
		return "", newAPIError(http.StatusBadRequest, "InvalidRequestFormat",
			fmt.Sprintf("Value '%s' of domainNameLabelScope is invalid: use TenantReuse, SubscriptionReuse, ResourceGroupReuse or NoReuse.", scope))
	}
	sum := sha256.Sum256([]byte(strings.ToLower(strings.Join(append(parts, label), "/"))))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:16], nil
}

// TakeDNSName marks a DNS name (label.location.cloudapp.azure.com, or with a scope's hash) as held
// by another Azure customer: a public IP that would get it is refused with DnsRecordInUse.
func (e *Emulator) TakeDNSName(fqdn string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.takenDNS == nil {
		e.takenDNS = map[string]bool{}
	}
	e.takenDNS[strings.ToLower(fqdn)] = true
}

func (e *Emulator) dnsTakenLocked(fqdn string) bool { return e.takenDNS[strings.ToLower(fqdn)] }

// allocatePublicIPLocked returns the lowest free address of the pool, from the fourth host address on.
func (e *Emulator) allocatePublicIPLocked() (string, error) {
	used := map[string]bool{}
	for _, r := range e.resources {
		if r.typ == "Microsoft.Network/publicIPAddresses" {
			used[str(r.doc, "properties", "ipAddress")] = true
		}
	}
	p := e.opts.PublicIPPrefix
	a := p.Addr()
	for range 4 {
		a = a.Next()
	}
	for ; a.IsValid() && p.Contains(a); a = a.Next() {
		if !used[a.String()] && a.Next().IsValid() && p.Contains(a.Next()) { // skip the broadcast address
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("no free address left in the public IP pool %s", p)
}

func prepareNSG(doc map[string]any) {
	prepareChildren(doc, "securityRules", "Microsoft.Network/networkSecurityGroups/securityRules")
	id := str(doc, "id")
	var defaults []any
	for _, d := range []struct {
		name, access, dir, src, dst string
		prio                        int
	}{
		{"AllowVnetInBound", "Allow", "Inbound", "VirtualNetwork", "VirtualNetwork", 65000},
		{"AllowAzureLoadBalancerInBound", "Allow", "Inbound", "AzureLoadBalancer", "*", 65001},
		{"DenyAllInBound", "Deny", "Inbound", "*", "*", 65500},
		{"AllowVnetOutBound", "Allow", "Outbound", "VirtualNetwork", "VirtualNetwork", 65000},
		{"AllowInternetOutBound", "Allow", "Outbound", "*", "Internet", 65001},
		{"DenyAllOutBound", "Deny", "Outbound", "*", "*", 65500},
	} {
		defaults = append(defaults, map[string]any{
			"name": d.name, "id": id + "/defaultSecurityRules/" + d.name,
			"type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
			"properties": map[string]any{
				"provisioningState": "Succeeded", "protocol": "*", "access": d.access, "direction": d.dir, "priority": d.prio,
				"sourceAddressPrefix": d.src, "destinationAddressPrefix": d.dst, "sourcePortRange": "*", "destinationPortRange": "*",
			},
		})
	}
	doc["properties"].(map[string]any)["defaultSecurityRules"] = defaults
}

// prepareChildren gives each embedded child (subnets, security rules) its ID, type and state.
func prepareChildren(doc map[string]any, prop, typ string) {
	for _, ch := range slice(doc, "properties", prop) {
		m, ok := ch.(map[string]any)
		if !ok {
			continue
		}
		m["id"] = str(doc, "id") + "/" + prop + "/" + str(m, "name")
		m["type"] = typ
		m["etag"] = str(doc, "etag")
		ensure(m, "properties")["provisioningState"] = "Succeeded"
	}
}

// lookupLocked finds a resource or an embedded child by ID; it returns its document.
func (e *Emulator) lookupLocked(id string) (map[string]any, bool) {
	if r, ok := e.resources[strings.ToLower(id)]; ok {
		return r.doc, true
	}
	t := parseTarget(id)
	prop, ok := childProperty[t.typeKey()]
	if !ok || t.kind != kindResource {
		return nil, false
	}
	parent, ok := e.resources[strings.ToLower(t.parentID())]
	if !ok {
		return nil, false
	}
	for _, ch := range slice(parent.doc, "properties", prop) {
		if m, ok := ch.(map[string]any); ok && strings.EqualFold(str(m, "name"), t.name()) {
			if parent.state() != "Succeeded" {
				m = deepCopy(m)
				ensure(m, "properties")["provisioningState"] = parent.state()
			}
			return m, true
		}
	}
	return nil, false
}

// checkReferenceLocked verifies that a referenced resource exists and is provisioned, as the network RP does.
func (e *Emulator) checkReferenceLocked(ref, by string) *apiError {
	doc, ok := e.lookupLocked(ref)
	if !ok {
		return newAPIError(http.StatusBadRequest, "InvalidResourceReference",
			fmt.Sprintf("Resource %s referenced by resource %s was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.", ref, by))
	}
	if s := str(doc, "properties", "provisioningState"); s != "Succeeded" {
		return newAPIError(http.StatusBadRequest, "ReferencedResourceNotProvisioned",
			fmt.Sprintf("Cannot proceed with operation because resource %s used by resource %s is not in Succeeded state. Resource is in %s state and the last operation that updated/is updating the resource is PutOperation.", ref, by, s))
	}
	return nil
}

func (e *Emulator) prepareNICLocked(doc map[string]any, old *resource) *apiError {
	id := str(doc, "id")
	props := doc["properties"].(map[string]any)
	if nsg := str(props, "networkSecurityGroup", "id"); nsg != "" {
		if aerr := e.checkReferenceLocked(nsg, id); aerr != nil {
			return aerr
		}
	}
	if old != nil {
		if vm, ok := old.doc["properties"].(map[string]any)["virtualMachine"]; ok {
			props["virtualMachine"] = vm
		}
		if mac := str(old.doc, "properties", "macAddress"); mac != "" {
			props["macAddress"] = mac
		}
	}
	ipcs := slice(props, "ipConfigurations")
	if len(ipcs) == 0 {
		return newAPIError(http.StatusBadRequest, "NetworkInterfaceWithoutIpConfigurations",
			fmt.Sprintf("Network interface %s must have one or more IP configurations.", id))
	}
	for i, x := range ipcs {
		ipc, ok := x.(map[string]any)
		if !ok {
			continue
		}
		ipcID := id + "/ipConfigurations/" + str(ipc, "name")
		ipc["id"] = ipcID
		ipc["type"] = "Microsoft.Network/networkInterfaces/ipConfigurations"
		p := ensure(ipc, "properties")
		p["provisioningState"] = "Succeeded"
		if _, ok := p["primary"]; !ok {
			p["primary"] = i == 0
		}
		if _, ok := p["privateIPAllocationMethod"]; !ok {
			p["privateIPAllocationMethod"] = "Dynamic"
		}
		p["privateIPAddressVersion"] = "IPv4"
		subnet := str(p, "subnet", "id")
		if subnet == "" {
			return newAPIError(http.StatusBadRequest, "InvalidRequestFormat", fmt.Sprintf("IP configuration %s must reference a subnet.", ipcID))
		}
		if aerr := e.checkReferenceLocked(subnet, id); aerr != nil {
			return aerr
		}
		if pip := str(p, "publicIPAddress", "id"); pip != "" {
			if aerr := e.checkReferenceLocked(pip, id); aerr != nil {
				return aerr
			}
			if pr, ok := e.resources[strings.ToLower(pip)]; ok {
				if cur := str(pr.doc, "properties", "ipConfiguration", "id"); cur != "" && !strings.HasPrefix(strings.ToLower(cur), strings.ToLower(id)+"/") {
					return newAPIError(http.StatusBadRequest, "PublicIPAddressInUse",
						fmt.Sprintf("Resource %s is already in use by %s.", pip, cur))
				}
				pr.doc["properties"].(map[string]any)["ipConfiguration"] = map[string]any{"id": ipcID}
			}
		}
		if str(p, "privateIPAddress") == "" || str(p, "privateIPAllocationMethod") == "Dynamic" {
			ip := ""
			if old != nil {
				ip = privateIPOf(old.doc, str(ipc, "name"))
			}
			if ip == "" {
				ip = e.allocatePrivateIPLocked(subnet, id)
			}
			p["privateIPAddress"] = ip
		}
	}
	return nil
}

func privateIPOf(nic map[string]any, ipcName string) string {
	for _, x := range slice(nic, "properties", "ipConfigurations") {
		if ipc, ok := x.(map[string]any); ok && str(ipc, "name") == ipcName {
			return str(ipc, "properties", "privateIPAddress")
		}
	}
	return ""
}

// allocatePrivateIPLocked hands out the lowest free address of the subnet from .4 on, as Azure does.
func (e *Emulator) allocatePrivateIPLocked(subnetID, nicID string) string {
	doc, _ := e.lookupLocked(subnetID)
	prefix := str(doc, "properties", "addressPrefix")
	if prefix == "" {
		if ps := slice(doc, "properties", "addressPrefixes"); len(ps) > 0 {
			prefix, _ = ps[0].(string)
		}
	}
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return ""
	}
	used := map[string]bool{}
	for _, r := range e.resources {
		if r.typ != "Microsoft.Network/networkInterfaces" || strings.EqualFold(r.id, nicID) {
			continue
		}
		for _, x := range slice(r.doc, "properties", "ipConfigurations") {
			if ipc, ok := x.(map[string]any); ok && strings.EqualFold(str(ipc, "properties", "subnet", "id"), subnetID) {
				used[str(ipc, "properties", "privateIPAddress")] = true
			}
		}
	}
	a := p.Masked().Addr()
	for range 4 {
		a = a.Next()
	}
	for ; p.Contains(a); a = a.Next() {
		if !used[a.String()] {
			return a.String()
		}
	}
	return ""
}

// serveChild answers GET/PUT/DELETE of a subnet or security rule, stored inside its parent.
func (e *Emulator) serveChild(w http.ResponseWriter, c *call) *apiError {
	prop := childProperty[c.t.typeKey()]
	parentKey := strings.ToLower(c.t.parentID())
	name := c.t.name()
	find := func(p *resource) int {
		for i, ch := range slice(p.doc, "properties", prop) {
			if m, ok := ch.(map[string]any); ok && strings.EqualFold(str(m, "name"), name) {
				return i
			}
		}
		return -1
	}
	switch c.r.Method {
	case http.MethodGet:
		e.mu.Lock()
		defer e.mu.Unlock()
		doc, ok := e.lookupLocked(c.t.id())
		if !ok {
			return notFound(c)
		}
		writeJSON(w, http.StatusOK, doc)
		return nil
	case http.MethodPut:
		if aerr := e.checkGroup(c); aerr != nil {
			return aerr
		}
		lat := e.networkLatency(c.t.typeKey())
		e.mu.Lock()
		p, ok := e.resources[parentKey]
		if !ok {
			e.mu.Unlock()
			return notFound(c)
		}
		child := map[string]any{"name": name}
		if props, ok := c.doc["properties"].(map[string]any); ok {
			child["properties"] = deepCopyValue(props)
		}
		child["id"] = p.id + "/" + prop + "/" + name
		child["type"] = c.t.resourceType()
		child["etag"] = etag()
		ensure(child, "properties")["provisioningState"] = "Updating"
		list := slice(p.doc, "properties", prop)
		status := http.StatusCreated
		if i := find(p); i >= 0 {
			list[i] = child
			status = http.StatusOK
		} else {
			list = append(list, child)
		}
		ensure(p.doc, "properties")[prop] = list
		p.request = nil
		snapshot := deepCopy(child)
		e.mu.Unlock()
		op := e.startOperation(c, str(p.doc, "location"), lat, func(_ context.Context, fail *armError) (*armError, any) {
			e.mu.Lock()
			defer e.mu.Unlock()
			state := "Succeeded"
			if fail != nil {
				state = "Failed"
			}
			ensure(child, "properties")["provisioningState"] = state
			return fail, nil
		})
		e.writeAccepted(w, op, status, true, false, snapshot)
		return nil
	case http.MethodDelete:
		e.mu.Lock()
		p, ok := e.resources[parentKey]
		i := -1
		if ok {
			i = find(p)
		}
		if i < 0 {
			e.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if by := e.referrerLocked(c.t.id(), p.id); by != "" {
			e.mu.Unlock()
			return newAPIError(http.StatusBadRequest, "InUseSubnetCannotBeDeleted",
				fmt.Sprintf("Subnet %s is in use by %s and cannot be deleted.", c.t.id(), by))
		}
		lat := e.latency.Delete
		loc := str(p.doc, "location")
		e.mu.Unlock()
		op := e.startOperation(c, loc, lat, func(_ context.Context, fail *armError) (*armError, any) {
			if fail != nil {
				return fail, nil
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if j := find(p); j >= 0 {
				list := slice(p.doc, "properties", prop)
				ensure(p.doc, "properties")[prop] = append(list[:j:j], list[j+1:]...)
			}
			return nil, nil
		})
		e.writeAccepted(w, op, http.StatusAccepted, true, true, nil)
		return nil
	}
	return methodNotAllowed(c)
}
