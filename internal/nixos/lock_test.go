package nixos

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var fakeNix = filepath.Join("testdata", "fake-nix", "nix")

// TestLock locks a rendered flake with the nix stand-in: the lock file is
// written into the flake, pins every input with a revision and a NAR hash,
// and the nixpkgs input follows the channel the flake was rendered for.
func TestLock(t *testing.T) {
	t.Parallel()
	requireNixInstantiate(t) // the stand-in evaluates flake.nix's inputs with it
	for _, channel := range []string{"nixos-26.05", "nixos-unstable"} {
		t.Run(channel, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := Render(dir, renderCases[0].s, channel); err != nil {
				t.Fatal(err)
			}
			argv := filepath.Join(t.TempDir(), "argv")
			var lines []string
			l := &Locker{Command: []string{fakeNix}, Env: append(os.Environ(), "FAKE_NIX_ARGV="+argv), Line: func(s string) { lines = append(lines, s) }}
			lock, err := l.Lock(context.Background(), dir)
			if err != nil {
				t.Fatalf("Lock: %v\n%s", err, strings.Join(lines, "\n"))
			}
			onDisk, err := os.ReadFile(filepath.Join(dir, LockFile))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onDisk, lock.Data) {
				t.Error("the lock's data is not the file nix wrote")
			}
			np := lock.Nixpkgs()
			if np.Ref != channel || np.Owner != "NixOS" || np.Repo != "nixpkgs" || len(np.Rev) != 40 || !strings.HasPrefix(np.NarHash, "sha256-") {
				t.Errorf("nixpkgs locked as %+v", np)
			}
			if d := lock.Inputs["disko"]; d.Ref != "v1.13.0" || d.Rev == "" {
				t.Errorf("disko locked as %+v", d)
			}
			if !strings.Contains(lock.String(), "nixpkgs "+channel+" @ "+np.Rev) {
				t.Errorf("String() = %q", lock.String())
			}
			got, _ := os.ReadFile(argv)
			if want := strings.Join(append([]string{}, LockArgs(dir)...), "\n") + "\n"; string(got) != want {
				t.Errorf("nix was run with\n%s\nwant\n%s", got, want)
			}
			if !strings.Contains(strings.Join(lines, "\n"), "creating lock file") {
				t.Errorf("nix's output did not reach Line: %q", lines)
			}
		})
	}
}

func TestLockFails(t *testing.T) {
	t.Parallel()
	requireNixInstantiate(t)
	dir := t.TempDir()
	if _, err := Render(dir, renderCases[0].s, ""); err != nil {
		t.Fatal(err)
	}
	t.Run("offline", func(t *testing.T) {
		t.Parallel()
		l := &Locker{Command: []string{fakeNix}, Env: append(os.Environ(), "FAKE_NIX_OFFLINE=1")}
		_, err := l.Lock(context.Background(), dir)
		if err == nil || !strings.Contains(err.Error(), "failed to lock the flake's inputs") || !strings.Contains(err.Error(), "unable to download") {
			t.Fatalf("Lock offline: %v", err)
		}
	})
	t.Run("not a flake", func(t *testing.T) {
		t.Parallel()
		_, err := (&Locker{Command: []string{fakeNix}}).Lock(context.Background(), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "doesn't contain a 'flake.nix' file") {
			t.Fatalf("Lock of an empty directory: %v", err)
		}
	})
	t.Run("no nix", func(t *testing.T) {
		t.Parallel()
		l := &Locker{lookPath: func(string) (string, error) { return "", exec.ErrNotFound }}
		if _, err := l.Lock(context.Background(), dir); !errors.Is(err, ErrNoNix) {
			t.Fatalf("Lock without nix: %v, want ErrNoNix", err)
		}
	})
}

