package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/plan"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// Host key rotation. The host key deploy generates reaches the VM in Azure
// custom data, which Microsoft says is not for secrets ("Custom data and
// cloud-init on Azure": it is stored unencrypted, and readable to root in the
// VM's provisioning files). So after the install, over the connection that
// verified the old key, the VM makes a new key itself; its public half comes
// back over that same session, sshd switches to it, and the new key becomes
// the pinned one: the tag, the outputs and every later connection. The old
// private key then opens nothing: the VM no longer presents it, and nobody
// pins it.
const (
	hostKeyPath = "/etc/ssh/ssh_host_ed25519_key"
	// rotatedComment marks a key this stage made, in the .pub file's
	// comment, so a re-run sees that the custom-data key is gone.
	rotatedComment = "nixos-cloud-deploy-rotated"
)

// newHostKeyScript makes the new key next to the old one and prints its
// public half; nothing changes for sshd yet.
var newHostKeyScript = `set -eu
umask 077
k=` + hostKeyPath + `
rm -f "$k.new" "$k.new.pub"
ssh-keygen -q -t ed25519 -N '' -C ` + rotatedComment + ` -f "$k.new" </dev/null >/dev/null
cat "$k.new.pub"
`

// switchHostKeyScript puts the new key in place and has sshd load it. sshd
// reads its host keys when it starts and re-executes itself on SIGHUP
// (OpenSSH sshd(8), SIGNALS), keeping the sessions it forked, this one
// among them. NixOS runs it as sshd.service (nixpkgs
// nixos/modules/services/networking/ssh/sshd.nix); with startWhenNeeded it is
// socket-activated, MainPID is 0, and every connection starts a new sshd
// that reads the new key anyway.
//
// The main PID is asked first: without it nothing changes on the VM.
var switchHostKeyScript = `set -eu
k=` + hostKeyPath + `
pid=$(systemctl show --property MainPID --value sshd.service) || pid=
if [ -z "$pid" ]; then
  rm -f "$k.new" "$k.new.pub"
  echo "systemd does not know sshd.service's main process; the host key was not changed" >&2
  exit 1
fi
mv -f "$k.new" "$k"
mv -f "$k.new.pub" "$k.pub"
if [ "$pid" != 0 ]; then
  kill -HUP "$pid"
fi
`

// skipRotate: only a VM this action created (deploy, or install onto a VM
// tagged as ours) was handed its host key in custom data.
func skipRotate(s *state) string {
	if !s.ours {
		return "the host key was not made by nixos-cloud-deploy and never travelled in custom data"
	}
	return skipNoRoot(s)
}

// stageRotateHostKey replaces the host key that travelled in custom data.
func (s *state) stageRotateHostKey(ctx context.Context) (string, error) {
	if s.client == nil {
		if err := s.connect(ctx); err != nil {
			return "", err
		}
	}
	old := s.pinned
	// A re-run finds a key this stage made already: nothing to do.
	if b, err := s.client.Output(ctx, sshx.Quote("cat", hostKeyPath+".pub")); err == nil {
		if k, comment, _, _, err := ssh.ParseAuthorizedKey(b); err == nil && comment == rotatedComment && bytes.Equal(k.Marshal(), old.Marshal()) {
			return fmt.Sprintf("host key %s was made on the VM by an earlier run", sshx.Fingerprint(old)), nil
		}
	}
	out, err := s.client.Output(ctx, "sh -c "+sshx.Quote(newHostKeyScript))
	if err != nil {
		return "", fmt.Errorf("failed to make a new host key on the VM: %w", err)
	}
	fresh, _, _, _, err := ssh.ParseAuthorizedKey(out)
	switch {
	case err != nil:
		return "", fmt.Errorf("failed to read the new host key from the VM: %w", err)
	case fresh.Type() != ssh.KeyAlgoED25519:
		return "", fmt.Errorf("the VM made a %s host key, want %s", fresh.Type(), ssh.KeyAlgoED25519)
	case bytes.Equal(fresh.Marshal(), old.Marshal()):
		return "", errors.New("the VM's new host key is the old one")
	}
	if err := s.client.Run(ctx, "sh -c "+sshx.Quote(switchHostKeyScript)); err != nil {
		return "", fmt.Errorf("failed to switch sshd to the new host key: %w", err)
	}
	if err := s.awaitHostKey(ctx, old, fresh); err != nil {
		return "", err
	}
	s.pinned = fresh
	if err := s.connect(ctx); err != nil {
		return "", fmt.Errorf("failed to reconnect with the new host key: %w", err)
	}
	tag := keys.AuthorizedKey(fresh, "")
	if err := s.opts.Cloud.SetHostKeyTag(ctx, s.cfg.ResourceGroup, s.cfg.VMName, tag); err != nil {
		return "", &StageError{Stage: "rotate host key", Err: fmt.Errorf("the VM's host key is now %s, but its %s tag still names the old one: %w", sshx.Fingerprint(fresh), plan.TagSSHHostKey, err),
			Hint: fmt.Sprintf("set the tag by hand, or re-runs will refuse the VM: az tag update --operation Merge --resource-id %s --tags %q", s.machine.VMID, plan.TagSSHHostKey+"="+tag)}
	}
	s.sink.Infof("host key %s (from custom data) replaced by %s, made on the VM", sshx.Fingerprint(old), sshx.Fingerprint(fresh))
	return fmt.Sprintf("%s → %s", sshx.Fingerprint(old), sshx.Fingerprint(fresh)), nil
}

// awaitHostKey waits until the VM's sshd proves the new key. Until the
// signalled sshd has re-executed, the listener may refuse connections or
// still present the old key; both keys are the VM's (the old one verified,
// the new one read over the verified session), so either is waited out, and
// any other key is a mismatch.
func (s *state) awaitHostKey(ctx context.Context, old, fresh ssh.PublicKey) error {
	// sshd re-executes in well under a second; a minute is generous, and
	// ssh-timeout (minutes, for a booting VM) would be too long to wait for
	// a signal that did not arrive.
	limit := min(s.cfg.SSHTimeout, time.Minute)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		_, err := sshx.Identify(ctx, s.addr(), fresh)
		if err == nil {
			return nil
		}
		var mm *sshx.HostKeyMismatchError
		if errors.As(err, &mm) && mm.Presented != sshx.Fingerprint(old) {
			return &StageError{Stage: "rotate host key", Err: err, Hint: "the address answered with neither the old nor the new host key: a wrong address or an attack"}
		}
		select {
		case <-ctx.Done():
			return &StageError{Stage: "rotate host key", Err: fmt.Errorf("sshd on the VM did not present the new host key %s within %s: %w", sshx.Fingerprint(fresh), limit, err),
				Hint: fmt.Sprintf("the new key is in %s on the VM; restart sshd there (systemctl restart sshd), then set the %s tag to it, or the next run refuses the VM", hostKeyPath, plan.TagSSHHostKey)}
		case <-time.After(wait):
			wait = min(2*wait, time.Second)
		}
	}
}
