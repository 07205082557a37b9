package azure_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
)

// shellAgent is the VM's Linux agent for the emulator: it runs the script with /bin/sh, as
// RunCommandLinux does (main/exec.go: /bin/sh -c on the script file), and hands back what it
// wrote and how it exited.
func shellAgent(ctx context.Context, c azuretest.RunCommand) azuretest.RunCommandResult {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", strings.Join(c.Script, "\n"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	res := azuretest.RunCommandResult{}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			res.ExitCode = ee.ExitCode()
		} else {
			res.ExitCode = 1
		}
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	return res
}

func runCommandProvisioner(t *testing.T, hook func(context.Context, azuretest.RunCommand) azuretest.RunCommandResult) (*azure.Provisioner, *azuretest.Emulator) {
	t.Helper()
	emu := azuretest.New(azuretest.Options{RunCommand: hook})
	t.Cleanup(emu.Close)
	cred, err := emu.Credential()
	if err != nil {
		t.Fatal(err)
	}
	opts := emu.ClientOptions()
	opts.Transport = emu.HTTPClient()
	p, err := azure.NewProvisioner(azuretest.DefaultSubscriptionID, cred, opts, azure.WithPollFrequency(10*time.Millisecond), azure.WithHTTPClient(emu.HTTPClient()))
	if err != nil {
		t.Fatal(err)
	}
	spec := azure.Spec{ResourceGroup: "rg", Location: "uksouth", VMName: "vm1", Size: "Standard_B2s",
		ImageURN: "Canonical:ubuntu-24_04-lts:server:latest", OSDiskSizeGB: 64, AdminUser: "nixos",
		AdminKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}, CustomData: []byte("#cloud-config\n")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.Provision(ctx, spec, nil); err != nil {
		t.Fatal(err)
	}
	return p, emu
}

// TestRunShellScriptAndStart drives Run Command and start through the real
// SDK against the ARM emulator: a VM is provisioned, deallocated, started,
// and runs a script whose output and exit status come back.
func TestRunShellScriptAndStart(t *testing.T) {
	t.Parallel()
	p, _ := runCommandProvisioner(t, shellAgent)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	out, err := p.RunShellScript(ctx, "rg", "vm1", "set -eu\nprintf 'hostkey ssh-ed25519 AAAA\\nmemkb 16384000\\n'")
	if err != nil || out != "hostkey ssh-ed25519 AAAA\nmemkb 16384000\n" {
		t.Fatalf("RunShellScript = %q, %v", out, err)
	}
	out, err = p.RunShellScript(ctx, "rg", "vm1", "printf 'no newline at the end'")
	if err != nil || out != "no newline at the end" {
		t.Fatalf("RunShellScript = %q, %v", out, err)
	}

	if err := p.StartVM(ctx, "rg", "vm1"); err != nil {
		t.Fatal(err)
	}
	info, err := p.LookupVM(ctx, "rg", "vm1")
	if err != nil || info.PowerState != "running" {
		t.Fatalf("after start: %+v %v", info, err)
	}
	if err := p.StartVM(ctx, "rg", "missing"); err == nil {
		t.Fatal("starting a missing VM succeeded")
	}
}

// TestRunShellScriptReadsItsOwnStatus: RunCommandLinux says "Enable succeeded" whatever the script
// did, so a failing script, a script that never finished and output cut by Azure's 4 KiB limit
// must each be an error, not success.
func TestRunShellScriptReadsItsOwnStatus(t *testing.T) {
	t.Parallel()
	// The agent restarted mid-script: what it reports is what the script wrote so far.
	cutShort := func(context.Context, azuretest.RunCommand) azuretest.RunCommandResult {
		return azuretest.RunCommandResult{Stdout: "hostkey ssh-ed25519 AAAA\n", Stderr: "Terminated\n"}
	}
	tests := []struct {
		name     string
		agent    func(context.Context, azuretest.RunCommand) azuretest.RunCommandResult
		script   string
		wantCode string
		want     []string
	}{
		{"exit status", shellAgent, "set -eu\necho partial\necho boom >&2\nfalse\necho never", "1", []string{"exit status 1", "boom"}},
		{"exit 3", shellAgent, "exit 3", "3", []string{"exit status 3"}},
		{"killed", shellAgent, "echo started\nkill -9 $$", "137", []string{"exit status 137"}},
		{"did not finish", cutShort, "sleep 1", "", []string{"did not report its exit status", "Terminated"}},
		{"more than 4 KiB", shellAgent, "i=0; while [ $i -lt 200 ]; do echo 'line of forty characters...............'; i=$((i+1)); done", "", []string{"4 KiB"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, _ := runCommandProvisioner(t, tc.agent)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := p.RunShellScript(ctx, "rg", "vm1", tc.script)
			var rce *azure.RunCommandError
			if !errors.As(err, &rce) {
				t.Fatalf("err = %v, want a RunCommandError", err)
			}
			if rce.ExitCode != tc.wantCode {
				t.Errorf("exit code = %q, want %q", rce.ExitCode, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
		})
	}
}

// TestRunShellScriptOneAtATime: a second Run Command while one runs is refused with 409 Conflict,
// and the error says what to do.
func TestRunShellScriptOneAtATime(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	p, _ := runCommandProvisioner(t, func(ctx context.Context, c azuretest.RunCommand) azuretest.RunCommandResult {
		if strings.Contains(strings.Join(c.Script, "\n"), "slow") {
			started <- struct{}{}
			<-release
		}
		return shellAgent(ctx, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var firstErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, firstErr = p.RunShellScript(ctx, "rg", "vm1", "echo slow")
	}()
	<-started
	_, err := p.RunShellScript(ctx, "rg", "vm1", "echo second")
	close(release)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("first run: %v", firstErr)
	}
	var he *azure.HintError
	if !errors.As(err, &he) || he.Code != "Conflict" || !strings.Contains(he.Hint, "one Run Command at a time") {
		t.Fatalf("second run: err = %v, want Conflict with a hint", err)
	}
	if _, err := p.RunShellScript(ctx, "rg", "vm1", "echo third"); err != nil {
		t.Errorf("after the first finished: %v", err)
	}
}
