package azure

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	networkfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
	resourcesfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4/fake"
	"golang.org/x/crypto/ssh"
)

// fakeARM is an in-memory ARM built from the SDK's own fake servers (armcompute/v8/fake,
// armnetwork/v9/fake, armresources/v4/fake). One routing transport sends each request to the
// module's fake by URL path, after an optional intercept that can answer with raw ARM JSON.
type fakeARM struct {
	sub string

	mu        sync.Mutex
	groups    map[string]armresources.ResourceGroup
	pips      map[string]armnetwork.PublicIPAddress
	nsgs      map[string]armnetwork.SecurityGroup
	vnets     map[string]armnetwork.VirtualNetwork
	nics      map[string]armnetwork.Interface
	vms       map[string]armcompute.VirtualMachine
	generic   map[string]armresources.GenericResource // by lower-case ID without leading slash
	puts      []string                                // kinds PUT, in order of arrival
	bodies    map[string][]byte                       // last PUT body per kind
	timeline  []mark
	requests  int
	sentPuts  int // PUTs that reached the transport, answered or not
	serialURL string

	// Test knobs, set before use.
	latency     map[string]time.Duration                     // per kind, slept inside PUT handlers
	beforePut   func(ctx context.Context, kind string) error // runs at the start of each PUT
	intercept   func(req *http.Request, body []byte) *http.Response
	vmPolls     int    // non-terminal responses before the VM PUT completes
	vmFailAsync string // ARM error code the VM's LRO ends with

	// Pre-flight: the VM sizes of westeurope (Resource SKUs) and its vCPU quotas (Usage API).
	skus             []*armcompute.ResourceSKU
	quotas           map[string][2]int32 // lower-case usage name -> {current, limit}
	preflightLatency time.Duration       // slept by each of the two list calls
	preflightCalls   int
}

// fakeSKU is a virtual machine size offered in location, as the Resource SKUs API lists it.
func fakeSKU(name, family, location string, vcpus int) *armcompute.ResourceSKU {
	return &armcompute.ResourceSKU{
		ResourceType: ptr("virtualMachines"), Name: ptr(name), Family: ptr(family),
		Locations:    []*string{ptr(location)},
		LocationInfo: []*armcompute.ResourceSKULocationInfo{{Location: ptr(location), Zones: []*string{ptr("1"), ptr("2"), ptr("3")}}},
		Capabilities: []*armcompute.ResourceSKUCapabilities{{Name: ptr("vCPUs"), Value: ptr(fmt.Sprint(vcpus))}, {Name: ptr("MemoryGB"), Value: ptr("4")}},
	}
}

// mark is one point of the PUT timeline.
type mark struct {
	kind string
	end  bool
}

// Kinds as the fake names them (the same strings as the Kind constants).
var putKinds = map[string]string{
	"resourcegroups":        KindResourceGroup,
	"publicipaddresses":     KindPublicIP,
	"networksecuritygroups": KindNSG,
	"virtualnetworks":       KindVNet,
	"networkinterfaces":     KindNIC,
	"virtualmachines":       KindVM,
	"schedules":             KindAutoShutdown,
}

func newFakeARM() *fakeARM {
	return &fakeARM{
		sub:     "00000000-0000-0000-0000-000000000001",
		groups:  map[string]armresources.ResourceGroup{},
		pips:    map[string]armnetwork.PublicIPAddress{},
		nsgs:    map[string]armnetwork.SecurityGroup{},
		vnets:   map[string]armnetwork.VirtualNetwork{},
		nics:    map[string]armnetwork.Interface{},
		vms:     map[string]armcompute.VirtualMachine{},
		generic: map[string]armresources.GenericResource{},
		bodies:  map[string][]byte{},
		latency: map[string]time.Duration{},
		skus: []*armcompute.ResourceSKU{
			fakeSKU("Standard_B2s", "standardBSFamily", "westeurope", 2),
			fakeSKU("Standard_B4ms", "standardBSFamily", "westeurope", 4),
			fakeSKU("Standard_D2s_v5", "standardDSv5Family", "westeurope", 2),
		},
		quotas: map[string][2]int32{"cores": {0, 20}, "standardbsfamily": {0, 20}, "standarddsv5family": {0, 20}},
	}
}

