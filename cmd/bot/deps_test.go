package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps guards the package boundary: the bot dispatches workflows and
// never provisions anything itself, so it must not link the Azure SDK, the
// SSH code or the deploy pipeline.
func TestDeps(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"github.com/Azure/azure-sdk-for-go/",
			"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure",
			"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx",
			"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/deploy",
		} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("cmd/bot links %s", dep)
			}
		}
	}
}
