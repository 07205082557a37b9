package config_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
)

// FuzzInputsRender: what the input check accepts, the settings renderer
// renders, unchanged. A value that passes config.Parse and then fails in
// nixos.Render fails the run after Azure resources exist; a value that
// settings.json carries differently from what the user gave (a comment cut
// at a CR, invalid UTF-8 turned into U+FFFD) installs something else than
// asked (issue 16, item 10, found by this target). Seeds:
// testdata/fuzz/FuzzInputsRender.
func FuzzInputsRender(f *testing.F) {
	const rootKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl nixos-cloud-deploy"
	f.Fuzz(func(t *testing.T, vmName, userName, publicKeys, channel string) {
		in, err := config.Read(context.Background(), config.ActionLookuper(func(string) string { return "" }))
		if err != nil {
			t.Fatal(err)
		}
		in.AzureSubID = "00000000-1111-2222-3333-444444444444"
		in.VMName, in.UserName, in.SSHPublicKeys, in.NixChannel = vmName, userName, publicKeys, channel
		cfg, err := config.Parse(in)
		if err != nil {
			return
		}
		// As the pipeline's install stage builds them (internal/deploy).
		want := nixos.Settings{
			HostName:           cfg.VMName,
			UserName:           cfg.UserName,
			AuthorizedKeys:     cfg.SSHPublicKeys,
			RootAuthorizedKeys: []string{rootKey},
			DiskDevice:         "/dev/disk/by-id/scsi-3600224803fa8e3c1a6b2b4a0a2e6e6d1",
			StateVersion:       nixos.StateVersion(cfg.NixChannel),
		}
		dir := t.TempDir()
		if _, err := nixos.Render(dir, want, cfg.NixChannel); err != nil {
			t.Fatalf("accepted inputs vm-name %q user-name %q ssh-public-keys %q nix-channel %q fail to render: %v", vmName, userName, publicKeys, channel, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, nixos.SettingsFile))
		if err != nil {
			t.Fatal(err)
		}
		var got nixos.Settings
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("settings.json does not parse: %v\n%s", err, b)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("settings.json carries other values than were accepted (-accepted +rendered):\n%s", d)
		}
		// Every rendered key line is the key the user gave.
		given := map[string]bool{}
		for _, l := range strings.Split(publicKeys, "\n") {
			if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l)); err == nil {
				given[string(k.Marshal())] = true
			}
		}
		for _, l := range got.AuthorizedKeys {
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
			if err != nil || !given[string(k.Marshal())] {
				t.Fatalf("rendered key line %q is not one of the given keys (%v)", l, err)
			}
		}
	})
}
