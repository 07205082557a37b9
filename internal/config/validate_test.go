package config

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

const testSub = "00000000-1111-2222-3333-444444444444"

const testPub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"

func defaults(t *testing.T) Inputs {
	t.Helper()
	in, err := Read(context.Background(), ActionLookuper(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	in.SSHPublicKeys = testPub
	in.AzureSubID = testSub
	return in
}

func privateKeyPEM(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse(defaults(t))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Command: Deploy, VMName: "az-nixos", ResourceGroup: "az-nixos", Location: "uksouth",
		Size: "Standard_B4ms", Image: "Canonical:ubuntu-24_04-lts:server:latest", OSDiskSizeGB: 64,
		UserName: "nixos", SSHPublicKeys: []string{testPub}, NixChannel: "nixos-26.05",
		ConfigFlakeAttr: "az-nixos", Azure: Azure{Environment: AzureCloud, SubscriptionID: testSub},
		SSHTimeout: 10 * time.Minute, InstallTimeout: 45 * time.Minute,
	}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}

// TestRules covers every rule in the input table: each case sets one input
// and expects either success or one error for that input containing a phrase.
func TestRules(t *testing.T) {
	t.Parallel()
	key := privateKeyPEM(t)
	tests := []struct {
		name, input, value string
		also               map[string]string // other inputs set for the case
		wantErr            string            // substring; "" means valid
	}{
		{"command plan", "command", "plan", nil, ""},
		{"command destroy", "command", "destroy", nil, ""},
		{"command typo", "command", "deplyo", nil, `did you mean "deploy"`},
		{"command empty", "command", "nuke", nil, "must be plan, deploy, install, switch or destroy"},
		{"command switch typo", "command", "swtich", nil, `did you mean "switch"`},

		{"switch with deploy key", "command", "switch", map[string]string{"config-repo": "git@github.com:me/c.git", "deploy-key": key}, ""},
		{"switch workspace", "command", "switch", map[string]string{"config-repo": ".", "deploy-key": key}, ""},
		{"switch needs config-repo", "command", "switch", map[string]string{"deploy-key": key}, "config-repo: required for switch"},
		{"switch needs a key", "command", "switch", map[string]string{"config-repo": "."}, "deploy-key: switch needs a key the machine accepts"},
		{"switch as a sudo user", "command", "switch", map[string]string{"config-repo": ".", "target-user": "alice", "target-ssh-key": key}, ""},
		{"switch deploy key is root's", "command", "switch", map[string]string{"config-repo": ".", "target-user": "alice", "deploy-key": key}, "give target-ssh-key to log in as another user"},
		{"switch user bad", "command", "switch", map[string]string{"config-repo": ".", "target-user": "Bad User", "target-ssh-key": key}, "root or a Linux user name"},
		{"switch needs a subscription without target-host", "command", "switch", map[string]string{"config-repo": ".", "deploy-key": key, "azure-subscription-id": ""}, "required for switch"},
		{"switch onto target host", "command", "switch", map[string]string{"config-repo": ".", "target-host": "203.0.113.7", "target-host-key": testPub, "target-ssh-key": key, "azure-subscription-id": ""}, ""},
		{"switch onto target host with deploy key", "command", "switch", map[string]string{"config-repo": ".", "target-host": "203.0.113.7", "target-host-key": testPub, "deploy-key": key, "azure-subscription-id": ""}, ""},
		{"switch needs no ssh-public-keys", "ssh-public-keys", "", map[string]string{"command": "switch", "config-repo": ".", "deploy-key": key}, ""},
		{"workspace repo is switch only", "config-repo", ".", nil, "only used by switch"},

		{"ref branch", "config-ref", "main", map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, ""},
		{"ref nested tag", "config-ref", "releases/v1.2", map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, ""},
		{"ref commit", "config-ref", strings.Repeat("ab", 20), map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, ""},
		{"ref double dot", "config-ref", "main..x", map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, "check-ref-format"},
		{"ref space", "config-ref", "my branch", map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, "check-ref-format"},
		{"ref option", "config-ref", "--upload-pack=x", map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, "check-ref-format"},
		{"ref lock", "config-ref", "main.lock", map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, "check-ref-format"},
		{"ref reflog", "config-ref", "main@{1}", map[string]string{"command": "switch", "config-repo": "git@github.com:me/c.git", "deploy-key": key}, "check-ref-format"},
		{"ref with workspace", "config-ref", "main", map[string]string{"command": "switch", "config-repo": ".", "deploy-key": key}, "actions/checkout's ref"},
		{"ref with deploy", "config-ref", "main", map[string]string{"config-repo": "git@github.com:me/c.git"}, "only used with command switch"},

		{"build on target", "build-on", "target", nil, ""},
		{"build on vm", "build-on", "vm", nil, "must be local"},
		{"confirm timeout ok", "confirm-timeout", "2m", nil, ""},
		{"confirm timeout short", "confirm-timeout", "1s", nil, "from 10s to 1h"},
		{"confirm timeout junk", "confirm-timeout", "soon", nil, "Go duration"},
		{"dry run", "dry-run", "true", nil, ""},
		{"dry run bad", "dry-run", "perhaps", nil, "true or false"},
		{"command install", "command", "install", nil, ""},
		{"install needs a subscription without target-host", "command", "install", map[string]string{"azure-subscription-id": ""}, "required for install"},

		{"target host", "target-host", "203.0.113.7:2222", map[string]string{"command": "install", "target-host-key": testPub, "target-ssh-key": key, "azure-subscription-id": ""}, ""},
		{"target host known_hosts line", "target-host", "vm.example.org", map[string]string{"command": "install", "target-host-key": "vm.example.org " + testPub, "target-ssh-key": key}, ""},
		{"target host with deploy", "target-host", "203.0.113.7", map[string]string{"target-host-key": testPub, "target-ssh-key": key}, "only used with command install or switch"},
		{"target host bad port", "target-host", "203.0.113.7:99999", map[string]string{"command": "install", "target-host-key": testPub, "target-ssh-key": key}, "port must be a number"},
		{"target host with user", "target-host", "root@203.0.113.7", map[string]string{"command": "install", "target-host-key": testPub, "target-ssh-key": key}, "user names go in target-user"},
		{"target host without key", "target-host", "203.0.113.7", map[string]string{"command": "install", "target-ssh-key": key}, "target-host-key: required with target-host"},
		{"target host bad key", "target-host", "203.0.113.7", map[string]string{"command": "install", "target-host-key": "AAAA", "target-ssh-key": key}, "known_hosts line or a public key"},
		{"target host without login key", "target-host", "203.0.113.7", map[string]string{"command": "install", "target-host-key": testPub}, "target-ssh-key: required"},
		{"target key without host", "target-host-key", testPub, nil, "only used with target-host"},
		{"target user bad", "target-user", "Bad User", map[string]string{"command": "install", "target-host": "h.example", "target-host-key": testPub, "target-ssh-key": key}, "root or a Linux user name"},
		{"start if stopped bad", "start-if-stopped", "perhaps", nil, "true or false"},

		{"vm-name ok", "vm-name", "web-01", nil, ""},
		{"vm-name 3 chars", "vm-name", "abc", nil, ""},
		{"vm-name 63 chars", "vm-name", "a" + strings.Repeat("b", 62), nil, ""},
		{"vm-name 64 chars", "vm-name", "a" + strings.Repeat("b", 63), nil, "3-63 characters"},
		{"vm-name too short", "vm-name", "ab", nil, "3-63 characters"},
		{"vm-name upper", "vm-name", "Az_Nixos!", nil, `vm-name "Az_Nixos!": must be`},
		{"vm-name digit first", "vm-name", "1vm", nil, "start with a letter"},
		{"vm-name trailing hyphen", "vm-name", "vm-", nil, "not end with a hyphen"},

		{"resource-group ok", "resource-group", "My_RG.(prod)-1", nil, ""},
		{"resource-group dot end", "resource-group", "rg.", nil, "not ending in '.'"},
		{"resource-group bad char", "resource-group", "rg/1", nil, "1-90 characters"},
		{"resource-group 91", "resource-group", strings.Repeat("r", 91), nil, "1-90 characters"},

		{"location ok", "location", "westeurope", nil, ""},
		{"location unknown but well-formed", "location", "local", nil, ""},
		{"location spaced", "location", "UK South", nil, `did you mean "uksouth"`},
		{"location typo is a warning, not an error", "location", "uksouht", nil, ""},
		{"location symbols", "location", "uk-south!", nil, "lower-case region name"},

		{"size ok", "size", "Standard_D2s_v5", nil, ""},
		{"size unknown ok", "size", "Standard_NV72ads_A10_v5", nil, ""},
		{"size tiny", "size", "Standard_B1s", nil, "needs at least 1.5 GB"},
		{"size tiny lower-case", "size", "standard_b1ls", nil, "needs at least 1.5 GB"},
		{"size malformed", "size", "B4ms", nil, "Azure VM size name"},

		{"image ok", "image", "Canonical:ubuntu-24_04-lts:server:24.04.202411030", nil, ""},
		{"image three parts", "image", "Canonical:ubuntu-24_04-lts:server", nil, "publisher:offer:sku:version"},
		{"image bad version", "image", "Canonical:ubuntu-24_04-lts:server:newest", nil, "publisher:offer:sku:version"},

		{"disk min", "os-disk-size-gb", "30", nil, ""},
		{"disk max", "os-disk-size-gb", "4095", nil, ""},
		{"disk small", "os-disk-size-gb", "29", nil, "from 30 to 4095"},
		{"disk large", "os-disk-size-gb", "4096", nil, "from 30 to 4095"},
		{"disk nan", "os-disk-size-gb", "1TB", nil, "whole number"},

		{"user ok", "user-name", "alice", nil, ""},
		{"user root", "user-name", "root", nil, "reserved"},
		{"user admin", "user-name", "admin", nil, "reserved"},
		{"user upper", "user-name", "Alice", nil, "lower-case"},

		{"keys two", "ssh-public-keys", testPub + "\n\n# comment\r\n" + strings.Replace(testPub, "me@laptop", "", 1), nil, ""},
		{"keys garbage", "ssh-public-keys", "not a key", nil, "ssh-public-keys line 1"},
		{"keys missing for deploy", "ssh-public-keys", "", nil, "required for deploy"},
		{"keys missing for plan", "ssh-public-keys", "", map[string]string{"command": "plan"}, ""},
		{"keys private pasted", "ssh-public-keys", key, nil, "contains a private key"},

		{"channel release", "nix-channel", "nixos-25.11", nil, ""},
		{"channel unstable", "nix-channel", "nixos-unstable", nil, ""},
		{"channel month", "nix-channel", "nixos-26.04", nil, "nixos-YY.MM"},
		{"channel too old", "nix-channel", "nixos-24.05", nil, "25.11 or newer"},
		{"channel small", "nix-channel", "nixos-26.05-small", nil, ""},
		{"channel nixpkgs", "nix-channel", "nixpkgs-unstable", nil, "nixos-YY.MM"},

		{"repo scp", "config-repo", "git@github.com:me/nix-config.git", nil, ""},
		{"repo https", "config-repo", "https://github.com/me/nix-config", nil, ""},
		{"repo password", "config-repo", "https://me:hunter2@github.com/me/x", nil, "must not carry a user name, token or password"},
		{"repo junk", "config-repo", "nix-config", nil, "must be a git URL"},

		{"attr ok", "config-flake-attr", "my-host", nil, ""},
		{"attr bad", "config-flake-attr", "1host", nil, "Nix attribute name"},

		{"github key ok", "github-ssh-key", strings.ReplaceAll(key, "\n", "\r\n"), map[string]string{"config-repo": "git@github.com:me/c.git"}, ""},
		{"github key junk", "github-ssh-key", "-----BEGIN nonsense-----", map[string]string{"config-repo": "git@github.com:me/c.git"}, "secret, value not shown"},
		{"github key without repo", "github-ssh-key", key, nil, "without config-repo"},

		{"deploy key ok", "deploy-key", key, nil, ""},
		{"deploy key junk", "deploy-key", "ssh-ed25519 AAAA", nil, "deploy-key (secret, value not shown)"},

		{"shutdown ok", "auto-shutdown", "22:00", nil, ""},
		{"shutdown bad", "auto-shutdown", "24:00", nil, "HH:MM"},
		{"shutdown 12h", "auto-shutdown", "10pm", nil, "HH:MM"},

		{"cleanup true", "cleanup-on-failure", "true", nil, ""},
		{"cleanup bad", "cleanup-on-failure", "maybe", nil, "true or false"},
		{"reinstall bad", "force-reinstall", "2", nil, "true or false"},

		{"client id ok", "azure-client-id", "11111111-2222-3333-4444-555555555555", nil, ""},
		{"client id bad", "azure-client-id", "my-app", nil, "GUID"},
		{"subscription bad", "azure-subscription-id", "1234", nil, "GUID"},
		{"subscription missing for deploy", "azure-subscription-id", "", nil, "required for deploy"},
		{"subscription missing for destroy", "azure-subscription-id", "", map[string]string{"command": "destroy"}, "required for destroy"},
		{"subscription missing for plan", "azure-subscription-id", "", map[string]string{"command": "plan"}, ""},
		{"tenant domain", "azure-tenant-id", "contoso.onmicrosoft.com", nil, ""},
		{"tenant bad", "azure-tenant-id", "contoso", nil, "tenant GUID"},

		{"env china", "azure-environment", "AzureChinaCloud", nil, ""},
		{"env typo", "azure-environment", "AzureClod", nil, `did you mean "AzureCloud"`},
		{"stack needs endpoint", "azure-environment", "AzureStack", nil, "arm-endpoint: required"},
		{"stack ok", "azure-environment", "AzureStack", map[string]string{"arm-endpoint": "https://management.local.azurestack.external/"}, ""},
		{"stack http", "azure-environment", "AzureStack", map[string]string{"arm-endpoint": "http://x"}, "https URL"},
		{"endpoint without stack", "arm-endpoint", "https://x.example", nil, "only used with azure-environment AzureStack"},

		{"ssh timeout ok", "ssh-timeout", "90s", nil, ""},
		{"ssh timeout bad", "ssh-timeout", "10", nil, "Go duration"},
		{"install timeout negative", "install-timeout", "-1m", nil, "positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := defaults(t)
			set(t, &in, tc.input, tc.value)
			for k, v := range tc.also {
				set(t, &in, k, v)
			}
			_, err := Parse(in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
			}
			if fes := FieldErrors(err); len(fes) != 1 {
				t.Errorf("want exactly one field error, got %d: %v", len(fes), err)
			}
		})
	}
}

