package azure

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
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

// Audiences Entra ID expects on a federated token, per cloud. The federated credential on the app
// carries the same value, so the GitHub ID token must be asked for with it (Microsoft Learn,
// "Configure an application to trust a managed identity": public cloud api://AzureADTokenExchange,
// Fairfax api://AzureADTokenExchangeUSGov, Mooncake api://AzureADTokenExchangeChina; azure/login
// leaves it to its audience input).
const (
	OIDCAudience           = "api://AzureADTokenExchange"
	OIDCAudienceGovernment = "api://AzureADTokenExchangeUSGov"
	OIDCAudienceChina      = "api://AzureADTokenExchangeChina"
)

// DefaultOIDCAudience is the federated-token audience Entra ID expects in the named cloud.
func DefaultOIDCAudience(cloudName string) string {
	switch strings.ToLower(cloudName) {
	case strings.ToLower(CloudGovernment):
		return OIDCAudienceGovernment
	case strings.ToLower(CloudChina):
		return OIDCAudienceChina
	}
	return OIDCAudience
}

// OIDCSource fetches GitHub Actions ID tokens. Either RequestURL and RequestToken (the values of
// ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN) or Fetch must be set.
type OIDCSource struct {
	RequestURL   string
	RequestToken string
	// Fetch, when set, replaces the HTTP request to RequestURL.
	Fetch func(ctx context.Context, audience string) (string, error)
	// HTTPClient is used for RequestURL; nil means http.DefaultClient.
	HTTPClient *http.Client

	// sleep waits between retries; nil means a timer (tests make it instant).
	sleep func(ctx context.Context, d time.Duration) error

	mu      sync.Mutex
	subject string // the sub claim of the last token fetched
}

func (o *OIDCSource) usable() bool {
	return o != nil && (o.Fetch != nil || (o.RequestURL != "" && o.RequestToken != ""))
}

