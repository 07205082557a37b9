package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Stream names passed to a log function.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

const (
	defaultTailLines = 20
	maxLineBytes     = 64 << 10 // longer lines are split
	maxTailLineBytes = 512      // each line kept for an error is cut to this
	maxCommandInErr  = 200
)

// RemoteError is a remote command that failed: it exited non-zero, was killed by a signal, or the
// connection ended before it reported an exit status.
type RemoteError struct {
	Addr string
	// Command is the command line, shortened.
	Command string
	// ExitStatus is the command's exit status, or -1 when it reported none.
	ExitStatus int
	// Signal is the signal that killed the command ("KILL"), if any.
	Signal string
	// Tail holds the last lines of output (stdout and stderr for Run, stderr for Output).
	Tail []string
	// Err is why there is no exit status (the connection was lost), or nil.
	Err error
}

func (e *RemoteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "remote command %q on %q ", e.Command, e.Addr)
	switch {
	case e.Err != nil:
		fmt.Fprintf(&b, "did not finish: %v", e.Err)
	case e.Signal != "":
		fmt.Fprintf(&b, "was killed by signal %s", e.Signal)
	default:
		fmt.Fprintf(&b, "failed with exit status %d", e.ExitStatus)
	}
	if len(e.Tail) > 0 {
		b.WriteString("; last output:")
		for _, l := range e.Tail {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

func (e *RemoteError) Unwrap() error { return e.Err }

// RunOption configures Run and Output.
type RunOption func(*runOptions)

type runOptions struct {
	log       func(stream, line string)
	stdin     io.Reader
	tailLines int
}

// WithLog streams the command's output to log, one line at a time without its newline, stream
// being Stdout or Stderr. Calls are never concurrent. With Output only stderr is logged.
func WithLog(log func(stream, line string)) RunOption {
	return func(o *runOptions) { o.log = log }
}

// WithStdin feeds r to the command's standard input, the only way secrets reach a remote command.
func WithStdin(r io.Reader) RunOption {
	return func(o *runOptions) { o.stdin = r }
}

// WithTailLines sets how many of the last output lines an error keeps (default 20).
func WithTailLines(n int) RunOption {
	return func(o *runOptions) { o.tailLines = n }
}

// Run runs cmd (a shell command line; build it with Quote) in a new session. The command's output
// goes line by line to the WithLog function. A non-zero exit, a signal or a lost connection is a
// *RemoteError with the last lines of output. When ctx ends, the remote shell gets SIGKILL and the
// session is closed; as with ssh itself, children of that shell live on until they next write.
func (c *Client) Run(ctx context.Context, cmd string, opts ...RunOption) error {
	_, err := c.run(ctx, cmd, false, opts)
	return err
}

// Output runs cmd and returns its standard output. Its standard error goes to WithLog, and its
// last lines are in the *RemoteError when the command fails.
func (c *Client) Output(ctx context.Context, cmd string, opts ...RunOption) ([]byte, error) {
	return c.run(ctx, cmd, true, opts)
}

func (c *Client) run(ctx context.Context, cmd string, captureStdout bool, opts []RunOption) ([]byte, error) {
	o := runOptions{tailLines: defaultTailLines}
	for _, opt := range opts {
		opt(&o)
	}
	short := shorten(cmd, maxCommandInErr)
	if strings.IndexByte(cmd, 0) >= 0 {
		return nil, fmt.Errorf("refusing remote command %q: it contains a NUL byte, which no shell can receive", short)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("failed to run remote command %q: %w", short, err)
	}
	sess, err := c.ssh.NewSession()
	if err != nil {
		if lost := c.Err(); lost != nil {
			err = lost
		}
		return nil, fmt.Errorf("failed to open a session on %q for %q: %w", c.addr, short, err)
	}
	defer sess.Close()

	out := &output{log: o.log, tail: make([]string, 0, o.tailLines), max: o.tailLines}
	var stdout bytes.Buffer
	stderrW := &lineWriter{out: out, stream: Stderr}
	stdoutW := &lineWriter{out: out, stream: Stdout}
	if captureStdout {
		sess.Stdout = &stdout
	} else {
		sess.Stdout = stdoutW
	}
	sess.Stderr = stderrW
	if o.stdin != nil {
		sess.Stdin = o.stdin
	}
	if err := sess.Start(cmd); err != nil {
		return nil, fmt.Errorf("failed to start remote command %q on %q: %w", short, c.addr, err)
	}

	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// OpenSSH 8.1+ delivers the signal to the command; closing the channel also closes its pipes.
		_ = sess.Signal(ssh.SIGKILL)
		_ = sess.Close()
		rerr := &RemoteError{Addr: c.addr, Command: short, ExitStatus: -1, Err: fmt.Errorf("canceled: %w", ctx.Err())}
		select {
		case <-done:
			stdoutW.flush()
			stderrW.flush()
			rerr.Tail = out.lines()
			return stdout.Bytes(), rerr
		case <-time.After(250 * time.Millisecond):
			// sshd acknowledges the close only once the command's children let go of its output
			// (a killed shell's "sleep" keeps it), and a dead link never does. The output copiers
			// may still be running, so only the lines seen so far are reported.
			rerr.Tail = out.lines()
			return nil, rerr
		}
	}
	stdoutW.flush()
	stderrW.flush()
	if err == nil {
		return stdout.Bytes(), nil
	}
	rerr := &RemoteError{Addr: c.addr, Command: short, ExitStatus: -1, Tail: out.lines()}
	var exitErr *ssh.ExitError
	switch {
	case errors.As(err, &exitErr):
		rerr.ExitStatus = exitErr.ExitStatus()
		rerr.Signal = exitErr.Signal()
		if rerr.Signal != "" {
			rerr.ExitStatus = -1
		}
	default:
		// No exit status: usually the connection went away. Give the watcher a moment to say why.
		select {
		case <-c.done:
			rerr.Err = c.Err()
		case <-time.After(200 * time.Millisecond):
			var missing *ssh.ExitMissingError
			if errors.As(err, &missing) {
				rerr.Err = errors.New("the session ended without an exit status")
			} else {
				rerr.Err = err
			}
		}
	}
	return stdout.Bytes(), rerr
}

// output collects lines from both streams: it forwards them to the log and keeps the last few.
type output struct {
	mu   sync.Mutex
	log  func(stream, line string)
	tail []string
	max  int
}

func (o *output) line(stream string, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	line := string(b)
	if o.log != nil {
		o.log(stream, line)
	}
	if o.max <= 0 {
		return
	}
	if len(o.tail) == o.max {
		copy(o.tail, o.tail[1:])
		o.tail = o.tail[:o.max-1]
	}
	o.tail = append(o.tail, shorten(line, maxTailLineBytes))
}

func (o *output) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == 0 {
		return nil
	}
	return append([]string(nil), o.tail...)
}

// lineWriter splits a stream into lines (without "\n" or a trailing "\r").
type lineWriter struct {
	out    *output
	stream string
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		w.buf = append(w.buf, chunk...)
		for len(w.buf) > maxLineBytes {
			w.emit(w.buf[:maxLineBytes])
			w.buf = append(w.buf[:0], w.buf[maxLineBytes:]...)
		}
		if i < 0 {
			break
		}
		w.emit(w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit(b []byte) {
	w.out.line(w.stream, bytes.TrimSuffix(b, []byte("\r")))
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
}

// shorten cuts s to at most n bytes, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
