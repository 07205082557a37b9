package azure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// apiVersions are the api-versions the SDK modules in go.mod send for the resource types a
// deploy writes (TestAPIVersionsAreTheSDKs checks this table against the requests). Public Azure
// offers them; an Azure Stack Hub does not: its newest profile, 2020-09-01-hybrid, has
// Microsoft.Compute 2020-06-01 and Microsoft.Network 2018-11-01 and no DevTestLab (MicrosoftDocs
// azure-stack-docs, azure-stack/user/azure-stack-profiles-azure-resource-manager-versions.md).
var apiVersions = []struct{ resourceType, version string }{
	{"Microsoft.Resources/resourceGroups", "2025-04-01"},
	{"Microsoft.Network/publicIPAddresses", "2025-05-01"},
	{"Microsoft.Network/networkSecurityGroups", "2025-05-01"},
	{"Microsoft.Network/virtualNetworks", "2025-05-01"},
	{"Microsoft.Network/networkInterfaces", "2025-05-01"},
	{"Microsoft.Compute/virtualMachines", "2026-04-01"},
	{"Microsoft.DevTestLab/schedules", scheduleAPIVersion},
}

// providersAPIVersion reads provider documents (Microsoft.Resources, in every profile since
// 2019-10-01-hybrid).
const providersAPIVersion = "2019-10-01"

// WithAPIVersionCheck makes Provision read the resource providers' documents first and refuse,
// before anything is created, when the endpoint lacks an api-version the deploy needs. For
// AzureStack, whose endpoint may be an Azure Stack Hub on an older API profile.
func WithAPIVersionCheck() Option { return func(p *Provisioner) { p.checkAPIVersions = true } }

// checkProviderVersions compares what the endpoint's resource providers offer (GET
// /subscriptions/{s}/providers/{namespace}: resourceTypes[].apiVersions) with what the deploy
// sends. A provider document that cannot be read is skipped with a note.
func (p *Provisioner) checkProviderVersions(ctx context.Context, s *Spec) preflightOutcome {
	var out preflightOutcome
	docs := map[string]map[string][]string{} // namespace -> lower-case type -> versions; nil: unreadable
	var missing []string
	for _, av := range apiVersions {
		if av.resourceType == "Microsoft.DevTestLab/schedules" && s.AutoShutdown == "" {
			continue
		}
		ns, _, _ := strings.Cut(av.resourceType, "/")
		doc, read := docs[ns]
		if !read {
			prov, err := p.providers.Get(ctx, ns, nil)
			switch {
			case err == nil:
				doc = map[string][]string{}
				for _, rt := range prov.ResourceTypes {
					if rt == nil {
						continue
					}
					key := strings.ToLower(ns + "/" + deref(rt.ResourceType))
					for _, v := range rt.APIVersions {
						doc[key] = append(doc[key], deref(v))
					}
				}
			case isNotFound(err) || isCode(err, "InvalidResourceNamespace"):
				doc = map[string][]string{} // no such provider: nothing offered
			default:
				out.notes = append(out.notes, "pre-flight: could not read resource provider "+ns+" ("+shortErr(err)+"); Azure checks the API versions when resources are created")
			}
			docs[ns] = doc
		}
		if doc == nil {
			continue
		}
		switch vs, ok := doc[strings.ToLower(av.resourceType)]; {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s %s (the type is not offered)", av.resourceType, av.version))
		case !slices.Contains(vs, av.version):
			missing = append(missing, fmt.Sprintf("%s %s (it offers %s)", av.resourceType, av.version, strings.Join(vs, ", ")))
		}
	}
	if len(missing) > 0 {
		out.err = &HintError{Code: "NoRegisteredProviderFound",
			Err:  fmt.Errorf("the ARM endpoint does not offer the API versions this deploy uses: %s", strings.Join(missing, "; ")),
			Hint: "nixos-cloud-deploy is built with the Azure SDK's current API versions, which public Azure offers; an Azure Stack Hub (API profile 2020-09-01-hybrid) lacks them, and Standard public IPs, managed boot diagnostics and DevTestLab auto-shutdown too, so it is not supported. Nothing was created"}
	}
	return out
}

// isCode reports an ARM error with that code.
func isCode(err error, code string) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.ErrorCode == code
}
