package cloudinit

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
)

func TestRenderParsesAsCloudConfig(t *testing.T) {
	t.Parallel()
	host, err := keys.New(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := keys.New(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	d := Data{
		HostKeyPrivate: host.PrivatePEM,
		HostKeyPublic:  keys.AuthorizedKey(host.Public, ""),
		RootKeys:       []string{keys.AuthorizedKey(deploy.Public, "nixos-cloud-deploy"), `ssh-ed25519 AAAA "quoted": # comment`},
	}
	out := Render(d)
	if !bytes.HasPrefix(out, []byte("#cloud-config\n")) {
		t.Fatalf("custom data must start with #cloud-config, got %q", out[:20])
	}
	var got struct {
		DisableRoot bool     `yaml:"disable_root"`
		PwAuth      bool     `yaml:"ssh_pwauth"`
		Keys        []string `yaml:"ssh_authorized_keys"`
		DeleteKeys  bool     `yaml:"ssh_deletekeys"`
		GenKeyTypes []string `yaml:"ssh_genkeytypes"`
		SSHKeys     map[string]string
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	if got.DisableRoot || got.PwAuth || !got.DeleteKeys || len(got.GenKeyTypes) != 0 {
		t.Errorf("root/ssh settings wrong: %+v", got)
	}
	if d := cmp.Diff(d.RootKeys, got.Keys); d != "" {
		t.Errorf("root keys (-want +got):\n%s", d)
	}
	want := map[string]string{"ed25519_private": string(host.PrivatePEM), "ed25519_public": d.HostKeyPublic}
	var sshKeys map[string]map[string]string
	_ = yaml.Unmarshal(out, &sshKeys)
	if d := cmp.Diff(want, sshKeys["ssh_keys"]); d != "" {
		t.Errorf("ssh_keys (-want +got):\n%s", d)
	}

	red := string(RenderRedacted(d))
	for _, line := range strings.Split(string(host.PrivatePEM), "\n") {
		if len(line) > 10 && !strings.HasPrefix(line, "-----") && strings.Contains(red, line) {
			t.Fatalf("redacted rendering contains a line of the private key")
		}
	}
	if !strings.Contains(red, Redacted) {
		t.Errorf("redacted rendering lacks the placeholder:\n%s", red)
	}
}
