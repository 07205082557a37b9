package sshx_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// testExe is this test binary, which runs RunProxy when runProxyEnv is set (see TestMain).
func testExe(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("ssh client missing: %v; install it: apt-get install openssh-client", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// nixosAnywhereSSH runs the real ssh client the way nixos-anywhere does: no host key checking of its
// own, everything through our ProxyCommand.
func nixosAnywhereSSH(t testing.TB, s *sshtest.Server, proxyOption string, remote ...string) *exec.Cmd {
	t.Helper()
	args := []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", proxyOption,
		"-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR",
		"-i", s.ClientKeyFile,
		s.User + "@192.0.2.1", // an address nobody answers: only the proxy can reach the server
	}
	cmd := exec.Command("ssh", append(args, remote...)...)
	cmd.Env = append(os.Environ(), runProxyEnv+"=1")
	return cmd
}

func proxyConfig(s *sshtest.Server) sshx.ProxyConfig {
	return sshx.ProxyConfig{Addr: s.Addr, User: s.User, HostKey: s.HostKey, IdentityFile: s.ClientKeyFile}
}

func TestRealSSHThroughProxyReachesHost(t *testing.T) {
	t.Parallel()
	exe := testExe(t)
	s := sshtest.Start(t)
	opt, err := sshx.ProxyOption(exe, proxyConfig(s))
	if err != nil {
		t.Fatal(err)
	}
	cmd := nixosAnywhereSSH(t, s, opt, "echo", "through", "the", "proxy")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh via proxy: %v\nstderr: %s", err, stderr.String())
	}
	if string(out) != "through the proxy\n" {
		t.Errorf("output = %q", out)
	}
	// Two logins: the proxy's verified connection, and the inner ssh through its direct-tcpip channel.
	if n := strings.Count(s.Log(), "Accepted publickey"); n != 2 {
		t.Errorf("sshd saw %d logins, want 2:\n%s", n, s.Log())
	}
}

