package sshx

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ParseHostKey parses a public host key written as an authorized_keys line
// ("ssh-ed25519 AAAA... comment") or a known_hosts line ("host ssh-ed25519 AAAA...").
func ParseHostKey(s string) (ssh.PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("failed to parse host key: it is empty")
	}
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err == nil {
		return k, nil
	}
	_, _, k, _, _, err := ssh.ParseKnownHosts([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("failed to parse host key %q: want an authorized_keys or known_hosts line like \"ssh-ed25519 AAAA...\"", shorten(s, 120))
	}
	return k, nil
}

// AuthorizedKey formats k as one authorized_keys-style line without a newline ("ssh-ed25519 AAAA...").
func AuthorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// KnownHostsLine formats one known_hosts line for addr ("host:port" or "host") and k, so users can
// pin the key instead of trusting it on first use.
func KnownHostsLine(addr string, k ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, k)
}
