package azuretest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"golang.org/x/crypto/ssh"
)

func authorizedKey(t *testing.T, pub any) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// TestVMRefusesSSHKeysAzureRefuses: osProfile takes ssh-rsa of at least 2048 bits and ssh-ed25519;
// any other key fails the VM create with 400 InvalidParameter on ...publicKeys.keyData, and no VM
// is left behind.
func TestVMRefusesSSHKeysAzureRefuses(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	long, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// An sk-ssh-ed25519@openssh.com key as ssh-keygen -t ed25519-sk writes it.
	const skKey = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJlAAAABHNzaDo= me@yubikey"
	tests := []struct {
		name   string
		keys   []string
		target string // "" means accepted
	}{
		{"ed25519", []string{testUserKey}, ""},
		{"rsa 2048", []string{authorizedKey(t, &long.PublicKey)}, ""},
		{"ecdsa", []string{authorizedKey(t, &ec.PublicKey)}, "linuxConfiguration.ssh.publicKeys.keyData"},
		{"rsa 1024", []string{authorizedKey(t, &short.PublicKey)}, "linuxConfiguration.ssh.publicKeys.keyData"},
		{"fido", []string{skKey}, "linuxConfiguration.ssh.publicKeys.keyData"},
		{"one bad among good", []string{testUserKey, authorizedKey(t, &ec.PublicKey)}, "linuxConfiguration.ssh.publicKeys.keyData"},
		{"no key and no password", nil, "linuxConfiguration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEmulator(t, Options{})
			c := newClients(t, e)
			ctx := context.Background()
			g := createNetwork(ctx, t, c)
			params := vmParams(g.nic, testCustomData)
			var pk []*armcompute.SSHPublicKey
			for _, k := range tc.keys {
				pk = append(pk, &armcompute.SSHPublicKey{Path: to.Ptr("/home/nixos/.ssh/authorized_keys"), KeyData: to.Ptr(k)})
			}
			params.Properties.OSProfile.LinuxConfiguration.SSH = &armcompute.SSHConfiguration{PublicKeys: pk}
			p, err := c.vms.BeginCreateOrUpdate(ctx, testGroup, testVM, params, nil)
			if err == nil {
				_, err = p.PollUntilDone(ctx, poll)
			}
			if tc.target == "" {
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				return
			}
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "InvalidParameter" {
				t.Fatalf("create: %v, want 400 InvalidParameter", err)
			}
			if !strings.Contains(err.Error(), `"target": "`+tc.target+`"`) {
				t.Errorf("error body lacks target %q:\n%v", tc.target, err)
			}
			if len(e.VMs()) != 0 {
				t.Errorf("a refused create left VMs: %v", e.VMs())
			}
		})
	}
}
