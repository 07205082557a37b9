package plan

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
)

// testKeyPEM is a throwaway private key for the target-ssh-key input; the
// plan never shows it.
var testKeyPEM = func() string {
	k, err := keys.New(nil, "")
	if err != nil {
		panic(err)
	}
	return string(k.PrivatePEM)
}()

func cfg(t *testing.T, set map[string]string) config.Config {
	t.Helper()
	in, err := config.ReadAction(context.Background(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	in.SSHPublicKeys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"
	in.AzureSubID = "00000000-1111-2222-3333-444444444444"
	for k, v := range set {
		if !in.Set(k, v) {
			t.Fatalf("no input %q", k)
		}
	}
	c, err := config.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPlanGolden(t *testing.T) {
	t.Parallel()
	env := Env{RunURL: "https://github.com/me/infra/actions/runs/42", Self: "/usr/local/bin/nixos-cloud-deploy"}
	tests := []struct {
		name string
		set  map[string]string
	}{
		{"default", map[string]string{"command": "plan"}},
		{"full", map[string]string{
			"command": "plan", "vm-name": "web-01", "resource-group": "web", "location": "westeurope",
			"size": "Standard_D2s_v5", "user-name": "alice", "nix-channel": "nixos-unstable",
			"config-repo": "git@github.com:alice/nix-config.git", "config-flake-attr": "web",
			"auto-shutdown": "22:00",
		}},
		{"destroy", map[string]string{"command": "destroy", "vm-name": "web-01"}},
		{"install-azure", map[string]string{"command": "install", "vm-name": "old-vm", "resource-group": "legacy", "start-if-stopped": "true"}},
		{"install-host", map[string]string{"command": "plan", "vm-name": "box", "target-host": "203.0.113.7:2222", "target-user": "ubuntu",
			"target-host-key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
			"target-ssh-key":  testKeyPEM, "azure-subscription-id": ""}},
		{"switch-azure", map[string]string{"command": "switch", "vm-name": "web-01", "resource-group": "web",
			"config-repo": "git@github.com:alice/nix-config.git", "config-ref": "main", "config-flake-attr": "web", "deploy-key": testKeyPEM}},
		{"switch-gitops-dry-run", map[string]string{"command": "switch", "config-repo": ".", "deploy-key": testKeyPEM, "dry-run": "true", "confirm-timeout": "2m"}},
		{"switch-host-target-build", map[string]string{"command": "switch", "vm-name": "box", "target-host": "203.0.113.7:2222", "target-user": "alice",
			"target-host-key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
			"target-ssh-key":  testKeyPEM, "azure-subscription-id": "", "config-repo": "https://github.com/alice/nix-config", "build-on": "target"}},
		{"switch-target-dry-run", map[string]string{"command": "switch", "config-repo": ".", "deploy-key": testKeyPEM, "dry-run": "true", "build-on": "target"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := New(cfg(t, tc.set), env)
			checkGolden(t, tc.name+".txt", p.Text())
			checkGolden(t, tc.name+".md", p.Markdown())
		})
	}
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name), []byte(got))
}

func TestPlanIsPureAndSecretFree(t *testing.T) {
	t.Parallel()
	c := cfg(t, map[string]string{"command": "plan", "azure-client-secret": "s3cr3t-value", "config-repo": "git@github.com:a/b.git"})
	a, b := New(c, Env{}), New(c, Env{})
	if d := cmp.Diff(a, b); d != "" {
		t.Fatalf("plan is not deterministic:\n%s", d)
	}
	for _, out := range []string{a.Text(), a.Markdown()} {
		if strings.Contains(out, "s3cr3t-value") {
			t.Fatal("plan shows a secret")
		}
		if strings.Contains(out, "PRIVATE KEY") {
			t.Fatal("plan shows a private key")
		}
	}
}

func TestPlanResourcesDependOnEarlierOnes(t *testing.T) {
	t.Parallel()
	p := New(cfg(t, map[string]string{"command": "plan", "auto-shutdown": "19:30"}), Env{})
	seen := map[string]bool{}
	for _, r := range p.Resources {
		for _, d := range r.DependsOn {
			if !seen[d] {
				t.Errorf("%s depends on %s, which comes later or not at all", r.Name, d)
			}
		}
		seen[r.Name] = true
	}
	if got := p.Resources[len(p.Resources)-1].Name; got != "shutdown-computevm-az-nixos" {
		t.Errorf("last resource %q, want the auto-shutdown schedule", got)
	}
}

// The plan says which keys reach the VM's osProfile: Azure takes only
// ssh-rsa of 2048 bits or more and ssh-ed25519 there, and needs one, so
// without such a key the VM gets the deploy key.
func TestAdminUserKeys(t *testing.T) {
	authorized := func(pub crypto.PublicKey) string {
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	edPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, ecd := authorized(edPub), authorized(&ec.PublicKey)
	for _, tc := range []struct {
		name string
		keys []string
		want string
	}{
		{"none", nil, "nixos, the deploy key only (Azure needs one; no ssh-public-keys given), no password"},
		{"ed25519", []string{ed}, "nixos, 1 SSH key(s), no password"},
		{"ecdsa only", []string{ecd}, "nixos, the deploy key only (Azure needs one and takes none of your 1 key(s); all reach the installed NixOS), no password"},
		{"both", []string{ed, ecd}, "nixos, 1 SSH key(s) (1 more of types Azure refuses reach the installed NixOS only), no password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := adminUser(config.Config{UserName: "nixos", SSHPublicKeys: tc.keys}); got != tc.want {
				t.Errorf("adminUser = %q, want %q", got, tc.want)
			}
		})
	}
}
