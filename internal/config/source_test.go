package config

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestActionLookuper(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"INPUT_VM-NAME":         "web-01",
		"INPUT_RESOURCE-GROUP":  "", // declared but not given: default applies
		"INPUT_SIZE":            "Standard_D2s_v5",
		"AZURE_CLIENT_ID":       "11111111-2222-3333-4444-555555555555",
		"INPUT_AZURE-TENANT-ID": "22222222-2222-3333-4444-555555555555",
		"AZURE_TENANT_ID":       "ignored-because-the-input-wins",
		"VM_NAME":               "not-read",
	}
	in, err := ReadAction(context.Background(), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"vm-name": in.VMName, "resource-group": in.ResourceGroup, "size": in.Size, "location": in.Location,
		"azure-client-id": in.AzureClientID, "azure-tenant-id": in.AzureTenantID,
	}
	want := map[string]string{
		"vm-name": "web-01", "resource-group": "", "size": "Standard_D2s_v5", "location": "uksouth",
		"azure-client-id": "11111111-2222-3333-4444-555555555555", "azure-tenant-id": "22222222-2222-3333-4444-555555555555",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
}

func TestReadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    map[string]string
		wantErr string
	}{
		{name: "command and long flags", args: []string{"plan", "--vm-name", "web-01", "--location=westeurope"},
			want: map[string]string{"command": "plan", "vm-name": "web-01", "location": "westeurope"}},
		{name: "short forms", args: []string{"deploy", "-n", "web", "-g", "rg", "-u", "bob", "-l", "eastus", "-s", "Standard_B2s", "-i", "a:b:c:latest"},
			want: map[string]string{"command": "deploy", "vm-name": "web", "resource-group": "rg", "user-name": "bob", "location": "eastus", "size": "Standard_B2s", "image": "a:b:c:latest"}},
		{name: "bool flag without value", args: []string{"--cleanup-on-failure"},
			want: map[string]string{"command": "deploy", "cleanup-on-failure": "true"}},
		{name: "azure env fallback", args: []string{"plan"}, env: map[string]string{"AZURE_SUBSCRIPTION_ID": "sub"},
			want: map[string]string{"command": "plan", "azure-subscription-id": "sub"}},
		{name: "given twice", args: []string{"-n", "a", "--vm-name", "b"}, wantErr: "given twice"},
		{name: "stray argument", args: []string{"plan", "--vm-name", "a", "extra"}, wantErr: "unexpected argument"},
		{name: "unknown flag", args: []string{"--vm", "a"}, wantErr: "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, err := ReadFlags(context.Background(), tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got := in.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestReadFlagsHelp(t *testing.T) {
	t.Parallel()
	_, err := ReadFlags(context.Background(), []string{"--help"}, func(string) string { return "" }, io.Discard)
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("got %v", err)
	}
}

func TestDefinitions(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	shorts := map[string]string{}
	for _, d := range Definitions() {
		if seen[d.Name] {
			t.Errorf("input %q defined twice", d.Name)
		}
		seen[d.Name] = true
		if d.Description == "" {
			t.Errorf("input %q has no description", d.Name)
		}
		if d.Short != "" {
			shorts[d.Short] = d.Name
		}
	}
	want := map[string]string{"n": "vm-name", "g": "resource-group", "u": "user-name", "l": "location", "s": "size", "i": "image"}
	if d := cmp.Diff(want, shorts); d != "" {
		t.Errorf("short flags (-want +got):\n%s", d)
	}
	var secrets []string
	for _, d := range Definitions() {
		if d.Secret {
			secrets = append(secrets, d.Name)
		}
	}
	if d := cmp.Diff([]string{"github-ssh-key", "deploy-key", "target-ssh-key", "azure-client-secret"}, secrets); d != "" {
		t.Errorf("secret inputs (-want +got):\n%s", d)
	}
}