func TestRealSSHThroughProxyRefusedWhenHostPresentsAnotherKey(t *testing.T) {
	t.Parallel()
	exe := testExe(t)
	s := sshtest.Start(t)
	pinned := newSigner(t).PublicKey() // the key we expect; the host presents s.HostKey
	cfg := proxyConfig(s)
	cfg.HostKey = pinned
	opt, err := sshx.ProxyOption(exe, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := nixosAnywhereSSH(t, s, opt, "echo", "must not run")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 255 {
		t.Fatalf("ssh via proxy with a wrong pinned key: err = %v, want exit status 255\nstderr: %s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("the remote command ran: %q", stdout.String())
	}
	for _, want := range []string{"host key mismatch", ssh.FingerprintSHA256(pinned), ssh.FingerprintSHA256(s.HostKey)} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(s.Log(), "Accepted publickey") {
		t.Errorf("a login happened despite the mismatch:\n%s", s.Log())
	}
}

// Paths with spaces, quotes and % survive ssh's %-expansion and its shell.
func TestProxyCommandQuotesHostilePaths(t *testing.T) {
	t.Parallel()
	exe := testExe(t)
	s := sshtest.Start(t)
	dir := filepath.Join(t.TempDir(), `it's a 100% "dir" $(x) %h`)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "proxy exe")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key %p")
	if err := os.WriteFile(key, s.ClientKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := proxyConfig(s)
	cfg.IdentityFile = key
	opt, err := sshx.ProxyOption(link, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := nixosAnywhereSSH(t, s, opt, "echo", "ok").CombinedOutput()
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("ssh via proxy from %q: %v\n%s", dir, err, out)
	}
}

func TestProxyCommandRejectsLineBreaks(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.Delayed())
	cfg := proxyConfig(s)
	cfg.IdentityFile = "/tmp/a\nb"
	if _, err := sshx.ProxyCommand("/bin/action", cfg); err == nil {
		t.Fatalf("ProxyCommand accepted a newline")
	}
	if _, err := sshx.ProxyCommand("/bin/action", sshx.ProxyConfig{}); err == nil {
		t.Fatalf("ProxyCommand accepted an empty config")
	}
}

// The rendered ProxyCommand option and proxy script, for a fixed configuration.
func TestProxyGolden(t *testing.T) {
	t.Parallel()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ8Rr0qN8LrD+8mJ3Ck8PCLz6m6ZHdrBTYfN4OJyVXj"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := sshx.ProxyConfig{Addr: "20.1.2.3:22", HostKey: k, IdentityFile: "/tmp/ncd-123/deploy key 100%", User: "root", Wait: 2 * time.Minute}
	opt, err := sshx.ProxyOption("/usr/local/bin/action", cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	scriptOpt, err := sshx.WriteProxyScript(filepath.Join(dir, "ssh-proxy"), "/usr/local/bin/action", cfg)
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(dir, "ssh-proxy"))
	if err != nil {
		t.Fatal(err)
	}
	got := "# ProxyOption\n" + opt + "\n# WriteProxyScript option\n" + strings.ReplaceAll(scriptOpt, dir, "$DIR") +
		"\n# WriteProxyScript script\n" + string(script)
	golden.Check(t, filepath.Join("testdata", "proxy.golden"), []byte(got))
}

func TestRunProxyUsage(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.Delayed())
	hk := sshx.AuthorizedKey(s.HostKey)
	hkFile := filepath.Join(t.TempDir(), "host_key.pub")
	if err := os.WriteFile(hkFile, []byte(sshx.KnownHostsLine(s.Addr, s.HostKey)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	encrypted := filepath.Join(t.TempDir(), "encrypted_key")
	if err := os.WriteFile(encrypted, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string
	}{
		{"encrypted identity", []string{"--addr", s.Addr, "--identity", encrypted, "--host-key", hk}, nil, 2, "passphrase-protected"},
		{"nothing", nil, nil, 2, "are required"},
		{"both host key flags", []string{"--addr", s.Addr, "--identity", s.ClientKeyFile, "--host-key", hk, "--host-key-file", hkFile}, nil, 2, "exactly one"},
		{"bad host key", []string{"--addr", s.Addr, "--identity", s.ClientKeyFile, "--host-key", "nonsense"}, nil, 2, "failed to parse host key"},
		{"no port", []string{"--addr", "10.0.0.1", "--identity", s.ClientKeyFile, "--host-key", hk}, nil, 2, "want host:port"},
		{"missing identity file", []string{"--addr", s.Addr, "--identity", "/nonexistent/key", "--host-key", hk}, nil, 2, "failed to read identity file"},
		{"stray argument", []string{"--addr", s.Addr, "extra"}, nil, 2, "unexpected argument"},
		{"help", []string{"-h"}, nil, 0, "usage:"},
		// Delayed: nothing listens yet, so a complete configuration fails to connect with 255.
		{"flags, port closed", []string{"--addr", s.Addr, "--identity", s.ClientKeyFile, "--host-key-file", hkFile}, nil, 255, "connection refused"},
		{"environment, port closed", nil, map[string]string{
			sshx.EnvProxyAddr: s.Addr, sshx.EnvProxyIdentity: s.ClientKeyFile, sshx.EnvProxyHostKey: hk,
		}, 255, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := sshx.RunProxy(testCtx(t), tc.args, func(k string) string { return tc.env[k] }, strings.NewReader(""), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("RunProxy(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.wantCode, tc.wantErr)
			}
			if strings.Contains(stderr.String(), "PRIVATE KEY") {
				t.Errorf("stderr shows key material: %s", stderr.String())
			}
		})
	}
}

// RunProxy in-process: the SSH banner of the VM's own sshd arrives through the tunnel.
func TestRunProxyTunnelsToTarget(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	stdinR, stdinW := io.Pipe()
	var stdout syncBuffer
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- sshx.RunProxy(testCtx(t), []string{"--addr", s.Addr, "--user", s.User, "--host-key", sshx.AuthorizedKey(s.HostKey),
			"--identity", s.ClientKeyFile}, func(string) string { return "" }, stdinR, &stdout, &stderr)
	}()
	waitFor(t, func() bool { return strings.HasPrefix(stdout.String(), "SSH-2.0-OpenSSH") })
	_, _ = stdinW.Write([]byte("SSH-2.0-bogus\r\n garbage\r\n"))
	_ = stdinW.Close()
	if code := <-done; code != 0 {
		t.Fatalf("RunProxy = %d, stderr %q", code, stderr.String())
	}
}

// nixos-anywhere passes its ssh options to nix copy as NIX_SSHOPTS="${sshArgs[*]}"; older Nix splits
// that at whitespace, newer Nix with shell rules. The script option survives both.
func TestWriteProxyScriptSurvivesNIXSSHOPTS(t *testing.T) {
	t.Parallel()
	exe := testExe(t)
	s := sshtest.Start(t)
	opt, err := sshx.WriteProxyScript(filepath.Join(t.TempDir(), "ssh-proxy"), exe, proxyConfig(s))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(opt, " \t\n'\"\\") {
		t.Fatalf("option %q has characters NIX_SSHOPTS splitting would touch", opt)
	}
	sshArgs := []string{"-o", "IdentitiesOnly=yes", "-i", s.ClientKeyFile, "-o", "UserKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", opt, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
	nixSSHOpts := strings.Join(sshArgs, " ")
	args := append([]string{"-F", "/dev/null"}, strings.Fields(nixSSHOpts)...)
	cmd := exec.Command("ssh", append(args, s.User+"@192.0.2.1", "echo", "via", "script")...)
	cmd.Env = append(os.Environ(), runProxyEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "via script\n" {
		t.Fatalf("ssh with options split from NIX_SSHOPTS: %v\n%s", err, out)
	}

	// The same script refuses a host with another key.
	other := sshtest.Start(t)
	cfg := proxyConfig(other)
	cfg.HostKey = s.HostKey
	opt, err = sshx.WriteProxyScript(filepath.Join(t.TempDir(), "ssh-proxy"), exe, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err = nixosAnywhereSSH(t, other, opt, "echo", "must not run").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "host key mismatch") {
		t.Fatalf("ssh via script to a host with another key: %v\n%s", err, out)
	}
}

func TestWriteProxyScriptRefusesUnsplittablePath(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.Delayed())
	if _, err := sshx.WriteProxyScript(filepath.Join(t.TempDir(), "with space"), "/bin/action", proxyConfig(s)); err == nil {
		t.Fatal("WriteProxyScript accepted a path with a space")
	}
}
