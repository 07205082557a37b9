package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Credential methods, in the order NewCredential tries them.
const (
	MethodOIDC         = "oidc"
	MethodClientSecret = "client-secret"
	MethodDefault      = "default"
)

// OIDCAudience is the audience Entra ID expects on a federated GitHub token.
const OIDCAudience = "api://AzureADTokenExchange"

// OIDCSource fetches GitHub Actions ID tokens. Either RequestURL and RequestToken (the values of
// ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN) or Fetch must be set.
type OIDCSource struct {
	RequestURL   string
	RequestToken string
	// Fetch, when set, replaces the HTTP request to RequestURL.
	Fetch func(ctx context.Context, audience string) (string, error)
	// HTTPClient is used for RequestURL; nil means http.DefaultClient.
	HTTPClient *http.Client
}

func (o *OIDCSource) usable() bool {
	return o != nil && (o.Fetch != nil || (o.RequestURL != "" && o.RequestToken != ""))
}

// IDToken fetches a fresh GitHub ID token for audience. GitHub's tokens live about five minutes,
// so callers ask again for every Entra token exchange instead of caching one.
func (o *OIDCSource) IDToken(ctx context.Context, audience string) (string, error) {
	if o.Fetch != nil {
		return o.Fetch(ctx, audience)
	}
	u, err := url.Parse(o.RequestURL)
	if err != nil {
		return "", fmt.Errorf("failed to parse ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("failed to build GitHub ID token request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+o.RequestToken)
	req.Header.Set("Accept", "application/json")
	c := o.HTTPClient
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("failed to request GitHub ID token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("failed to read GitHub ID token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("failed to request GitHub ID token: HTTP %d (does the job have `permissions: id-token: write`?)", resp.StatusCode)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", errors.New("failed to parse GitHub ID token response: no \"value\"")
	}
	return v.Value, nil
}

// Credentials are the Azure identity inputs. Subject is the federated-credential subject this run
// presents (repo:OWNER/REPO:ref:... or repo:OWNER/REPO:environment:NAME); it only feeds hints.
type Credentials struct {
	ClientID       string
	TenantID       string
	SubscriptionID string
	ClientSecret   string
	OIDC           *OIDCSource
	Subject        string
}

// CredentialOptions tune NewCredential. Tests set ClientOptions.Transport.
type CredentialOptions struct {
	ClientOptions azcore.ClientOptions
}

// NewCredential picks the first usable method: GitHub OIDC (client ID, tenant ID and an ID token
// source), then a client secret, then azidentity's default chain (environment, workload
// identity, managed identity, Azure CLI ...). It returns the credential and the method's name.
// Token errors from the returned credential carry a hint saying what to configure.
func NewCredential(ctx context.Context, rc ResolvedCloud, c Credentials, opts *CredentialOptions) (azcore.TokenCredential, string, error) {
	_ = ctx // reserved: credential construction does no I/O today
	if opts == nil {
		opts = &CredentialOptions{}
	}
	co := opts.ClientOptions
	co.Cloud = rc.Configuration
	tenant := c.TenantID
	if rc.ADFS {
		tenant = "adfs"
	}
	haveIDs := c.ClientID != "" && c.TenantID != ""

	switch {
	case c.OIDC.usable() && haveIDs:
		src := c.OIDC
		cred, err := azidentity.NewClientAssertionCredential(tenant, c.ClientID,
			func(ctx context.Context) (string, error) { return src.IDToken(ctx, OIDCAudience) },
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: rc.DisableInstanceDiscovery})
		if err != nil {
			return nil, "", fmt.Errorf("failed to create OIDC credential: %w", err)
		}
		return &hintedCredential{inner: cred, method: MethodOIDC, hint: oidcHint(c)}, MethodOIDC, nil
	case c.ClientSecret != "" && haveIDs:
		cred, err := azidentity.NewClientSecretCredential(tenant, c.ClientID, c.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: rc.DisableInstanceDiscovery})
		if err != nil {
			return nil, "", fmt.Errorf("failed to create client secret credential: %w", err)
		}
		return &hintedCredential{inner: cred, method: MethodClientSecret,
			hint: fmt.Sprintf("check that azure-client-secret belongs to app %q in tenant %q and has not expired", c.ClientID, c.TenantID)}, MethodClientSecret, nil
	case c.ClientSecret != "" || c.OIDC.usable():
		if missing := missingIDs(c); missing != "" && c.ClientSecret != "" {
			return nil, "", fmt.Errorf("azure-client-secret is set but %s is missing: set it (or AZURE_CLIENT_ID / AZURE_TENANT_ID)", missing)
		}
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
		ClientOptions: co, TenantID: c.TenantID, DisableInstanceDiscovery: rc.DisableInstanceDiscovery})
	if err != nil {
		return nil, "", fmt.Errorf("failed to create default Azure credential: %w", err)
	}
	return &hintedCredential{inner: cred, method: MethodDefault, hint: defaultHint(c)}, MethodDefault, nil
}

func missingIDs(c Credentials) string {
	var m []string
	if c.ClientID == "" {
		m = append(m, "azure-client-id")
	}
	if c.TenantID == "" {
		m = append(m, "azure-tenant-id")
	}
	return strings.Join(m, " and ")
}

func oidcHint(c Credentials) string {
	subj := c.Subject
	if subj == "" {
		subj = "repo:OWNER/REPO:ref:refs/heads/BRANCH"
	}
	return fmt.Sprintf("add a federated credential to app %q in tenant %q with issuer https://token.actions.githubusercontent.com, subject %q and audience %s (az ad app federated-credential create --id %s ...)",
		c.ClientID, c.TenantID, subj, OIDCAudience, c.ClientID)
}

func defaultHint(c Credentials) string {
	subj := c.Subject
	if subj == "" {
		subj = "repo:OWNER/REPO:ref:refs/heads/BRANCH"
	}
	var b strings.Builder
	b.WriteString("no Azure credential is configured: ")
	if c.OIDC.usable() {
		fmt.Fprintf(&b, "set %s to use GitHub OIDC (the app needs a federated credential with subject %q)", missingIDs(c), subj)
	} else {
		fmt.Fprintf(&b, "in GitHub Actions grant `permissions: id-token: write` and set azure-client-id and azure-tenant-id (federated credential subject %q), or set azure-client-secret; on a laptop run `az login`", subj)
	}
	return b.String()
}

// hintedCredential adds what-to-configure advice to token errors.
type hintedCredential struct {
	inner  azcore.TokenCredential
	method string
	hint   string
}

func (h *hintedCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := h.inner.GetToken(ctx, o)
	if err != nil {
		return tok, &HintError{Err: fmt.Errorf("failed to get Azure token with %s credential: %w", h.method, err), Hint: h.hint}
	}
	return tok, nil
}
