package keys

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestNewRoundTrips(t *testing.T) {
	t.Parallel()
	p, err := New(nil, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(p.PrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.PublicKey().Marshal()) != string(p.Public.Marshal()) {
		t.Fatal("private PEM does not match the public key")
	}
	line := AuthorizedKey(p.Public, "c")
	k, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || comment != "c" || string(k.Marshal()) != string(p.Public.Marshal()) {
		t.Fatalf("authorized key %q: %v", line, err)
	}
	kh := KnownHostsLine([]string{"vm.uksouth.cloudapp.azure.com", "", "20.0.0.1"}, p.Public)
	if !strings.HasPrefix(kh, "vm.uksouth.cloudapp.azure.com,20.0.0.1 ssh-ed25519 ") {
		t.Fatalf("known_hosts line %q", kh)
	}
	if kh := KnownHostsLine([]string{"203.0.113.7:2222", "h.example:22"}, p.Public); !strings.HasPrefix(kh, "[203.0.113.7]:2222,h.example ssh-ed25519 ") {
		t.Fatalf("known_hosts line with ports %q", kh)
	}
	_, hosts, pub, _, _, err := ssh.ParseKnownHosts([]byte(kh))
	if err != nil || len(hosts) != 2 || string(pub.Marshal()) != string(p.Public.Marshal()) {
		t.Fatalf("known_hosts line does not parse back: %v %v", hosts, err)
	}
}

func TestFromPEM(t *testing.T) {
	t.Parallel()
	p, err := New(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	q, err := FromPEM(p.PrivatePEM)
	if err != nil || string(q.Public.Marshal()) != string(p.Public.Marshal()) {
		t.Fatalf("FromPEM: %v", err)
	}
	if _, err := FromPEM([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nsecretstuff\n-----END OPENSSH PRIVATE KEY-----\n")); err == nil || strings.Contains(err.Error(), "secretstuff") {
		t.Fatalf("want an error without the key, got %v", err)
	}
}
