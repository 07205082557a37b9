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

// Identity is what a server shows before authentication.
type Identity struct {
	// Version is the server's identification string ("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5").
	Version string
	// HostKeyVerified is true when the server proved it holds the pinned host key.
	HostKeyVerified bool
}

// Distribution guesses the distribution from the identification string:
// Debian and Ubuntu patch theirs ("OpenSSH_9.6p1 Ubuntu-3ubuntu13"), NixOS
// ships OpenSSH as released ("OpenSSH_9.9"). It returns "ubuntu", "debian",
// or "" when the string carries no distribution.
func (id Identity) Distribution() string {
	v := strings.ToLower(id.Version)
	switch {
	case strings.Contains(v, "ubuntu"):
		return "ubuntu"
	case strings.Contains(v, "debian"):
		return "debian"
	}
	return ""
}

// Identify connects to addr, verifies that the server holds hostKey (the key
// exchange proves it) and returns its identification, without logging in:
// it offers no credentials, so it works when our key is not authorised.
// A server with another key gives a *HostKeyMismatchError.
func Identify(ctx context.Context, addr string, hostKey ssh.PublicKey) (Identity, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Identity{}, fmt.Errorf("failed to connect to %q: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	rec := &versionRecorder{Conn: conn}
	var verified bool
	pinned := pinnedHostKey(addr, hostKey)
	cfg := &ssh.ClientConfig{
		User: "root",
		Auth: nil, // "none" only: we want the host key and the version, not a session
		HostKeyCallback: func(h string, r net.Addr, k ssh.PublicKey) error {
			if err := pinned(h, r, k); err != nil {
				return err
			}
			verified = true
			return nil
		},
		HostKeyAlgorithms: hostKeyAlgorithms(hostKey),
	}
	c, _, _, err := ssh.NewClientConn(rec, addr, cfg)
	if err == nil {
		_ = c.Close() // a server that lets anyone in; still, it proved the key
	}
	id := Identity{Version: rec.version(), HostKeyVerified: verified}
	var mm *HostKeyMismatchError
	if err != nil && errors.As(classifyHandshakeError(Target{Addr: addr, HostKey: hostKey}, err), &mm) {
		return id, mm // another key, or no key of the pinned type at all
	}
	if !verified {
		if err == nil {
			err = errors.New("no host key was presented")
		}
		return id, fmt.Errorf("failed to identify ssh server %q: %w", addr, err)
	}
	return id, nil
}

// versionRecorder keeps the first line the server sends: its
// identification string (RFC 4253 4.2).
type versionRecorder struct {
	net.Conn
	mu   sync.Mutex
	buf  []byte
	done bool
}

func (r *versionRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	if !r.done && n > 0 {
		r.buf = append(r.buf, p[:n]...)
		if bytes.Contains(r.buf, []byte("\n")) || len(r.buf) > 1024 {
			r.done = true
		}
	}
	r.mu.Unlock()
	return n, err
}

func (r *versionRecorder) version() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range strings.Split(string(r.buf), "\n") {
		if strings.HasPrefix(line, "SSH-") {
			return strings.TrimRight(line, "\r")
		}
	}
	return ""
}
