// Package sshx connects to the VM over SSH with a pinned host key: dial, wait until ready, run
// remote commands, upload files, and the verifying ProxyCommand that nixos-anywhere's own ssh goes
// through.
//
// No connection made here trusts a host key on first use: every one compares the key the server
// presents with the key the deployment generated and handed to the VM (see "Host keys" in
// DESIGN.md), and a mismatch is a *HostKeyMismatchError that carries both fingerprints.
package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for Target's keepalive fields, the same spirit as ssh's ServerAliveInterval and
// ServerAliveCountMax: a silent link (a VM that kexecs or hangs) is noticed within about 45 s.
const (
	DefaultKeepAliveInterval = 15 * time.Second
	DefaultKeepAliveCountMax = 3
)

// Target is one SSH endpoint with its pinned host key and the key to log in with.
type Target struct {
	// Addr is "host:port".
	Addr string
	// User is the account to log in to, "root" for the VM.
	User string
	// HostKey is the only host key accepted.
	HostKey ssh.PublicKey
	// Signer authenticates the client (the per-deployment deploy key).
	Signer ssh.Signer
	// KeepAliveInterval is how often an idle connection is probed; 0 means
	// DefaultKeepAliveInterval, negative disables keepalives.
	KeepAliveInterval time.Duration
	// KeepAliveCountMax is how many intervals a probe may stay unanswered before the connection is
	// closed; 0 means DefaultKeepAliveCountMax.
	KeepAliveCountMax int
}

func (t Target) validate() error {
	var missing []string
	if t.Addr == "" {
		missing = append(missing, "address")
	}
	if t.User == "" {
		missing = append(missing, "user")
	}
	if t.HostKey == nil {
		missing = append(missing, "host key")
	}
	if t.Signer == nil {
		missing = append(missing, "client key")
	}
	if len(missing) > 0 {
		return fmt.Errorf("ssh target %q is missing its %s", t.Addr, strings.Join(missing, ", "))
	}
	if _, _, err := net.SplitHostPort(t.Addr); err != nil {
		return fmt.Errorf("ssh target address %q: want host:port: %w", t.Addr, err)
	}
	return nil
}

// HostKeyMismatchError means the server did not present the pinned host key. It is either the wrong
// address or someone in the middle; waiting does not fix it.
type HostKeyMismatchError struct {
	Addr string
	// Expected is the pinned key's SHA256 fingerprint.
	Expected string
	// Presented is the server's key's SHA256 fingerprint, or a description when the server has no
	// key of the pinned type at all.
	Presented string
}

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch for %q: expected %s, server presented %s; "+
		"either the address is wrong or someone is intercepting the connection, do not connect until you know which",
		e.Addr, e.Expected, e.Presented)
}

// AuthError means the server refused the client key. On a fresh VM that is normal for a while:
// cloud-init may not have authorised the deploy key yet.
type AuthError struct {
	Addr string
	User string
	Err  error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("ssh server %q refused the key for user %q (is the deploy key authorised? cloud-init may still be writing it): %v",
		e.Addr, e.User, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// Fingerprint returns k's SHA256 fingerprint as ssh-keygen -l prints it ("SHA256:...").
func Fingerprint(k ssh.PublicKey) string {
	if k == nil {
		return "(none)"
	}
	return ssh.FingerprintSHA256(k)
}

// Client is an SSH connection to a Target. Every Run, Output and Upload opens a new session on it;
// none pays for a new handshake.
type Client struct {
	ssh  *ssh.Client
	addr string

	done    chan struct{}
	mu      sync.Mutex
	lostErr error // why the connection ended, once it has
	closed  bool
}

// Dial connects to t, verifies its host key and authenticates. ctx bounds the connection and the
// handshake; once Dial returns, ctx no longer matters.
func Dial(ctx context.Context, t Target) (*Client, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to %q: %w", t.Addr, err)
	}
	return handshake(ctx, conn, t)
}

// handshake runs SSH over an established TCP connection; it closes conn on failure.
func handshake(ctx context.Context, conn net.Conn, t Target) (*Client, error) {
	dl, hasDeadline := ctx.Deadline()
	if hasDeadline {
		_ = conn.SetDeadline(dl)
	}
	// Abort a handshake in progress when ctx ends: a past deadline fails every pending read.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(t.Signer)},
		HostKeyCallback:   pinnedHostKey(t.Addr, t.HostKey),
		HostKeyAlgorithms: hostKeyAlgorithms(t.HostKey),
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, t.Addr, cfg)
	if !stop() {
		if err == nil {
			_ = c.Close()
		}
		_ = conn.Close()
		return nil, fmt.Errorf("failed to open ssh connection to %q: %w", t.Addr, ctx.Err())
	}
	if err != nil {
		_ = conn.Close()
		if hasDeadline && !time.Now().Before(dl) {
			// The connection's deadline (ctx's) fired just before ctx itself did.
			return nil, fmt.Errorf("failed to open ssh connection to %q: %w", t.Addr, context.DeadlineExceeded)
		}
		return nil, classifyHandshakeError(t, err)
	}
	_ = conn.SetDeadline(time.Time{})
	client := &Client{ssh: ssh.NewClient(c, chans, reqs), addr: t.Addr, done: make(chan struct{})}
	go client.watch()
	interval, count := t.KeepAliveInterval, t.KeepAliveCountMax
	if interval == 0 {
		interval = DefaultKeepAliveInterval
	}
	if count <= 0 {
		count = DefaultKeepAliveCountMax
	}
	if interval > 0 {
		go client.keepalive(interval, count)
	}
	return client, nil
}

