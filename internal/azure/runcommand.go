package azure

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// RunCommandError is a script that ran through Azure Run Command and failed.
type RunCommandError struct {
	VM       string
	ExitCode string // the script's own exit status, "" when it reported none
	Stdout   string
	Stderr   string
	// Reason says why there is no exit status (the output was cut, the script did not finish,
	// the extension failed), "" when there is one.
	Reason string
}

func (e *RunCommandError) Error() string {
	msg := fmt.Sprintf("run command on virtual machine %q failed", e.VM)
	switch {
	case e.ExitCode != "":
		msg += " with exit status " + e.ExitCode
	case e.Reason != "":
		msg += ": " + e.Reason
	}
	if tail := tail(strings.TrimSpace(e.Stderr), 10); tail != "" {
		msg += ":\n" + tail
	}
	return msg
}

// How the Linux agent reports a Run Command (Azure/run-command-extension-linux, main/cmds.go
// enable and main/status.go statusMsg): "Enable succeeded: \n[stdout]\n...\n[stderr]\n...",
// whatever the script's exit status (since 2019 "the extension should not fail if script
// throws error"), each stream cut to its last 4096 bytes (maxTailLen, main/logtail.go tailFile).
// "Enable failed: ..." only when the extension itself failed (a bad setting, a download).
// So the script reports its own status: a last stdout line with a per-call nonce and the exit
// code, which survives the cut because it is the last thing written.
const (
	runCommandTailLen = 4096
	statusMarker      = "nixos-cloud-deploy-status"
)

var reStatusLine = regexp.MustCompile(`^` + statusMarker + ` ([0-9a-f]{16}) ([0-9]{1,3})$`)

// wrapScript runs script in a child shell and prints the status line after it, whatever the
// script did (set -e included).
func wrapScript(script, nonce string) string {
	return "/bin/sh -c " + shellQuote(script) + "\nprintf '\\n" + statusMarker + " " + nonce + " %d\\n' \"$?\"\n"
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// RunShellScript runs script as root on the VM through Azure Run Command
// (RunShellScript): the authenticated control plane, no SSH and no key
// needed. It returns the script's stdout; a script that exits non-zero, or
// whose status line is missing, is a *RunCommandError with its output.
// Azure keeps only the last 4 KiB of each stream: scripts print little.
func (p *Provisioner) RunShellScript(ctx context.Context, rg, vm, script string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("failed to make a run command nonce: %w", err)
	}
	nonce := hex.EncodeToString(b[:])
	ec := p.ec(fmt.Sprintf("run a command on virtual machine %q", vm), nil)
	poller, err := p.vms.BeginRunCommand(ctx, rg, vm, armcompute.RunCommandInput{
		CommandID: to("RunShellScript"),
		Script:    []*string{to(wrapScript(script, nonce))},
	}, nil)
	if err != nil {
		return "", explain(err, ec)
	}
	resp, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return "", explain(err, ec)
	}
	var msg string
	for _, st := range resp.Value {
		if st != nil && st.Message != nil {
			msg += *st.Message
		}
	}
	return parseRunCommand(vm, msg, nonce)
}

// parseRunCommand reads the agent's report of a wrapped script.
func parseRunCommand(vm, msg, nonce string) (string, error) {
	head, rest, found := strings.Cut(msg, "[stdout]\n")
	stdout, stderr, _ := strings.Cut(rest, "\n[stderr]\n")
	fail := func(reason string) error {
		return &RunCommandError{VM: vm, Stdout: stdout, Stderr: stderr, Reason: reason}
	}
	if strings.Contains(head, "Enable failed") {
		return stdout, fail("the Run Command extension failed: " + strings.TrimSpace(head))
	}
	if !found {
		return "", fail(fmt.Sprintf("the agent's report has no [stdout] section: %q", abbreviate(msg, 200)))
	}
	body, last := splitLastLine(stdout)
	m := reStatusLine.FindStringSubmatch(last)
	switch {
	case m == nil && len(stdout) >= runCommandTailLen:
		return stdout, fail("its output was longer than the 4 KiB Azure keeps and the end was lost")
	case m == nil:
		return stdout, fail("the script did not report its exit status (it did not finish, or the agent cut it off)")
	case m[1] != nonce:
		return stdout, fail("the status line is not this run's")
	}
	// The wrapper prints a newline before the status line, so output without one ends cleanly.
	body = strings.TrimSuffix(body, "\n")
	if len(stdout) >= runCommandTailLen {
		return body, fail("its output was longer than the 4 KiB Azure keeps, so its beginning is lost")
	}
	if code, _ := strconv.Atoi(m[2]); code != 0 {
		return body, &RunCommandError{VM: vm, ExitCode: m[2], Stdout: body, Stderr: stderr}
	}
	return body, nil
}

// splitLastLine splits s before its last non-empty line.
func splitLastLine(s string) (body, last string) {
	t := strings.TrimRight(s, "\n")
	i := strings.LastIndexByte(t, '\n')
	return t[:i+1], t[i+1:]
}

func abbreviate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
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
