// Package report is where a run's progress and results go: GitHub Actions
// workflow commands, outputs and the step summary, or a terminal.
package report

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/sethvargo/go-githubactions"
)

// Sink receives a run's progress and results.
type Sink interface {
	// Mask hides a secret from every later line of the log. Multi-line
	// secrets are masked one line at a time (GitHub matches per line).
	Mask(secret string)
	Group(title string)
	EndGroup()
	Infof(format string, args ...any)
	// Stream prints one line that came from outside: the VM, nixos-anywhere,
	// a remote command. It is shown as it is, and nothing in it can act as
	// a workflow command or drive a terminal.
	Stream(line string)
	Warningf(format string, args ...any)
	// Errorf reports an error annotation with a title.
	Errorf(title, format string, args ...any)
	// Notice reports a notice annotation: public facts that readers of
	// the run (and the bot, through the API) can see without the summary.
	Notice(title, message string)
	Output(name, value string)
	Summary(markdown string)
}

// Actions reports through GitHub Actions workflow commands and files.
//
// Lines from outside go between "::stop-commands::<token>" and "::<token>::",
// with a new random token for every such block: the runner acts on no
// workflow command in between except that token (actions/runner
// src/Runner.Worker/ActionCommandManager.cs; docs, "Workflow commands for
// GitHub Actions", "Stopping and starting workflow commands"), so a VM that
// prints "::notice title=ssh-host-key::...", "::add-mask::" or "::error::"
// only prints text. The runner splits output into lines at LF, CR and CRLF
// (StreamReader.ReadLine in src/Runner.Sdk/ProcessInvoker.cs), so a CR inside
// a streamed line stays inside the block too. Our own commands (groups,
// annotations, masks) end the block first; consecutive streamed lines share
// one.
type Actions struct {
	a *githubactions.Action
	w io.Writer

	mu sync.Mutex
	// stopToken is the token of the open stop-commands block, "" when
	// workflow commands are processed.
	stopToken string
}

// NewActions writes workflow commands to w and outputs/summary to the files
// named by GITHUB_OUTPUT and GITHUB_STEP_SUMMARY as getenv sees them.
func NewActions(getenv func(string) string, w io.Writer) *Actions {
	return &Actions{a: githubactions.New(githubactions.WithGetenv(getenv), githubactions.WithWriter(w)), w: w}
}

// stopLocked opens a stop-commands block unless one is open.
func (s *Actions) stopLocked() {
	if s.stopToken != "" {
		return
	}
	s.stopToken = newStopToken()
	fmt.Fprintf(s.w, "::stop-commands::%s\n", s.stopToken)
}

// resumeLocked closes the open stop-commands block, if any, so that the next
// workflow command is processed.
func (s *Actions) resumeLocked() {
	if s.stopToken == "" {
		return
	}
	fmt.Fprintf(s.w, "::%s::\n", s.stopToken)
	s.stopToken = ""
}

// newStopToken is 128 random bits in hex: nothing outside this process can
// guess it, and the runner masks it in the log (it masks tokens longer than
// six characters) and refuses empty or registered command names as tokens.
func newStopToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Errorf("failed to read random bytes for a stop-commands token: %w", err))
	}
	return hex.EncodeToString(b[:])
}

// command runs f, which issues workflow commands, with commands processed.
func (s *Actions) command(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked()
	f()
}

func (s *Actions) Mask(secret string) {
	s.command(func() {
		for _, line := range maskLines(secret) {
			s.a.AddMask(line)
		}
	})
}
func (s *Actions) Group(title string) { s.command(func() { s.a.Group(title) }) }
func (s *Actions) EndGroup()          { s.command(func() { s.a.EndGroup() }) }

// Infof prints our own text. Text that the runner could take for a command
// (it looks for "::" and "##[" anywhere in a line: OutputManager.cs) goes
// inside a stop-commands block like a streamed line, in case a value in it
// came from outside.
func (s *Actions) Infof(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopToken == "" && !mayBeCommand(msg) {
		fmt.Fprintf(s.w, "%s\n", msg)
		return
	}
	s.stopLocked()
	fmt.Fprintf(s.w, "%s\n", msg)
}

func (s *Actions) Stream(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	fmt.Fprintf(s.w, "%s\n", line)
}

func (s *Actions) Warningf(format string, args ...any) {
	s.command(func() { s.a.Warningf(format, args...) })
}
func (s *Actions) Errorf(title, format string, args ...any) {
	s.command(func() { s.a.WithFieldsMap(map[string]string{"title": title}).Errorf(format, args...) })
}
func (s *Actions) Notice(title, message string) {
	s.command(func() { s.a.WithFieldsMap(map[string]string{"title": title}).Noticef("%s", message) })
}
func (s *Actions) Output(name, value string) { s.a.SetOutput(name, value) } // a file, not the log
func (s *Actions) Summary(markdown string)   { s.a.AddStepSummary(markdown) }

// Close ends an open stop-commands block, so that the log of the step ends
// with workflow commands on.
func (s *Actions) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked()
}

// mayBeCommand reports whether the runner could parse a line of text as a
// workflow command: "::" (the current form, after leading white space) or
// "##[" (the legacy form, anywhere in the line); ActionCommand.TryParseV2
// and TryParse in actions/runner src/Runner.Common/ActionCommand.cs.
func mayBeCommand(text string) bool {
	return strings.Contains(text, "::") || strings.Contains(text, "##[")
}

// Terminal reports to a terminal: progress on w, outputs printed as
// name=value at the end of the run by PrintOutputs.
type Terminal struct {
	mu      sync.Mutex
	w       io.Writer
	outputs [][2]string
	depth   int
}

// NewTerminal writes progress to w.
func NewTerminal(w io.Writer) *Terminal { return &Terminal{w: w} }

func (s *Terminal) Mask(string) {} // nothing is printed that holds a secret
func (s *Terminal) Group(title string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "==> %s\n", title)
	s.depth = 1
}
func (s *Terminal) EndGroup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.depth = 0
}
func (s *Terminal) Infof(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "%s%s\n", strings.Repeat("    ", s.depth), fmt.Sprintf(format, args...))
}

// Stream prints a line from outside with its control characters (escape
// sequences among them) shown as Go escapes, so a VM cannot move the cursor,
// retitle the window or write the clipboard of whoever watches.
func (s *Terminal) Stream(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "%s%s\n", strings.Repeat("    ", s.depth), visible(line))
}

// visible replaces C0 and C1 control characters (but tab) and invalid UTF-8
// with their Go escapes.
func visible(line string) string {
	var b strings.Builder
	for i, r := range line {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(line[i:], string(utf8.RuneError)):
			fmt.Fprintf(&b, `\x%02x`, line[i])
		case r == '\t' || !unicode.IsControl(r):
			b.WriteRune(r)
		default:
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
		}
	}
	return b.String()
}

func (s *Terminal) Warningf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "warning: %s\n", fmt.Sprintf(format, args...))
}
func (s *Terminal) Errorf(title, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "error: %s: %s\n", title, fmt.Sprintf(format, args...))
}
func (s *Terminal) Notice(string, string) {} // the outputs are printed at the end
func (s *Terminal) Output(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outputs = append(s.outputs, [2]string{name, value})
}
func (s *Terminal) Summary(string) {} // the terminal already saw it all

// Outputs returns the outputs set so far, in order.
func (s *Terminal) Outputs() [][2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]string(nil), s.outputs...)
}

func maskLines(secret string) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(secret, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

var (
	_ Sink = (*Actions)(nil)
	_ Sink = (*Terminal)(nil)
)
