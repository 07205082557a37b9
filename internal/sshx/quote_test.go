package sshx_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

var hostileArgs = []string{
	"", " ", "plain", "two words", "tab\there", "'", "''", `"`, `it's "quoted"`, "$(id)", "`id`",
	"$HOME", "${HOME}", "a\nb", "trailing newline\n", "\xff\xfe non-UTF-8 \x80", "é ü 日本", "*", "?", "[a]",
	"~", "~root", "A=1", "-n", "-e", "--", `\`, `\\n`, "!", "!!", "#comment", "&;|<>()", "{a,b}",
	"%s%d", "a'b'c", "'\\''", "\r\n", "\x01\x7f", "; rm -rf /", "$((1+1))", "<(true)",
}

func TestQuoteLiteral(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{""}, "''"},
		{[]string{"ls", "-la", "/etc/ssh"}, "ls -la /etc/ssh"},
		{[]string{"a b"}, "'a b'"},
		{[]string{"it's"}, `'it'\''s'`},
		{[]string{"A=1"}, "'A=1'"},
		{[]string{"~"}, "'~'"},
		{[]string{"user@host:/p,a+b%c"}, "user@host:/p,a+b%c"},
		{[]string{"$(id)", "`id`"}, "'$(id)' '`id`'"},
	}
	for _, tc := range tests {
		if got := sshx.Quote(tc.args...); got != tc.want {
			t.Errorf("Quote(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// printfArgs runs printf '%s\0' args... through the remote shell and splits what it printed.
func printfArgs(t testing.TB, c *sshx.Client, args []string) []string {
	t.Helper()
	out, err := c.Output(testCtx(t), sshx.Quote(append([]string{"printf", `%s\0`}, args...)...))
	if err != nil {
		t.Fatalf("printf %q: %v", args, err)
	}
	got := strings.Split(string(out), "\x00")
	return got[:len(got)-1]
}

func TestQuoteRoundTripsThroughRemoteShells(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"", "/bin/sh", "/bin/bash"} {
		name := shell
		if name == "" {
			name = "login shell"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var opts []sshtest.Option
			if shell != "" {
				opts = append(opts, sshtest.WithShell(shell))
			}
			c := dial(t, sshtest.Start(t, opts...))
			if diff := cmp.Diff(hostileArgs, printfArgs(t, c, hostileArgs)); diff != "" {
				t.Errorf("remote shell received other arguments (-sent +received):\n%s", diff)
			}
			// Each argument alone too, several sessions at once on the one connection.
			var wg sync.WaitGroup
			got := make([][]string, len(hostileArgs))
			errs := make([]error, len(hostileArgs))
			for i, a := range hostileArgs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out, err := c.Output(testCtx(t), sshx.Quote("printf", `%s\0`, a))
					got[i], errs[i] = strings.Split(string(out), "\x00"), err
				}()
			}
			wg.Wait()
			for i, a := range hostileArgs {
				if errs[i] != nil {
					t.Errorf("printf %q: %v", a, errs[i])
					continue
				}
				if diff := cmp.Diff([]string{a, ""}, got[i]); diff != "" {
					t.Errorf("argument %q alone (-sent +received):\n%s", a, diff)
				}
			}
		})
	}
}

// An assignment-looking first word must run as a command name, not set a variable.
func TestQuoteFirstWordIsNeverAnAssignment(t *testing.T) {
	t.Parallel()
	c := dial(t, sshtest.Start(t))
	err := c.Run(testCtx(t), sshx.Quote("A=1"))
	var rerr *sshx.RemoteError
	if !errors.As(err, &rerr) || rerr.ExitStatus != 127 {
		t.Fatalf("Run(Quote(\"A=1\")) = %v, want exit status 127 (command not found)", err)
	}
}

func TestRunRefusesNUL(t *testing.T) {
	t.Parallel()
	c := dial(t, sshtest.Start(t))
	if err := c.Run(testCtx(t), sshx.Quote("echo", "a\x00b")); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("Run with a NUL byte: err = %v, want a NUL refusal", err)
	}
}

func FuzzQuote(f *testing.F) {
	for _, a := range hostileArgs {
		f.Add(a, "second")
	}
	f.Add("", "")
	f.Add("x", "'\"$`\\\n")
	srv := sshtest.Start(f)
	c := dial(f, srv)
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.ContainsRune(a+b, 0) || len(a)+len(b) > 64<<10 {
			t.Skip("NUL bytes cannot reach a remote command; huge arguments exceed ARG_MAX")
		}
		got := printfArgs(t, c, []string{a, b})
		if len(got) != 2 || !bytes.Equal([]byte(got[0]), []byte(a)) || got[1] != b {
			t.Fatalf("Quote(%q, %q) reached the remote shell as %q", a, b, got)
		}
	})
}
