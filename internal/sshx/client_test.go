package sshx_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDialSucceedsWithPinnedKey(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Like an Ubuntu VM, the server also has an ecdsa key, which the client would prefer unasked.
	s := sshtest.Start(t, sshtest.WithExtraHostKey(ec))
	c := dial(t, s)
	out, err := c.Output(testCtx(t), "echo hello")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello\n" {
		t.Errorf("Output = %q, want %q", out, "hello\n")
	}
	if c.Err() != nil {
		t.Errorf("Err() on a live connection = %v", c.Err())
	}
}

func TestDialRefusesWrongHostKeyWithBothFingerprints(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	wrong := newSigner(t).PublicKey()
	tg := target(s)
	tg.HostKey = wrong
	_, err := sshx.Dial(testCtx(t), tg)
	var mismatch *sshx.HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Dial with a wrong pinned key: err = %v, want *HostKeyMismatchError", err)
	}
	want := sshx.HostKeyMismatchError{Addr: s.Addr, Expected: ssh.FingerprintSHA256(wrong), Presented: ssh.FingerprintSHA256(s.HostKey)}
	if *mismatch != want {
		t.Errorf("mismatch = %+v, want %+v", *mismatch, want)
	}
	for _, fp := range []string{want.Expected, want.Presented} {
		if !strings.Contains(err.Error(), fp) {
			t.Errorf("error %q lacks fingerprint %s", err, fp)
		}
	}
}

func TestDialRefusesServerWithoutKeyOfPinnedType(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := sshtest.Start(t, sshtest.WithHostKey(ec))
	tg := target(s)
	tg.HostKey = newSigner(t).PublicKey() // ed25519, which the server does not have
	_, err = sshx.Dial(testCtx(t), tg)
	var mismatch *sshx.HostKeyMismatchError
	if !errors.As(err, &mismatch) || !strings.Contains(mismatch.Presented, "no ssh-ed25519 key") {
		t.Fatalf("Dial: err = %v, want *HostKeyMismatchError saying there is no ssh-ed25519 key", err)
	}
}

func TestDialAuthFailure(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	tg := target(s)
	tg.Signer = newSigner(t)
	_, err := sshx.Dial(testCtx(t), tg)
	var auth *sshx.AuthError
	if !errors.As(err, &auth) || auth.User != s.User || auth.Addr != s.Addr {
		t.Fatalf("Dial with an unauthorised key: err = %v, want *AuthError for %q at %q", err, s.User, s.Addr)
	}
}

func TestDialValidatesTarget(t *testing.T) {
	t.Parallel()
	k := newSigner(t)
	tests := []struct {
		name string
		t    sshx.Target
		want string
	}{
		{"empty", sshx.Target{}, "missing its address, user, host key, client key"},
		{"no port", sshx.Target{Addr: "10.0.0.1", User: "root", HostKey: k.PublicKey(), Signer: k}, "want host:port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sshx.Dial(context.Background(), tc.t)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial(%+v) = %v, want error containing %q", tc.t, err, tc.want)
			}
		})
	}
}

func TestDialHonoursContext(t *testing.T) {
	t.Parallel()
	// A listener that accepts and never speaks: the handshake can only end through ctx.
	s := sshtest.Start(t)
	r := sshtest.NewRelay(t, s.Addr)
	r.Freeze()
	tg := target(s)
	tg.Addr = r.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := sshx.Dial(ctx, tg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent server: err = %v, want context.DeadlineExceeded", err)
	}
}

func TestKeepaliveClosesSilentConnection(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	r := sshtest.NewRelay(t, s.Addr)
	tg := target(s)
	tg.Addr = r.Addr
	// Generous for a loaded test machine: a reply may take a second before the link counts as dead.
	tg.KeepAliveInterval = 250 * time.Millisecond
	tg.KeepAliveCountMax = 4
	c, err := sshx.Dial(testCtx(t), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(testCtx(t), "echo started; sleep 30") }()
	time.Sleep(800 * time.Millisecond) // keepalives are answered while the link is up
	if err := c.Err(); err != nil {
		t.Fatalf("connection ended while the link was up: %v", err)
	}
	r.Freeze() // as a VM that kexecs: no reset, just silence
	err = <-errc
	var rerr *sshx.RemoteError
	if !errors.As(err, &rerr) || rerr.Err == nil || !strings.Contains(err.Error(), "no answer to keepalives") {
		t.Fatalf("Run over a frozen link: err = %v, want a *RemoteError about keepalives", err)
	}
	if got := strings.Join(rerr.Tail, "\n"); got != "started" {
		t.Errorf("Tail = %q, want %q", got, "started")
	}
}
