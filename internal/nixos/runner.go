package nixos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NixosAnywhereVersion is the nixos-anywhere release that `nix run` starts
// when nixos-anywhere itself is not on PATH. The action's container ships
// its own pinned nixos-anywhere on PATH.
const NixosAnywhereVersion = "1.13.0"

// FindCommand returns the argument vector prefix that starts nixos-anywhere:
// the nixos-anywhere on PATH, else `nix run` of the pinned release when nix
// is on PATH. lookPath is exec.LookPath outside tests.
func FindCommand(lookPath func(file string) (string, error)) ([]string, error) {
	if p, err := lookPath("nixos-anywhere"); err == nil {
		return []string{p}, nil
	}
	if p, err := lookPath("nix"); err == nil {
		return []string{
			p, "--extra-experimental-features", "nix-command flakes",
			"run", "github:nix-community/nixos-anywhere/" + NixosAnywhereVersion, "--",
		}, nil
	}
	return nil, errors.New(`failed to find nixos-anywhere: neither "nixos-anywhere" nor "nix" is on PATH; ` +
		`install Nix (https://nixos.org/download) and enable flakes, or run the nixos-cloud-deploy action, whose container has nixos-anywhere`)
}

// Args is one nixos-anywhere installation.
type Args struct {
	// Flake is the flake reference with its attribute, as Render returns it.
	Flake string
	// FacterReport is where nixos-anywhere writes the nixos-facter report;
	// <flake dir>/facter.json so the installed system uses it.
	FacterReport string
	// IdentityFile is the deploy key's private half (a 0600 file).
	IdentityFile string
	// ProxyCommand is the ssh ProxyCommand that reaches the target through
	// the pinned host key. It must not contain whitespace: nixos-anywhere
	// hands its ssh options to Nix as NIX_SSHOPTS="${sshArgs[*]}", which Nix
	// splits at spaces. Use sshx.WriteProxyScript for a command with arguments.
	ProxyCommand string
	// Host is the target's address; nixos-anywhere logs in as root.
	Host string
	// KexecURL is the kexec installer image (KexecImageURL); empty means
	// nixos-anywhere's default, which for 1.13.0 is nixos-25.05, past its
	// end of life.
	KexecURL string
	// ExtraFiles is a directory whose contents nixos-anywhere copies to / of
	// the installed system, owned by root (--extra-files; src/nixos-anywhere.sh
	// runs `tar -C <dir> -cpf- . | ssh ... tar -C /mnt -xf- --no-same-owner`
	// after the hardware report is generated and before nixos-install). The
	// flake is rendered into <ExtraFiles>/etc/nixos, so the VM keeps what was
	// installed, facter.json and flake.lock included.
	ExtraFiles string
}

