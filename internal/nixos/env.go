package nixos

import "strings"

// ChildEnv is environ without what a child process must never see: the
// action's inputs (GitHub hands every input, secrets included, to a
// container action as INPUT_<NAME>; docs, "Metadata syntax for GitHub
// Actions", inputs), Azure credentials (AZURE_*, the managed identity
// endpoint's IDENTITY_*/MSI_* and the OIDC request URL and token), GitHub's
// tokens, and the SSH agent (nixos-anywhere's ssh would offer every key in it
// to the VM; the deploy key file is the only identity it needs).
// nixos-anywhere, the ProxyCommand it starts through ssh, and nix get what is
// left: PATH, HOME, NIX_*, TLS and proxy settings.
func ChildEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !secretEnv(name) {
			out = append(out, kv)
		}
	}
	return out
}

func secretEnv(name string) bool {
	for _, p := range []string{"INPUT_", "AZURE_", "ACTIONS_ID_TOKEN_REQUEST_", "IDENTITY_", "MSI_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	switch name {
	case "GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "ACTIONS_RUNTIME_TOKEN", "SSH_AUTH_SOCK":
		return true
	}
	return false
}
