package azure

import (
	"crypto/rsa"
	"strings"

	"golang.org/x/crypto/ssh"
)

// minRSABits is the smallest RSA key Azure takes.
const minRSABits = 2048

// AcceptsSSHKey reports whether Azure takes the authorized_keys line in a Linux VM's osProfile:
// ssh-rsa of at least 2048 bits or ssh-ed25519, nothing else (Microsoft Learn, "Detailed steps:
// create and manage SSH keys", supported SSH key formats). ECDSA, FIDO (sk-*) keys, certificates
// and short RSA keys make the whole VM create fail with 400 InvalidParameter on
// linuxConfiguration.ssh.publicKeys.keyData.
func AcceptsSSHKey(line string) bool {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return false
	}
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return true
	case ssh.KeyAlgoRSA:
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return false
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		return ok && rk.N.BitLen() >= minRSABits
	}
	return false
}

// SSHKeysAzureAccepts splits authorized_keys lines into those Azure takes in osProfile and the
// rest, keeping their order.
func SSHKeysAzureAccepts(lines []string) (accepted, refused []string) {
	for _, l := range lines {
		if AcceptsSSHKey(l) {
			accepted = append(accepted, l)
		} else {
			refused = append(refused, l)
		}
	}
	return accepted, refused
}
