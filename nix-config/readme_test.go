package nixconfig_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos/nixostest"
)

// TestREADMEUserFlake renders the user flake README.md shows, checks that
// it parses, and that every nixos-cloud-deploy.nixosModules.<name> it
// imports is a module this flake really exports (its outputs evaluated with
// stub inputs: listing the attribute names evaluates nothing else).
func TestREADMEUserFlake(t *testing.T) {
	t.Parallel()
	nixInstantiate, err := exec.LookPath("nix-instantiate")
	if err != nil {
		t.Fatalf("nix-instantiate not found: it checks that the README's flake parses; install it with `apt-get install -y nix-bin` or Nix itself")
	}
	flake, err := nixostest.READMEUserFlake()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "flake.nix")
	if err := os.WriteFile(f, []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nixInstantiate, "--parse", f).CombinedOutput(); err != nil {
		t.Fatalf("the README's flake does not parse: %v\n%s\n%s", err, out, flake)
	}
	used := regexp.MustCompile(`nixos-cloud-deploy\.nixosModules\.([A-Za-z0-9_-]+)`).FindAllStringSubmatch(flake, -1)
	if len(used) == 0 {
		t.Fatalf("the README's flake imports no nixos-cloud-deploy.nixosModules.<name>:\n%s", flake)
	}
	if !regexp.MustCompile(`url = "github:nixos-cloud-deploy/nixos-cloud-deploy\?dir=nix-config";`).MatchString(flake) {
		t.Errorf("the README's flake does not take nixos-cloud-deploy from this repository's nix-config directory:\n%s", flake)
	}
	self, err := filepath.Abs("flake.nix")
	if err != nil {
		t.Fatal(err)
	}
	expr := `let flake = import ` + self + `; out = flake.outputs { self = out; nixpkgs = { }; disko = { }; }; in builtins.attrNames out.nixosModules`
	out, err := exec.Command(nixInstantiate, "--eval", "--strict", "--json", "-E", expr).Output()
	if err != nil {
		t.Fatalf("listing nix-config's nixosModules: %v", err)
	}
	var exported []string
	if err := json.Unmarshal(out, &exported); err != nil {
		t.Fatalf("nix-instantiate said %q: %v", out, err)
	}
	for _, m := range used {
		if !slices.Contains(exported, m[1]) {
			t.Errorf("the README's flake imports nixosModules.%s; nix-config/flake.nix exports %q", m[1], exported)
		}
	}
	// The options it sets are the module's.
	for _, opt := range regexp.MustCompile(`nixos-cloud-deploy\.([a-zA-Z]+) =`).FindAllStringSubmatch(flake, -1) {
		azure, err := os.ReadFile("azure.nix")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^    ` + opt[1] + ` = lib\.mkOption`).Match(azure) {
			t.Errorf("the README's flake sets nixos-cloud-deploy.%s, which azure.nix does not declare", opt[1])
		}
	}
}
