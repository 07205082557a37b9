package sshx

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ParseHostKey parses a public host key written as an authorized_keys line
// ("ssh-ed25519 AAAA... comment") or a known_hosts line ("host ssh-ed25519 AAAA...");
// the first line that is not blank or a # comment counts.
//
// A known_hosts line with a marker is refused: "@revoked" says the key must
// never be accepted and "@cert-authority" that it signs host certificates;
// neither is the host's key (OpenSSH sshd(8), SSH_KNOWN_HOSTS FILE FORMAT;
// openssh-portable hostfile.h). ssh.ParseAuthorizedKey alone would take
// "@revoked ssh-ed25519 AAAA..." for a key with options, so a line is read
// as authorized_keys only when it starts with a key type. An error shows no
// more of the value than its key type.
func ParseHostKey(s string) (ssh.PublicKey, error) {
	line := ""
	for _, l := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			line = l
			break
		}
	}
	if line == "" {
		return nil, errors.New("failed to parse host key: it is empty")
	}
	fields := strings.Fields(line)
	if strings.HasPrefix(fields[0], "@") {
		return nil, fmt.Errorf("failed to parse host key: a known_hosts line with a marker (%q) names a revoked key or a certificate authority, not the host's key", shorten(fields[0], 20))
	}
	var k ssh.PublicKey
	var err error
	if isKeyType(fields[0]) {
		k, _, _, _, err = ssh.ParseAuthorizedKey([]byte(line))
	} else {
		_, _, k, _, _, err = ssh.ParseKnownHosts([]byte(line))
	}
	if err != nil || k == nil {
		what := "a line"
		for _, f := range fields[:min(2, len(fields))] {
			if isKeyType(f) {
				what = "a " + f + " line"
			}
		}
		return nil, fmt.Errorf("failed to parse host key (%s): want an authorized_keys or known_hosts line like \"ssh-ed25519 AAAA...\"", what)
	}
	return k, nil
}

// isKeyType reports whether s names an OpenSSH public key type
// (x/crypto/ssh's KeyAlgo* and CertAlgo* names; DSA's by name, since
// x/crypto deprecated those constants).
func isKeyType(s string) bool {
	switch s {
	case ssh.KeyAlgoRSA, "ssh-dss", ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.CertAlgoRSAv01, "ssh-dss-cert-v01@openssh.com", ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
		ssh.CertAlgoECDSA521v01, ssh.CertAlgoSKECDSA256v01, ssh.CertAlgoED25519v01, ssh.CertAlgoSKED25519v01:
		return true
	}
	return false
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