func key(rg, name string) string { return strings.ToLower(rg + "/" + name) }

func (f *fakeARM) id(rg, provider, typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s/%s", f.sub, rg, provider, typ, name)
}

// put runs the shared part of every PUT handler: timeline, hook, emulated latency.
func (f *fakeARM) put(ctx context.Context, kind string) error {
	ctx = requestCtx(ctx)
	f.mu.Lock()
	f.puts = append(f.puts, kind)
	f.timeline = append(f.timeline, mark{kind: kind})
	hook, d := f.beforePut, f.latency[kind]
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, kind); err != nil {
			return err
		}
	}
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	f.timeline = append(f.timeline, mark{kind: kind, end: true})
	f.mu.Unlock()
	return nil
}

func (f *fakeARM) putCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.puts)
}

// router dispatches by URL path to the three modules' fake server factories.
type router struct {
	f                           *fakeARM
	compute, network, resources policy.Transporter
}

func (r *router) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.f.mu.Lock()
	r.f.requests++
	if req.Method == http.MethodPut {
		r.f.sentPuts++
		segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		if kind, ok := putKinds[strings.ToLower(segs[len(segs)-2])]; ok {
			r.f.bodies[kind] = body
		}
	}
	intercept := r.f.intercept
	sub := r.f.sub
	r.f.mu.Unlock()
	// ARM answers a subscription it does not know with 404 SubscriptionNotFound, before the
	// resource provider sees the request (Microsoft Learn, "Troubleshoot common Azure deployment
	// errors"); the generated fakes know nothing of subscriptions.
	if segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/"); len(segs) >= 2 && strings.EqualFold(segs[0], "subscriptions") && !strings.EqualFold(segs[1], sub) {
		return armErrorResp(req, http.StatusNotFound, "SubscriptionNotFound", fmt.Sprintf("The subscription '%s' could not be found.", segs[1])), nil
	}
	if intercept != nil {
		if resp := intercept(req, body); resp != nil {
			return resp, nil
		}
	}
	var tr policy.Transporter
	switch p := strings.ToLower(req.URL.Path); {
	case strings.Contains(p, "/providers/microsoft.compute/"):
		tr = r.compute
	case strings.Contains(p, "/providers/microsoft.network/"):
		tr = r.network
	default:
		tr = r.resources
	}
	// The generated fakes close their result channel when the request's context ends while
	// the handler goroutine may still send on it ("send on closed channel"), which happens
	// whenever Provision cancels the siblings of a failed network step. So the fakes get a
	// context that never ends; the handlers find the real one through requestCtx, and this
	// transport stops waiting when it ends.
	ctx := req.Context()
	inner := req.WithContext(context.WithValue(context.WithoutCancel(ctx), realCtxKey{}, ctx))
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := tr.Do(inner)
		ch <- result{resp, err}
	}()
	select {
	case res := <-ch:
		return res.resp, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type realCtxKey struct{}

// requestCtx returns the context of the SDK's request, which ends when the caller cancels.
func requestCtx(ctx context.Context) context.Context {
	if c, ok := ctx.Value(realCtxKey{}).(context.Context); ok {
		return c
	}
	return ctx
}

// armJSON builds a raw ARM response, as the real service sends it.
func armJSON(req *http.Request, status int, body string, hdr ...string) *http.Response {
	h := http.Header{"Content-Type": {"application/json"}, "X-Ms-Request-Id": {"fake"}}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Header: h, Request: req,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
	}
}

func armErrorResp(req *http.Request, status int, code, message string) *http.Response {
	return armJSON(req, status, fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, code, message))
}

