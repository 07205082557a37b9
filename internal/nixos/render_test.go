package nixos

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
	nixconfig "github.com/nixos-cloud-deploy/nixos-cloud-deploy/nix-config"
)

const (
	keyAlice = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXvJmVJ0M8Y0b9m7b2Jc7P8Jc0nTQmPZ3z2o4bZ5s1a alice@laptop"
	keyBob   = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@work"
	keyEcdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBO carol"
	keyDep   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployDeployDeployDeployDeployDeployDeploy nixos-cloud-deploy"
)

type renderCase struct {
	name    string
	s       Settings
	channel string
}

var renderCases = []renderCase{
	{
		name: "default",
		s: Settings{
			HostName: "az-nixos", UserName: "azureuser",
			AuthorizedKeys: []string{keyAlice}, RootAuthorizedKeys: []string{keyDep},
			DiskDevice:   "/dev/disk/by-id/wwn-0x6002248000000000000000000000abcd",
			StateVersion: StateVersion(""),
		},
	},
	{
		name: "unstable",
		s: Settings{
			HostName: "web-1", UserName: "ops",
			AuthorizedKeys: []string{keyAlice}, RootAuthorizedKeys: []string{keyDep},
			DiskDevice:   "/dev/disk/by-id/scsi-3600224800000000000000000000abcd",
			StateVersion: StateVersion("nixos-unstable"),
		},
		channel: "nixos-unstable",
	},
	{
		name: "several-keys",
		s: Settings{
			HostName: "az-nixos", UserName: "azureuser",
			AuthorizedKeys:     []string{keyAlice, keyBob, keyEcdsa},
			RootAuthorizedKeys: []string{keyDep},
			DiskDevice:         "/dev/disk/by-id/wwn-0x6002248000000000000000000000abcd",
			StateVersion:       "26.05",
		},
		channel: "nixos-26.05",
	},
	{
		name: "nvme",
		s: Settings{
			HostName: "az-nixos-v6", UserName: "azureuser",
			AuthorizedKeys: []string{keyAlice}, // no root key: root cannot log in
			DiskDevice:     "/dev/disk/by-id/nvme-eui.0025384b21406e58",
			StateVersion:   StateVersion("nixos-25.11"),
		},
		channel: "nixos-25.11",
	},
}

