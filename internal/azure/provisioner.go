package azure

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
)

// Tags written on every resource. TagManagedBy=ManagedByValue is what makes a resource ours.
const (
	TagManagedBy   = "managed-by"
	ManagedByValue = "nixos-cloud-deploy"
	TagVMName      = "vm-name"
	TagRunURL      = "run-url"
	TagHostKey     = "ssh-host-key"
)

// DefaultPollFrequency is how often long-running operations are polled when ARM sends no
// Retry-After. azcore's own default is 30 s, which would add up to 30 s per resource.
const DefaultPollFrequency = 2 * time.Second

// Provisioner creates, inspects and deletes the deployment's resources in one subscription.
type Provisioner struct {
	subscriptionID string
	clientID       string
	pollFrequency  time.Duration
	httpClient     *http.Client
	now            func() time.Time

	groups    *armresources.ResourceGroupsClient
	resources *armresources.Client
	pips      *armnetwork.PublicIPAddressesClient
	nsgs      *armnetwork.SecurityGroupsClient
	vnets     *armnetwork.VirtualNetworksClient
	nics      *armnetwork.InterfacesClient
	vms       *armcompute.VirtualMachinesClient
	tags      *armresources.TagsClient
	skus      *armcompute.ResourceSKUsClient
	usage     *armcompute.UsageClient
	providers *armresources.ProvidersClient

	checkAPIVersions bool // WithAPIVersionCheck
}

// Option tunes a Provisioner.
type Option func(*Provisioner)

// WithPollFrequency sets the long-running-operation poll interval. azcore refuses values below
// one second outside `go test`.
func WithPollFrequency(d time.Duration) Option { return func(p *Provisioner) { p.pollFrequency = d } }

// WithHTTPClient sets the client that downloads the serial log from its SAS URL (no Azure
// credential is sent there).
func WithHTTPClient(c *http.Client) Option { return func(p *Provisioner) { p.httpClient = c } }

// WithClientID names the identity in AuthorizationFailed hints (az role assignment --assignee).
func WithClientID(id string) Option { return func(p *Provisioner) { p.clientID = id } }

// WithClock replaces time.Now for timings.
func WithClock(now func() time.Time) Option { return func(p *Provisioner) { p.now = now } }

// NewProvisioner builds the SDK clients. opts carries the cloud (ResolvedCloud.ClientOptions) and,
// in tests, the transport; nil means Azure public cloud defaults.
func NewProvisioner(subscriptionID string, cred azcore.TokenCredential, opts *arm.ClientOptions, more ...Option) (*Provisioner, error) {
	if subscriptionID == "" {
		return nil, errors.New("azure subscription ID is empty: set azure-subscription-id or AZURE_SUBSCRIPTION_ID")
	}
	rf, err := armresources.NewClientFactory(subscriptionID, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to create resources client: %w", err)
	}
	nf, err := armnetwork.NewClientFactory(subscriptionID, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to create network client: %w", err)
	}
	cf, err := armcompute.NewClientFactory(subscriptionID, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to create compute client: %w", err)
	}
	// Provider documents are read with a version every ARM endpoint has, Azure Stack Hub's
	// 2020-09-01-hybrid profile included (Microsoft.Resources 2019-10-01): the point of reading
	// them is to find out which versions an endpoint lacks.
	provOpts := arm.ClientOptions{}
	if opts != nil {
		provOpts = *opts
	}
	provOpts.APIVersion = providersAPIVersion
	providers, err := armresources.NewProvidersClient(subscriptionID, cred, &provOpts)
	if err != nil {
		return nil, fmt.Errorf("failed to create providers client: %w", err)
	}
	p := &Provisioner{
		subscriptionID: subscriptionID,
		pollFrequency:  DefaultPollFrequency,
		httpClient:     http.DefaultClient,
		now:            time.Now,
		groups:         rf.NewResourceGroupsClient(),
		resources:      rf.NewClient(),
		pips:           nf.NewPublicIPAddressesClient(),
		nsgs:           nf.NewSecurityGroupsClient(),
		vnets:          nf.NewVirtualNetworksClient(),
		nics:           nf.NewInterfacesClient(),
		vms:            cf.NewVirtualMachinesClient(),
		tags:           rf.NewTagsClient(),
		providers:      providers,
		skus:           cf.NewResourceSKUsClient(),
		usage:          cf.NewUsageClient(),
	}
	for _, o := range more {
		o(p)
	}
	return p, nil
}

