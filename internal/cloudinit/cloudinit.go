// Package cloudinit renders the cloud-config custom data that prepares the
// Ubuntu VM for nixos-anywhere at first boot.
package cloudinit

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Data is what cloud-init sets on the VM.
type Data struct {
	// HostKeyPrivate and HostKeyPublic are the per-deployment ed25519 host
	// key: the action knows it before the VM boots, so no connection ever
	// trusts on first use. The kexec installer copies /etc/ssh/ssh_host_*
	// from the running system, and --copy-host-keys carries them into NixOS.
	HostKeyPrivate []byte // secret
	HostKeyPublic  string
	// RootKeys are authorised for root, so nixos-anywhere can log in as root
	// without a "sudo cp authorized_keys" round trip.
	RootKeys []string
}

// Redacted is shown in place of secret values in the plan.
const Redacted = "<redacted: generated per deployment>"

// Render returns the cloud-config document. YAML is a superset of JSON, so
// values are JSON-quoted: nothing in a key can break the document.
func Render(d Data) []byte {
	return render(d, string(d.HostKeyPrivate))
}

// RenderRedacted is Render with the private host key replaced, for display.
func RenderRedacted(d Data) []byte {
	return render(d, Redacted)
}

func render(d Data, private string) []byte {
	var b bytes.Buffer
	b.WriteString("#cloud-config\n")
	b.WriteString("# Written by nixos-cloud-deploy: prepares this VM to be replaced by NixOS.\n")
	b.WriteString("# Root logs in with the per-deployment deploy key only (nixos-anywhere needs root).\n")
	b.WriteString("disable_root: false\n")
	b.WriteString("ssh_pwauth: false\n")
	b.WriteString("ssh_authorized_keys:\n")
	for _, k := range d.RootKeys {
		b.WriteString("  - " + quote(k) + "\n")
	}
	b.WriteString("# The host key is fixed in advance so every connection can verify it.\n")
	b.WriteString("ssh_deletekeys: true\n")
	b.WriteString("ssh_genkeytypes: []\n")
	b.WriteString("ssh_keys:\n")
	b.WriteString("  ed25519_private: " + quote(strings.TrimRight(private, "\n")+"\n") + "\n")
	b.WriteString("  ed25519_public: " + quote(d.HostKeyPublic) + "\n")
	return b.Bytes()
}

func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
