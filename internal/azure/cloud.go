// Package azure provisions the Azure VM that nixos-anywhere takes over, destroys it again,
// and reads its serial log, with the Azure SDK for Go. It knows nothing about the action's
// configuration: callers translate their inputs into Cloud, Credentials and Spec.
package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

// Cloud names as the Azure CLI and the azure/login action spell them.
const (
	CloudPublic     = "AzureCloud"
	CloudChina      = "AzureChinaCloud"
	CloudGovernment = "AzureUSGovernment"
	CloudStack      = "AzureStack"
)

// Cloud selects the Azure cloud. ARMEndpoint is required for AzureStack and ignored otherwise.
type Cloud struct {
	Name        string
	ARMEndpoint string
}

// ResolvedCloud is a Cloud whose endpoints are known.
type ResolvedCloud struct {
	Name          string
	Configuration cloud.Configuration
	// DisableInstanceDiscovery is set for clouds whose authority is not a public Entra host
	// (Azure Stack): MSAL must not ask login.microsoft.com to validate it.
	DisableInstanceDiscovery bool
	// ADFS is set for an Azure Stack Hub that authenticates with AD FS: tokens then come from
	// the tenant "adfs", whatever tenant ID was configured.
	ADFS bool
}

// ClientOptions returns ARM client options for the cloud; the caller may set more fields.
func (rc ResolvedCloud) ClientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Cloud: rc.Configuration}}
}

// ARMEndpoint returns the resource manager's base URL.
func (rc ResolvedCloud) ARMEndpoint() string {
	return rc.Configuration.Services[cloud.ResourceManager].Endpoint
}

// metadataAPIVersion is the version the Azure CLI asks for (azure-cli-core cloud.py,
// get_clouds_from_metadata_endpoint).
const metadataAPIVersion = "2022-09-01"

// ResolveCloud maps a cloud name to its endpoints. For AzureStack it discovers the authority host
// and the token audience from <arm-endpoint>/metadata/endpoints, as `az cloud register
// --endpoint-resource-manager` does. httpClient may be nil (http.DefaultClient, which honours
// SSL_CERT_FILE for a private CA).
func ResolveCloud(ctx context.Context, c Cloud, httpClient *http.Client) (ResolvedCloud, error) {
	switch strings.ToLower(c.Name) {
	case "", strings.ToLower(CloudPublic):
		return ResolvedCloud{Name: CloudPublic, Configuration: cloud.AzurePublic}, nil
	case strings.ToLower(CloudChina):
		return ResolvedCloud{Name: CloudChina, Configuration: cloud.AzureChina}, nil
	case strings.ToLower(CloudGovernment):
		return ResolvedCloud{Name: CloudGovernment, Configuration: cloud.AzureGovernment}, nil
	case strings.ToLower(CloudStack):
		return resolveStack(ctx, c.ARMEndpoint, httpClient)
	default:
		return ResolvedCloud{}, fmt.Errorf("unknown azure environment %q: use %s, %s, %s or %s",
			c.Name, CloudPublic, CloudChina, CloudGovernment, CloudStack)
	}
}

// metadataEndpoints is the part of the ARM metadata document we use. Azure Stack Hub answers
// with one object; public ARM answers 2022-09-01 with a list of clouds.
type metadataEndpoints struct {
	Name            string `json:"name"`
	ResourceManager string `json:"resourceManager"`
	Authentication  struct {
		LoginEndpoint string   `json:"loginEndpoint"`
		Audiences     []string `json:"audiences"`
		Tenant        string   `json:"tenant"`
	} `json:"authentication"`
}

