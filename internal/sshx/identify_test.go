package sshx

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
)

func TestIdentifyWithoutLoggingIn(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	id, err := Identify(ctx, srv.Addr, srv.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	if !id.HostKeyVerified || !strings.HasPrefix(id.Version, "SSH-2.0-OpenSSH_") {
		t.Fatalf("identity %+v", id)
	}
	// This machine's sshd is Debian's, which says so.
	if got := id.Distribution(); got != "debian" && got != "ubuntu" {
		t.Errorf("distribution of %q = %q", id.Version, got)
	}

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(other.Public())
	_, err = Identify(ctx, srv.Addr, otherPub)
	var mm *HostKeyMismatchError
	if !errors.As(err, &mm) || mm.Expected != Fingerprint(otherPub) || mm.Presented != Fingerprint(srv.HostKey) {
		t.Fatalf("want a host key mismatch with both fingerprints, got %v", err)
	}
}

func TestDistribution(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{
		"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5": "ubuntu",
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3":   "debian",
		"SSH-2.0-OpenSSH_9.9":                      "",
	} {
		if got := (Identity{Version: v}).Distribution(); got != want {
			t.Errorf("%q: %q, want %q", v, got, want)
		}
	}
}

func TestIdentifyServerWithoutKeyOfPinnedType(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := sshtest.Start(t, sshtest.WithHostKey(ec))
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(other.Public())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = Identify(ctx, srv.Addr, otherPub)
	var mm *HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Identify pinning ed25519 on an ecdsa-only server: err = %v, want *HostKeyMismatchError", err)
	}
}