func (p *Provisioner) pollOpts() *runtime.PollUntilDoneOptions {
	return &runtime.PollUntilDoneOptions{Frequency: p.pollFrequency}
}

func (p *Provisioner) ec(op string, s *Spec) explainContext {
	ec := explainContext{op: op, subscriptionID: p.subscriptionID, clientID: p.clientID}
	if s != nil {
		ec.location, ec.size, ec.vmName, ec.resourceGroup = s.Location, s.Size, s.VMName, s.ResourceGroup
	}
	return ec
}

// Spec describes one deployment's VM and its surroundings.
type Spec struct {
	SubscriptionID string // informational; the Provisioner's subscription is used
	ResourceGroup  string
	Location       string
	VMName         string
	Size           string
	ImageURN       string // publisher:offer:sku:version
	OSDiskSizeGB   int32
	AdminUser      string
	AdminKeys      []string
	CustomData     []byte // cloud-init, already rendered; base64-encoded here
	Tags           map[string]string
	RunURL         string // stored as tag run-url when set
	AutoShutdown   string // "HH:MM" UTC daily, or "" for none
	HostKeyPublic  string // stored as tag ssh-host-key
	// SecurityType is "Standard" (default) or "TrustedLaunch"; Secure Boot is off either way.
	SecurityType string
}

var (
	reHHMM  = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)
	reImage = regexp.MustCompile(`^[^:]+:[^:]+:[^:]+:[^:]+$`)
)

func (s *Spec) validate() error {
	var errs []error
	req := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	req("resource group", s.ResourceGroup)
	req("location", s.Location)
	req("vm name", s.VMName)
	req("vm size", s.Size)
	req("admin user", s.AdminUser)
	if !reImage.MatchString(s.ImageURN) {
		errs = append(errs, fmt.Errorf("image %q: must be publisher:offer:sku:version", s.ImageURN))
	}
	if s.AutoShutdown != "" && !reHHMM.MatchString(s.AutoShutdown) {
		errs = append(errs, fmt.Errorf("auto-shutdown %q: must be HH:MM (UTC, 24 h)", s.AutoShutdown))
	}
	switch s.SecurityType {
	case "", string(armcompute.SecurityTypesStandard), string(armcompute.SecurityTypesTrustedLaunch):
	default:
		errs = append(errs, fmt.Errorf("security type %q: must be Standard or TrustedLaunch", s.SecurityType))
	}
	if n := base64.StdEncoding.EncodedLen(len(s.CustomData)); n > maxCustomData {
		errs = append(errs, fmt.Errorf("cloud-init custom data is %d bytes base64-encoded; Azure accepts at most %d", n, maxCustomData))
	}
	if len(s.AdminKeys) == 0 {
		errs = append(errs, errors.New("no admin SSH public key: password login is disabled, so at least one key is needed"))
	}
	for i, k := range s.AdminKeys {
		if !AcceptsSSHKey(k) {
			// Sent, it would fail the whole VM create with InvalidParameter (keyData).
			errs = append(errs, fmt.Errorf("admin SSH key %d (%s) is not one Azure accepts in a VM's osProfile (ssh-rsa of at least %d bits or ssh-ed25519): give such keys to the installed system instead", i+1, keyType(k), minRSABits))
		}
	}
	return errors.Join(errs...)
}

// keyType is the first field of an authorized_keys line, for messages: never the key itself.
func keyType(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "empty"
	}
	return f[0]
}

// tags returns the tags every resource of the deployment carries.
func (s *Spec) tags() map[string]*string {
	t := map[string]*string{}
	for k, v := range Tags(s.VMName, s.RunURL, s.Tags) {
		t[k] = to(v)
	}
	return t
}

