// Package azuretest is an HTTPS emulator of Azure Resource Manager, Entra ID's client-secret token endpoint and
// the Azure Stack Hub metadata endpoint. The real Azure SDK for Go clients (azidentity, armresources,
// armnetwork, armcompute) work against it unchanged, and so does a built binary that is pointed at it as an
// Azure Stack Hub (`azure-environment: AzureStack`, `arm-endpoint: <URL>`, `SSL_CERT_FILE=<CA file>`).
//
// It keeps state (resource groups, public IPs, NSGs, VNets with subnets, NICs, VMs with their OS disks,
// DevTestLab schedules and any other resource generically), runs long-running operations the way ARM does
// (201/202 with Azure-AsyncOperation or Location, InProgress then Succeeded or Failed), honours per-type
// latencies, injects faults, records requests and calls hooks when a VM is created or runs a command.
package azuretest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Defaults used when Options leaves a field empty.
const (
	DefaultTenantID       = "11111111-1111-4111-8111-111111111111"
	DefaultClientID       = "22222222-2222-4222-8222-222222222222"
	DefaultClientSecret   = "azuretest-client-secret"
	DefaultSubscriptionID = "33333333-3333-4333-8333-333333333333"
	DefaultAudience       = "https://management.azurestack.local/44444444-4444-4444-8444-444444444444"
	DefaultSerialLog      = "[    0.000000] Linux version 6.8.0-azure (emulated)\r\nUbuntu 24.04 LTS azuretest ttyS0\r\n"
)

// Latency is how long operations take, per resource type. ARM answers resource group writes and schedules
// synchronously, so for those the response itself is delayed; the network and compute resources are
// long-running operations that stay InProgress for the given time.
type Latency struct {
	ResourceGroup       time.Duration // PUT of a resource group (synchronous)
	ResourceGroupDelete time.Duration // DELETE of a resource group (long-running, cascades)
	PublicIP            time.Duration
	NSG                 time.Duration
	VNet                time.Duration // virtual networks and subnets
	NIC                 time.Duration
	VM                  time.Duration // create or update of a virtual machine
	Delete              time.Duration // DELETE of a single network or compute resource
	RunCommand          time.Duration // on top of the time the RunCommand hook takes
	Other               time.Duration // schedules and any other resource type (synchronous)
}

// Options configure an Emulator. The zero value works: defaults are filled in by New.
type Options struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" by default.
	Addr string
	// TenantID, ClientID and ClientSecret are the only credentials the token endpoint accepts.
	TenantID, ClientID, ClientSecret string
	// SubscriptionID is the only subscription ARM knows; others answer 404 SubscriptionNotFound.
	SubscriptionID string
	// Audience is the token audience published in the metadata endpoint; token requests must ask for
	// the scope Audience+"/.default".
	Audience string
	// ADFS makes the emulator an AD FS Azure Stack Hub: the metadata's loginEndpoint is URL()+"/adfs",
	// and credentials use the tenant "adfs" (token endpoint /adfs/oauth2/token) instead of TenantID.
	ADFS bool
	// TokenLifetime is the lifetime of issued access tokens; one hour by default.
	TokenLifetime time.Duration
	// PublicIPPrefix is the pool public IP addresses are assigned from, lowest free address first,
	// starting at the fourth host address (10.200.0.4 for the default 10.200.0.0/24).
	PublicIPPrefix netip.Prefix
	// Latency per resource type; zero means immediate (but still asynchronous where ARM is).
	Latency Latency
	// PollRetryAfter, when non-zero, is sent as Retry-After on long-running operation responses, which
	// the SDK's poller then waits instead of its PollFrequency. Real ARM sends values of 10 s and more.
	PollRetryAfter time.Duration
	// OnVMCreated is called when a VM's create operation completes successfully, before the operation
	// reports Succeeded (so "Succeeded" means "booted", as the guest agent's report does on Azure).
	OnVMCreated func(vm VMRecord)
	// RunCommand answers POST .../virtualMachines/{vm}/runCommand. Nil answers every script with empty
	// output and exit code 0.
	RunCommand func(ctx context.Context, cmd RunCommand) RunCommandResult
	// SerialLog returns the serial console log served through boot diagnostics. Nil serves
	// DefaultSerialLog; SetSerialLog overrides both for one VM.
	SerialLog func(vm VMRecord) string
	// SKUs are the VM sizes offered in each of Locations; nil means DefaultSKUs and
	// DefaultLocations. A size or location outside them is refused with SkuNotAvailable.
	SKUs      []SKU
	Locations []string
	// APIVersions, when set, are the only api-versions served per resource type (for example
	// AzureStackHubProfile); nil serves every version and lists PublicAzureAPIVersions in the
	// provider documents.
	APIVersions APIVersions
}

// Emulator is a running ARM emulator. All methods are safe for concurrent use.
type Emulator struct {
	opts    Options
	srv     *httptest.Server
	ca      *authority
	client  *http.Client
	closing chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu         sync.Mutex
	latency    Latency
	tokens     map[string]time.Time
	resources  map[string]*resource // keyed by lower-case resource ID
	ops        map[string]*operation
	faults     []*faultState
	requests   []Request
	serialLogs map[string]string // lower-case VM ID -> log
	takenDNS   map[string]bool   // DNS names other customers hold
	restricted map[string][]skuRestriction
	quotas     map[string]int    // "location/family" -> vCPU limit
	sas        map[string]string // SAS signature -> lower-case VM ID
}

