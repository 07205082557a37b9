package azuretest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// call is one ARM request being served.
type call struct {
	r    *http.Request
	body []byte
	t    target
	doc  map[string]any // the JSON body, when it is an object
}

// str returns the string at the given path of the request body, or "".
func (c *call) str(path ...string) string { return str(c.doc, path...) }

// resource is a stored ARM resource. doc is what GET returns; children embedded in their parent's
// properties (subnets, security rules) are not resources of their own.
type resource struct {
	id      string
	typ     string // canonical full type
	group   string // lower-case resource group ID
	doc     map[string]any
	request []byte // body of the last PUT

	// VMs only.
	customData string // base64, as sent
	created    bool   // the create operation succeeded
	power      string // PowerState/... code
	failure    *armError
	// runningCommand is set while a Run Command runs on the VM.
	runningCommand bool
}

func (r *resource) state() string { return str(r.doc, "properties", "provisioningState") }

func (r *resource) setState(s string) {
	props, _ := r.doc["properties"].(map[string]any)
	if props == nil {
		props = map[string]any{}
		r.doc["properties"] = props
	}
	props["provisioningState"] = s
}

func (e *Emulator) serveARM(w http.ResponseWriter, r *http.Request, body []byte) {
	t := parseTarget(r.URL.Path)
	if aerr := e.authorize(r); aerr != nil {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="`+e.URL()+`/`+e.opts.TenantID+`", error="invalid_token", error_description="`+aerr.Message+`"`)
		aerr.write(w)
		return
	}
	// A subscription ARM does not know is 404 SubscriptionNotFound, whatever the path asks for
	// (Microsoft Learn, "Troubleshoot common Azure deployment errors"): a 404 that does not
	// mean "no such resource".
	if !strings.EqualFold(t.sub, e.opts.SubscriptionID) {
		writeError(w, http.StatusNotFound, "SubscriptionNotFound", fmt.Sprintf("The subscription '%s' could not be found.", t.sub))
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		writeError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	c := &call{r: r, body: body, t: t}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &c.doc); err != nil && (r.Method == http.MethodPut || r.Method == http.MethodPatch) {
			writeError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "+err.Error())
			return
		}
	}
	if f := e.takeFault(r, t, false); f != nil {
		status, a := f.armError(e, c, c.str("location"))
		f.writeHeaders(w)
		writeError(w, status, a.Code, a.Message)
		return
	}
	var aerr *apiError
	if aerr = e.checkAPIVersion(c); aerr != nil {
		aerr.write(w)
		return
	}
	if scope, ok := tagsScope(r.URL.Path); ok {
		if aerr = e.serveTags(w, c, scope); aerr != nil {
			aerr.write(w)
		}
		return
	}
	switch t.kind {
	case kindOperation, kindOperationResult:
		e.serveOperation(w, r, t)
	case kindProvider:
		aerr = e.serveProvider(w, c)
	case kindResourceGroups:
		aerr = e.listGroups(w, c)
	case kindResourceGroup:
		aerr = e.serveGroup(w, c)
	case kindGroupResources:
		aerr = e.listGroupResources(w, c)
	case kindResource:
		aerr = e.serveResource(w, c)
	case kindCollection:
		if t.typeKey() == "microsoft.compute/skus" {
			aerr = e.serveSKUs(w, c)
			break
		}
		aerr = e.listCollection(w, c)
	case kindLocationCollection:
		if strings.EqualFold(t.ns, "Microsoft.Compute") && strings.EqualFold(t.action, "usages") {
			aerr = e.serveUsages(w, c)
			break
		}
		aerr = newAPIError(http.StatusNotFound, "NotFound", fmt.Sprintf("The collection '%s' of %s is not supported by the emulator.", t.action, t.ns))
	case kindAction:
		aerr = e.serveAction(w, c)
	default:
		aerr = newAPIError(http.StatusBadRequest, "InvalidResourceType", fmt.Sprintf("No route for %s %s.", r.Method, r.URL.Path))
	}
	if aerr != nil {
		aerr.write(w)
	}
}

// ---- resource groups ----

func (e *Emulator) serveGroup(w http.ResponseWriter, c *call) *apiError {
	key := strings.ToLower(c.t.id())
	switch c.r.Method {
	case http.MethodHead:
		e.mu.Lock()
		_, ok := e.resources[key]
		e.mu.Unlock()
		status := http.StatusNoContent
		if !ok {
			status = http.StatusNotFound
		}
		w.WriteHeader(status)
		return nil
	case http.MethodGet:
		e.mu.Lock()
		defer e.mu.Unlock()
		g, ok := e.resources[key]
		if !ok {
			return groupNotFound(c.t.rg)
		}
		writeJSON(w, http.StatusOK, g.doc)
		return nil
	case http.MethodPut:
		return e.putGroup(w, c)
	case http.MethodPatch:
		e.mu.Lock()
		defer e.mu.Unlock()
		g, ok := e.resources[key]
		if !ok {
			return groupNotFound(c.t.rg)
		}
		if tags, ok := c.doc["tags"]; ok {
			g.doc["tags"] = tags
		}
		writeJSON(w, http.StatusOK, g.doc)
		return nil
	case http.MethodDelete:
		return e.deleteGroup(w, c)
	}
	return methodNotAllowed(c)
}

func groupNotFound(rg string) *apiError {
	return newAPIError(http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", rg))
}

func methodNotAllowed(c *call) *apiError {
	return newAPIError(http.StatusMethodNotAllowed, "MethodNotAllowed",
		fmt.Sprintf("The requested method %s is not allowed for %s.", c.r.Method, c.t.resourceType()))
}

func (e *Emulator) putGroup(w http.ResponseWriter, c *call) *apiError {
	loc := c.str("location")
	if loc == "" {
		return newAPIError(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	e.mu.Lock()
	lat := e.latency.ResourceGroup
	e.mu.Unlock()
	if !e.sleep(c.r.Context(), lat) {
		return newAPIError(http.StatusServiceUnavailable, "ServiceUnavailable", "The emulator is shutting down.")
	}
	key := strings.ToLower(c.t.id())
	e.mu.Lock()
	defer e.mu.Unlock()
	status := http.StatusCreated
	id := c.t.id()
	if g, ok := e.resources[key]; ok {
		if g.state() == "Deleting" {
			return newAPIError(http.StatusConflict, "ResourceGroupBeingDeleted",
				fmt.Sprintf("The resource group '%s' is in deprovisioning state and cannot perform this operation.", c.t.rg))
		}
		if normLocation(str(g.doc, "location")) != normLocation(loc) {
			return newAPIError(http.StatusConflict, "InvalidResourceGroupLocation",
				fmt.Sprintf("Invalid resource group location '%s'. The Resource group already exists in location '%s'.", loc, str(g.doc, "location")))
		}
		status, id = http.StatusOK, g.id
	}
	doc := map[string]any{
		"id":         id,
		"name":       lastSegment(id),
		"type":       "Microsoft.Resources/resourceGroups",
		"location":   normLocation(loc),
		"properties": map[string]any{"provisioningState": "Succeeded"},
	}
	if tags, ok := c.doc["tags"]; ok {
		doc["tags"] = tags
	}
	if mb, ok := c.doc["managedBy"]; ok {
		doc["managedBy"] = mb
	}
	e.resources[key] = &resource{id: id, typ: "Microsoft.Resources/resourceGroups", group: key, doc: doc, request: bytes.Clone(c.body)}
	writeJSON(w, status, doc)
	return nil
}

func (e *Emulator) deleteGroup(w http.ResponseWriter, c *call) *apiError {
	key := strings.ToLower(c.t.id())
	e.mu.Lock()
	g, ok := e.resources[key]
	if !ok {
		e.mu.Unlock()
		return groupNotFound(c.t.rg)
	}
	g.setState("Deleting")
	lat := e.latency.ResourceGroupDelete
	loc := str(g.doc, "location")
	e.mu.Unlock()
	op := e.startOperation(c, loc, lat, func(_ context.Context, fail *armError) (*armError, any) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if fail != nil {
			g.setState("Succeeded")
			return fail, nil
		}
		for k, r := range e.resources {
			if r.group == key {
				e.releaseLocked(r)
				delete(e.resources, k)
			}
		}
		return nil, nil
	})
	e.writeAccepted(w, op, http.StatusAccepted, false, true, nil)
	return nil
}

func (e *Emulator) listGroups(w http.ResponseWriter, c *call) *apiError {
	if c.r.Method != http.MethodGet {
		return methodNotAllowed(c)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []any
	for _, r := range e.sortedLocked() {
		if r.typ == "Microsoft.Resources/resourceGroups" {
			out = append(out, r.doc)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": nonNil(out)})
	return nil
}

// listGroupResources answers GET .../resources for a group or the whole subscription, with the $filter
// clauses ARM supports most often: tagName, tagValue, resourceType, name and location, joined by "and".
func (e *Emulator) listGroupResources(w http.ResponseWriter, c *call) *apiError {
	if c.r.Method != http.MethodGet {
		return methodNotAllowed(c)
	}
	filter, aerr := parseFilter(c.r.URL.Query().Get("$filter"))
	if aerr != nil {
		return aerr
	}
	key := ""
	if c.t.rg != "" {
		key = strings.ToLower(c.t.id())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.resources[key]; key != "" && !ok {
		return groupNotFound(c.t.rg)
	}
	var out []any
	for _, r := range e.sortedLocked() {
		if (key != "" && r.group != key) || r.typ == "Microsoft.Resources/resourceGroups" || !filter(r) {
			continue
		}
		item := map[string]any{"id": r.id, "name": r.doc["name"], "type": r.typ}
		for _, k := range []string{"location", "tags", "sku", "managedBy"} {
			if v, ok := r.doc[k]; ok {
				item[k] = v
			}
		}
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": nonNil(out)})
	return nil
}

func parseFilter(f string) (func(*resource) bool, *apiError) {
	var preds []func(*resource) bool
	var tagName string
	for _, clause := range splitFold(f, " and ") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		field, value, ok := cutFold(clause, " eq ")
		value = strings.Trim(strings.TrimSpace(value), "'")
		if !ok {
			return nil, newAPIError(http.StatusBadRequest, "InvalidFilterInQueryString", fmt.Sprintf("The $filter '%s' is not supported by the emulator.", f))
		}
		switch strings.ToLower(strings.TrimSpace(field)) {
		case "tagname":
			tagName = value
			preds = append(preds, func(r *resource) bool { _, ok := tagOf(r, value); return ok })
		case "tagvalue":
			name := tagName
			preds = append(preds, func(r *resource) bool { v, ok := tagOf(r, name); return ok && v == value })
		case "resourcetype":
			preds = append(preds, func(r *resource) bool { return strings.EqualFold(r.typ, value) })
		case "name":
			preds = append(preds, func(r *resource) bool { return strings.EqualFold(str(r.doc, "name"), value) })
		case "location":
			preds = append(preds, func(r *resource) bool { return normLocation(str(r.doc, "location")) == normLocation(value) })
		default:
			return nil, newAPIError(http.StatusBadRequest, "InvalidFilterInQueryString", fmt.Sprintf("The $filter '%s' is not supported by the emulator.", f))
		}
	}
	return func(r *resource) bool {
		for _, p := range preds {
			if !p(r) {
				return false
			}
		}
		return true
	}, nil
}

func tagOf(r *resource, name string) (string, bool) {
	tags, _ := r.doc["tags"].(map[string]any)
	for k, v := range tags {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s, true
		}
	}
	return "", false
}

func splitFold(s, sep string) []string {
	var out []string
	for {
		before, after, ok := cutFold(s, sep)
		out = append(out, before)
		if !ok {
			return out
		}
		s = after
	}
}

func cutFold(s, sep string) (before, after string, found bool) {
	if i := strings.Index(strings.ToLower(s), strings.ToLower(sep)); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// ---- resources ----

func (e *Emulator) serveResource(w http.ResponseWriter, c *call) *apiError {
	if _, ok := childProperty[c.t.typeKey()]; ok {
		return e.serveChild(w, c)
	}
	switch c.r.Method {
	case http.MethodGet:
		return e.getResource(w, c)
	case http.MethodHead:
		e.mu.Lock()
		_, ok := e.resources[strings.ToLower(c.t.id())]
		e.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
		} else {
			w.WriteHeader(http.StatusNoContent)
		}
		return nil
	case http.MethodPut:
		if aerr := e.checkGroup(c); aerr != nil {
			return aerr
		}
		switch c.t.typeKey() {
		case "microsoft.network/publicipaddresses", "microsoft.network/networksecuritygroups",
			"microsoft.network/virtualnetworks", "microsoft.network/networkinterfaces":
			return e.putNetwork(w, c)
		case "microsoft.compute/virtualmachines":
			return e.putVM(w, c)
		}
		return e.putGeneric(w, c)
	case http.MethodDelete:
		return e.deleteResource(w, c)
	}
	return methodNotAllowed(c)
}

func (e *Emulator) checkGroup(c *call) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, ok := e.resources[strings.ToLower(groupID(c.t.sub, c.t.rg))]
	if !ok {
		return groupNotFound(c.t.rg)
	}
	if g.state() == "Deleting" {
		return newAPIError(http.StatusConflict, "ResourceGroupBeingDeleted",
			fmt.Sprintf("The resource group '%s' is in deprovisioning state and cannot perform this operation.", c.t.rg))
	}
	return nil
}

func notFound(c *call) *apiError {
	return newAPIError(http.StatusNotFound, "ResourceNotFound",
		fmt.Sprintf("The Resource '%s/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
			c.t.resourceType(), strings.Join(c.t.names, "/"), c.t.rg))
}

func (e *Emulator) getResource(w http.ResponseWriter, c *call) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.resources[strings.ToLower(c.t.id())]
	if !ok {
		if _, ok := e.resources[strings.ToLower(groupID(c.t.sub, c.t.rg))]; !ok {
			return groupNotFound(c.t.rg)
		}
		return notFound(c)
	}
	doc := r.doc
	if r.typ == "Microsoft.Compute/virtualMachines" && strings.Contains(strings.ToLower(c.r.URL.Query().Get("$expand")), "instanceview") {
		doc = deepCopy(doc)
		doc["properties"].(map[string]any)["instanceView"] = e.instanceViewLocked(r)
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

// baseDoc builds the stored document of a tracked resource from the request.
func baseDoc(c *call, id string) map[string]any {
	doc := map[string]any{}
	for k, v := range c.doc {
		doc[k] = deepCopyValue(v)
	}
	doc["id"] = id
	doc["name"] = c.t.name()
	doc["type"] = c.t.resourceType()
	if l, ok := doc["location"].(string); ok {
		doc["location"] = normLocation(l)
	}
	if _, ok := doc["properties"].(map[string]any); !ok {
		doc["properties"] = map[string]any{}
	}
	return doc
}

// putGeneric stores any other resource (DevTestLab schedules, ...) synchronously, as those RPs do.
func (e *Emulator) putGeneric(w http.ResponseWriter, c *call) *apiError {
	e.mu.Lock()
	lat := e.latency.Other
	e.mu.Unlock()
	if !e.sleep(c.r.Context(), lat) {
		return newAPIError(http.StatusServiceUnavailable, "ServiceUnavailable", "The emulator is shutting down.")
	}
	key := strings.ToLower(c.t.id())
	e.mu.Lock()
	defer e.mu.Unlock()
	status, id := http.StatusCreated, c.t.id()
	if old, ok := e.resources[key]; ok {
		status, id = http.StatusOK, old.id
	}
	doc := baseDoc(c, id)
	r := &resource{id: id, typ: c.t.resourceType(), group: strings.ToLower(groupID(c.t.sub, c.t.rg)), doc: doc, request: bytes.Clone(c.body)}
	r.setState("Succeeded")
	e.resources[key] = r
	writeJSON(w, status, doc)
	return nil
}

func (e *Emulator) deleteResource(w http.ResponseWriter, c *call) *apiError {
	key := strings.ToLower(c.t.id())
	e.mu.Lock()
	r, ok := e.resources[key]
	if !ok {
		e.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	lro := strings.HasPrefix(r.typ, "Microsoft.Network/") || strings.HasPrefix(r.typ, "Microsoft.Compute/")
	if !lro {
		delete(e.resources, key)
		e.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if by := e.referrerLocked(r.id, ""); by != "" {
		e.mu.Unlock()
		return inUse(r, by)
	}
	prev := r.state()
	r.setState("Deleting")
	if r.typ == "Microsoft.Compute/virtualMachines" {
		r.power = "PowerState/deallocating"
	}
	lat := e.latency.Delete
	loc := str(r.doc, "location")
	e.mu.Unlock()
	op := e.startOperation(c, loc, lat, func(_ context.Context, fail *armError) (*armError, any) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if fail != nil {
			r.setState(prev)
			return fail, nil
		}
		if e.resources[key] == r {
			e.removeLocked(r)
		}
		return nil, nil
	})
	e.writeAccepted(w, op, http.StatusAccepted, true, true, nil)
	return nil
}

// removeLocked deletes a resource and what goes with it (a VM's NICs and disks with DeleteOption Delete).
func (e *Emulator) removeLocked(r *resource) {
	delete(e.resources, strings.ToLower(r.id))
	e.releaseLocked(r)
	if r.typ != "Microsoft.Compute/virtualMachines" {
		return
	}
	for _, n := range slice(r.doc, "properties", "networkProfile", "networkInterfaces") {
		nic, _ := n.(map[string]any)
		nr, ok := e.resources[strings.ToLower(str(nic, "id"))]
		if !ok {
			continue
		}
		if strings.EqualFold(str(nic, "properties", "deleteOption"), "Delete") {
			delete(e.resources, strings.ToLower(nr.id))
			e.releaseLocked(nr)
		} else {
			delete(nr.doc["properties"].(map[string]any), "virtualMachine")
		}
	}
	osDisk := mapAt(r.doc, "properties", "storageProfile", "osDisk")
	if strings.EqualFold(str(osDisk, "deleteOption"), "Delete") {
		delete(e.resources, strings.ToLower(str(osDisk, "managedDisk", "id")))
	}
}

// releaseLocked clears back references other resources hold to r.
func (e *Emulator) releaseLocked(r *resource) {
	if r.typ != "Microsoft.Network/networkInterfaces" {
		return
	}
	for _, ipc := range slice(r.doc, "properties", "ipConfigurations") {
		pipID := str(ipc.(map[string]any), "properties", "publicIPAddress", "id")
		if pip, ok := e.resources[strings.ToLower(pipID)]; ok {
			delete(pip.doc["properties"].(map[string]any), "ipConfiguration")
		}
	}
}

// referrerLocked returns the ID of a resource other than skip that refers to id (or to a child of it), or "".
func (e *Emulator) referrerLocked(id, skip string) string {
	lid := strings.ToLower(id)
	for _, r := range e.sortedLocked() {
		if strings.EqualFold(r.id, id) || strings.EqualFold(r.id, skip) || r.typ == "Microsoft.Resources/resourceGroups" {
			continue
		}
		if refers(r.doc, lid) {
			return r.id
		}
	}
	return ""
}

// backReferences are properties that point from a resource to its users; they do not keep it in use.
var backReferences = map[string]bool{"ipConfiguration": true, "virtualMachine": true}

// refers reports whether doc (a resource document) refers to lid or to a child of it, outside of back references.
func refers(doc map[string]any, lid string) bool {
	for k, x := range doc {
		if !backReferences[k] && refersValue(x, lid) {
			return true
		}
	}
	return false
}

func refersValue(v any, lid string) bool {
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["id"].(string); ok {
			lref := strings.ToLower(ref)
			if lref == lid || strings.HasPrefix(lref, lid+"/") {
				return true
			}
		}
		return refers(v, lid)
	case []any:
		for _, x := range v {
			if refersValue(x, lid) {
				return true
			}
		}
	}
	return false
}

func inUse(r *resource, by string) *apiError {
	code := map[string]string{
		"Microsoft.Network/networkInterfaces":     "NicInUse",
		"Microsoft.Network/publicIPAddresses":     "PublicIPAddressCannotBeDeleted",
		"Microsoft.Network/virtualNetworks":       "InUseSubnetCannotBeDeleted",
		"Microsoft.Network/networkSecurityGroups": "InUseNetworkSecurityGroupCannotBeDeleted",
	}[r.typ]
	if code == "" {
		code = "ResourceInUse"
	}
	return newAPIError(http.StatusBadRequest, code, fmt.Sprintf("%s %s is in use by %s and cannot be deleted.", r.typ, r.id, by))
}

func (e *Emulator) listCollection(w http.ResponseWriter, c *call) *apiError {
	if c.r.Method != http.MethodGet {
		return methodNotAllowed(c)
	}
	if prop, ok := childProperty[c.t.typeKey()]; ok {
		parent := resourceID(c.t.sub, c.t.rg, c.t.ns, c.t.types[:len(c.t.types)-1], c.t.names)
		e.mu.Lock()
		defer e.mu.Unlock()
		p, ok := e.resources[strings.ToLower(parent)]
		if !ok {
			return notFound(c)
		}
		writeJSON(w, http.StatusOK, map[string]any{"value": nonNil(slice(p.doc, "properties", prop))})
		return nil
	}
	group := ""
	if c.t.rg != "" {
		group = strings.ToLower(groupID(c.t.sub, c.t.rg))
	}
	typ := c.t.resourceType()
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.resources[group]; group != "" && !ok {
		return groupNotFound(c.t.rg)
	}
	var out []any
	for _, r := range e.sortedLocked() {
		if (group == "" || r.group == group) && strings.EqualFold(r.typ, typ) {
			out = append(out, r.doc)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": nonNil(out)})
	return nil
}

func (e *Emulator) serveAction(w http.ResponseWriter, c *call) *apiError {
	if c.t.typeKey() == "microsoft.compute/virtualmachines" {
		return e.serveVMAction(w, c)
	}
	return newAPIError(http.StatusNotFound, "NotFound", fmt.Sprintf("The action '%s' on %s is not supported by the emulator.", c.t.action, c.t.resourceType()))
}

func (e *Emulator) sortedLocked() []*resource {
	out := make([]*resource, 0, len(e.resources))
	for _, r := range e.resources {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *resource) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
	return out
}

// ResourceIDs returns the IDs of every stored resource (groups included), sorted.
func (e *Emulator) ResourceIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, r := range e.sortedLocked() {
		out = append(out, r.id)
	}
	return out
}

// Resource returns the stored document of a resource (what GET answers) by ID, case-insensitive.
func (e *Emulator) Resource(id string) (json.RawMessage, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.resources[strings.ToLower(id)]
	if !ok {
		return nil, false
	}
	b, err := json.Marshal(r.doc)
	if err != nil {
		return nil, false
	}
	return b, true
}

// ---- JSON helpers ----

func mapAt(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

func str(m map[string]any, path ...string) string {
	if len(path) == 0 {
		return ""
	}
	s, _ := mapAt(m, path[:len(path)-1]...)[path[len(path)-1]].(string)
	return s
}

func slice(m map[string]any, path ...string) []any {
	if len(path) == 0 {
		return nil
	}
	s, _ := mapAt(m, path[:len(path)-1]...)[path[len(path)-1]].([]any)
	return s
}

// ensure returns the map at path, creating it (and the maps above it) when missing.
func ensure(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	return m
}

func deepCopy(m map[string]any) map[string]any {
	c, _ := deepCopyValue(m).(map[string]any)
	return c
}

func deepCopyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, x := range v {
			c[k] = deepCopyValue(x)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = deepCopyValue(x)
		}
		return c
	}
	return v
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

func lastSegment(id string) string { return id[strings.LastIndexByte(id, '/')+1:] }

func etag() string { return fmt.Sprintf(`W/"%d"`, time.Now().UnixNano()) }
