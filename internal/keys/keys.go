// Package keys makes the per-deployment SSH keys: the VM's host key, known
// before the VM boots, and the deploy key that authorises root for the
// install. Both live in memory; the private halves only ever leave it in
// cloud-init custom data (host key, replaced on the VM after the install:
// internal/deploy's rotate stage) or a 0600 file removed at exit (deploy key).
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Pair is an ed25519 key pair.
type Pair struct {
	Signer     ssh.Signer
	Public     ssh.PublicKey
	PrivatePEM []byte // OpenSSH format; secret
}

// New generates an ed25519 key pair from r (crypto/rand.Reader when nil).
func New(r io.Reader, comment string) (*Pair, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("failed to generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("failed to make signer: %w", err)
	}
	return &Pair{Signer: signer, Public: signer.PublicKey(), PrivatePEM: pem.EncodeToMemory(block)}, nil
}

// AuthorizedKey is the public half as an authorized_keys line, without
// newline, with the comment appended when given.
func AuthorizedKey(k ssh.PublicKey, comment string) string {
	line := sshx.AuthorizedKey(k)
	if comment != "" {
		line += " " + comment
	}
	return line
}

// KnownHostsLine is the line to paste into ~/.ssh/known_hosts for the given
// host names or addresses, each optionally with ":port" ([host]:port when
// the port is not 22, as ssh looks it up).
func KnownHostsLine(hosts []string, k ssh.PublicKey) string {
	var hs []string
	for _, h := range hosts {
		if h != "" {
			hs = append(hs, knownhosts.Normalize(h))
		}
	}
	return knownhosts.Line(hs, k)
}

// FromPEM makes a Pair from an unencrypted private key (the deploy-key
// input). The error never contains the key.
func FromPEM(privatePEM []byte) (*Pair, error) {
	signer, err := ssh.ParsePrivateKey(privatePEM)
	if err != nil {
		return nil, fmt.Errorf("failed to parse private key: %s", "not an unencrypted OpenSSH or PEM private key")
	}
	return &Pair{Signer: signer, Public: signer.PublicKey(), PrivatePEM: privatePEM}, nil
}