// TestLockChildEnv: nix sees none of the action's secrets.
func TestLockChildEnv(t *testing.T) {
	t.Parallel()
	requireNixInstantiate(t)
	dir := t.TempDir()
	if _, err := Render(dir, renderCases[0].s, ""); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(t.TempDir(), "env")
	env := append(os.Environ(), "FAKE_NIX_ENV="+dump, "INPUT_AZURE-CLIENT-SECRET=s3cret-input", "AZURE_CLIENT_SECRET=s3cret-azure",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN=s3cret-oidc", "GITHUB_TOKEN=s3cret-gh", "NIX_CONFIG=experimental-features = nix-command flakes")
	if _, err := (&Locker{Command: []string{fakeNix}, Env: env}).Lock(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("s3cret")) {
		t.Errorf("nix saw a secret:\n%s", bytes.ReplaceAll(b, []byte{0}, []byte{'\n'}))
	}
	if !bytes.Contains(b, []byte("NIX_CONFIG=experimental-features")) {
		t.Error("nix lost NIX_CONFIG")
	}
}

func TestParseLock(t *testing.T) {
	t.Parallel()
	const good = `{"nodes": {
	  "nixpkgs": {"locked": {"lastModified": 1, "narHash": "sha256-x", "owner": "NixOS", "repo": "nixpkgs", "rev": "abc", "type": "github"}, "original": {"ref": "nixos-26.05"}},
	  "disko": {"inputs": {"nixpkgs": ["nixpkgs"]}, "locked": {"narHash": "sha256-y", "rev": "def", "type": "github"}, "original": {"ref": "v1.13.0"}},
	  "root": {"inputs": {"nixpkgs": "nixpkgs", "disko": "disko", "same": ["nixpkgs"]}}},
	  "root": "root", "version": 7}`
	l, err := ParseLock([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "disko v1.13.0 @ def, nixpkgs nixos-26.05 @ abc"; got != want {
		t.Errorf("String() = %q, want %q (follows left out)", got, want)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"not json", "{", "not JSON"},
		{"old version", `{"version": 4, "root": "root", "nodes": {"root": {}}}`, "version 4"},
		{"no root", `{"version": 7, "root": "r", "nodes": {}}`, `no root node "r"`},
		{"unlocked input", `{"version": 7, "root": "root", "nodes": {"root": {"inputs": {"nixpkgs": "nixpkgs"}}, "nixpkgs": {}}}`, `input "nixpkgs" is not locked`},
		{"no revision", `{"version": 7, "root": "root", "nodes": {"root": {"inputs": {"nixpkgs": "n"}}, "n": {"locked": {"type": "path", "path": "/x"}}}}`, "without a revision"},
		{"no nixpkgs", `{"version": 7, "root": "root", "nodes": {"root": {"inputs": {"d": "d"}}, "d": {"locked": {"rev": "a", "narHash": "b"}}}}`, "no nixpkgs input"},
	} {
		if _, err := ParseLock([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseLock error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestKexecImageURL(t *testing.T) {
	t.Parallel()
	const base = "https://github.com/nix-community/nixos-images/releases/download/"
	for channel, want := range map[string]string{
		"":                     base + "nixos-26.05/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz",
		"nixos-25.11":          base + "nixos-25.11/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz",
		"nixos-26.05-small":    base + "nixos-26.05/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz",
		"nixos-unstable":       base + "nixos-unstable/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz",
		"nixos-unstable-small": base + "nixos-unstable/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz",
	} {
		if got := KexecImageURL(channel, "x86_64-linux"); got != want {
			t.Errorf("KexecImageURL(%q) = %q, want %q", channel, got, want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	t.Parallel()
	in := []string{"PATH=/bin", "HOME=/root", "NIX_PATH=x", "SSL_CERT_FILE=/ca", "https_proxy=http://p",
		"INPUT_GITHUB-SSH-KEY=k", "INPUT_VM-NAME=az", "AZURE_CLIENT_SECRET=s", "AZURE_TENANT_ID=t",
		"ACTIONS_ID_TOKEN_REQUEST_URL=u", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=t", "ACTIONS_RUNTIME_TOKEN=r",
		"GITHUB_TOKEN=g", "GH_TOKEN=g", "IDENTITY_HEADER=h", "MSI_SECRET=m", "SSH_AUTH_SOCK=/a", "GITHUB_WORKSPACE=/w"}
	want := []string{"PATH=/bin", "HOME=/root", "NIX_PATH=x", "SSL_CERT_FILE=/ca", "https_proxy=http://p", "GITHUB_WORKSPACE=/w"}
	if d := cmp.Diff(want, ChildEnv(in)); d != "" {
		t.Errorf("ChildEnv (-want +got):\n%s", d)
	}
}
