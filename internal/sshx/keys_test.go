package sshx_test

import (
	"strings"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

const hostPub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

// TestParseHostKeyRefusesMarkers: a pinned key read from a tag or an input
// is the host's own key, never a revoked one or a certificate authority
// (known_hosts markers, OpenSSH sshd(8) SSH_KNOWN_HOSTS FILE FORMAT).
func TestParseHostKeyRefusesMarkers(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"@revoked * " + hostPub,
		"@revoked " + hostPub,
		"@cert-authority *.example.org " + hostPub,
		"# a comment first\n@revoked * " + hostPub,
	} {
		if k, err := sshx.ParseHostKey(s); err == nil {
			t.Errorf("ParseHostKey(%q) = %s, want an error", s, sshx.AuthorizedKey(k))
		} else if !strings.Contains(err.Error(), "marker") {
			t.Errorf("ParseHostKey(%q): error %q does not mention the marker", s, err)
		}
	}
}

func TestParseHostKeyForms(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		hostPub,
		hostPub + " root@vm",
		"vm.example.org,203.0.113.7 " + hostPub,
		"[203.0.113.7]:2222 " + hostPub,
		"# 203.0.113.7:22 SSH-2.0-OpenSSH_9.6\n203.0.113.7 " + hostPub,
	} {
		k, err := sshx.ParseHostKey(s)
		if err != nil {
			t.Fatalf("ParseHostKey(%q): %v", s, err)
		}
		if got := sshx.AuthorizedKey(k); got != hostPub {
			t.Errorf("ParseHostKey(%q) = %q, want %q", s, got, hostPub)
		}
	}
}

// TestParseHostKeyErrorShowsOnlyTheType: the value may be anything pasted
// in the wrong place; an error names its key type at most.
func TestParseHostKeyErrorShowsOnlyTheType(t *testing.T) {
	t.Parallel()
	_, err := sshx.ParseHostKey("vm ssh-ed25519 AAAAsecret-but-not-base64 comment")
	if err == nil || !strings.Contains(err.Error(), "ssh-ed25519") || strings.Contains(err.Error(), "AAAAsecret") {
		t.Fatalf("error = %v, want one naming ssh-ed25519 and nothing of the key", err)
	}
	_, err = sshx.ParseHostKey("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ")
	if err == nil || strings.Contains(err.Error(), "b3BlbnNz") {
		t.Fatalf("error = %v, want one showing nothing of the value", err)
	}
}
