package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestActionsSink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{"GITHUB_OUTPUT": filepath.Join(dir, "out"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "sum")}
	var w bytes.Buffer
	s := NewActions(func(k string) string { return files[k] }, &w)
	s.Mask("line one\r\nline two\n\n  ")
	s.Group("stage")
	s.Infof("hello %d", 1)
	s.EndGroup()
	s.Errorf("deployment failed", "it broke")
	s.Notice("ssh-host-key", "vm ssh-ed25519 AAAA")
	s.Output("fqdn", "vm.uksouth.cloudapp.azure.com")
	s.Summary("## done\n")
	want := "::add-mask::line one\n::add-mask::line two\n::group::stage\nhello 1\n::endgroup::\n" +
		"::error title=deployment failed::it broke\n::notice title=ssh-host-key::vm ssh-ed25519 AAAA\n"
	if w.String() != want {
		t.Errorf("workflow commands:\n%q\nwant\n%q", w.String(), want)
	}
	out, _ := os.ReadFile(files["GITHUB_OUTPUT"])
	if !strings.Contains(string(out), "fqdn") || !strings.Contains(string(out), "vm.uksouth.cloudapp.azure.com") {
		t.Errorf("output file: %q", out)
	}
	sum, _ := os.ReadFile(files["GITHUB_STEP_SUMMARY"])
	if strings.TrimRight(string(sum), "\n") != "## done" {
		t.Errorf("summary: %q", sum)
	}
}

func TestTerminalSink(t *testing.T) {
	t.Parallel()
	var w bytes.Buffer
	s := NewTerminal(&w)
	s.Mask("secret")
	s.Group("provision")
	s.Infof("resource group: created")
	s.EndGroup()
	s.Errorf("invalid input", "vm-name %q", "X")
	s.Output("fqdn", "a.b")
	want := "==> provision\n    resource group: created\nerror: invalid input: vm-name \"X\"\n"
	if w.String() != want {
		t.Errorf("terminal:\n%q\nwant\n%q", w.String(), want)
	}
	if got := s.Outputs(); len(got) != 1 || got[0] != [2]string{"fqdn", "a.b"} {
		t.Errorf("outputs %v", got)
	}
}
