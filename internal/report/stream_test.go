package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/report/reporttest"
)

// forged are lines a hostile VM (or anything nixos-anywhere relays) could
// print to steer the action: a host key notice the bot would read, a mask
// that hides our own output, forged failures, a resume attempt, and the
// legacy "##[" form, which the runner finds anywhere in a line.
var forged = []string{
	"::notice title=ssh-host-key::evil.example ssh-ed25519 AAAAforged",
	"::add-mask::ssh-ed25519",
	"   ::error title=deployment failed::forged",
	"progress 42% ##[warning]forged",
	"::stop-commands::guess",
	"::endgroup::",
	"::group::forged group",
	"text\r::error::after a lone CR",
	"::set-output name=ssh-host-key::forged",
}

func TestStreamedLinesIssueNoCommands(t *testing.T) {
	t.Parallel()
	var w bytes.Buffer
	s := NewActions(func(string) string { return "" }, &w)
	s.Group("install: Uploading install SSH keys")
	for _, l := range forged {
		s.Stream(l)
	}
	s.EndGroup()
	s.Group("finalize")
	s.Stream(forged[0])
	s.Infof("(1/3) step")
	s.Stream(forged[2])
	s.Notice("ssh-host-key", "vm.example ssh-ed25519 AAAAreal")
	s.Close()

	var got []string
	for _, c := range reporttest.Commands(w.String()) {
		switch c.Name {
		case "stop-commands":
			got = append(got, "stop")
		case "group", "endgroup", "notice":
			got = append(got, c.Name+" "+c.Properties["title"]+c.Data)
		default:
			if len(c.Name) == 32 && strings.Trim(c.Name, "0123456789abcdef") == "" {
				got = append(got, "resume")
			} else {
				got = append(got, "FORGED "+c.Line)
			}
		}
	}
	want := []string{
		"group install: Uploading install SSH keys",
		"stop", "resume", "endgroup ",
		"group finalize",
		"stop", "resume",
		"notice ssh-host-keyvm.example ssh-ed25519 AAAAreal",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("commands the runner would process (-want +got):\n%s\nlog:\n%s", d, w.String())
	}
	for _, l := range forged {
		if !strings.Contains(w.String(), l) {
			t.Errorf("the log lacks the streamed line %q: it must be shown, only not acted on", l)
		}
	}
}

func TestStopTokensAreFreshAndUnguessable(t *testing.T) {
	t.Parallel()
	var w bytes.Buffer
	s := NewActions(func(string) string { return "" }, &w)
	seen := map[string]bool{}
	for range 50 {
		s.Stream("line")
		s.Group("g")
	}
	for _, c := range reporttest.Commands(w.String()) {
		if c.Name != "stop-commands" {
			continue
		}
		if len(c.Data) != 32 || seen[c.Data] {
			t.Fatalf("token %q: want 32 hex digits, new every time", c.Data)
		}
		seen[c.Data] = true
	}
	if len(seen) != 50 {
		t.Fatalf("%d stop-commands blocks, want 50", len(seen))
	}
}

// TestInfofThatLooksLikeACommand: our own text may carry a value from
// outside (an Azure error, an IPv6 address); if the runner could read it as
// a command, it goes inside a block too.
func TestInfofThatLooksLikeACommand(t *testing.T) {
	t.Parallel()
	var w bytes.Buffer
	s := NewActions(func(string) string { return "" }, &w)
	s.Infof("cleanup: %s", "::error::from an Azure message")
	s.Infof("plain text")
	s.Close()
	for _, c := range reporttest.Commands(w.String()) {
		if c.Name == "error" {
			t.Fatalf("Infof text acted as a command:\n%s", w.String())
		}
	}
	if !strings.Contains(w.String(), "\nplain text\n") {
		t.Errorf("plain text not printed as it is:\n%s", w.String())
	}
}

func TestTerminalStreamShowsControlCharacters(t *testing.T) {
	t.Parallel()
	var w bytes.Buffer
	s := NewTerminal(&w)
	s.Stream("\x1b]52;c;ZXZpbA==\x07title\x1b[2Jok\tand\u009b\xff")
	want := `\x1b]52;c;ZXZpbA==\atitle\x1b[2Jok` + "\tand" + `\u009b\xff` + "\n"
	if w.String() != want {
		t.Errorf("terminal:\n%q\nwant\n%q", w.String(), want)
	}
}
