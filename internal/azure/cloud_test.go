package azure

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"
)

func TestResolveCloudNamed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, want, authority string
	}{
		{"", CloudPublic, "https://login.microsoftonline.com/"},
		{"AzureCloud", CloudPublic, "https://login.microsoftonline.com/"},
		{"azurechinacloud", CloudChina, "https://login.chinacloudapi.cn/"},
		{"AzureUSGovernment", CloudGovernment, "https://login.microsoftonline.us/"},
	}
	for _, tc := range tests {
		rc, err := ResolveCloud(context.Background(), Cloud{Name: tc.name}, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.name, err)
		}
		if rc.Name != tc.want || rc.Configuration.ActiveDirectoryAuthorityHost != tc.authority || rc.DisableInstanceDiscovery {
			t.Errorf("%q: got %+v", tc.name, rc)
		}
		if rc.ARMEndpoint() == "" {
			t.Errorf("%q: no ARM endpoint", tc.name)
		}
	}
	if _, err := ResolveCloud(context.Background(), Cloud{Name: "Mars"}, nil); err == nil || !strings.Contains(err.Error(), `unknown azure environment "Mars"`) {
		t.Errorf("unknown cloud: err = %v", err)
	}
}

// TestResolveCloudAzureStack discovers the authority and audience from the hub's metadata
// endpoint over TLS, in the object form Azure Stack Hub answers with and the list form public
// ARM answers 2022-09-01 with.
func TestResolveCloudAzureStack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      func(base string) string
		authority string
		audience  string
		adfs      bool
	}{
		{
			name: "ad fs hub",
			body: func(string) string {
				return `{"authentication":{"loginEndpoint":"https://adfs.local.azurestack.external/adfs","audiences":["https://management.adfs.azurestack.local/5678"]}}`
			},
			authority: "https://adfs.local.azurestack.external/",
			audience:  "https://management.adfs.azurestack.local/5678",
			adfs:      true,
		},
		{
			name: "list form picks our resource manager",
			body: func(base string) string {
				return fmt.Sprintf(`[{"name":"Other","resourceManager":"https://elsewhere/","authentication":{"loginEndpoint":"https://wrong/","audiences":["https://wrong/"]}},
				{"name":"Stack","resourceManager":%q,"authentication":{"loginEndpoint":"https://login.stack.example","audiences":["https://management.stack.example/"]}}]`, base+"/")
			},
			authority: "https://login.stack.example/",
			audience:  "https://management.stack.example/",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var srv *httptest.Server
			srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metadata/endpoints" || r.URL.Query().Get("api-version") != "2022-09-01" {
					http.NotFound(w, r)
					return
				}
				if r.Header.Get("Authorization") != "" {
					t.Error("metadata request carries credentials")
				}
				fmt.Fprint(w, tc.body(srv.URL))
			}))
			t.Cleanup(srv.Close)
			rc, err := ResolveCloud(context.Background(), Cloud{Name: "AzureStack", ARMEndpoint: srv.URL + "/"}, srv.Client())
			if err != nil {
				t.Fatalf("ResolveCloud: %v", err)
			}
			want := ResolvedCloud{
				Name: CloudStack,
				Configuration: cloud.Configuration{
					ActiveDirectoryAuthorityHost: tc.authority,
					Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
						cloud.ResourceManager: {Endpoint: srv.URL, Audience: tc.audience},
					},
				},
				DisableInstanceDiscovery: true,
				ADFS:                     tc.adfs,
			}
			if d := cmp.Diff(want, rc); d != "" {
				t.Errorf("resolved (-want +got):\n%s", d)
			}
			if got := rc.ClientOptions().Cloud; got.Services[cloud.ResourceManager].Endpoint != srv.URL {
				t.Errorf("client options cloud = %+v", got)
			}
		})
	}
}