// Argv is the argument vector after the nixos-anywhere command, one argument
// per element; it never goes through a shell.
func (a Args) Argv() ([]string, error) {
	var errs []error
	if !strings.Contains(a.Flake, "#") {
		errs = append(errs, fmt.Errorf("flake %q: must be <flake>#<attribute>", a.Flake))
	}
	if a.FacterReport == "" {
		errs = append(errs, errors.New("facter report path is empty"))
	}
	if a.IdentityFile == "" {
		errs = append(errs, errors.New("identity file is empty"))
	}
	if a.ProxyCommand == "" || strings.ContainsAny(a.ProxyCommand, " \t\r\n") {
		errs = append(errs, fmt.Errorf("proxy command %q: must be one word without whitespace (nixos-anywhere passes ssh options to Nix split at spaces); use sshx.WriteProxyScript", a.ProxyCommand))
	}
	if a.Host == "" || strings.HasPrefix(a.Host, "-") || strings.ContainsAny(a.Host, "@ \t\r\n") {
		errs = append(errs, fmt.Errorf("host %q: must be an address or host name", a.Host))
	}
	if a.KexecURL != "" && !strings.HasPrefix(a.KexecURL, "https://") {
		errs = append(errs, fmt.Errorf("kexec image %q: must be an https URL", a.KexecURL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid nixos-anywhere arguments: %w", err)
	}
	argv := []string{
		"--flake", a.Flake,
		"--generate-hardware-config", "nixos-facter", a.FacterReport,
	}
	if a.KexecURL != "" {
		argv = append(argv, "--kexec", a.KexecURL)
	}
	if a.ExtraFiles != "" {
		argv = append(argv, "--extra-files", a.ExtraFiles)
	}
	return append(argv,
		"-i", a.IdentityFile,
		"--copy-host-keys",
		"--ssh-option", "ProxyCommand="+a.ProxyCommand,
		"root@"+a.Host,
	), nil
}

// KexecImageURL is the nixos-images kexec installer of the NixOS release
// that channel follows, for arch ("x86_64-linux" or "aarch64-linux"). The
// images are release assets of nix-community/nixos-images, tagged nixos-YY.MM
// and nixos-unstable (build-images.sh, .github/workflows/build.yml there);
// nixos-anywhere 1.13.0 defaults to nixos-25.05, which is end of life. A
// -small channel boots the installer of its release.
func KexecImageURL(channel, arch string) string {
	if channel == "" {
		channel = DefaultChannel
	}
	tag := strings.TrimSuffix(channel, "-small")
	return "https://github.com/nix-community/nixos-images/releases/download/" + tag + "/nixos-kexec-installer-noninteractive-" + arch + ".tar.gz"
}

// Runner runs nixos-anywhere and follows its output. The zero value finds
// nixos-anywhere with FindCommand and has no callbacks and no timeout.
type Runner struct {
	// Command is the argv prefix that starts nixos-anywhere; empty means
	// FindCommand(exec.LookPath).
	Command []string
	// Env is the process environment; nil means this process's. Either way
	// ChildEnv takes the action's secrets out of it: nixos-anywhere, and
	// the ProxyCommand its ssh starts, see none of them.
	Env []string
	// Line receives every output line (stdout and stderr, merged, in order
	// of arrival), without its line ending.
	Line func(line string)
	// Phase is called with the phase name when a `### <phase> ###` line
	// starts a phase, before Line sees that line: open a log group here.
	Phase func(name string)
	// Timeout bounds the whole run (the install-timeout input); zero means
	// only ctx bounds it.
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL to nixos-anywhere's
	// process group on timeout or cancellation; SIGTERM lets its EXIT trap
	// delete the copy of the deploy key in its temporary directory. Zero
	// means 10s.
	KillGrace time.Duration
	// WaitDelay bounds how long Run waits for the output pipe to close once
	// nixos-anywhere exited or was killed, so a hung child still holding it
	// cannot block Run. Zero means 5s.
	WaitDelay time.Duration

	now func() time.Time // for tests; nil means time.Now
}

// RunError is a failed nixos-anywhere run.
type RunError struct {
	// Phase is the phase that was running ("" before the first one).
	Phase string
	// Aborted is the message of nixos-anywhere's `aborted: ...` line, if any.
	Aborted string
	// ExitCode is the exit status; -1 when it was killed.
	ExitCode int
	// TimedOut is set when Runner.Timeout or ctx's deadline expired;
	// Timeout is Runner.Timeout then (zero for ctx's deadline).
	TimedOut bool
	Timeout  time.Duration
	// Tail is the last output lines, oldest first.
	Tail []string
	// Err is the underlying error (context.Canceled, context.DeadlineExceeded,
	// an *exec.ExitError).
	Err error
}

func (e *RunError) Error() string {
	var b strings.Builder
	switch {
	case e.TimedOut && e.Timeout > 0:
		fmt.Fprintf(&b, "nixos-anywhere did not finish within %s", e.Timeout)
	case e.TimedOut:
		b.WriteString("nixos-anywhere did not finish before the deadline")
	case errors.Is(e.Err, context.Canceled):
		b.WriteString("nixos-anywhere was cancelled")
	case e.Aborted != "":
		fmt.Fprintf(&b, "nixos-anywhere aborted: %s", e.Aborted)
	default:
		fmt.Fprintf(&b, "nixos-anywhere failed with exit status %d", e.ExitCode)
	}
	if e.Phase != "" {
		fmt.Fprintf(&b, " (phase %q)", e.Phase)
	} else {
		b.WriteString(" (before its first phase)")
	}
	if e.TimedOut {
		b.WriteString("; raise install-timeout if the install is only slow; kexec on Azure can hang (nixos-anywhere issue 400), the serial log shows where")
	}
	if len(e.Tail) > 0 {
		b.WriteString("\nlast output lines:")
		for _, l := range e.Tail {
			b.WriteString("\n  " + l)
		}
	}
	return b.String()
}

func (e *RunError) Unwrap() error { return e.Err }

// Run runs nixos-anywhere with a's arguments, as an argument vector without
// a shell, in its own process group. It streams the output to r.Line, calls
// r.Phase for each phase, and returns the phases with their durations, also
// when it fails (then with a *RunError). On timeout or cancellation the whole
// process group gets SIGTERM, then SIGKILL after KillGrace.
func (r *Runner) Run(ctx context.Context, a Args) ([]PhaseTiming, error) {
	args, err := a.Argv()
	if err != nil {
		return nil, err
	}
	prefix := r.Command
	if len(prefix) == 0 {
		if prefix, err = FindCommand(exec.LookPath); err != nil {
			return nil, err
		}
	}
	argv := append(append([]string(nil), prefix...), args...)

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if r.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, r.Timeout)
	}
	defer cancel()

	now := r.now
	if now == nil {
		now = time.Now
	}
	grace, waitDelay := r.KillGrace, r.WaitDelay
	if grace <= 0 {
		grace = 10 * time.Second
	}
	if waitDelay <= 0 {
		waitDelay = 5 * time.Second
	}

	t := &transcript{now: now}
	out := &lineWriter{fn: func(line string) {
		if phase, ok := t.line(line); ok && r.Phase != nil {
			r.Phase(phase)
		}
		if r.Line != nil {
			r.Line(line)
		}
	}}

	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	env := r.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = ChildEnv(env)
	// The same writer for both: exec gives the child one pipe for stdout and
	// stderr, so lines keep their order.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var (
		killMu    sync.Mutex
		killTimer *time.Timer
	)
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		killMu.Lock()
		killTimer = time.AfterFunc(grace, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
		killMu.Unlock()
		return nil
	}
	// exec starts this timer when ctx is done (or the process exited) and
	// then kills the leader and closes the pipe itself; give the group
	// SIGKILL its grace first.
	cmd.WaitDelay = grace + waitDelay

	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start nixos-anywhere (%q): %w", argv[0], err)
	}
	waitErr := cmd.Wait()
	// Whatever is left of the group (children that ignored SIGTERM, or
	// background processes that outlived a normal exit) goes now. The group
	// id stays reserved while any member lives, so this cannot hit a stranger
	// unless the group is already empty and its number reused within this
	// instant.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	killMu.Lock()
	if killTimer != nil {
		killTimer.Stop()
	}
	killMu.Unlock()
	out.flush()
	t.finish()

	phases, current, tail, aborted := t.snapshot()
	// A zero exit is success even if ctx ended a moment later; exec reports
	// ErrWaitDelay when only a leftover child kept the pipe open.
	if waitErr == nil || (errors.Is(waitErr, exec.ErrWaitDelay) && cmd.ProcessState.Success()) {
		return phases, nil
	}
	runErr := &RunError{Phase: current, Aborted: aborted, ExitCode: cmd.ProcessState.ExitCode(), Tail: tail, Err: waitErr}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		runErr.Err = ctx.Err()
	case runCtx.Err() != nil:
		runErr.TimedOut, runErr.Err = true, runCtx.Err()
		if ctx.Err() == nil {
			runErr.Timeout = r.Timeout
		}
	}
	return phases, runErr
}

// maxLine bounds a line without a newline (a progress bar gone wild).
const maxLine = 64 << 10

// lineWriter splits a byte stream into lines for fn.
type lineWriter struct {
	fn  func(string)
	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		take := i
		if i < 0 {
			take = len(p)
		}
		if room := maxLine - len(w.buf); take > room {
			// An over-long line goes out in maxLine pieces.
			w.buf = append(w.buf, p[:room]...)
			w.emitLocked()
			p = p[room:]
			continue
		}
		w.buf = append(w.buf, p[:take]...)
		if i < 0 {
			break
		}
		w.emitLocked()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emitLocked() {
	line := strings.TrimRight(string(w.buf), "\r")
	w.buf = w.buf[:0]
	w.fn(line)
}

// flush hands on a last line without a newline.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emitLocked()
	}
}