// Tags are the tags every resource of a deployment carries: extra, then
// ours (managed-by, the VM name, the run URL when there is one). The plan
// shows the same.
func Tags(vmName, runURL string, extra map[string]string) map[string]string {
	t := map[string]string{}
	for k, v := range extra {
		t[k] = v
	}
	t[TagManagedBy] = ManagedByValue
	t[TagVMName] = vmName
	if runURL != "" {
		t[TagRunURL] = runURL
	}
	return t
}

// Resource names derived from the VM name, as `az vm create` names them.
// The plan shows the same names.
func PublicIPName(vm string) string { return vm + "-ip" }
func NSGName(vm string) string      { return vm + "-nsg" }
func VNetName(vm string) string     { return vm + "-vnet" }
func NICName(vm string) string      { return vm + "-nic" }

// SubnetName is the one subnet of the VNet.
const SubnetName = "default"

// Kinds of resources, as reported in events and results.
const (
	KindResourceGroup = "resource-group"
	KindPublicIP      = "public-ip"
	KindNSG           = "network-security-group"
	KindVNet          = "virtual-network"
	KindNIC           = "network-interface"
	KindVM            = "virtual-machine"
	KindAutoShutdown  = "auto-shutdown"
)

// Action says what happened to a resource.
type Action string

// Actions.
const (
	ActionCreated Action = "created"
	ActionReused  Action = "reused"
	ActionUpdated Action = "updated"
)

// Phase of an Event.
type Phase string

// Phases.
const (
	PhaseStart  Phase = "start"
	PhaseDone   Phase = "done"
	PhaseFailed Phase = "failed"
)

// Event reports progress on one resource. Events are delivered one at a time (never
// concurrently), in the order they happen.
type Event struct {
	Kind    string
	Name    string
	Phase   Phase
	Action  Action // set when Phase is PhaseDone
	At      time.Time
	Elapsed time.Duration // set when Phase is PhaseDone or PhaseFailed
	Err     error         // set when Phase is PhaseFailed
}

// ResourceResult is the outcome for one resource.
type ResourceResult struct {
	Kind    string
	Name    string
	ID      string
	Action  Action
	Elapsed time.Duration
}

// Result describes the provisioned VM. On error Provision still returns what it learnt, so a
// caller can fetch the serial log when VMID is set.
type Result struct {
	VMID      string
	PublicIP  string
	FQDN      string
	Resources []ResourceResult // in completion order
	Total     time.Duration
	// Notes say where the deployment differs from the Spec because existing resources were
	// kept as they are.
	Notes []string
}

// Resource returns the result for kind, or false.
func (r *Result) Resource(kind string) (ResourceResult, bool) {
	for _, rr := range r.Resources {
		if rr.Kind == kind {
			return rr, true
		}
	}
	return ResourceResult{}, false
}

// run tracks one Provision call: events are serialised, results collected.
type run struct {
	p        *Provisioner
	mu       sync.Mutex
	progress func(Event)
	res      *Result
}

// step runs fn for one resource and reports start, done or failure.
func (r *run) step(kind, name string, fn func() (id string, a Action, err error)) error {
	start := r.p.now()
	r.emit(Event{Kind: kind, Name: name, Phase: PhaseStart, At: start})
	id, a, err := fn()
	end := r.p.now()
	if err != nil {
		r.emit(Event{Kind: kind, Name: name, Phase: PhaseFailed, At: end, Elapsed: end.Sub(start), Err: err})
		return err
	}
	r.mu.Lock()
	r.res.Resources = append(r.res.Resources, ResourceResult{Kind: kind, Name: name, ID: id, Action: a, Elapsed: end.Sub(start)})
	r.mu.Unlock()
	r.emit(Event{Kind: kind, Name: name, Phase: PhaseDone, Action: a, At: end, Elapsed: end.Sub(start)})
	return nil
}

func (r *run) emit(e Event) {
	if r.progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress(e)
}

