package azure

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

func authorizedKey(t *testing.T, pub any, comment string) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

// TestSSHKeysAzureAccepts: only ssh-rsa of at least 2048 bits and ssh-ed25519 go to osProfile.
func TestSSHKeysAzureAccepts(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	short, _ := rsa.GenerateKey(rand.Reader, 1024)
	long, _ := rsa.GenerateKey(rand.Reader, 3072)
	ed := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ed@laptop"
	sk := "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJlAAAABHNzaDo= me@yubikey"
	lines := []string{authorizedKey(t, &ec.PublicKey, "ec"), ed, authorizedKey(t, &short.PublicKey, "short"), sk, authorizedKey(t, &long.PublicKey, "long")}
	accepted, refused := SSHKeysAzureAccepts(lines)
	if d := cmp.Diff([]string{lines[1], lines[4]}, accepted); d != "" {
		t.Errorf("accepted (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{lines[0], lines[2], lines[3]}, refused); d != "" {
		t.Errorf("refused (-want +got):\n%s", d)
	}
}

// TestProvisionNeverSendsAKeyAzureRefuses: a spec with an ECDSA admin key is refused before
// anything is created, naming the key's type and never the key.
func TestProvisionNeverSendsAKeyAzureRefuses(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f := newFakeARM()
	s := testSpec()
	line := authorizedKey(t, &ec.PublicKey, "me@laptop")
	s.AdminKeys = []string{line}
	_, err := f.provisioner(t).Provision(context.Background(), s, nil)
	if err == nil || !strings.Contains(err.Error(), "ecdsa-sha2-nistp256") || !strings.Contains(err.Error(), "ssh-ed25519") {
		t.Fatalf("err = %v, want the ECDSA key refused", err)
	}
	if strings.Contains(err.Error(), strings.Fields(line)[1]) {
		t.Error("the error echoes the key")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sentPuts != 0 {
		t.Errorf("%d PUTs sent", f.sentPuts)
	}
}