func resolveStack(ctx context.Context, armEndpoint string, httpClient *http.Client) (ResolvedCloud, error) {
	if armEndpoint == "" {
		return ResolvedCloud{}, fmt.Errorf("azure environment %q needs an ARM endpoint: set arm-endpoint to your Azure Stack Hub's resource manager URL, for example https://management.local.azurestack.external", CloudStack)
	}
	u, err := url.Parse(armEndpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return ResolvedCloud{}, fmt.Errorf("arm-endpoint %q: must be an https:// URL", armEndpoint)
	}
	base := strings.TrimSuffix(u.String(), "/")
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	metaURL := base + "/metadata/endpoints?api-version=" + metadataAPIVersion
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metaURL, nil)
	if err != nil {
		return ResolvedCloud{}, fmt.Errorf("failed to build metadata request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return ResolvedCloud{}, fmt.Errorf("failed to fetch cloud metadata from %q: %w (for a private CA, point SSL_CERT_FILE at its certificate)", metaURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ResolvedCloud{}, fmt.Errorf("failed to read cloud metadata from %q: %w", metaURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return ResolvedCloud{}, fmt.Errorf("failed to fetch cloud metadata from %q: HTTP %d", metaURL, resp.StatusCode)
	}
	md, err := parseMetadata(body, base)
	if err != nil {
		return ResolvedCloud{}, fmt.Errorf("failed to parse cloud metadata from %q: %w", metaURL, err)
	}
	if md.Authentication.LoginEndpoint == "" || len(md.Authentication.Audiences) == 0 {
		return ResolvedCloud{}, fmt.Errorf("cloud metadata from %q has no authentication.loginEndpoint or audiences", metaURL)
	}
	// The metadata decides where the credential is sent and for which resource a token is minted.
	// A hub's own authority (AD FS) and audience stay inside the hub; a public-cloud login or
	// audience would mint tokens that work on public Azure and hand them to whatever answers at
	// arm-endpoint.
	audience := md.Authentication.Audiences[0]
	if err := checkStackEndpoint("loginEndpoint", md.Authentication.LoginEndpoint); err != nil {
		return ResolvedCloud{}, fmt.Errorf("cloud metadata from %q: %w", metaURL, err)
	}
	if err := checkStackEndpoint("audience", audience); err != nil {
		return ResolvedCloud{}, fmt.Errorf("cloud metadata from %q: %w", metaURL, err)
	}
	authority := strings.TrimSuffix(md.Authentication.LoginEndpoint, "/") + "/"
	// An AD FS Stack Hub answers ".../adfs"; azidentity wants the host and the tenant "adfs".
	adfs := strings.HasSuffix(strings.ToLower(authority), "/adfs/")
	if adfs {
		authority = authority[:len(authority)-len("adfs/")]
	}
	return ResolvedCloud{
		Name: CloudStack,
		Configuration: cloud.Configuration{
			ActiveDirectoryAuthorityHost: authority,
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: base, Audience: audience},
			},
		},
		DisableInstanceDiscovery: true,
		ADFS:                     adfs,
	}, nil
}

func parseMetadata(body []byte, base string) (metadataEndpoints, error) {
	trimmed := strings.TrimSpace(string(body))
	if strings.HasPrefix(trimmed, "[") {
		var all []metadataEndpoints
		if err := json.Unmarshal(body, &all); err != nil {
			return metadataEndpoints{}, err
		}
		if len(all) == 0 {
			return metadataEndpoints{}, fmt.Errorf("empty list of clouds")
		}
		for _, m := range all {
			if strings.TrimSuffix(m.ResourceManager, "/") == base {
				return m, nil
			}
		}
		return all[0], nil
	}
	var m metadataEndpoints
	err := json.Unmarshal(body, &m)
	return m, err
}

// publicCloudDomains are the DNS domains of Microsoft's public and sovereign clouds: their Entra
// authorities (login.microsoftonline.com, .us, login.chinacloudapi.cn, login.partner.microsoftonline.cn),
// their resource managers and token audiences (management.azure.com, management.core.windows.net,
// management.usgovcloudapi.net, management.chinacloudapi.cn, graph.microsoft.com, ...), and the
// tenants' own namespace (onmicrosoft.com). See azcore's cloud.AzurePublic, AzureGovernment and
// AzureChina, which are checked as well.
var publicCloudDomains = []string{
	"microsoftonline.com", "microsoftonline.us", "microsoftonline.cn", "onmicrosoft.com",
	"windows.net", "azure.com", "azure.net", "azure.us", "azure.cn",
	"usgovcloudapi.net", "chinacloudapi.cn", "microsoft.com", "microsoft.us", "live.com",
}

// isPublicCloudHost reports whether host belongs to a public or sovereign Azure cloud.
func isPublicCloudHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	domains := slices.Clone(publicCloudDomains)
	for _, c := range []cloud.Configuration{cloud.AzurePublic, cloud.AzureGovernment, cloud.AzureChina} {
		for _, u := range []string{c.ActiveDirectoryAuthorityHost, c.Services[cloud.ResourceManager].Endpoint, c.Services[cloud.ResourceManager].Audience} {
			if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
				domains = append(domains, strings.ToLower(pu.Hostname()))
			}
		}
	}
	for _, d := range domains {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// checkStackEndpoint accepts an Azure Stack Hub's login endpoint or token audience only as an
// https URL on a host outside the public clouds.
func checkStackEndpoint(field, v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return fmt.Errorf("authentication %s %q is not an https URL: refusing to mint tokens for it", field, v)
	}
	if isPublicCloudHost(u.Hostname()) {
		return fmt.Errorf("authentication %s %q is a public-cloud host: an AzureStack endpoint must have its own authority and audience (an AD FS hub), or a token valid on public Azure would go to %s; for public Azure use azure-environment AzureCloud, AzureUSGovernment or AzureChinaCloud", field, v, "arm-endpoint")
	}
	return nil
}
