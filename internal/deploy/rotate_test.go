package deploy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// outputHostKey is the key in the ssh-host-key output (a known_hosts line).
func outputHostKey(t *testing.T, res *Result) ssh.PublicKey {
	t.Helper()
	k, err := sshx.ParseHostKey(res.Outputs.SSHHostKey)
	if err != nil {
		t.Fatalf("ssh-host-key output %q: %v", res.Outputs.SSHHostKey, err)
	}
	return k
}

// clientConfig logs in to the VM as its sshtest user, pinning the host key
// the run reported: after a deploy that is the rotated one, not the key the
// VM booted with.
func (vm *testVM) clientConfig(t *testing.T, res *Result) *ssh.ClientConfig {
	t.Helper()
	cfg := vm.srv.ClientConfig()
	k := outputHostKey(t, res)
	cfg.HostKeyCallback, cfg.HostKeyAlgorithms = ssh.FixedHostKey(k), []string{k.Type()}
	return cfg
}

func (vm *testVM) output(t *testing.T, res *Result, cmd string) string {
	t.Helper()
	c, err := ssh.Dial("tcp", vm.srv.Addr, vm.clientConfig(t, res))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output(cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return string(out)
}

// TestDeployRotatesTheHostKey: the host key that travelled in custom data
// (which Azure says is not for secrets) does not outlive the deploy. The VM
// makes a new one, the run pins it, tags the VM with it and outputs it, and
// the old one opens nothing: the VM no longer presents it (issue 16, item 8).
func TestDeployRotatesTheHostKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	res := h.run(context.Background(), h.options(nil))
	if res.Err != nil {
		t.Fatalf("deploy failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	customData, err := ssh.ParsePrivateKey(h.cloud.lastHostKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	old := customData.PublicKey()
	fresh := outputHostKey(t, res)
	if bytes.Equal(old.Marshal(), fresh.Marshal()) {
		t.Fatal("the ssh-host-key output is still the key from custom data")
	}
	if tag, err := sshx.ParseHostKey(h.cloud.hostKeyTag); err != nil || !bytes.Equal(tag.Marshal(), fresh.Marshal()) {
		t.Errorf("the VM's ssh-host-key tag %q is not the new key (%v)", h.cloud.hostKeyTag, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.cloud.fwd.port()))
	ctx := context.Background()
	var mm *sshx.HostKeyMismatchError
	if _, err := sshx.Identify(ctx, addr, old); !errors.As(err, &mm) {
		t.Errorf("the VM still proves the key from custom data: Identify = %v, want a mismatch", err)
	}
	if _, err := sshx.Identify(ctx, addr, fresh); err != nil {
		t.Errorf("the VM does not prove the new key: %v", err)
	}
	// The new private key was made on the VM and stays there: sshd's key
	// file holds it, and no line of it is in the log, summary or outputs.
	vm := h.cloud.vm
	priv := vm.output(t, res, "cat /etc/ssh/ssh_host_ed25519_key")
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil || !bytes.Equal(signer.PublicKey().Marshal(), fresh.Marshal()) {
		t.Fatalf("/etc/ssh/ssh_host_ed25519_key on the VM is not the new key (%v)", err)
	}
	if pub := vm.output(t, res, "cat /etc/ssh/ssh_host_ed25519_key.pub"); !strings.HasSuffix(strings.TrimSpace(pub), " "+rotatedComment) {
		t.Errorf("the .pub file does not carry the rotation mark: %q", pub)
	}
	assertNoSecrets(t, h, []string{priv})
	// The public half came back over the session the old key verified,
	// before sshd was told to switch.
	cmds := strings.Join(vm.srv.Commands(), "\n")
	if i, j := strings.Index(cmds, "ssh-keygen -q -t ed25519"), strings.Index(cmds, "kill -HUP"); i < 0 || j < i {
		t.Errorf("want the key made, then sshd signalled; the VM ran:\n%s", cmds)
	}
}

// TestRotationTagFailure: the key on the VM changed but Azure refused the
// tag; the run fails and says how to set the tag by hand, and its outputs
// carry the new key, the only one the VM still presents.
func TestRotationTagFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cloud.tagErr = errors.New("AuthorizationFailed: no Microsoft.Resources/tags/write")
	res := h.run(context.Background(), h.options(nil))
	if res.Err == nil || res.FailedStage != "rotate host key" {
		t.Fatalf("want a failure in rotate host key, got %q: %v", res.FailedStage, res.Err)
	}
	if !strings.Contains(res.Hint, "az tag update --operation Merge") || !strings.Contains(res.Hint, res.Outputs.SSHHostKey[strings.Index(res.Outputs.SSHHostKey, "ssh-ed25519"):]) {
		t.Errorf("hint %q does not say how to set the tag to the output key %q", res.Hint, res.Outputs.SSHHostKey)
	}
	customData, err := ssh.ParsePrivateKey(h.cloud.lastHostKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(outputHostKey(t, res).Marshal(), customData.PublicKey().Marshal()) {
		t.Error("the outputs name the old key, which the VM no longer presents")
	}
}

// TestInstallOntoOurVMRotates: command install onto a VM deploy created (an
// earlier install failed) replaces the host key from custom data too; onto
// a VM that is not ours it does not (TestInstallOntoExistingAzureVM).
func TestInstallOntoOurVMRotates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	vm := existingVM(t, h, vmOptions{})
	h.cloud.managed = true
	h.cloud.hostKeyTag = sshx.AuthorizedKey(vm.srv.HostKey)
	res := h.run(context.Background(), h.options(map[string]string{"command": "install"}))
	if res.Err != nil {
		t.Fatalf("install failed in %s: %v\n%s", res.FailedStage, res.Err, h.stdout)
	}
	if st := statuses(res); st["rotate host key"] != StatusOK {
		t.Fatalf("rotate host key %s, want ok", st["rotate host key"])
	}
	fresh := outputHostKey(t, res)
	if bytes.Equal(fresh.Marshal(), vm.srv.HostKey.Marshal()) {
		t.Error("the VM kept the host key it had")
	}
	if h.cloud.hostKeyTag != sshx.AuthorizedKey(fresh) {
		t.Errorf("tag %q, want the new key", h.cloud.hostKeyTag)
	}
}

// TestRotationWithoutSSHDProcess: when systemd cannot name sshd's main
// process, nothing changes on the VM, the run fails in the stage, and the
// key it pins and outputs is still the one the VM presents.
func TestRotationWithoutSSHDProcess(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cloud.vmOpts = vmOptions{executables: map[string]string{"systemctl": "#!/bin/sh\necho 'System has not been booted with systemd as init system (PID 1).' >&2\nexit 1\n"}}
	res := h.run(context.Background(), h.options(nil))
	if res.Err == nil || res.FailedStage != "rotate host key" || !strings.Contains(res.Err.Error(), "the host key was not changed") {
		t.Fatalf("want a failure in rotate host key saying nothing changed, got %q: %v", res.FailedStage, res.Err)
	}
	customData, err := ssh.ParsePrivateKey(h.cloud.lastHostKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	old := customData.PublicKey()
	if !bytes.Equal(outputHostKey(t, res).Marshal(), old.Marshal()) {
		t.Error("the outputs name a key the VM does not present")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.cloud.fwd.port()))
	if _, err := sshx.Identify(context.Background(), addr, old); err != nil {
		t.Errorf("the VM no longer presents its key: %v", err)
	}
	if strings.Contains(strings.Join(h.cloud.Calls(), "\n"), "tag ") {
		t.Error("the tag was changed although the key was not")
	}
}

// outputErr is output that returns the command's error with its combined
// output instead of failing the test.
func (vm *testVM) outputErr(t *testing.T, res *Result, cmd string) (string, error) {
	t.Helper()
	c, err := ssh.Dial("tcp", vm.srv.Addr, vm.clientConfig(t, res))
	if err != nil {
		return "", err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}