// TestRender compares the rendered directory with golden files: flake.nix
// and settings.json per case (the rest must be the embedded files, byte for
// byte), and checks the flake reference.
func TestRender(t *testing.T) {
	t.Parallel()
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ref, err := Render(dir, tc.s, tc.channel)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if want := "path:" + dir + "#" + tc.s.HostName; ref != want {
				t.Errorf("Render ref = %q, want %q", ref, want)
			}
			embedded := embeddedFiles(t)
			got := dirFiles(t, dir)
			if diff := cmp.Diff(sortedKeys(embedded), sortedKeys(got)); diff != "" {
				t.Errorf("rendered files differ from nix-config (-want +got):\n%s", diff)
			}
			for name, data := range got {
				switch name {
				case "flake.nix", SettingsFile:
					golden.Check(t, filepath.Join("testdata", "render", tc.name, name), data)
				default:
					if !bytes.Equal(data, embedded[name]) {
						t.Errorf("%s differs from nix-config/%s", name, name)
					}
				}
			}
			// The golden settings.json must be what Nix will read back.
			var back Settings
			if err := json.Unmarshal(got[SettingsFile], &back); err != nil {
				t.Fatalf("settings.json: %v", err)
			}
			want := tc.s
			if want.RootAuthorizedKeys == nil {
				want.RootAuthorizedKeys = []string{}
			}
			if diff := cmp.Diff(want, back); diff != "" {
				t.Errorf("settings.json round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenderEvaluates parses every rendered .nix file with nix-instantiate
// and evaluates the flake's outputs, configuration.nix and disk-config.nix
// against stub inputs (testdata/eval-stub.nix), so the values from
// settings.json are checked where Nix uses them.
func TestRenderEvaluates(t *testing.T) {
	t.Parallel()
	nixInstantiate := requireNixInstantiate(t)
	stub, err := filepath.Abs(filepath.Join("testdata", "eval-stub.nix"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := Render(dir, tc.s, tc.channel); err != nil {
				t.Fatalf("Render: %v", err)
			}
			for _, f := range []string{"flake.nix", "azure.nix", "configuration.nix", "disk-config.nix"} {
				if out, err := exec.Command(nixInstantiate, "--parse", filepath.Join(dir, f)).CombinedOutput(); err != nil {
					t.Errorf("nix-instantiate --parse %s: %v\n%s", f, err, out)
				}
			}
			out, err := exec.Command(nixInstantiate, "--eval", "--strict", "--json", "--arg", "dir", dir, stub).Output()
			if err != nil {
				t.Fatalf("nix-instantiate --eval: %v\n%s", err, stderrOf(err))
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("nix-instantiate output %q: %v", out, err)
			}
			channel := tc.channel
			if channel == "" {
				channel = DefaultChannel
			}
			configurations := []any{"az-nixos"}
			if tc.s.HostName != "az-nixos" {
				configurations = append(configurations, tc.s.HostName)
			}
			want := map[string]any{
				"configurations":  configurations,
				"modules":         []any{[]any{"disko", "azure.nix"}, "configuration.nix"},
				"exportedModules": []any{"azure", "default"},
				"azureImports":    []any{"disk-config.nix"},
				"options":         []any{"facterReport", "settings", "settingsFile"},
				"nixpkgsUrl":      "github:NixOS/nixpkgs/" + channel,
				"diskoUrl":        "github:nix-community/disko/v1.13.0",
				"diskDevice":      tc.s.DiskDevice,
				"partitions":      map[string]any{"boot": "EF02", "ESP": "EF00", "root": "8300"},
				"hostName":        tc.s.HostName,
				"userName":        tc.s.UserName,
				"userKeys":        anys(tc.s.AuthorizedKeys),
				"userGroups":      []any{"wheel"},
				"rootKeys":        anys(tc.s.RootAuthorizedKeys),
				"facterReport":    false,
				"kernelParams":    []any{"console=tty1", "console=ttyS0,115200n8", "earlyprintk=ttyS0,115200", "rootdelay=300"},
				// 512 MB /boot: at most 5 generations' kernels and initrds.
				"configurationLimit": float64(5),
				// Run Command needs the agent; provisioning must not touch
				// users, keys or the pinned host key.
				"waagent":                map[string]any{"enable": true, "settings": map[string]any{"Provisioning": map[string]any{"Enable": false}}},
				"permitRootLogin":        "prohibit-password",
				"passwordAuthentication": false,
				"stateVersion":           tc.s.StateVersion,
				"packages":               []any{"curl", "git", "vim", "dos2unix"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("evaluated flake (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNixConfigParses checks the checked-in files themselves, including the
// sample settings.json, which must be valid Settings.
func TestNixConfigParses(t *testing.T) {
	t.Parallel()
	nixInstantiate := requireNixInstantiate(t)
	for name, data := range embeddedFiles(t) {
		if strings.HasSuffix(name, ".nix") {
			f := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(nixInstantiate, "--parse", f).CombinedOutput(); err != nil {
				t.Errorf("nix-instantiate --parse nix-config/%s: %v\n%s", name, err, out)
			}
		}
	}
	var s Settings
	dec := json.NewDecoder(bytes.NewReader(embeddedFiles(t)[SettingsFile]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("nix-config/settings.json: %v", err)
	}
	s.DiskDevice = "/dev/sda" // the sample's placeholder must still be a valid device
	if err := s.Validate(); err != nil {
		t.Errorf("nix-config/settings.json: %v", err)
	}
	if got, want := s.StateVersion, StateVersion(DefaultChannel); got != want {
		t.Errorf("nix-config/settings.json stateVersion = %q, want %q (the default channel's)", got, want)
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	good := renderCases[0].s
	tests := []struct {
		name    string
		dir     string
		s       Settings
		channel string
		want    string
	}{
		{"bad channel", "", good, "nixos-unstable; rm -rf /", `nix channel "nixos-unstable; rm -rf /"`},
		{"bad channel name", "", good, "nixpkgs-unstable", `nix channel "nixpkgs-unstable"`},
		{"bad settings", "", Settings{}, "", `host name ""`},
		{"dir with space", "a b", good, "", "must not contain spaces"},
		{"dir with hash", "a#b", good, "", "must not contain spaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), tc.dir)
			_, err := Render(dir, tc.s, tc.channel)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSetChannel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want, wantErr string
	}{
		{
			name: "one line",
			in:   "{\n  inputs = {\n    nixpkgs.url = \"github:NixOS/nixpkgs/nixos-26.05\";\n  };\n}\n",
			want: "{\n  inputs = {\n    nixpkgs.url = \"github:NixOS/nixpkgs/nixos-unstable\";\n  };\n}\n",
		},
		{name: "missing", in: "{ inputs.nixpkgs.url = \"github:nixos/nixpkgs\"; }", wantErr: "has 0 nixpkgs.url lines"},
		{name: "twice", in: "nixpkgs.url = \"github:NixOS/nixpkgs/a\";\nnixpkgs.url = \"github:NixOS/nixpkgs/b\";\n", wantErr: "has 2 nixpkgs.url lines"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := setChannel([]byte(tc.in), "nixos-unstable")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("setChannel error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("setChannel (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenderOverwrites renders twice into one directory: the second run wins
// and leaves no temporary files behind.
func TestRenderOverwrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := renderCases[0]
	second := renderCases[1]
	if _, err := Render(dir, first.s, first.channel); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(dir, second.s, second.channel); err != nil {
		t.Fatal(err)
	}
	got := dirFiles(t, dir)
	want, err := marshalSettings(second.s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got[SettingsFile])); diff != "" {
		t.Errorf("settings.json after two renders (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sortedKeys(embeddedFiles(t)), sortedKeys(got)); diff != "" {
		t.Errorf("files after two renders (-want +got):\n%s", diff)
	}
}

func BenchmarkRender(b *testing.B) {
	dir := b.TempDir()
	s := renderCases[0].s
	for b.Loop() {
		if _, err := Render(dir, s, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/render")
}

func requireNixInstantiate(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nix-instantiate")
	if err != nil {
		t.Fatalf("nix-instantiate not found: it checks that nix-config parses and evaluates; install it with `apt-get install -y nix-bin` (Debian/Ubuntu) or Nix itself")
	}
	return p
}

func embeddedFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := fs.WalkDir(nixconfig.FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(nixconfig.FS, name)
		files[name] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// golden compares got with the golden file, or rewrites it with -update.
