package azure

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"
)

// fakeEntra is a Microsoft Entra token endpoint over TLS: OpenID discovery plus the
// client-credentials grant. It records each token request's form.
type fakeEntra struct {
	srv      *httptest.Server
	mu       sync.Mutex
	forms    []map[string]string
	paths    []string
	rejected map[string]bool // assertions answered invalid_client
}

// reject makes the fake refuse this client assertion.
func (e *fakeEntra) reject(assertion string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rejected == nil {
		e.rejected = map[string]bool{}
	}
	e.rejected[assertion] = true
}

func newFakeEntra(t *testing.T) *fakeEntra {
	e := &fakeEntra{}
	e.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "https://" + r.Host
		switch {
		case strings.HasSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration"), strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			tenant := strings.Split(strings.Trim(r.URL.Path, "/"), "/")[0]
			json.NewEncoder(w).Encode(map[string]string{
				"token_endpoint":         base + "/" + tenant + "/oauth2/v2.0/token",
				"authorization_endpoint": base + "/" + tenant + "/oauth2/v2.0/authorize",
				"issuer":                 base + "/" + tenant + "/v2.0",
			})
		case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			form := map[string]string{}
			for k := range r.PostForm {
				form[k] = r.PostForm.Get(k)
			}
			e.mu.Lock()
			e.forms = append(e.forms, form)
			e.paths = append(e.paths, r.URL.Path)
			n := len(e.forms)
			rejected := e.rejected[form["client_assertion"]]
			e.mu.Unlock()
			if form["client_secret"] == "wrong-secret-8f3a" || form["client_assertion"] == "rejected" || rejected {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
				return
			}
			fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3600,"access_token":"access-%d"}`, n)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// cloud is Entra ID at the fake's address (named the public cloud, whose rules it follows).
func (e *fakeEntra) cloud() ResolvedCloud {
	return ResolvedCloud{Name: CloudPublic, DisableInstanceDiscovery: true, Configuration: cloud.Configuration{
		ActiveDirectoryAuthorityHost: e.srv.URL + "/",
		Services:                     map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {Endpoint: "https://arm.example", Audience: "https://arm.example"}},
	}}
}

func (e *fakeEntra) options() *CredentialOptions {
	return &CredentialOptions{ClientOptions: azcore.ClientOptions{Transport: e.srv.Client()}}
}

// fakeGitHubOIDC serves ACTIONS_ID_TOKEN_REQUEST_URL and counts the ID tokens it hands out.
func fakeGitHubOIDC(t *testing.T) (*OIDCSource, *int, *sync.Mutex) {
	var (
		mu sync.Mutex
		n  int
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer request-token" {
			http.Error(w, "bad request token", http.StatusUnauthorized)
			return
		}
		if got := r.URL.Query().Get("audience"); got != OIDCAudience {
			http.Error(w, "audience "+got, http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "lost api-version", http.StatusBadRequest)
			return
		}
		mu.Lock()
		n++
		fmt.Fprintf(w, `{"count":1,"value":"gh-id-token-%d"}`, n)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return &OIDCSource{RequestURL: srv.URL + "/token?api-version=2.0", RequestToken: "request-token", HTTPClient: srv.Client()}, &n, &mu
}

func TestNewCredentialOIDCFetchesFreshIDTokenPerExchange(t *testing.T) {
	t.Parallel()
	entra := newFakeEntra(t)
	src, n, mu := fakeGitHubOIDC(t)
	cred, method, err := NewCredential(context.Background(), entra.cloud(), Credentials{
		ClientID: "app-id", TenantID: "tenant-id", OIDC: src,
	}, entra.options())
	if err != nil {
		t.Fatal(err)
	}
	if method != MethodOIDC {
		t.Fatalf("method = %q, want %q", method, MethodOIDC)
	}
	for _, scope := range []string{"https://arm.example/.default", "https://other.example/.default"} {
		if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{scope}}); err != nil {
			t.Fatalf("GetToken(%s): %v", scope, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if *n != 2 {
		t.Errorf("GitHub ID tokens fetched = %d, want 2 (one per Entra exchange)", *n)
	}
	var assertions []string
	for _, f := range entra.forms {
		assertions = append(assertions, f["client_assertion"])
		if f["client_secret"] != "" {
			t.Error("client secret sent alongside the OIDC assertion")
		}
	}
	if d := cmp.Diff([]string{"gh-id-token-1", "gh-id-token-2"}, assertions); d != "" {
		t.Errorf("assertions (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(entra.paths[0], "/tenant-id/") {
		t.Errorf("token path = %q, want the tenant", entra.paths[0])
	}
}

func TestNewCredentialSelection(t *testing.T) {
	t.Parallel()
	oidc := &OIDCSource{Fetch: func(context.Context, string) (string, error) { return "x", nil }}
	tests := []struct {
		name    string
		creds   Credentials
		want    string
		wantErr string
	}{
		{"oidc", Credentials{ClientID: "a", TenantID: "t", OIDC: oidc}, MethodOIDC, ""},
		// azure/login: a secret, when given, is used (src/Cli/AzureCliLogin.ts).
		{"secret before oidc", Credentials{ClientID: "a", TenantID: "t", OIDC: oidc, ClientSecret: "s"}, MethodClientSecret, ""},
		{"secret", Credentials{ClientID: "a", TenantID: "t", ClientSecret: "s"}, MethodClientSecret, ""},
		{"secret when oidc source is empty", Credentials{ClientID: "a", TenantID: "t", ClientSecret: "s", OIDC: &OIDCSource{}}, MethodClientSecret, ""},
		{"default when nothing is set", Credentials{}, MethodDefault, ""},
		{"default when oidc lacks ids", Credentials{OIDC: oidc}, MethodDefault, ""},
		{"secret without tenant", Credentials{ClientID: "a", ClientSecret: "s"}, "", "azure-client-secret is set but azure-tenant-id is missing"},
		{"secret without tenant, oidc usable", Credentials{ClientID: "a", ClientSecret: "s", OIDC: oidc}, "", "azure-client-secret is set but azure-tenant-id is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, method, err := NewCredential(context.Background(), ResolvedCloud{Configuration: cloud.AzurePublic}, tc.creds, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "\"s\"") {
					t.Error("error contains the secret")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if method != tc.want {
				t.Errorf("method = %q, want %q", method, tc.want)
			}
		})
	}
}

func TestNewCredentialErrorsSayWhatToConfigure(t *testing.T) {
	t.Parallel()
	entra := newFakeEntra(t)
	const subject = "repo:octo/infra:environment:prod"
	tests := []struct {
		name  string
		creds Credentials
		want  []string
	}{
		{
			name: "oidc rejected",
			creds: Credentials{ClientID: "app-id", TenantID: "tenant-id", Subject: subject,
				OIDC: &OIDCSource{Fetch: func(context.Context, string) (string, error) { return "rejected", nil }}},
			want: []string{"failed to get Azure token with oidc credential", `subject "` + subject + `"`, "https://token.actions.githubusercontent.com"},
		},
		{
			name:  "secret rejected",
			creds: Credentials{ClientID: "app-id", TenantID: "tenant-id", ClientSecret: "wrong-secret-8f3a"},
			want:  []string{"failed to get Azure token with client-secret credential", `has not expired`},
		},
		{
			name: "github token unavailable",
			creds: Credentials{ClientID: "app-id", TenantID: "tenant-id", Subject: subject,
				OIDC: &OIDCSource{Fetch: func(context.Context, string) (string, error) { return "", errors.New("no id-token permission") }}},
			want: []string{"no id-token permission", subject},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cred, _, err := NewCredential(context.Background(), entra.cloud(), tc.creds, entra.options())
			if err != nil {
				t.Fatal(err)
			}
			_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://arm.example/.default"}})
			var he *HintError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want HintError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "wrong-secret-8f3a") {
				t.Error("error contains the client secret")
			}
		})
	}
}

func TestDefaultHintMentionsSubject(t *testing.T) {
	t.Parallel()
	h := defaultHint(ResolvedCloud{Name: CloudPublic}, Credentials{Subject: "repo:o/r:ref:refs/heads/main"})
	for _, w := range []string{"id-token: write", `"repo:o/r:ref:refs/heads/main"`, "az login"} {
		if !strings.Contains(h, w) {
			t.Errorf("hint %q lacks %q", h, w)
		}
	}
}

func TestNewCredentialADFSUsesTenantADFS(t *testing.T) {
	t.Parallel()
	entra := newFakeEntra(t)
	rc := entra.cloud()
	rc.ADFS = true
	cred, _, err := NewCredential(context.Background(), rc, Credentials{ClientID: "a", TenantID: "t", ClientSecret: "s"}, entra.options())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://arm.example/.default"}}); err != nil {
		t.Fatal(err)
	}
	entra.mu.Lock()
	defer entra.mu.Unlock()
	if len(entra.paths) == 0 {
		t.Fatal("no token request reached the fake")
	}
	for _, p := range entra.paths {
		if !strings.HasPrefix(p, "/adfs/") {
			t.Errorf("token path %q, want tenant adfs", p)
		}
	}
}

// TestTokenHintReachesProvisionError: a credential failure surfaces from the first ARM call
// with its hint intact.
func TestTokenHintReachesProvisionError(t *testing.T) {
	t.Parallel()
	inner := &azfake.TokenCredential{}
	inner.SetError(errors.New("AADSTS700213: No matching federated identity record found"))
	cred := &hintedCredential{inner: inner, method: MethodOIDC, hint: func() string {
		return oidcHint(Credentials{ClientID: "app", TenantID: "t", Subject: "repo:o/r:ref:refs/heads/main"})
	}}
	f := newFakeARM()
	p, err := NewProvisioner(f.sub, cred, f.clientOptions(), WithPollFrequency(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Provision(context.Background(), testSpec(), nil)
	var he *HintError
	if !errors.As(err, &he) || !strings.Contains(he.Hint, `subject "repo:o/r:ref:refs/heads/main"`) {
		t.Fatalf("err = %v, want the OIDC hint", err)
	}
	if !strings.HasPrefix(err.Error(), `failed to read resource group "az-nixos-rg"`) || !strings.Contains(err.Error(), "AADSTS700213") {
		t.Errorf("err = %v", err)
	}
	if f.putCount() != 0 {
		t.Error("PUTs sent without a token")
	}
}

// TestClientSecretWinsOverOIDC: with azure-client-secret given and the job able to mint ID
// tokens (id-token: write), the secret is what reaches Entra, as azure/login does it, and GitHub
// is not even asked for an ID token.
func TestClientSecretWinsOverOIDC(t *testing.T) {
	t.Parallel()
	entra := newFakeEntra(t)
	src, n, mu := fakeGitHubOIDC(t)
	cred, method, err := NewCredential(context.Background(), entra.cloud(), Credentials{
		ClientID: "app-id", TenantID: "tenant-id", ClientSecret: "the-secret", OIDC: src,
	}, entra.options())
	if err != nil {
		t.Fatal(err)
	}
	if method != MethodClientSecret {
		t.Errorf("method = %q, want %q", method, MethodClientSecret)
	}
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://arm.example/.default"}}); err != nil {
		t.Fatal(err)
	}
	entra.mu.Lock()
	defer entra.mu.Unlock()
	if len(entra.forms) != 1 || entra.forms[0]["client_secret"] != "the-secret" || entra.forms[0]["client_assertion"] != "" {
		t.Errorf("token requests = %v, want one with the client secret and no assertion", entra.forms)
	}
	mu.Lock()
	defer mu.Unlock()
	if *n != 0 {
		t.Errorf("GitHub ID tokens fetched = %d, want 0", *n)
	}
}

// TestOIDCAudiencePerCloud: the ID token is asked for with the audience the cloud's Entra ID
// expects, unless one is given.
func TestOIDCAudiencePerCloud(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cloud, given, want string
	}{
		{CloudPublic, "", "api://AzureADTokenExchange"},
		{CloudGovernment, "", "api://AzureADTokenExchangeUSGov"},
		{CloudChina, "", "api://AzureADTokenExchangeChina"},
		{CloudGovernment, "api://custom", "api://custom"},
	}
	for _, tc := range tests {
		entra := newFakeEntra(t)
		rc := entra.cloud()
		rc.Name = tc.cloud
		var got []string
		var mu sync.Mutex
		src := &OIDCSource{Fetch: func(_ context.Context, aud string) (string, error) {
			mu.Lock()
			got = append(got, aud)
			mu.Unlock()
			return "a.b.c", nil
		}}
		cred, _, err := NewCredential(context.Background(), rc, Credentials{ClientID: "a", TenantID: "t", OIDC: src, OIDCAudience: tc.given}, entra.options())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://arm.example/.default"}}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s with %q: audiences asked for %q, want %q", tc.cloud, tc.given, got, tc.want)
		}
	}
}

// TestIDTokenRetriedLikeActionsCore: 502, 503 and 504 are retried (up to ten times), anything else
// is not; the waits double from 10 ms.
func TestIDTokenRetriedLikeActionsCore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		statuses  []int // answered in order; the last repeats
		wantCalls int
		wantErr   string
	}{
		{"503 then ok", []int{503, 502, 504, 200}, 4, ""},
		{"401 is final", []int{401, 200}, 1, "HTTP 401"},
		{"404 is final", []int{404, 200}, 1, "HTTP 404"},
		{"always 503", []int{503}, 11, "HTTP 503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				st := tc.statuses[min(calls, len(tc.statuses)-1)]
				calls++
				mu.Unlock()
				w.WriteHeader(st)
				if st == 200 {
					fmt.Fprint(w, `{"value":"id-token"}`)
				}
			}))
			defer srv.Close()
			var waits []time.Duration
			src := &OIDCSource{RequestURL: srv.URL + "/?api-version=2.0", RequestToken: "rt", HTTPClient: srv.Client(),
				sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
			tok, err := src.IDToken(context.Background(), OIDCAudience)
			if tc.wantErr == "" && (err != nil || tok != "id-token") {
				t.Fatalf("IDToken = %q, %v", tok, err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if calls != tc.wantCalls {
				t.Errorf("requests = %d, want %d", calls, tc.wantCalls)
			}
			for i, d := range waits {
				if want := 5 * time.Millisecond << min(i+1, 10); d != want {
					t.Errorf("wait %d = %v, want %v", i, d, want)
				}
			}
		})
	}
}

// TestOIDCHintReadsSubClaim: when Entra refuses the assertion, the hint names the subject GitHub
// really put in the token (here an environment), not the one guessed from GITHUB_REF.
func TestOIDCHintReadsSubClaim(t *testing.T) {
	t.Parallel()
	entra := newFakeEntra(t)
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://token.actions.githubusercontent.com","sub":"repo:octo/infra:environment:prod","aud":"api://AzureADTokenExchange"}`))
	jwt := "eyJhbGciOiJSUzI1NiJ9." + payload + ".sig"
	src := &OIDCSource{Fetch: func(context.Context, string) (string, error) { return jwt, nil }}
	cred, _, err := NewCredential(context.Background(), entra.cloud(), Credentials{
		ClientID: "app-id", TenantID: "tenant-id", Subject: "repo:octo/infra:ref:refs/heads/main", OIDC: src,
	}, entra.options())
	if err != nil {
		t.Fatal(err)
	}
	entra.reject(jwt)
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://arm.example/.default"}})
	var he *HintError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want a HintError", err)
	}
	if !strings.Contains(he.Hint, `subject "repo:octo/infra:environment:prod"`) || strings.Contains(he.Hint, "refs/heads/main") {
		t.Errorf("hint = %q, want the token's sub claim", he.Hint)
	}
}
