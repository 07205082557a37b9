package sshx_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

// logs collects WaitOptions.Logf lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestWaitReadyFindsLateServer(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.Delayed())
	listenErr := make(chan error, 1)
	go func() {
		time.Sleep(time.Duration(300+rand.IntN(400)) * time.Millisecond)
		listenErr <- s.Listen()
	}()
	var l logs
	c, err := sshx.WaitReady(testCtx(t), target(s), sshx.WaitOptions{Timeout: 30 * time.Second, Logf: l.logf})
	ready := time.Now()
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	defer c.Close()
	if err := <-listenErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("ready %s after sshd listened", ready.Sub(s.ListeningAt()))
	if !strings.Contains(l.String(), "port closed") {
		t.Errorf("progress log does not mention the closed port:\n%s", l.String())
	}
	if _, err := c.Output(testCtx(t), "true"); err != nil {
		t.Errorf("the returned client cannot run commands: %v", err)
	}
}

func TestWaitReadyStopsAtOnceOnHostKeyMismatch(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	tg := target(s)
	tg.HostKey = newSigner(t).PublicKey()
	_, err := sshx.WaitReady(testCtx(t), tg, sshx.WaitOptions{Timeout: 10 * time.Minute})
	var mismatch *sshx.HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("WaitReady: err = %v, want *HostKeyMismatchError", err)
	}
	var timeout *sshx.TimeoutError
	if errors.As(err, &timeout) {
		t.Fatalf("WaitReady waited for a host key mismatch: %v", err)
	}
	if n := strings.Count(s.Log(), "Connection from"); n != 1 {
		t.Errorf("sshd saw %d connections, want 1 (no retry after a mismatch)", n)
	}
}

// Cloud-init authorises the deploy key after sshd starts: a refused key is waited out.
func TestWaitReadyWaitsOutRefusedKey(t *testing.T) {
	t.Parallel()
	late := newSigner(t)
	s := sshtest.Start(t)
	tg := target(s)
	tg.Signer = late
	go func() {
		time.Sleep(500 * time.Millisecond)
		f, err := os.OpenFile(filepath.Join(s.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, _ = f.Write(ssh.MarshalAuthorizedKey(late.PublicKey()))
			_ = f.Close()
		}
	}()
	var l logs
	c, err := sshx.WaitReady(testCtx(t), tg, sshx.WaitOptions{Timeout: 30 * time.Second, Logf: l.logf})
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	c.Close()
	if !strings.Contains(l.String(), "key refused") {
		t.Errorf("progress log does not mention the refused key:\n%s", l.String())
	}
}

func TestWaitReadyTimeoutSaysHowLongAndWhy(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.Delayed()) // never listens
	_, err := sshx.WaitReady(context.Background(), target(s), sshx.WaitOptions{Timeout: 300 * time.Millisecond})
	var timeout *sshx.TimeoutError
	if !errors.As(err, &timeout) {
		t.Fatalf("WaitReady: err = %v, want *TimeoutError", err)
	}
	if timeout.Addr != s.Addr || timeout.Waited < 300*time.Millisecond || timeout.Attempts < 2 {
		t.Errorf("TimeoutError = %+v, want addr %s, waited >= 300ms, several attempts", timeout, s.Addr)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q: want DeadlineExceeded and the last failure (connection refused)", err)
	}
}

func TestWaitReadyCanceled(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, sshtest.Delayed())
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := sshx.WaitReady(ctx, target(s), sshx.WaitOptions{})
	var timeout *sshx.TimeoutError
	if !errors.Is(err, context.Canceled) || errors.As(err, &timeout) {
		t.Fatalf("WaitReady after cancel: err = %v, want context.Canceled and no TimeoutError", err)
	}
}

// A server that accepts TCP but stays silent (an overloaded VM, a half-up network path) costs one
// handshake timeout per attempt, and is found once it answers.
func TestWaitReadyRetriesSilentServer(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	r := sshtest.NewRelay(t, s.Addr)
	r.Freeze()
	tg := target(s)
	tg.Addr = r.Addr
	var l logs
	go func() {
		time.Sleep(1500 * time.Millisecond)
		r.Thaw()
	}()
	c, err := sshx.WaitReady(testCtx(t), tg, sshx.WaitOptions{Timeout: 30 * time.Second, HandshakeTimeout: time.Second, Logf: l.logf})
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	c.Close()
	if !strings.Contains(l.String(), "no SSH answer in time") {
		t.Errorf("progress log does not mention the handshake timeout:\n%s", l.String())
	}
}
