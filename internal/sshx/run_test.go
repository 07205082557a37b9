package sshx_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

type logLine struct{ Stream, Line string }

type lineLog struct {
	mu    sync.Mutex
	lines []logLine
}

func (l *lineLog) log(stream, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, logLine{stream, line})
}

// get returns the lines, stderr's before stdout's, each stream in its own order.
func (l *lineLog) get() []logLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append([]logLine(nil), l.lines...)
	slices.SortStableFunc(lines, func(a, b logLine) int { return strings.Compare(a.Stream, b.Stream) })
	return lines
}

func TestRun(t *testing.T) {
	t.Parallel()
	c := dial(t, sshtest.Start(t))
	tests := []struct {
		name       string
		cmd        string
		opts       []sshx.RunOption
		wantLog    []logLine
		wantStatus int // 0: success
		wantSignal string
		wantTail   []string
	}{
		{
			// The two streams travel apart: only the order within each is defined.
			name: "stdout and stderr line by line",
			cmd:  "echo one; echo two >&2; printf 'crlf\\r\\nno newline'; printf 'three\\n\\nfour' >&2",
			wantLog: []logLine{
				{sshx.Stderr, "two"}, {sshx.Stderr, "three"}, {sshx.Stderr, ""}, {sshx.Stderr, "four"},
				{sshx.Stdout, "one"}, {sshx.Stdout, "crlf"}, {sshx.Stdout, "no newline"},
			},
		},
		{
			name:       "exit status and last lines",
			cmd:        "for i in 1 2 3 4 5; do echo line $i; done; echo failing; exit 3",
			opts:       []sshx.RunOption{sshx.WithTailLines(3)},
			wantStatus: 3,
			wantTail:   []string{"line 4", "line 5", "failing"},
			wantLog: []logLine{
				{sshx.Stdout, "line 1"}, {sshx.Stdout, "line 2"}, {sshx.Stdout, "line 3"}, {sshx.Stdout, "line 4"},
				{sshx.Stdout, "line 5"}, {sshx.Stdout, "failing"},
			},
		},
		{
			name:       "signal",
			cmd:        "echo bye; kill -TERM $$",
			wantStatus: -1,
			wantSignal: "TERM",
			wantTail:   []string{"bye"},
			wantLog:    []logLine{{sshx.Stdout, "bye"}},
		},
		{
			name:    "stdin",
			cmd:     "cat",
			opts:    []sshx.RunOption{sshx.WithStdin(strings.NewReader("a\nb\n"))},
			wantLog: []logLine{{sshx.Stdout, "a"}, {sshx.Stdout, "b"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var l lineLog
			err := c.Run(testCtx(t), tc.cmd, append(tc.opts, sshx.WithLog(l.log))...)
			if diff := cmp.Diff(tc.wantLog, l.get()); diff != "" {
				t.Errorf("log mismatch (-want +got):\n%s", diff)
			}
			if tc.wantStatus == 0 && tc.wantSignal == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			var rerr *sshx.RemoteError
			if !errors.As(err, &rerr) {
				t.Fatalf("Run: err = %v, want *RemoteError", err)
			}
			want := &sshx.RemoteError{Addr: c.Addr(), Command: tc.cmd, ExitStatus: tc.wantStatus, Signal: tc.wantSignal, Tail: tc.wantTail}
			if diff := cmp.Diff(want, rerr); diff != "" {
				t.Errorf("RemoteError mismatch (-want +got):\n%s", diff)
			}
			for _, line := range tc.wantTail {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error %q lacks output line %q", err, line)
				}
			}
		})
	}
}

func TestOutput(t *testing.T) {
	t.Parallel()
	c := dial(t, sshtest.Start(t))
	var l lineLog
	out, err := c.Output(testCtx(t), "printf 'data\\0bin'; echo warn >&2", sshx.WithLog(l.log))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "data\x00bin" {
		t.Errorf("Output = %q, want %q", out, "data\x00bin")
	}
	if diff := cmp.Diff([]logLine{{sshx.Stderr, "warn"}}, l.get()); diff != "" {
		t.Errorf("log mismatch (-want +got):\n%s", diff)
	}

	_, err = c.Output(testCtx(t), "echo out; echo 'no such disk' >&2; exit 2")
	var rerr *sshx.RemoteError
	if !errors.As(err, &rerr) || rerr.ExitStatus != 2 || !cmp.Equal(rerr.Tail, []string{"no such disk"}) {
		t.Fatalf("Output of a failing command: err = %#v, want exit status 2 and stderr tail", err)
	}
}

func TestRunManySessionsOnOneConnection(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c := dial(t, s)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Output(testCtx(t), sshx.Quote("echo", strings.Repeat("x", i)))
			if err == nil && string(out) != strings.Repeat("x", i)+"\n" {
				err = errors.New("wrong output " + string(out))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := strings.Count(s.Log(), "Accepted publickey"); n != 1 {
		t.Errorf("sshd accepted %d logins, want 1", n)
	}
}

func TestRunCancelClosesSession(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c := dial(t, s)
	ctx, cancel := context.WithCancel(testCtx(t))
	started := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		errc <- c.Run(ctx, "echo started; sleep 60; echo not reached", sshx.WithLog(func(_, line string) {
			if line == "started" {
				once.Do(func() { close(started) })
			}
		}))
	}()
	<-started
	cancel()
	err := <-errc
	var rerr *sshx.RemoteError
	if !errors.As(err, &rerr) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: err = %v, want *RemoteError wrapping context.Canceled", err)
	}
	// The connection stays usable for the next command.
	if out, err := c.Output(testCtx(t), "echo next"); err != nil || string(out) != "next\n" {
		t.Fatalf("Output after a canceled Run = %q, %v", out, err)
	}
}

func TestRunConnectionDroppedMidCommand(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c := dial(t, s)
	started := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		errc <- c.Run(testCtx(t), "echo started; sleep 60", sshx.WithLog(func(_, line string) {
			once.Do(func() { close(started) })
		}))
	}()
	<-started
	s.KillSessions() // the VM went away
	var err error
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running 30s after the connection dropped")
	}
	var rerr *sshx.RemoteError
	if !errors.As(err, &rerr) || rerr.ExitStatus != -1 || rerr.Err == nil || !strings.Contains(err.Error(), "lost") {
		t.Fatalf("Run over a dropped connection: err = %v, want *RemoteError saying the connection was lost", err)
	}
	if diff := cmp.Diff([]string{"started"}, rerr.Tail); diff != "" {
		t.Errorf("Tail mismatch (-want +got):\n%s", diff)
	}
	if c.Err() == nil {
		t.Errorf("client.Err() = nil after the connection dropped")
	}
	if err := c.Run(testCtx(t), "true"); err == nil {
		t.Errorf("Run on a dead connection succeeded")
	}
}

func TestRunLongLinesAreSplit(t *testing.T) {
	t.Parallel()
	c := dial(t, sshtest.Start(t))
	var l lineLog
	if err := c.Run(testCtx(t), "head -c 150000 /dev/zero | tr '\\0' x; echo; echo end", sshx.WithLog(l.log)); err != nil {
		t.Fatal(err)
	}
	got := l.get()
	var lens []int
	for _, x := range got {
		lens = append(lens, len(x.Line))
	}
	if diff := cmp.Diff([]int{65536, 65536, 150000 - 2*65536, 3}, lens); diff != "" {
		t.Errorf("line lengths mismatch (-want +got):\n%s", diff)
	}
}
