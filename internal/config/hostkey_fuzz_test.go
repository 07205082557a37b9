package config

import (
	"bytes"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// FuzzHostKeyParsers: config's parseHostKey (target-host-key) mirrors
// sshx.ParseHostKey (the ssh-host-key tag, Run Command's answer), because the
// bot links config and must not link the SSH client. The two must agree: a
// key one pins, the other pins too, the same key; config only refuses more
// (private keys, control characters). Seeds: testdata/fuzz/FuzzHostKeyParsers.
func FuzzHostKeyParsers(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		ck, cerr := parseHostKey("target-host-key", s)
		sk, serr := sshx.ParseHostKey(s)
		switch {
		case cerr == nil && serr != nil:
			t.Fatalf("%q: config accepts %s, sshx refuses: %v", s, ck.Type(), serr)
		case cerr == nil && !bytes.Equal(ck.Marshal(), sk.Marshal()):
			t.Fatalf("%q: config reads %s, sshx reads %s", s, sshx.Fingerprint(ck), sshx.Fingerprint(sk))
		case cerr != nil && serr == nil && !containsPrivateKey(s) && badChar(firstKeyLine(s)) == "":
			t.Fatalf("%q: sshx accepts %s, config refuses: %v", s, sk.Type(), cerr)
		}
	})
}