// New starts an emulator. It panics when it cannot listen or make its certificates, as httptest does.
func New(opts Options) *Emulator {
	opts = withDefaults(opts)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		panic(fmt.Sprintf("azuretest: failed to listen on %q: %v", opts.Addr, err))
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		ips = append(ips, tcp.IP)
	}
	ca, err := newAuthority(ips, []string{"localhost"})
	if err != nil {
		panic("azuretest: " + err.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Emulator{
		opts:       opts,
		ca:         ca,
		closing:    make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		latency:    opts.Latency,
		tokens:     map[string]time.Time{},
		resources:  map[string]*resource{},
		ops:        map[string]*operation{},
		serialLogs: map[string]string{},
		sas:        map[string]string{},
	}
	e.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
	}}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(e.serveHTTP))
	e.srv.Listener.Close()
	e.srv.Listener = ln
	// Clients that do not trust the CA are expected in tests; their handshake errors are not news.
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}
	e.srv.StartTLS()
	return e
}

func withDefaults(o Options) Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Addr, "127.0.0.1:0")
	def(&o.TenantID, DefaultTenantID)
	def(&o.ClientID, DefaultClientID)
	def(&o.ClientSecret, DefaultClientSecret)
	def(&o.SubscriptionID, DefaultSubscriptionID)
	def(&o.Audience, DefaultAudience)
	if o.TokenLifetime == 0 {
		o.TokenLifetime = time.Hour
	}
	if !o.PublicIPPrefix.IsValid() {
		o.PublicIPPrefix = netip.MustParsePrefix("10.200.0.0/24")
	}
	o.PublicIPPrefix = o.PublicIPPrefix.Masked()
	if o.SKUs == nil {
		o.SKUs = DefaultSKUs
	}
	if o.Locations == nil {
		o.Locations = DefaultLocations
	}
	return o
}

// URL is the emulator's base URL, "https://127.0.0.1:PORT" without a trailing slash. It is the ARM
// endpoint, the metadata host and the Entra authority host at once.
func (e *Emulator) URL() string { return e.srv.URL }

// Options returns the effective options, defaults filled in.
func (e *Emulator) Options() Options { return e.opts }

// CACertPEM returns the PEM-encoded CA certificate that signed the emulator's server certificate.
func (e *Emulator) CACertPEM() []byte { return bytes.Clone(e.ca.caPEM) }

// WriteCACert writes the CA certificate to path (mode 0644), for SSL_CERT_FILE.
func (e *Emulator) WriteCACert(path string) error {
	if err := os.WriteFile(path, e.ca.caPEM, 0o644); err != nil {
		return fmt.Errorf("failed to write CA certificate: %w", err)
	}
	return nil
}

// HTTPClient returns a client that trusts the emulator's CA and nothing else (one shared client).
func (e *Emulator) HTTPClient() *http.Client { return e.client }

// SetLatency replaces the latencies for operations started from now on.
func (e *Emulator) SetLatency(l Latency) {
	e.mu.Lock()
	e.latency = l
	e.mu.Unlock()
}

// Close stops the server, abandons pending operations and waits for hooks that are running.
func (e *Emulator) Close() {
	select {
	case <-e.closing:
		return
	default:
	}
	close(e.closing)
	e.cancel()
	e.srv.Close()
	e.wg.Wait()
	e.client.CloseIdleConnections()
}

// Request is one recorded HTTP request. Authorization is removed from Header and a client secret in a
// token request body is replaced by "REDACTED".
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	// Status is the status code the emulator answered with.
	Status int
	Time   time.Time
}

// Requests returns a copy of the requests recorded so far, in arrival order.
func (e *Emulator) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Request, len(e.requests))
	copy(out, e.requests)
	return out
}

// ResetRequests forgets the recorded requests.
func (e *Emulator) ResetRequests() {
	e.mu.Lock()
	e.requests = nil
	e.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (e *Emulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestContent", "failed to read the request body")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	w.Header().Set("x-ms-request-id", e.newID())
	if c := r.Header.Get("x-ms-correlation-request-id"); c != "" {
		w.Header().Set("x-ms-correlation-request-id", c)
	}
	defer func() {
		h := r.Header.Clone()
		h.Del("Authorization")
		rec := Request{
			Method: r.Method,
			Path:   r.URL.Path,
			Query:  r.URL.Query(),
			Header: h,
			Body:   redactSecret(r, body),
			Status: sw.status,
			Time:   time.Now(),
		}
		e.mu.Lock()
		e.requests = append(e.requests, rec)
		e.mu.Unlock()
	}()

	// Tolerate "//" from clients that join an endpoint ending in "/" with a path starting with "/".
	for strings.Contains(r.URL.Path, "//") {
		r.URL.Path = strings.ReplaceAll(r.URL.Path, "//", "/")
	}
	path := r.URL.Path
	lower := strings.ToLower(path)
	switch {
	case lower == "/metadata/endpoints":
		e.serveMetadata(w, r)
	case strings.HasPrefix(lower, "/bootdiagnostics/"):
		e.serveBootDiagnosticsBlob(w, r)
	case strings.HasPrefix(lower, "/subscriptions"):
		e.serveARM(w, r, body)
	case strings.Contains(lower, "/oauth2/") || strings.Contains(lower, "/.well-known/openid-configuration"):
		e.serveIdentity(w, r)
	default:
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no route for %s %s", r.Method, path))
	}
}

func redactSecret(r *http.Request, body []byte) []byte {
	if !strings.Contains(strings.ToLower(r.URL.Path), "/oauth2/") {
		return bytes.Clone(body)
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil
	}
	for _, k := range []string{"client_secret", "client_assertion"} {
		if v.Has(k) {
			v.Set(k, "REDACTED")
		}
	}
	return []byte(v.Encode())
}

// newID returns a fresh GUID-shaped identifier.
func (e *Emulator) newID() string {
	var b [16]byte
	randRead(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// sleep waits d unless the request or the emulator ends first.
func (e *Emulator) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-e.closing:
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v == nil {
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}