func pinnedHostKey(addr string, want ssh.PublicKey) ssh.HostKeyCallback {
	wantBytes := want.Marshal()
	return func(_ string, _ net.Addr, got ssh.PublicKey) error {
		if bytes.Equal(got.Marshal(), wantBytes) {
			return nil
		}
		return &HostKeyMismatchError{Addr: addr, Expected: Fingerprint(want), Presented: Fingerprint(got)}
	}
}

// hostKeyAlgorithms asks the server for the pinned key's type. Without it a server with several host
// keys (Ubuntu has rsa, ecdsa and ed25519) may present one we did not pin.
func hostKeyAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

func classifyHandshakeError(t Target, err error) error {
	var mismatch *HostKeyMismatchError
	if errors.As(err, &mismatch) {
		return mismatch
	}
	var neg *ssh.AlgorithmNegotiationError
	if errors.As(err, &neg) && neg.What == "host key" {
		// The server has no key of the pinned type, so it cannot have the pinned key.
		return &HostKeyMismatchError{
			Addr:      t.Addr,
			Expected:  Fingerprint(t.HostKey),
			Presented: fmt.Sprintf("no %s key (it offers %s)", t.HostKey.Type(), strings.Join(neg.RequestedAlgorithms, ", ")),
		}
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return &AuthError{Addr: t.Addr, User: t.User, Err: err}
	}
	return fmt.Errorf("failed to open ssh connection to %q: %w", t.Addr, err)
}

// watch records why the connection ended.
func (c *Client) watch() {
	err := c.ssh.Wait()
	c.mu.Lock()
	if c.lostErr == nil {
		if c.closed {
			c.lostErr = errors.New("connection closed")
		} else {
			c.lostErr = fmt.Errorf("connection to %q lost: %w", c.addr, errOrEOF(err))
		}
	}
	c.mu.Unlock()
	close(c.done)
}

func errOrEOF(err error) error {
	if err == nil {
		return errors.New("closed by the server")
	}
	return err
}

// keepalive sends keepalive@openssh.com requests and closes the connection when one stays
// unanswered for interval*count; every session on it then fails instead of hanging.
func (c *Client) keepalive(interval time.Duration, count int) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ticker.C:
		}
		replied := make(chan struct{})
		go func() {
			// OpenSSH answers with a failure message; any answer proves the link is alive.
			_, _, _ = c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			close(replied)
		}()
		limit := interval * time.Duration(count)
		timer := time.NewTimer(limit)
		select {
		case <-replied:
			timer.Stop()
		case <-c.done:
			timer.Stop()
			return
		case <-timer.C:
			c.mu.Lock()
			if c.lostErr == nil {
				c.lostErr = fmt.Errorf("connection to %q lost: no answer to keepalives for %s", c.addr, limit)
			}
			c.mu.Unlock()
			_ = c.ssh.Close()
			return
		}
	}
}

// Err returns why the connection ended, or nil while it is up.
func (c *Client) Err() error {
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lostErr
	default:
		return nil
	}
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Addr is the address the client dialled.
func (c *Client) Addr() string { return c.addr }

// SSH returns the underlying connection, for what this package does not wrap (port forwarding).
func (c *Client) SSH() *ssh.Client { return c.ssh }

// Close closes the connection and every session on it.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	err := c.ssh.Close()
	if err != nil && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