func TestResolveCloudAzureStackErrors(t *testing.T) {
	t.Parallel()
	broken := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metadata/endpoints":
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(broken.Close)
	empty := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"authentication":{}}`)
	}))
	empty.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-certificate case fails the handshake on purpose
	empty.StartTLS()
	t.Cleanup(empty.Close)
	tests := []struct {
		name   string
		c      Cloud
		client *http.Client
		want   string
	}{
		{"no endpoint", Cloud{Name: "AzureStack"}, nil, "needs an ARM endpoint: set arm-endpoint"},
		{"plain http", Cloud{Name: "AzureStack", ARMEndpoint: "http://management.local"}, nil, `must be an https:// URL`},
		{"http error", Cloud{Name: "AzureStack", ARMEndpoint: broken.URL}, broken.Client(), "HTTP 500"},
		{"incomplete metadata", Cloud{Name: "AzureStack", ARMEndpoint: empty.URL}, empty.Client(), "no authentication.loginEndpoint"},
		{"untrusted certificate", Cloud{Name: "AzureStack", ARMEndpoint: empty.URL}, &http.Client{}, "SSL_CERT_FILE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ResolveCloud(context.Background(), tc.c, tc.client)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestAzureStackEndToEnd: discovery, then a client-secret token from the discovered authority
// for the discovered audience, with instance discovery off (the fake authority is no public
// Entra host, so MSAL would otherwise refuse it).
func TestAzureStackEndToEnd(t *testing.T) {
	t.Parallel()
	entra := newFakeEntra(t)
	hub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"authentication":{"loginEndpoint":%q,"audiences":["https://management.stack.example/abc"]}}`, entra.srv.URL)
	}))
	t.Cleanup(hub.Close)
	rc, err := ResolveCloud(context.Background(), Cloud{Name: "AzureStack", ARMEndpoint: hub.URL}, hub.Client())
	if err != nil {
		t.Fatal(err)
	}
	cred, method, err := NewCredential(context.Background(), rc, Credentials{ClientID: "app", TenantID: "stack-tenant", ClientSecret: "s3"}, entra.options())
	if err != nil || method != MethodClientSecret {
		t.Fatalf("NewCredential = %q, %v", method, err)
	}
	scope := rc.Configuration.Services[cloud.ResourceManager].Audience + "/.default"
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{scope}}); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	entra.mu.Lock()
	defer entra.mu.Unlock()
	if len(entra.forms) != 1 || !strings.HasPrefix(entra.forms[0]["scope"], "https://management.stack.example/abc/.default") || !strings.HasPrefix(entra.paths[0], "/stack-tenant/") {
		t.Errorf("token requests = %v at %v", entra.forms, entra.paths)
	}
}

// recorder is an HTTPS server that answers the Azure Stack metadata document with the given
// authentication block and records every request's Authorization header and form: it stands
// for an arm-endpoint someone else controls.
type recorder struct {
	srv   *httptest.Server
	mu    sync.Mutex
	auths []string // "METHOD PATH Authorization"
	forms []url.Values
}

func newRecorder(t *testing.T, auth func(self string) string) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		rec.mu.Lock()
		rec.auths = append(rec.auths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		rec.forms = append(rec.forms, r.PostForm)
		rec.mu.Unlock()
		base := "https://" + r.Host
		switch {
		case r.URL.Path == "/metadata/endpoints":
			fmt.Fprintf(w, `{"authentication":%s}`, auth(base))
		case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			tenant := strings.Split(strings.Trim(r.URL.Path, "/"), "/")[0]
			fmt.Fprintf(w, `{"token_endpoint":"%[1]s/%[2]s/oauth2/v2.0/token","authorization_endpoint":"%[1]s/%[2]s/oauth2/v2.0/authorize","issuer":"%[1]s/%[2]s/v2.0"}`, base, tenant)
		case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3600,"access_token":"stolen"}`)
		default:
			fmt.Fprint(w, `{"error":{"code":"ResourceNotFound","message":"no"}}`)
		}
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// TestAzureStackRefusesPublicCloudMetadata (issue 16): metadata that points the login or the
// audience at a public cloud is refused before any credential is used, so no token valid on
// public Azure is ever sent to arm-endpoint.
func TestAzureStackRefusesPublicCloudMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		auth string
		want string
	}{
		{"public login and audience", `{"loginEndpoint":"https://login.microsoftonline.com/","audiences":["https://management.azure.com/"]}`, `loginEndpoint "https://login.microsoftonline.com/" is a public-cloud host`},
		{"public audience, own login", `{"loginEndpoint":"https://adfs.stack.example/adfs","audiences":["https://management.core.windows.net/"]}`, `audience "https://management.core.windows.net/" is a public-cloud host`},
		{"us government login", `{"loginEndpoint":"https://login.microsoftonline.us/","audiences":["https://management.stack.example/1"]}`, "public-cloud host"},
		{"china audience", `{"loginEndpoint":"https://adfs.stack.example/adfs","audiences":["https://management.chinacloudapi.cn"]}`, "public-cloud host"},
		{"entra id tenant audience", `{"loginEndpoint":"https://adfs.stack.example/adfs","audiences":["https://management.contoso.onmicrosoft.com/1234"]}`, "public-cloud host"},
		{"audience is an app id", `{"loginEndpoint":"https://adfs.stack.example/adfs","audiences":["797f4846-ba00-4fd7-ba43-dac1f8f63013"]}`, "not an https URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder(t, func(string) string { return tc.auth })
			rc, err := ResolveCloud(context.Background(), Cloud{Name: CloudStack, ARMEndpoint: rec.srv.URL}, rec.srv.Client())
			if err == nil {
				// What the action would do next: a credential and an ARM call.
				cred, _, cerr := NewCredential(context.Background(), rc, Credentials{ClientID: "app", TenantID: "t", ClientSecret: "s3cret"},
					&CredentialOptions{ClientOptions: azcore.ClientOptions{Transport: rec.srv.Client()}})
				if cerr == nil {
					co := rc.ClientOptions()
					co.Transport = rec.srv.Client()
					if p, perr := NewProvisioner("33333333-3333-4333-8333-333333333333", cred, co); perr == nil {
						_, err = p.LookupVM(context.Background(), "rg", "vm")
					}
				}
				t.Fatalf("ResolveCloud accepted the metadata (then: %v)", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.auths) != 1 || rec.auths[0] != "GET /metadata/endpoints " {
				t.Errorf("requests at arm-endpoint = %q, want only the metadata GET without Authorization", rec.auths)
			}
		})
	}
}

