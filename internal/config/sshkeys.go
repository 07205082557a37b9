package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// privateKeyMarkers are strings that only private key files contain:
// PEM and OpenSSH ("-----BEGIN OPENSSH PRIVATE KEY-----"), ssh.com/RFC 4716
// ("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----") and PuTTY's PPK, whose
// header is "PuTTY-User-Key-File-<version>: <algorithm>" and whose private
// half follows "Private-Lines: N" and ends with "Private-MAC: ..." (PuTTY
// manual, appendix C "PPK file format"; PuTTY reads CR, LF or CRLF line
// endings, so these are matched anywhere, not per line).
var privateKeyMarkers = []string{"PRIVATE KEY", "PuTTY-User-Key-File-", "Private-Lines:", "Private-MAC:"}

// containsPrivateKey reports whether s holds (part of) a private key file.
func containsPrivateKey(s string) bool {
	for _, m := range privateKeyMarkers {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// keyTypes are the key types an OpenSSH public key line may start with
// (x/crypto/ssh's KeyAlgo* and CertAlgo* names, which are OpenSSH's; DSA's
// by name, since x/crypto deprecated the constants: old lines still carry it).
var keyTypes = map[string]bool{
	ssh.KeyAlgoRSA: true, "ssh-dss": true, ssh.KeyAlgoECDSA256: true, ssh.KeyAlgoECDSA384: true,
	ssh.KeyAlgoECDSA521: true, ssh.KeyAlgoSKECDSA256: true, ssh.KeyAlgoED25519: true, ssh.KeyAlgoSKED25519: true,
	ssh.CertAlgoRSAv01: true, "ssh-dss-cert-v01@openssh.com": true, ssh.CertAlgoECDSA256v01: true, ssh.CertAlgoECDSA384v01: true,
	ssh.CertAlgoECDSA521v01: true, ssh.CertAlgoSKECDSA256v01: true, ssh.CertAlgoED25519v01: true, ssh.CertAlgoSKED25519v01: true,
}

// lineKeyType is what an error may show of a line that did not parse: its
// key type when the first or second field is one (authorized_keys or
// known_hosts order), else nothing. Anything more could be a piece of a
// private key pasted in the wrong place.
func lineKeyType(line string) string {
	fields := strings.Fields(line)
	for i := 0; i < len(fields) && i < 2; i++ {
		if keyTypes[fields[i]] {
			return fields[i]
		}
	}
	return ""
}

// badChar describes the first character of line that no key line may hold,
// or "" when there is none. A carriage return inside a line (not part of a
// CRLF ending) is one: the input check would keep it in the comment, while
// settings.json, Nix and GitHub's log all treat it as a line break.
func badChar(line string) string {
	if !utf8.ValidString(line) {
		return "bytes that are not UTF-8"
	}
	for _, r := range line {
		switch {
		case r == '\r':
			return "a carriage return inside the line (a lone CR; save the file with LF or CRLF line endings)"
		case r == '\t':
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("the control character %U", r)
		}
	}
	return ""
}

// ParseAuthorizedKeys parses one authorized_keys line per line; blank lines
// and # comments are skipped. The lines come back normalised: key type,
// base64 key and comment. An error shows no more of a bad line than its key
// type, and a private key (OpenSSH, PEM, PuTTY) is refused without showing
// any of it.
func ParseAuthorizedKeys(input, s string) ([]string, error) {
	if containsPrivateKey(s) {
		// Never echo any line of it: this is a secret pasted in the wrong place.
		return nil, &FieldError{Input: input, Secret: true, Rule: "contains a private key; give the public half (the .pub file, or PuTTYgen's \"Public key for pasting into OpenSSH authorized_keys file\") here and rotate the private key, it may have been exposed"}
	}
	var keys []string
	var errs []error
	for i, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := fmt.Sprintf("%s line %d", input, i+1)
		if bad := badChar(line); bad != "" {
			errs = append(errs, &FieldError{Input: name, Value: lineKeyType(line), Rule: "contains " + bad})
			continue
		}
		k, comment, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			errs = append(errs, &FieldError{Input: name, Value: lineKeyType(line), Rule: "must be an authorized_keys line such as \"ssh-ed25519 AAAA... me@laptop\" (a public key, not a private one)"})
			continue
		}
		if len(options) > 0 {
			// settings.json carries bare keys: a from= or command= restriction
			// would be dropped without a word and the key allowed everywhere.
			errs = append(errs, &FieldError{Input: name, Value: k.Type(), Rule: "has authorized_keys options (from=, command=, ...), which would be dropped and the key allowed without them; give the bare key line, \"ssh-ed25519 AAAA... comment\""})
			continue
		}
		norm := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
		if comment != "" {
			norm += " " + comment
		}
		keys = append(keys, norm)
	}
	return keys, errors.Join(errs...)
}

// parseHostKey reads a host key given as an authorized_keys line
// ("ssh-ed25519 AAAA...") or a known_hosts line ("host ssh-ed25519 AAAA...").
// It mirrors sshx.ParseHostKey on purpose: config is linked by the bot,
// which must not link the SSH client (cmd/bot's deps test).
//
// A known_hosts marker is refused: "@revoked" says the key must never be
// accepted and "@cert-authority" that it signs host certificates, neither
// is the host's key (OpenSSH sshd(8), SSH_KNOWN_HOSTS FILE FORMAT; the
// markers of openssh-portable hostfile.h).
// Only the first line that is not blank or a # comment counts (ssh-keyscan
// prints comments first).
func parseHostKey(input, s string) (ssh.PublicKey, error) {
	s = strings.TrimSpace(s)
	if containsPrivateKey(s) {
		return nil, &FieldError{Input: input, Secret: true, Rule: "contains a private key; give the host's public key (cat /etc/ssh/ssh_host_ed25519_key.pub on the host) and treat the private key as exposed"}
	}
	line := firstKeyLine(s)
	if bad := badChar(line); bad != "" {
		return nil, &FieldError{Input: input, Value: lineKeyType(line), Rule: "contains " + bad}
	}
	if strings.HasPrefix(line, "@") {
		marker, _, _ := strings.Cut(line, " ")
		return nil, &FieldError{Input: input, Value: lineKeyType(line), Rule: fmt.Sprintf("is a known_hosts line with the marker %q: it names a revoked key or a certificate authority, not the host's key; give the host's own key line", shortMarker(marker))}
	}
	if keyTypes[firstField(line)] {
		// Key type first: an authorized_keys line. Anything else first is a
		// known_hosts host list (ssh.ParseAuthorizedKey would take it for
		// options and accept "@revoked ssh-ed25519 AAAA...").
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, &FieldError{Input: input, Value: lineKeyType(line), Rule: "must be a known_hosts line or a public key such as \"ssh-ed25519 AAAA...\""}
		}
		return k, nil
	}
	marker, _, k, _, _, err := ssh.ParseKnownHosts([]byte(line))
	if err != nil || k == nil || marker != "" {
		return nil, &FieldError{Input: input, Value: lineKeyType(line), Rule: "must be a known_hosts line or a public key such as \"ssh-ed25519 AAAA...\""}
	}
	return k, nil
}

func firstKeyLine(s string) string {
	for _, l := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// shortMarker keeps a marker printable and short; markers are not secret,
// but the field is free text.
func shortMarker(m string) string {
	if len(m) > 20 || badChar(m) != "" {
		return "@…"
	}
	return m
}
