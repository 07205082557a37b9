package azuretest

import (
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Cloud returns the cloud configuration a client discovers from the metadata endpoint: the emulator is
// the authority host and the ARM endpoint, with the emulator's audience.
func (e *Emulator) Cloud() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: e.URL() + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: e.URL(), Audience: e.opts.Audience},
		},
	}
}

// ClientOptions returns ARM client options for the emulator: its cloud, a transport trusting its CA, and
// retry delays short enough for tests (the retry policy itself is the SDK's).
func (e *Emulator) ClientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud:     e.Cloud(),
		Transport: e.HTTPClient(),
		Retry:     policy.RetryOptions{RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond},
	}}
}

// Credential returns a client-secret credential for the emulator's tenant, client and secret, with
// instance discovery disabled as for any Azure Stack Hub.
func (e *Emulator) Credential() (azcore.TokenCredential, error) {
	return azidentity.NewClientSecretCredential(e.opts.TenantID, e.opts.ClientID, e.opts.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            policy.ClientOptions{Cloud: e.Cloud(), Transport: e.HTTPClient()},
			DisableInstanceDiscovery: true,
		})
}