// Subject is the sub claim of the last ID token fetched ("" before the first): what the app's
// federated credential must match.
func (o *OIDCSource) Subject() string {
	if o == nil {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.subject
}

// The ID token request is retried the way @actions/core's getIDToken does it: its HTTP client
// (actions/toolkit packages/core/src/oidc-utils.ts, allowRetries with maxRetries 10) retries a GET
// answered 502, 503 or 504, waiting 5 ms × 2^n (n capped at 10) before the n-th retry
// (packages/http-client/src/index.ts, HttpResponseRetryCodes and _performExponentialBackoff).
const (
	idTokenMaxRetries   = 10
	idTokenBackoffSlice = 5 * time.Millisecond
	idTokenBackoffCeil  = 10
)

func idTokenRetryable(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// IDToken fetches a fresh GitHub ID token for audience. GitHub's tokens live about five minutes,
// so callers ask again for every Entra token exchange instead of caching one.
func (o *OIDCSource) IDToken(ctx context.Context, audience string) (string, error) {
	var (
		tok string
		err error
	)
	if o.Fetch != nil {
		tok, err = o.Fetch(ctx, audience)
	} else {
		tok, err = o.request(ctx, audience)
	}
	if err == nil {
		if sub := jwtSubject(tok); sub != "" {
			o.mu.Lock()
			o.subject = sub
			o.mu.Unlock()
		}
	}
	return tok, err
}

func (o *OIDCSource) request(ctx context.Context, audience string) (string, error) {
	u, err := url.Parse(o.RequestURL)
	if err != nil {
		return "", fmt.Errorf("failed to parse ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c := o.HTTPClient
	if c == nil {
		c = http.DefaultClient
	}
	sleep := o.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	for retry := 0; ; retry++ {
		status, body, err := o.get(ctx, c, u.String())
		if err != nil {
			return "", err
		}
		if idTokenRetryable(status) && retry < idTokenMaxRetries {
			if err := sleep(ctx, idTokenBackoffSlice<<min(retry+1, idTokenBackoffCeil)); err != nil {
				return "", fmt.Errorf("failed to request GitHub ID token: HTTP %d, then %w", status, err)
			}
			continue
		}
		if status != http.StatusOK {
			return "", fmt.Errorf("failed to request GitHub ID token: HTTP %d (does the job have `permissions: id-token: write`?)", status)
		}
		var v struct {
			Value string `json:"value"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
			return "", errors.New("failed to parse GitHub ID token response: no \"value\"")
		}
		return v.Value, nil
	}
}

func (o *OIDCSource) get(ctx context.Context, c *http.Client, u string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("failed to build GitHub ID token request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+o.RequestToken)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("failed to request GitHub ID token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, fmt.Errorf("failed to read GitHub ID token: %w", err)
	}
	return resp.StatusCode, body, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jwtSubject reads the sub claim of a JWT without verifying it: it only feeds a hint, and Entra
// ID is the one that checks the token.
func jwtSubject(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Sub
}

// Credentials are the Azure identity inputs. Subject is the federated-credential subject this run
// is expected to present (repo:OWNER/REPO:ref:...); hints prefer the sub claim of the ID token
// GitHub really issued.
type Credentials struct {
	ClientID       string
	TenantID       string
	SubscriptionID string
	ClientSecret   string
	OIDC           *OIDCSource
	// OIDCAudience is the audience asked for on the GitHub ID token; "" means the cloud's
	// (DefaultOIDCAudience).
	OIDCAudience string
	Subject      string
}

// CredentialOptions tune NewCredential. Tests set ClientOptions.Transport.
type CredentialOptions struct {
	ClientOptions azcore.ClientOptions
}

// NewCredential picks the first usable method, in azure/login's order: a client secret when one is
// given (azure/login src/Cli/AzureCliLogin.ts logs in with the secret whenever there is one, even
// with id-token: write), then GitHub OIDC (client ID, tenant ID and an ID token source), then
// azidentity's default chain (environment, workload identity, managed identity, Azure CLI ...).
// It returns the credential and the method's name. Token errors from the returned credential carry
// a hint saying what to configure.
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
	if c.OIDCAudience == "" {
		c.OIDCAudience = DefaultOIDCAudience(rc.Name)
	}

	switch {
	case c.ClientSecret != "" && !haveIDs:
		return nil, "", fmt.Errorf("azure-client-secret is set but %s is missing: set it (or AZURE_CLIENT_ID / AZURE_TENANT_ID)", missingIDs(c))
	case c.ClientSecret != "":
		cred, err := azidentity.NewClientSecretCredential(tenant, c.ClientID, c.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: rc.DisableInstanceDiscovery})
		if err != nil {
			return nil, "", fmt.Errorf("failed to create client secret credential: %w", err)
		}
		hint := fmt.Sprintf("check that azure-client-secret belongs to app %q in tenant %q and has not expired", c.ClientID, c.TenantID)
		return &hintedCredential{inner: cred, method: MethodClientSecret, hint: func() string { return hint }}, MethodClientSecret, nil
	case c.OIDC.usable() && haveIDs && rc.Name != CloudStack:
		// Not for AzureStack: its authority comes from arm-endpoint's metadata, and a GitHub ID
		// token handed to it could be replayed at public Entra ID, where the app's federated
		// credential accepts it. An AD FS hub does not trust GitHub's issuer anyway.
		src, audience := c.OIDC, c.OIDCAudience
		cred, err := azidentity.NewClientAssertionCredential(tenant, c.ClientID,
			func(ctx context.Context) (string, error) { return src.IDToken(ctx, audience) },
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: rc.DisableInstanceDiscovery})
		if err != nil {
			return nil, "", fmt.Errorf("failed to create OIDC credential: %w", err)
		}
		return &hintedCredential{inner: cred, method: MethodOIDC, hint: func() string { return oidcHint(c) }}, MethodOIDC, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
		ClientOptions: co, TenantID: c.TenantID, DisableInstanceDiscovery: rc.DisableInstanceDiscovery})
	if err != nil {
		return nil, "", fmt.Errorf("failed to create default Azure credential: %w", err)
	}
	hint := defaultHint(rc, c)
	return &hintedCredential{inner: cred, method: MethodDefault, hint: func() string { return hint }}, MethodDefault, nil
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

// oidcHint says which federated credential the app needs. The subject is the sub claim of the ID
// token GitHub issued for this run when one was fetched: it depends on the trigger, an
// environment, and the repository's OIDC subject customisation, so it is read, not guessed.
func oidcHint(c Credentials) string {
	subj, how := c.OIDC.Subject(), "the sub claim of this run's GitHub ID token"
	if subj == "" {
		subj, how = c.Subject, "expected for this run; GitHub's token could not be read"
	}
	if subj == "" {
		subj = "repo:OWNER/REPO:ref:refs/heads/BRANCH"
	}
	audience := c.OIDCAudience
	if audience == "" {
		audience = OIDCAudience
	}
	return fmt.Sprintf("add a federated credential to app %q in tenant %q with issuer https://token.actions.githubusercontent.com, subject %q (%s) and audience %s (az ad app federated-credential create --id %s ...)",
		c.ClientID, c.TenantID, subj, how, audience, c.ClientID)
}

func defaultHint(rc ResolvedCloud, c Credentials) string {
	subj := c.Subject
	if subj == "" {
		subj = "repo:OWNER/REPO:ref:refs/heads/BRANCH"
	}
	var b strings.Builder
	b.WriteString("no Azure credential is configured: ")
	if c.OIDC.usable() && rc.Name == CloudStack {
		b.WriteString("GitHub OIDC is not used with AzureStack (its authority is not Entra ID): set azure-client-id, azure-tenant-id and azure-client-secret of the hub's service principal")
	} else if c.OIDC.usable() {
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
	hint   func() string // read when a token fails: the OIDC subject is known by then
}

func (h *hintedCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := h.inner.GetToken(ctx, o)
	if err != nil {
		return tok, &HintError{Err: fmt.Errorf("failed to get Azure token with %s credential: %w", h.method, err), Hint: h.hint()}
	}
	return tok, nil
}
