package nixos

import (
	"strings"
	"testing"
)

func TestSettingsValidate(t *testing.T) {
	t.Parallel()
	good := renderCases[0].s
	tests := []struct {
		name   string
		modify func(*Settings)
		want   []string // substrings; none means valid
	}{
		{name: "good", modify: func(*Settings) {}},
		{name: "no keys at all", modify: func(s *Settings) { s.AuthorizedKeys, s.RootAuthorizedKeys = nil, nil }},
		{name: "nvme device", modify: func(s *Settings) { s.DiskDevice = "/dev/disk/by-id/nvme-eui.0025384b21406e58" }},
		{name: "plain device", modify: func(s *Settings) { s.DiskDevice = "/dev/sda" }},
		{name: "host name too long", modify: func(s *Settings) { s.HostName = strings.Repeat("a", 64) }, want: []string{"host name"}},
		{name: "host name with dot", modify: func(s *Settings) { s.HostName = "az.nixos" }, want: []string{`host name "az.nixos"`}},
		{name: "host name hyphen end", modify: func(s *Settings) { s.HostName = "az-" }, want: []string{`host name "az-"`}},
		{name: "root user", modify: func(s *Settings) { s.UserName = "root" }, want: []string{`user name "root": choose a normal user`}},
		{name: "upper-case user", modify: func(s *Settings) { s.UserName = "Alice" }, want: []string{`user name "Alice"`}},
		{name: "key with newline", modify: func(s *Settings) { s.AuthorizedKeys = []string{keyAlice + "\nssh-ed25519 AAAA x"} }, want: []string{"authorized key 1"}},
		{name: "private key", modify: func(s *Settings) { s.AuthorizedKeys = []string{"-----BEGIN OPENSSH PRIVATE KEY-----"} }, want: []string{"authorized key 1 of 1: not an OpenSSH public key line"}},
		{name: "bad root key", modify: func(s *Settings) { s.RootAuthorizedKeys = []string{keyDep, "nope"} }, want: []string{"root authorized key 2 of 2"}},
		{name: "device outside /dev", modify: func(s *Settings) { s.DiskDevice = "/tmp/disk" }, want: []string{`disk device "/tmp/disk"`}},
		{name: "device with shell", modify: func(s *Settings) { s.DiskDevice = "/dev/sda;reboot" }, want: []string{`disk device "/dev/sda;reboot"`}},
		{name: "device escaping", modify: func(s *Settings) { s.DiskDevice = "/dev/../etc/passwd" }, want: []string{"disk device"}},
		{name: "state version", modify: func(s *Settings) { s.StateVersion = "26.5" }, want: []string{`state version "26.5"`}},
		{
			name:   "all at once",
			modify: func(s *Settings) { *s = Settings{} },
			want:   []string{"host name", "user name", "disk device", "state version"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := good
			tc.modify(&s)
			err := s.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors %q", tc.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("Validate error %q echoes a key", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestChannel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		channel, stateVersion string
		valid                 bool
	}{
		{"nixos-26.05", "26.05", true},
		{"nixos-25.11", "25.11", true},
		{"nixos-25.11-small", "25.11", true},
		{"nixos-unstable", "26.05", true},
		{"nixos-unstable-small", "26.05", true},
		{"nixos-25.05", "25.05", false}, // no hardware.facter yet
		{"nixos-24.11-small", "24.11", false},
		{"nixos-30.05", "30.05", true},
		{"nixpkgs-unstable", "26.05", false},
		{"nixos-26.5", "26.05", false},
		{"", "26.05", false},
		{"nixos-26.05\n", "26.05", false},
	}
	for _, tc := range tests {
		if err := ValidateChannel(tc.channel); (err == nil) != tc.valid {
			t.Errorf("ValidateChannel(%q) = %v, want valid %v", tc.channel, err, tc.valid)
		}
		if got := StateVersion(tc.channel); got != tc.stateVersion {
			t.Errorf("StateVersion(%q) = %q, want %q", tc.channel, got, tc.stateVersion)
		}
	}
}
