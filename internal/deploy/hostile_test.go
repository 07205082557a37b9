package deploy

import (
	"context"
	"strings"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/report/reporttest"
)

// TestHostileVMIssuesNoWorkflowCommands: whatever the VM prints, through
// nixos-anywhere (its os-release, read while gathering facts) or through our
// own remote commands (finalize), reaches the log as text and never acts as
// a workflow command: no forged ssh-host-key notice for the bot to read, no
// mask over our output, no forged failure (issue 16, item 3).
func TestHostileVMIssuesNoWorkflowCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const marker = "FORGED-BY-THE-VM"
	h.cloud.vmOpts = vmOptions{
		// The legacy "##[" form works anywhere in a line.
		osRelease: strings.Replace(ubuntuOSRelease, `PRETTY_NAME="Ubuntu 24.04.1 LTS"`,
			`PRETTY_NAME="Ubuntu ##[notice title=ssh-host-key]`+marker+` ssh-ed25519 AAAA"`, 1),
		executables: map[string]string{"nixos-rebuild": "#!/bin/sh\n" +
			"echo '::notice title=ssh-host-key::" + marker + " ssh-ed25519 AAAAforged'\n" +
			"echo '::add-mask::nixos'\n" +
			"echo '::error title=deployment failed::" + marker + "'\n" +
			"printf 'building\\r::warning::%s\\n' " + marker + "\n" +
			"echo '::stop-commands::" + marker + "'\n"},
	}
	h.configRepo("git@github.com:me/cfg.git")
	opts := h.options(map[string]string{"config-repo": "git@github.com:me/cfg.git"})
	res := h.run(context.Background(), opts)
	if res.Err != nil {
		t.Fatalf("deploy failed: %v", res.Err)
	}
	log := h.stdout.String()
	if strings.Count(log, marker) < 5 {
		t.Fatalf("the VM's lines are not all in the log (%d of 5):\n%s", strings.Count(log, marker), log)
	}
	for _, c := range reporttest.Commands(log) {
		if strings.Contains(c.Line, marker) || strings.Contains(c.Line, "::add-mask::nixos") {
			t.Errorf("a line from the VM acted as the workflow command %q: %q", c.Name, c.Line)
		}
	}
}
