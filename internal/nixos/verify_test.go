package nixos

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
)

const nixosRelease = `ANSI_COLOR="0;38;2;126;186;228"
BUG_REPORT_URL="https://github.com/NixOS/nixpkgs/issues"
BUILD_ID="26.05.20260601.abcdef0"
DOCUMENTATION_URL="https://nixos.org/learn.html"
HOME_URL="https://nixos.org/"
ID=nixos
IMAGE_ID=""
LOGO="nix-snowflake"
NAME=NixOS
PRETTY_NAME="NixOS 26.05 (Yarara)"
VERSION="26.05 (Yarara)"
VERSION_ID="26.05"
`

func TestVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		out     string
		err     error
		wantErr string
	}{
		{name: "nixos", out: nixosRelease},
		{name: "quoted id", out: "ID=\"nixos\"\n"},
		{name: "ubuntu", out: "PRETTY_NAME=\"Ubuntu 24.04.3 LTS\"\nID=ubuntu\nID_LIKE=debian\n", wantErr: `/etc/os-release says ID="ubuntu" ("Ubuntu 24.04.3 LTS")`},
		{name: "like nixos is not nixos", out: "ID=nixos-like\nID_LIKE=nixos\n", wantErr: `ID="nixos-like"`},
		{name: "empty", out: "", wantErr: `ID=""`},
		{name: "ssh fails", err: errors.New("connection reset"), wantErr: "failed to read /etc/os-release on the target: connection reset"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ran []string
			r := CommanderFunc(func(_ context.Context, cmd string) ([]byte, error) {
				ran = append(ran, cmd)
				return []byte(tc.out), tc.err
			})
			err := Verify(context.Background(), r)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Verify error = %v, want it to contain %q", err, tc.wantErr)
			}
			if diff := cmp.Diff([]string{"cat /etc/os-release"}, ran); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVerifyOverSSH reads os-release through a real sshd: the test machine's
// own (not NixOS, so an error), and a scripted NixOS one.
func TestVerifyOverSSH(t *testing.T) {
	t.Parallel()
	t.Run("this machine", func(t *testing.T) {
		t.Parallel()
		s := sshtest.Start(t)
		err := Verify(context.Background(), dialCommander(t, s))
		if err == nil || !strings.Contains(err.Error(), "target does not run NixOS") {
			t.Fatalf("Verify on the test machine = %v, want a not-NixOS error", err)
		}
	})
	t.Run("nixos", func(t *testing.T) {
		t.Parallel()
		s := sshtest.Start(t)
		s.AddExecutable("cat", "#!/bin/sh\n[ \"$1\" = /etc/os-release ] || exit 2\nprintf '%s' '"+nixosRelease+"'\n")
		if err := Verify(context.Background(), dialCommander(t, s)); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
}

func TestParseOSRelease(t *testing.T) {
	t.Parallel()
	got := parseOSRelease([]byte("# comment\nID=nixos\nNAME='Single Quoted'\nPRETTY_NAME=\"Escaped \\\"x\\\"\"\nbroken line\n\n"))
	want := map[string]string{"ID": "nixos", "NAME": "Single Quoted", "PRETTY_NAME": `Escaped "x"`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseOSRelease (-want +got):\n%s", diff)
	}
}