// clientOptions wires the router into the SDK clients; retries back off in milliseconds.
func (f *fakeARM) clientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: f.transport(),
		Retry:     policy.RetryOptions{RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond},
	}}
}

func (f *fakeARM) provisioner(t testing.TB, opts ...Option) *Provisioner {
	t.Helper()
	p, err := NewProvisioner(f.sub, &azfake.TokenCredential{}, f.clientOptions(),
		append([]Option{WithPollFrequency(time.Millisecond), WithClientID("11111111-2222-3333-4444-555555555555")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func notFound(e *azfake.ErrorResponder, code string) {
	e.SetResponseError(http.StatusNotFound, code)
}

func (f *fakeARM) transport() *router {
	rs := &resourcesfake.ServerFactory{
		ResourceGroupsServer: resourcesfake.ResourceGroupsServer{
			Get: func(ctx context.Context, rg string, _ *armresources.ResourceGroupsClientGetOptions) (resp azfake.Responder[armresources.ResourceGroupsClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				g, ok := f.groups[strings.ToLower(rg)]
				if !ok {
					notFound(&errResp, "ResourceGroupNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armresources.ResourceGroupsClientGetResponse{ResourceGroup: g}, nil)
				return
			},
			CreateOrUpdate: func(ctx context.Context, rg string, g armresources.ResourceGroup, _ *armresources.ResourceGroupsClientCreateOrUpdateOptions) (resp azfake.Responder[armresources.ResourceGroupsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				if err := f.put(ctx, KindResourceGroup); err != nil {
					errResp.SetError(err)
					return
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				g.ID = ptr(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s", f.sub, rg))
				g.Name = ptr(rg)
				g.Properties = &armresources.ResourceGroupProperties{ProvisioningState: ptr("Succeeded")}
				f.groups[strings.ToLower(rg)] = g
				resp.SetResponse(http.StatusCreated, armresources.ResourceGroupsClientCreateOrUpdateResponse{ResourceGroup: g}, nil)
				return
			},
			BeginDelete: func(ctx context.Context, rg string, _ *armresources.ResourceGroupsClientBeginDeleteOptions) (resp azfake.PollerResponder[armresources.ResourceGroupsClientDeleteResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if _, ok := f.groups[strings.ToLower(rg)]; !ok {
					notFound(&errResp, "ResourceGroupNotFound")
					return
				}
				f.deleteGroupLocked(rg)
				resp.AddNonTerminalResponse(http.StatusAccepted, nil)
				resp.SetTerminalResponse(http.StatusOK, armresources.ResourceGroupsClientDeleteResponse{}, nil)
				return
			},
		},
		Server: resourcesfake.Server{
			GetByID: func(ctx context.Context, id, _ string, _ *armresources.ClientGetByIDOptions) (resp azfake.Responder[armresources.ClientGetByIDResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				g, ok := f.generic[genericKey(id)]
				if !ok {
					notFound(&errResp, "ResourceNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armresources.ClientGetByIDResponse{GenericResource: g}, nil)
				return
			},
			BeginCreateOrUpdateByID: func(ctx context.Context, id, _ string, g armresources.GenericResource, _ *armresources.ClientBeginCreateOrUpdateByIDOptions) (resp azfake.PollerResponder[armresources.ClientCreateOrUpdateByIDResponse], errResp azfake.ErrorResponder) {
				if err := f.put(ctx, KindAutoShutdown); err != nil {
					errResp.SetError(err)
					return
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				g.ID = ptr("/" + strings.TrimPrefix(id, "/"))
				g.Name = ptr(id[strings.LastIndex(id, "/")+1:])
				g.Type = ptr("Microsoft.DevTestLab/schedules")
				f.generic[genericKey(id)] = g
				resp.SetTerminalResponse(http.StatusOK, armresources.ClientCreateOrUpdateByIDResponse{GenericResource: g}, nil)
				return
			},
			NewListByResourceGroupPager: func(rg string, _ *armresources.ClientListByResourceGroupOptions) (resp azfake.PagerResponder[armresources.ClientListByResourceGroupResponse]) {
				f.mu.Lock()
				defer f.mu.Unlock()
				var all []*armresources.GenericResourceExpanded
				// The list carries each resource's tags and managedBy, as ARM's does.
				add := func(id *string, typ string, name *string, tags map[string]*string) {
					if strings.Contains(strings.ToLower(deref(id)), "/resourcegroups/"+strings.ToLower(rg)+"/") {
						all = append(all, &armresources.GenericResourceExpanded{ID: id, Type: ptr(typ), Name: name, Tags: tags})
					}
				}
				for _, v := range f.pips {
					add(v.ID, "Microsoft.Network/publicIPAddresses", v.Name, v.Tags)
				}
				for _, v := range f.nsgs {
					add(v.ID, "Microsoft.Network/networkSecurityGroups", v.Name, v.Tags)
				}
				for _, v := range f.vnets {
					add(v.ID, "Microsoft.Network/virtualNetworks", v.Name, v.Tags)
				}
				for _, v := range f.nics {
					add(v.ID, "Microsoft.Network/networkInterfaces", v.Name, v.Tags)
				}
				for _, v := range f.vms {
					add(v.ID, "Microsoft.Compute/virtualMachines", v.Name, v.Tags)
					// The OS disk the VM made: no tags of its own, managed by the VM.
					if strings.Contains(strings.ToLower(deref(v.ID)), "/resourcegroups/"+strings.ToLower(rg)+"/") {
						all = append(all, &armresources.GenericResourceExpanded{
							ID: ptr(strings.Replace(deref(v.ID), "/virtualMachines/", "/disks/", 1) + "-osdisk"), Type: ptr("Microsoft.Compute/disks"),
							Name: ptr(deref(v.Name) + "-osdisk"), ManagedBy: v.ID})
					}
				}
				for _, v := range f.generic {
					add(v.ID, deref(v.Type), v.Name, v.Tags)
				}
				// Two pages, so the pager is really followed.
				half := len(all) / 2
				resp.AddPage(http.StatusOK, armresources.ClientListByResourceGroupResponse{ResourceListResult: armresources.ResourceListResult{Value: all[:half]}}, nil)
				resp.AddPage(http.StatusOK, armresources.ClientListByResourceGroupResponse{ResourceListResult: armresources.ResourceListResult{Value: all[half:]}}, nil)
				return
			},
		},
	}
	ns := &networkfake.ServerFactory{
		PublicIPAddressesServer: networkfake.PublicIPAddressesServer{
			Get: func(ctx context.Context, rg, name string, _ *armnetwork.PublicIPAddressesClientGetOptions) (resp azfake.Responder[armnetwork.PublicIPAddressesClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				v, ok := f.pips[key(rg, name)]
				if !ok {
					notFound(&errResp, "ResourceNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armnetwork.PublicIPAddressesClientGetResponse{PublicIPAddress: v}, nil)
				return
			},
			BeginCreateOrUpdate: func(ctx context.Context, rg, name string, v armnetwork.PublicIPAddress, _ *armnetwork.PublicIPAddressesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.PublicIPAddressesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				if err := f.put(ctx, KindPublicIP); err != nil {
					errResp.SetError(err)
					return
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				v.ID, v.Name = ptr(f.id(rg, "Microsoft.Network", "publicIPAddresses", name)), ptr(name)
				v.Properties.IPAddress = ptr("20.31.42.53")
				if v.Properties.DNSSettings != nil {
					// With a domainNameLabelScope Azure puts a hash between label and region
					// (azure-docs public-ip-addresses.md, "Domain Name Label Scope").
					label := deref(v.Properties.DNSSettings.DomainNameLabel)
					if v.Properties.DNSSettings.DomainNameLabelScope != nil {
						sum := sha256.Sum256([]byte(f.sub + "/" + rg + "/" + label))
						label += "." + hex.EncodeToString(sum[:8])
					}
					v.Properties.DNSSettings.Fqdn = ptr(label + "." + deref(v.Location) + ".cloudapp.azure.com")
				}
				f.pips[key(rg, name)] = v
				resp.AddNonTerminalResponse(http.StatusCreated, nil)
				resp.SetTerminalResponse(http.StatusOK, armnetwork.PublicIPAddressesClientCreateOrUpdateResponse{PublicIPAddress: v}, nil)
				return
			},
		},
		SecurityGroupsServer: networkfake.SecurityGroupsServer{
			Get: func(ctx context.Context, rg, name string, _ *armnetwork.SecurityGroupsClientGetOptions) (resp azfake.Responder[armnetwork.SecurityGroupsClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				v, ok := f.nsgs[key(rg, name)]
				if !ok {
					notFound(&errResp, "ResourceNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armnetwork.SecurityGroupsClientGetResponse{SecurityGroup: v}, nil)
				return
			},
			BeginCreateOrUpdate: func(ctx context.Context, rg, name string, v armnetwork.SecurityGroup, _ *armnetwork.SecurityGroupsClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.SecurityGroupsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				if err := f.put(ctx, KindNSG); err != nil {
					errResp.SetError(err)
					return
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				v.ID, v.Name = ptr(f.id(rg, "Microsoft.Network", "networkSecurityGroups", name)), ptr(name)
				f.nsgs[key(rg, name)] = v
				resp.SetTerminalResponse(http.StatusCreated, armnetwork.SecurityGroupsClientCreateOrUpdateResponse{SecurityGroup: v}, nil)
				return
			},
		},
		VirtualNetworksServer: networkfake.VirtualNetworksServer{
			Get: func(ctx context.Context, rg, name string, _ *armnetwork.VirtualNetworksClientGetOptions) (resp azfake.Responder[armnetwork.VirtualNetworksClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				v, ok := f.vnets[key(rg, name)]
				if !ok {
					notFound(&errResp, "ResourceNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armnetwork.VirtualNetworksClientGetResponse{VirtualNetwork: v}, nil)
				return
			},
			BeginCreateOrUpdate: func(ctx context.Context, rg, name string, v armnetwork.VirtualNetwork, _ *armnetwork.VirtualNetworksClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.VirtualNetworksClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				if err := f.put(ctx, KindVNet); err != nil {
					errResp.SetError(err)
					return
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				v.ID, v.Name = ptr(f.id(rg, "Microsoft.Network", "virtualNetworks", name)), ptr(name)
				for _, sn := range v.Properties.Subnets {
					sn.ID = ptr(*v.ID + "/subnets/" + deref(sn.Name))
				}
				f.vnets[key(rg, name)] = v
				resp.SetTerminalResponse(http.StatusCreated, armnetwork.VirtualNetworksClientCreateOrUpdateResponse{VirtualNetwork: v}, nil)
				return
			},
		},
		InterfacesServer: networkfake.InterfacesServer{
			Get: func(ctx context.Context, rg, name string, _ *armnetwork.InterfacesClientGetOptions) (resp azfake.Responder[armnetwork.InterfacesClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				v, ok := f.nics[key(rg, name)]
				if !ok {
					notFound(&errResp, "ResourceNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armnetwork.InterfacesClientGetResponse{Interface: v}, nil)
				return
			},
			BeginCreateOrUpdate: func(ctx context.Context, rg, name string, v armnetwork.Interface, _ *armnetwork.InterfacesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.InterfacesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				if err := f.put(ctx, KindNIC); err != nil {
					errResp.SetError(err)
					return
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				v.ID, v.Name = ptr(f.id(rg, "Microsoft.Network", "networkInterfaces", name)), ptr(name)
				f.nics[key(rg, name)] = v
				resp.SetTerminalResponse(http.StatusCreated, armnetwork.InterfacesClientCreateOrUpdateResponse{Interface: v}, nil)
				return
			},
		},
	}
	cs := &computefake.ServerFactory{
		// The Resource SKUs API filters on location only; the fake holds westeurope's sizes.
		ResourceSKUsServer: computefake.ResourceSKUsServer{
			NewListPager: func(o *armcompute.ResourceSKUsClientListOptions) (resp azfake.PagerResponder[armcompute.ResourceSKUsClientListResponse]) {
				f.mu.Lock()
				f.preflightCalls++
				d := f.preflightLatency
				var out []*armcompute.ResourceSKU
				for _, sku := range f.skus {
					if o == nil || o.Filter == nil || strings.Contains(strings.ToLower(*o.Filter), "'"+strings.ToLower(deref(sku.Locations[0]))+"'") {
						out = append(out, sku)
					}
				}
				f.mu.Unlock()
				time.Sleep(d)
				resp.AddPage(http.StatusOK, armcompute.ResourceSKUsClientListResponse{ResourceSKUsResult: armcompute.ResourceSKUsResult{Value: out}}, nil)
				return
			},
		},
		UsageServer: computefake.UsageServer{
			NewListPager: func(location string, _ *armcompute.UsageClientListOptions) (resp azfake.PagerResponder[armcompute.UsageClientListResponse]) {
				f.mu.Lock()
				f.preflightCalls++
				d := f.preflightLatency
				var out []*armcompute.Usage
				for name, q := range f.quotas {
					out = append(out, &armcompute.Usage{Name: &armcompute.UsageName{Value: ptr(name)}, CurrentValue: ptr(q[0]), Limit: ptr(int64(q[1])), Unit: ptr("Count")})
				}
				f.mu.Unlock()
				time.Sleep(d)
				resp.AddPage(http.StatusOK, armcompute.UsageClientListResponse{ListUsagesResult: armcompute.ListUsagesResult{Value: out}}, nil)
				return
			},
		},
		VirtualMachinesServer: computefake.VirtualMachinesServer{
			Get: func(ctx context.Context, rg, name string, o *armcompute.VirtualMachinesClientGetOptions) (resp azfake.Responder[armcompute.VirtualMachinesClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				v, ok := f.vms[key(rg, name)]
				if !ok {
					notFound(&errResp, "ResourceNotFound")
					return
				}
				if o != nil && deref(o.Expand) == armcompute.InstanceViewTypesInstanceView && v.Properties != nil {
					cp := *v.Properties
					cp.InstanceView = &armcompute.VirtualMachineInstanceView{Statuses: []*armcompute.InstanceViewStatus{
						{Code: ptr("ProvisioningState/succeeded")}, {Code: ptr("PowerState/running")},
					}}
					v.Properties = &cp
				}
				resp.SetResponse(http.StatusOK, armcompute.VirtualMachinesClientGetResponse{VirtualMachine: v}, nil)
				return
			},
			BeginCreateOrUpdate: func(ctx context.Context, rg, name string, v armcompute.VirtualMachine, _ *armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				if err := f.put(ctx, KindVM); err != nil {
					errResp.SetError(err)
					return
				}
				// osProfile takes ssh-rsa >= 2048 bits and ssh-ed25519 only, else 400
				// InvalidParameter on keyData (Microsoft Learn, "Detailed steps: create and
				// manage SSH keys"); azuretest models the same rule independently.
				if lc := v.Properties.OSProfile.LinuxConfiguration; lc != nil && lc.SSH != nil {
					for _, k := range lc.SSH.PublicKeys {
						if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(deref(k.KeyData))); err != nil || (pk.Type() != ssh.KeyAlgoED25519 && !(pk.Type() == ssh.KeyAlgoRSA && rsaBits(pk) >= 2048)) {
							errResp.SetResponseError(http.StatusBadRequest, "InvalidParameter")
							return
						}
					}
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				v.ID, v.Name = ptr(f.id(rg, "Microsoft.Compute", "virtualMachines", name)), ptr(name)
				v.Properties.ProvisioningState = ptr("Succeeded")
				v.Properties.OSProfile.CustomData = nil // write-only in ARM
				for range f.vmPolls {
					resp.AddNonTerminalResponse(http.StatusCreated, nil)
				}
				if f.vmFailAsync != "" {
					v.Properties.ProvisioningState = ptr("Failed")
					f.vms[key(rg, name)] = v
					resp.SetTerminalError(http.StatusOK, f.vmFailAsync)
					return
				}
				f.vms[key(rg, name)] = v
				resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientCreateOrUpdateResponse{VirtualMachine: v}, nil)
				return
			},
			RetrieveBootDiagnosticsData: func(ctx context.Context, rg, name string, _ *armcompute.VirtualMachinesClientRetrieveBootDiagnosticsDataOptions) (resp azfake.Responder[armcompute.VirtualMachinesClientRetrieveBootDiagnosticsDataResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if _, ok := f.vms[key(rg, name)]; !ok {
					notFound(&errResp, "ResourceNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armcompute.VirtualMachinesClientRetrieveBootDiagnosticsDataResponse{
					RetrieveBootDiagnosticsDataResult: armcompute.RetrieveBootDiagnosticsDataResult{
						SerialConsoleLogBlobURI:  ptr(f.serialURL),
						ConsoleScreenshotBlobURI: ptr(f.serialURL + "&screenshot"),
					}}, nil)
				return
			},
		},
	}
	return &router{
		f:         f,
		compute:   computefake.NewServerFactoryTransport(cs),
		network:   networkfake.NewServerFactoryTransport(ns),
		resources: resourcesfake.NewServerFactoryTransport(rs),
	}
}

func genericKey(id string) string { return strings.ToLower(strings.TrimPrefix(id, "/")) }

// deleteGroupLocked removes the group and everything in it; f.mu is held.
func (f *fakeARM) deleteGroupLocked(rg string) {
	delete(f.groups, strings.ToLower(rg))
	prefix := strings.ToLower(rg) + "/"
	for _, m := range []any{f.pips, f.nsgs, f.vnets, f.nics, f.vms} {
		switch m := m.(type) {
		case map[string]armnetwork.PublicIPAddress:
			deleteKeys(m, prefix)
		case map[string]armnetwork.SecurityGroup:
			deleteKeys(m, prefix)
		case map[string]armnetwork.VirtualNetwork:
			deleteKeys(m, prefix)
		case map[string]armnetwork.Interface:
			deleteKeys(m, prefix)
		case map[string]armcompute.VirtualMachine:
			deleteKeys(m, prefix)
		}
	}
	for k := range f.generic {
		if strings.Contains(k, "/resourcegroups/"+strings.ToLower(rg)+"/") {
			delete(f.generic, k)
		}
	}
}

func deleteKeys[V any](m map[string]V, prefix string) {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			delete(m, k)
		}
	}
}

// seedGroup adds a resource group with the given tags.
func (f *fakeARM) seedGroup(rg string, tags map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := map[string]*string{}
	for k, v := range tags {
		t[k] = ptr(v)
	}
	f.groups[strings.ToLower(rg)] = armresources.ResourceGroup{
		ID: ptr(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s", f.sub, rg)), Name: ptr(rg), Location: ptr("westeurope"), Tags: t,
	}
}

// seedVM adds a bare VM with the given tags.
func (f *fakeARM) seedVM(rg, name string, tags map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := map[string]*string{}
	for k, v := range tags {
		t[k] = ptr(v)
	}
	f.vms[key(rg, name)] = armcompute.VirtualMachine{
		ID: ptr(f.id(rg, "Microsoft.Compute", "virtualMachines", name)), Name: ptr(name), Location: ptr("westeurope"), Tags: t,
		Properties: &armcompute.VirtualMachineProperties{},
	}
}

func (f *fakeARM) groupNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.groups {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ptr[T any](v T) *T { return &v }

func rsaBits(k ssh.PublicKey) int {
	if ck, ok := k.(ssh.CryptoPublicKey); ok {
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok {
			return rk.N.BitLen()
		}
	}
	return 0
}
