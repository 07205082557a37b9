package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Forwarder is a loopback listener whose connections are tunnelled over an
// established, verified Client to an address as the remote host sees it
// (direct-tcpip, what the proxy subcommand opens too). A local ssh (nix
// copy's) then reaches the VM's sshd without a second outer handshake and
// only through the host whose key was pinned.
type Forwarder struct {
	ln     net.Listener
	client *Client
	target string

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Forward listens on 127.0.0.1 (a free port) and tunnels each connection to
// target ("127.0.0.1:22": the VM's own sshd) over c.
func Forward(c *Client, target string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the tunnel to %q: %w", target, err)
	}
	f := &Forwarder{ln: ln, client: c, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Port is the local port.
func (f *Forwarder) Port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		local, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(local) {
			_ = local.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(local)
			remote, err := f.client.ssh.DialContext(context.Background(), "tcp", f.target)
			if err != nil {
				return // the local ssh sees the connection close and reports it
			}
			if !f.track(remote) {
				_ = remote.Close()
				return
			}
			defer f.untrack(remote)
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(remote, local)
			go pipe(local, remote)
			<-done
			<-done
		}()
	}
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	_ = c.Close()
}

// Close stops listening and ends every tunnelled connection.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	conns := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	err := f.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
