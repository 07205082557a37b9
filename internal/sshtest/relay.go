package sshtest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay is a TCP relay on loopback in front of a server, for network faults that a real sshd
// cannot produce by itself: a link that goes silent (Freeze, as a VM does when it kexecs) or
// one that is cut (Drop).
type Relay struct {
	// Addr is the relay's "127.0.0.1:port"; dial it instead of the server.
	Addr string

	target string
	ln     net.Listener

	mu     sync.Mutex
	conns  []net.Conn
	frozen bool
	thaw   chan struct{}
}

// NewRelay listens on a random loopback port and forwards every connection to target.
// It is closed in t.Cleanup.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshtest: failed to listen for relay: %v", err)
	}
	r := &Relay{Addr: ln.Addr().String(), target: target, ln: ln, thaw: make(chan struct{})}
	go r.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		r.Drop()
		r.Thaw()
	})
	return r
}

func (r *Relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.handle(c)
	}
}

func (r *Relay) handle(c net.Conn) {
	up, err := net.Dial("tcp", r.target)
	if err != nil {
		_ = c.Close()
		return
	}
	r.mu.Lock()
	r.conns = append(r.conns, c, up)
	r.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.pipe(up, c) }()
	go func() { defer wg.Done(); r.pipe(c, up) }()
	wg.Wait()
	_ = c.Close()
	_ = up.Close()
}

// pipe copies src to dst, holding every chunk while the relay is frozen.
func (r *Relay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			frozen, thaw := r.frozen, r.thaw
			r.mu.Unlock()
			if frozen {
				<-thaw
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				_ = dst.Close()
				return
			}
		}
		if err != nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == io.EOF {
				_ = cw.CloseWrite()
				return
			}
			_ = src.Close()
			_ = dst.Close()
			return
		}
	}
}

// Freeze stops forwarding bytes in both directions without closing anything: the peers see
// silence, not a reset.
func (r *Relay) Freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = true
}

// Thaw resumes forwarding (held bytes go through, unless the connections were dropped).
func (r *Relay) Thaw() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frozen {
		r.frozen = false
		close(r.thaw)
		r.thaw = make(chan struct{})
	}
}

// Drop closes every connection the relay carries; new connections are still accepted.
func (r *Relay) Drop() {
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
