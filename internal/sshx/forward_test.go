package sshx_test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// forwardSSH is the real ssh client through a Forwarder, as nix copy runs
// it: strict checking against a known_hosts file with the pinned key under
// an alias.
func forwardSSH(t *testing.T, s *sshtest.Server, port int, pinned ssh.PublicKey, args ...string) *exec.Cmd {
	t.Helper()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte("nixos-cloud-deploy-target "+sshx.AuthorizedKey(pinned)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := []string{"-F", "/dev/null", "-p", strconv.Itoa(port), "-o", "HostKeyAlias=nixos-cloud-deploy-target",
		"-o", "UserKnownHostsFile=" + kh, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes", "-i", s.ClientKeyFile, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", s.User + "@127.0.0.1"}
	return exec.Command("ssh", append(argv, args...)...)
}

func TestForwarderCarriesRealSSHOverTheVerifiedConnection(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("ssh not found: %v; apt-get install openssh-client", err)
	}
	s := sshtest.Start(t)
	c := dial(t, s)
	_, port, _ := net.SplitHostPort(s.Addr)
	f, err := sshx.Forward(c, net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stderr bytes.Buffer
	cmd := forwardSSH(t, s, f.Port(), s.HostKey, "echo", "through", "the", "tunnel")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh through the forwarder: %v\n%s", err, stderr.String())
	}
	if string(out) != "through the tunnel\n" {
		t.Errorf("output %q", out)
	}
	// Our verified connection, and the inner ssh: no third login.
	if n := strings.Count(s.Log(), "Accepted publickey"); n != 2 {
		t.Errorf("sshd saw %d logins, want 2:\n%s", n, s.Log())
	}
}

func TestForwarderInnerSSHStillChecksTheKey(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c := dial(t, s)
	_, port, _ := net.SplitHostPort(s.Addr)
	f, err := sshx.Forward(c, net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stdout, stderr bytes.Buffer
	cmd := forwardSSH(t, s, f.Port(), newSigner(t).PublicKey(), "echo", "must not run")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 255 {
		t.Fatalf("want exit status 255, got %v\n%s", err, stderr.String())
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "Host key verification failed") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestForwarderCloseEndsTunnels(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c := dial(t, s)
	_, port, _ := net.SplitHostPort(s.Addr)
	f, err := sshx.Forward(c, net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.Port())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	banner := make([]byte, 4)
	if _, err := conn.Read(banner); err != nil || string(banner) != "SSH-" {
		t.Fatalf("read %q, %v: want the VM's sshd banner through the tunnel", banner, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1024)); err == nil {
		// Drain what was in flight; the next read must see the end.
		if _, err := conn.Read(make([]byte, 1024)); err == nil {
			t.Error("the tunnel is still open after Close")
		}
	}
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.Port()))); err == nil {
		t.Error("the forwarder still accepts after Close")
	}
}