// Provision creates what is missing and reuses what exists, in dependency order:
//
//	resource group ─▶ { public IP, NSG, VNet+subnet } in parallel ─▶ NIC ─▶ VM ─▶ auto-shutdown
//
// A resource group or VM of that name that is not tagged managed-by=nixos-cloud-deploy is
// refused with a *ForeignResourceError before anything is written. An existing VM is never PUT
// again (Azure refuses changed custom data with 409 PropertyChangeNotAllowed). progress may be
// nil.
func (p *Provisioner) Provision(ctx context.Context, s Spec, progress func(Event)) (*Result, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("invalid azure deployment spec: %w", err)
	}
	start := p.now()
	r := &run{p: p, progress: progress, res: &Result{}}
	defer func() { r.res.Total = p.now().Sub(start) }()

	// An endpoint that lacks the API versions (an Azure Stack Hub) would refuse even the first
	// read: check them before anything else.
	if p.checkAPIVersions {
		o := p.checkProviderVersions(ctx, &s)
		if o.err != nil {
			return r.res, o.err
		}
		r.res.Notes = append(r.res.Notes, o.notes...)
	}

	// The pre-flight checks read while the group and the VM are looked up; the first write
	// waits for them. A VM that exists is reused whatever they say.
	preCtx, stopPre := context.WithCancel(ctx)
	defer stopPre()
	preDone := make(chan preflightOutcome, 1)
	go func() { preDone <- p.preflight(preCtx, &s) }()
	var pre *preflightOutcome
	gate := func() error {
		if pre == nil {
			o := <-preDone
			pre = &o
			r.res.Notes = append(r.res.Notes, o.notes...)
		}
		return pre.err
	}

	var rgExisted bool
	err := r.step(KindResourceGroup, s.ResourceGroup, func() (string, Action, error) {
		id, a, err := p.ensureResourceGroup(ctx, &s, gate)
		rgExisted = a == ActionReused
		return id, a, err
	})
	if err != nil {
		return r.res, err
	}

	// A VM can only exist when its group did. Look before creating anything else, so a
	// foreign VM is refused before our network resources appear next to it.
	var existingVM *armcompute.VirtualMachine
	if rgExisted {
		vm, err := p.getVM(ctx, s.ResourceGroup, s.VMName, false)
		if err != nil && !isNotFound(err) {
			return r.res, explain(err, p.ec(fmt.Sprintf("read virtual machine %q", s.VMName), &s))
		}
		if err == nil {
			if !isOurs(vm.Tags) {
				return r.res, &ForeignResourceError{Kind: "virtual machine", Name: s.VMName, ID: deref(vm.ID)}
			}
			if strings.EqualFold(deref(vm.Properties.ProvisioningState), "Failed") {
				// Its create failed (AllocationFailed, OSProvisioningTimedOut, ...): it is not a
				// machine to install onto. VMID lets the caller show its serial log.
				r.res.VMID = deref(vm.ID)
				return r.res, p.failedVMError(ctx, &s)
			}
			existingVM = vm
			r.res.VMID = deref(vm.ID)
			r.res.Notes = append(r.res.Notes, reuseNotes(vm, &s)...)
		}
	}

	if existingVM == nil {
		if err := gate(); err != nil {
			return r.res, err
		}
	}

	// The three network resources depend only on the group: run them together. The first
	// failure cancels the others.
	var (
		pip         *armnetwork.PublicIPAddress
		nsgID       string
		subnetID    string
		netCtx, cnl = context.WithCancel(ctx)
		wg          sync.WaitGroup
		errMu       sync.Mutex
		netErrs     []error
	)
	fail := func(err error) {
		errMu.Lock()
		netErrs = append(netErrs, err)
		errMu.Unlock()
		cnl()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := r.step(KindPublicIP, PublicIPName(s.VMName), func() (string, Action, error) {
			v, a, err := p.ensurePublicIP(netCtx, &s)
			if err != nil {
				return "", "", err
			}
			pip = v
			return deref(v.ID), a, nil
		}); err != nil {
			fail(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := r.step(KindNSG, NSGName(s.VMName), func() (string, Action, error) {
			id, a, err := p.ensureNSG(netCtx, &s)
			nsgID = id
			return id, a, err
		}); err != nil {
			fail(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := r.step(KindVNet, VNetName(s.VMName), func() (string, Action, error) {
			id, sid, a, err := p.ensureVNet(netCtx, &s)
			subnetID = sid
			return id, a, err
		}); err != nil {
			fail(err)
		}
	}()
	wg.Wait()
	cnl()
	if len(netErrs) > 0 {
		return r.res, firstRealError(netErrs)
	}
	if pip.Properties != nil {
		r.res.PublicIP = deref(pip.Properties.IPAddress)
		if pip.Properties.DNSSettings != nil {
			r.res.FQDN = deref(pip.Properties.DNSSettings.Fqdn)
		}
	}

	var nicID string
	if err := r.step(KindNIC, NICName(s.VMName), func() (string, Action, error) {
		id, a, err := p.ensureNIC(ctx, &s, deref(pip.ID), nsgID, subnetID)
		nicID = id
		return id, a, err
	}); err != nil {
		return r.res, err
	}

	if err := r.step(KindVM, s.VMName, func() (string, Action, error) {
		if existingVM != nil {
			return deref(existingVM.ID), ActionReused, nil
		}
		id, err := p.createVM(ctx, &s, nicID, r.res)
		return id, ActionCreated, err
	}); err != nil {
		return r.res, err
	}

	if s.AutoShutdown != "" {
		if err := r.step(KindAutoShutdown, ScheduleName(s.VMName), func() (string, Action, error) {
			return p.ensureAutoShutdown(ctx, &s, r.res.VMID)
		}); err != nil {
			return r.res, err
		}
	}
	return r.res, nil
}

// reuseNotes explains what an existing VM keeps: Azure does not let custom data change, and we
// never re-PUT a VM, so size and image stay as they were too.
func reuseNotes(vm *armcompute.VirtualMachine, s *Spec) []string {
	notes := []string{fmt.Sprintf("virtual machine %q already exists and is reused as it is: its cloud-init custom data, size and image are not changed (destroy it to start over)", s.VMName)}
	if vm.Properties != nil && vm.Properties.HardwareProfile != nil {
		if got := string(deref(vm.Properties.HardwareProfile.VMSize)); got != "" && !strings.EqualFold(got, s.Size) {
			notes = append(notes, fmt.Sprintf("virtual machine %q has size %q, not the requested %q", s.VMName, got, s.Size))
		}
	}
	if vm.Tags != nil && s.HostKeyPublic != "" {
		if got := deref(vm.Tags[TagHostKey]); got != "" && got != strings.TrimSpace(s.HostKeyPublic) {
			notes = append(notes, fmt.Sprintf("virtual machine %q was created with another SSH host key (tag %s): pin that one, not this run's", s.VMName, TagHostKey))
		}
	}
	return notes
}

// firstRealError prefers the error that caused the cancellation over the siblings' "context
// canceled".
func firstRealError(errs []error) error {
	for _, e := range errs {
		if !errors.Is(e, context.Canceled) {
			return e
		}
	}
	return errs[0]
}

func isOurs(tags map[string]*string) bool {
	v, ok := tags[TagManagedBy]
	return ok && v != nil && *v == ManagedByValue
}

// ensureResourceGroup reads the group or creates it; beforeCreate runs first and may refuse.
func (p *Provisioner) ensureResourceGroup(ctx context.Context, s *Spec, beforeCreate func() error) (string, Action, error) {
	got, err := p.groups.Get(ctx, s.ResourceGroup, nil)
	switch {
	case err == nil:
		if !isOurs(got.Tags) {
			return "", "", &ForeignResourceError{Kind: "resource group", Name: s.ResourceGroup, ID: deref(got.ID)}
		}
		return deref(got.ID), ActionReused, nil
	case !isGroupNotFound(err):
		return "", "", explain(err, p.ec(fmt.Sprintf("read resource group %q", s.ResourceGroup), s))
	}
	if err := beforeCreate(); err != nil {
		return "", "", err
	}
	tags := s.tags()
	delete(tags, TagHostKey)
	created, err := p.groups.CreateOrUpdate(ctx, s.ResourceGroup, armresources.ResourceGroup{
		Location: to(s.Location),
		Tags:     tags,
	}, nil)
	if err != nil {
		return "", "", explain(err, p.ec(fmt.Sprintf("create resource group %q", s.ResourceGroup), s))
	}
	return deref(created.ID), ActionCreated, nil
}

func to[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
