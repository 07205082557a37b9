// Package report is where a run's progress and results go: GitHub Actions
// workflow commands, outputs and the step summary, or a terminal.
package report

import (
	"fmt"
	"io"
	"strings"
	"sync"

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
type Actions struct {
	a *githubactions.Action
}

// NewActions writes workflow commands to w and outputs/summary to the files
// named by GITHUB_OUTPUT and GITHUB_STEP_SUMMARY as getenv sees them.
func NewActions(getenv func(string) string, w io.Writer) *Actions {
	return &Actions{a: githubactions.New(githubactions.WithGetenv(getenv), githubactions.WithWriter(w))}
}

func (s *Actions) Mask(secret string) {
	for _, line := range maskLines(secret) {
		s.a.AddMask(line)
	}
}
func (s *Actions) Group(title string)                  { s.a.Group(title) }
func (s *Actions) EndGroup()                           { s.a.EndGroup() }
func (s *Actions) Infof(format string, args ...any)    { s.a.Infof(format, args...) } // it ends the line
func (s *Actions) Warningf(format string, args ...any) { s.a.Warningf(format, args...) }
func (s *Actions) Errorf(title, format string, args ...any) {
	s.a.WithFieldsMap(map[string]string{"title": title}).Errorf(format, args...)
}
func (s *Actions) Notice(title, message string) {
	s.a.WithFieldsMap(map[string]string{"title": title}).Noticef("%s", message)
}
func (s *Actions) Output(name, value string) { s.a.SetOutput(name, value) }
func (s *Actions) Summary(markdown string)   { s.a.AddStepSummary(markdown) }

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
