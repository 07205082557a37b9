package sshtest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
)

func output(t *testing.T, s *sshtest.Server, cmd string) string {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatalf("failed to dial %s: %v", s.Addr, err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	out, err := sess.Output(cmd)
	if err != nil {
		t.Fatalf("failed to run %q: %v (stderr %q)", cmd, err, stderr.String())
	}
	return string(out)
}

func TestStartRunsCommandsWithScriptedPATHAndEnv(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.WithEnv("GREETING=hello world"))
	s.AddExecutable("lsblk", "#!/bin/sh\necho fake-lsblk \"$@\"\n")

	got := output(t, s, "lsblk -J; echo \"$GREETING\"; whoami")
	want := "fake-lsblk -J\nhello world\n" + s.User + "\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"lsblk -J; echo \"$GREETING\"; whoami"}, s.Commands()); diff != "" {
		t.Errorf("Commands() mismatch (-want +got):\n%s", diff)
	}
}

func TestRealSSHClientWithStrictHostKeyChecking(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("ssh client missing: %v; install it: apt-get install openssh-client", err)
	}
	s := sshtest.Start(t)
	out, err := exec.Command("ssh", s.SSHArgs("echo", "ok")...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh failed: %v\n%s", err, out)
	}
	if got := string(out); got != "ok\n" {
		t.Errorf("ssh output = %q, want %q", got, "ok\n")
	}
}

func TestWrongHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	other := sshtest.Start(t)
	cfg := s.ClientConfig()
	cfg.HostKeyCallback = ssh.FixedHostKey(other.HostKey)
	if _, err := ssh.Dial("tcp", s.Addr, cfg); err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("Dial with another host key: err = %v, want host key mismatch", err)
	}
}

func TestExtraHostKeyAndReusedHostKey(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	first := sshtest.Start(t, sshtest.WithExtraHostKey(ec))
	second := sshtest.Start(t, sshtest.WithHostKeyPEM(first.HostKeyPEM))
	if !bytes.Equal(first.HostKey.Marshal(), second.HostKey.Marshal()) {
		t.Fatalf("WithHostKeyPEM: host keys differ")
	}
	cfg := first.ClientConfig()
	ecSigner, err := ssh.NewSignerFromKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HostKeyCallback = ssh.FixedHostKey(ecSigner.PublicKey())
	cfg.HostKeyAlgorithms = []string{ecSigner.PublicKey().Type()}
	c, err := ssh.Dial("tcp", first.Addr, cfg)
	if err != nil {
		t.Fatalf("Dial pinning the extra ecdsa key: %v", err)
	}
	c.Close()
	if got := output(t, second, "echo ok"); got != "ok\n" {
		t.Errorf("second server output = %q", got)
	}
}

func TestDelayedListenStopAndKillSessions(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.Delayed())
	if _, err := net.Dial("tcp", s.Addr); err == nil {
		t.Fatalf("Delayed server accepted a connection before Listen")
	}
	if !s.ListeningAt().IsZero() {
		t.Fatalf("ListeningAt set before Listen")
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	if s.ListeningAt().IsZero() {
		t.Fatalf("ListeningAt not set after Listen")
	}

	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("sleep 60"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	s.KillSessions()
	select {
	case err := <-done:
		var exitErr *ssh.ExitError
		if err == nil || errors.As(err, &exitErr) && exitErr.ExitStatus() == 0 {
			t.Fatalf("Wait after KillSessions = %v, want an error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("session still alive 30s after KillSessions")
	}

	s.Stop()
	if _, err := net.Dial("tcp", s.Addr); err == nil {
		t.Fatalf("stopped server accepted a connection")
	}
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen after Stop: %v", err)
	}
	if got := output(t, s, "echo again"); got != "again\n" {
		t.Errorf("output after restart = %q", got)
	}
}

func TestRelayDropAndFreeze(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	r := sshtest.NewRelay(t, s.Addr)
	c, err := ssh.Dial("tcp", r.Addr, s.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Fatalf("keepalive through relay: %v", err)
	}

	r.Freeze()
	replied := make(chan error, 1)
	go func() { _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); replied <- err }()
	select {
	case err := <-replied:
		t.Fatalf("keepalive answered through a frozen relay: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	r.Thaw()
	if err := <-replied; err != nil {
		t.Fatalf("keepalive after Thaw: %v", err)
	}

	r.Drop()
	if err := c.Wait(); err == nil {
		t.Fatalf("connection survived Drop")
	}
}

func TestWithWrapperExecsSSHD(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := dir + "/wrapped"
	wrapper := dir + "/wrapper.sh"
	script := "#!/bin/sh\necho wrapped > " + marker + "\nexec \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := sshtest.Start(t, sshtest.WithWrapper(wrapper))
	if got := output(t, s, "echo ok"); got != "ok\n" {
		t.Errorf("output = %q", got)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("wrapper did not run: %v", err)
	}
}

func TestStopLeavesSessionsThenCleanupKillsThem(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Stop() // returns although a connection is open
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("established connection died with the listener: %v", err)
	}
	out, err := sess.Output("echo still here")
	if err != nil || string(out) != "still here\n" {
		t.Fatalf("session after Stop = %q, %v", out, err)
	}
	s.KillSessions()
	if err := c.Wait(); err == nil {
		t.Fatalf("connection survived KillSessions after Stop")
	}
}
