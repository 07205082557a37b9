package azure

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// RunCommandError is a script that ran through Azure Run Command and failed.
type RunCommandError struct {
	VM       string
	ExitCode string // as the Linux agent reports it, "" when unknown
	Stdout   string
	Stderr   string
}

func (e *RunCommandError) Error() string {
	msg := fmt.Sprintf("run command on virtual machine %q failed", e.VM)
	if e.ExitCode != "" {
		msg += " with exit status " + e.ExitCode
	}
	if tail := tail(strings.TrimSpace(e.Stderr), 10); tail != "" {
		msg += ":\n" + tail
	}
	return msg
}

// RunShellScript runs script as root on the VM through Azure Run Command
// (RunShellScript): the authenticated control plane, no SSH and no key
// needed. It returns the script's stdout; a script that exits non-zero is a
// *RunCommandError with its output.
func (p *Provisioner) RunShellScript(ctx context.Context, rg, vm, script string) (string, error) {
	poller, err := p.vms.BeginRunCommand(ctx, rg, vm, armcompute.RunCommandInput{
		CommandID: to("RunShellScript"),
		Script:    []*string{to(script)},
	}, nil)
	if err != nil {
		return "", explain(err, p.ec(fmt.Sprintf("run a command on virtual machine %q", vm), nil))
	}
	resp, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return "", explain(err, p.ec(fmt.Sprintf("run a command on virtual machine %q", vm), nil))
	}
	var msg string
	for _, st := range resp.Value {
		if st != nil && st.Message != nil {
			msg += *st.Message
		}
	}
	stdout, stderr, failed, code := parseRunCommandMessage(msg)
	if failed {
		return stdout, &RunCommandError{VM: vm, ExitCode: code, Stdout: stdout, Stderr: stderr}
	}
	return stdout, nil
}

// parseRunCommandMessage splits the Linux agent's report:
//
//	Enable succeeded: \n[stdout]\n...\n[stderr]\n...
//	Enable failed: failed to execute command: command terminated with exit status=N\n[stdout]\n...
func parseRunCommandMessage(msg string) (stdout, stderr string, failed bool, code string) {
	head, rest, _ := strings.Cut(msg, "[stdout]\n")
	failed = strings.Contains(head, "Enable failed")
	if _, after, ok := strings.Cut(head, "exit status="); ok {
		code = strings.TrimSpace(strings.SplitN(after, "\n", 2)[0])
	}
	stdout, stderr, _ = strings.Cut(rest, "\n[stderr]\n")
	return stdout, stderr, failed, code
}

// StartVM starts a stopped or deallocated VM and waits until Azure reports
// it running.
func (p *Provisioner) StartVM(ctx context.Context, rg, vm string) error {
	poller, err := p.vms.BeginStart(ctx, rg, vm, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, p.pollOpts())
	}
	if err != nil {
		return explain(err, p.ec(fmt.Sprintf("start virtual machine %q", vm), nil))
	}
	return nil
}