func set(t *testing.T, in *Inputs, name, value string) {
	t.Helper()
	if !in.Set(name, value) {
		t.Fatalf("no input %q", name)
	}
}

func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	in := defaults(t)
	in.VMName = "Bad_Name"
	in.Location = "UK South"
	in.Size = "Standard_B1s"
	in.AzureSecret = "super-secret-value"
	in.AzureClientID = "not-a-guid"
	_, err := Parse(in)
	fes := FieldErrors(err)
	var names []string
	for _, fe := range fes {
		names = append(names, fe.Input)
	}
	if d := cmp.Diff([]string{"vm-name", "location", "size", "azure-client-id"}, names); d != "" {
		t.Errorf("inputs with errors (-want +got):\n%s", d)
	}
	if strings.Contains(err.Error(), "super-secret-value") {
		t.Errorf("error leaks a secret: %v", err)
	}
}

func TestSecretNeverInError(t *testing.T) {
	t.Parallel()
	key := privateKeyPEM(t)
	for _, in := range []Inputs{
		func() Inputs { i := defaults(t); i.SSHPublicKeys = key; return i }(),
		func() Inputs { i := defaults(t); i.GitHubSSHKey = key; return i }(),
		func() Inputs {
			i := defaults(t)
			i.GitHubSSHKey = key[:len(key)/2]
			i.ConfigRepo = "git@github.com:a/b"
			return i
		}(),
	} {
		_, err := Parse(in)
		if err == nil {
			t.Fatal("want an error")
		}
		for _, line := range strings.Split(key, "\n") {
			if len(line) > 8 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
				t.Fatalf("error contains a line of the private key: %v", err)
			}
		}
	}
}

func TestFieldErrorsOfPlainError(t *testing.T) {
	t.Parallel()
	if got := FieldErrors(errors.New("x")); len(got) != 0 {
		t.Fatalf("got %v", got)
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "abc", 0}, {"uksouht", "uksouth", 1}, {"westeurop", "westeurope", 1}, {"kitten", "sitting", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestUnknownLocationWarns (issue 14): new regions appear, so a well-formed
// location this version does not know is used, with a warning that names the
// nearest known one; Azure (the pre-flight check) is the judge.
func TestUnknownLocationWarns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ location, want string }{
		{"uksouht", `location "uksouht" is not a region this version knows; did you mean "uksouth"?`},
		{"norwaysouth2", `location "norwaysouth2" is not a region this version knows`},
		{"uksouth", ""},
	} {
		in := defaults(t)
		set(t, &in, "location", tc.location)
		c, err := Parse(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.location, err)
		}
		got := strings.Join(c.Warnings, "\n")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: warnings %q, want %q", tc.location, got, tc.want)
		}
	}
}
