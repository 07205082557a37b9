package azure

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
			name: "entra id hub",
			body: func(string) string {
				return `{"galleryEndpoint":"https://gallery.local/","graphEndpoint":"https://graph.windows.net/","portalEndpoint":"https://portal.local/",
				"authentication":{"loginEndpoint":"https://login.microsoftonline.com/","audiences":["https://management.contoso.onmicrosoft.com/1234"]}}`
			},
			authority: "https://login.microsoftonline.com/",
			audience:  "https://management.contoso.onmicrosoft.com/1234",
		},
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
