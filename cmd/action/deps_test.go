package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps guards the package boundary (as tailscale's cmd/tailscale
// deps_test.go does): the action installs machines and never talks to the
// GitHub API as the bot does, so it must not link the bot, its parser or the
// GitHub client.
func TestDeps(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, banned := range []string{
			"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/bot",
			"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/chatops",
			"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi",
			"github.com/google/go-github/",
			"github.com/bradleyfalzon/ghinstallation/",
		} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("cmd/action links %s", dep)
			}
		}
	}
	// And it does link what it is for.
	for _, want := range []string{"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/deploy", "github.com/sethvargo/go-githubactions"} {
		found := false
		for _, dep := range deps {
			found = found || dep == want
		}
		if !found {
			t.Errorf("cmd/action does not link %s", want)
		}
	}
}