// TestAzureStackNeverGetsGitHubIDToken: with AzureStack the authority comes from arm-endpoint, so
// a GitHub ID token (which public Entra ID would exchange for a real token) is never fetched or
// sent there, even when the job could mint one; the hub's own authority gets the client secret.
func TestAzureStackNeverGetsGitHubIDToken(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t, func(self string) string {
		return fmt.Sprintf(`{"loginEndpoint":%q,"audiences":["https://management.stack.example/1"]}`, self)
	})
	rc, err := ResolveCloud(context.Background(), Cloud{Name: CloudStack, ARMEndpoint: rec.srv.URL}, rec.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	fetched := 0
	src := &OIDCSource{Fetch: func(context.Context, string) (string, error) { fetched++; return "gh.id.token", nil }}
	opts := &CredentialOptions{ClientOptions: azcore.ClientOptions{Transport: rec.srv.Client()}}
	cred, method, err := NewCredential(context.Background(), rc, Credentials{ClientID: "app", TenantID: "t", OIDC: src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if method == MethodOIDC {
		t.Fatalf("method = %q with AzureStack", method)
	}
	_, _ = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.stack.example/1/.default"}})
	if fetched != 0 {
		t.Errorf("GitHub ID tokens fetched = %d, want 0", fetched)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, f := range rec.forms {
		if f.Get("client_assertion") != "" {
			t.Errorf("a client assertion reached arm-endpoint's authority: %v", f)
		}
	}
}
