package sshx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
	"time"
)

// WaitOptions tune WaitReady. The zero value is fine.
type WaitOptions struct {
	// Timeout bounds the whole wait (the ssh-timeout input); 0 leaves it to ctx.
	Timeout time.Duration
	// MaxBackoff caps the pause after an attempt that reached sshd and failed (auth refused, connection
	// reset during the handshake); default 1s. Pauses grow from a quarter of it, with jitter.
	MaxBackoff time.Duration
	// ProbeInterval caps the pause between TCP connection attempts while the port is closed or
	// silent; default 250ms. Such probes cost one packet, so they are cheap, and they start on
	// schedule even while earlier ones still wait for an answer: a filtered port does not stall them.
	ProbeInterval time.Duration
	// ConnectTimeout bounds one TCP connection attempt; default 10s.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds one SSH handshake; default 15s.
	HandshakeTimeout time.Duration
	// Logf, if set, is told each time the kind of failure changes (not on every attempt).
	Logf func(format string, args ...any)
}

func (o WaitOptions) withDefaults() WaitOptions {
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 250 * time.Millisecond
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 15 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// TimeoutError is returned when the host did not become ready in time.
type TimeoutError struct {
	Addr     string
	Waited   time.Duration
	Attempts int
	// Last is the last failure, nil if no attempt finished.
	Last error
}

func (e *TimeoutError) Error() string {
	last := "no attempt finished (every connection attempt was still waiting for an answer)"
	if e.Last != nil {
		last = e.Last.Error()
	}
	return fmt.Sprintf("ssh on %q not ready after %s (%d attempts); last failure: %s",
		e.Addr, e.Waited.Round(time.Millisecond), e.Attempts, last)
}

// Unwrap lets errors.Is(err, context.DeadlineExceeded) and errors.As on the last failure work.
func (e *TimeoutError) Unwrap() []error {
	if e.Last == nil {
		return []error{context.DeadlineExceeded}
	}
	return []error{context.DeadlineExceeded, e.Last}
}

// maxInFlight bounds the TCP probes waiting for an answer at once.
const maxInFlight = 8

// WaitReady connects to t as soon as it accepts SSH with the pinned host key and the client key, and
// returns the connection. A closed or silent port and a refused key are waited out (the VM may still
// be booting, cloud-init may still be writing keys); a host key mismatch ends the wait at once with a
// *HostKeyMismatchError. When time runs out (opts.Timeout or ctx's deadline) the error is a
// *TimeoutError with the time waited and the last failure.
func WaitReady(ctx context.Context, t Target, opts WaitOptions) (*Client, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	start := time.Now()
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	probeCtx, stopProbes := context.WithCancel(ctx)
	results := make(chan probeResult, maxInFlight)
	inFlight := 0
	defer func() {
		stopProbes()
		go drain(results, inFlight)
	}()

	probe := backoff{next: 25 * time.Millisecond, max: opts.ProbeInterval}
	retry := backoff{next: opts.MaxBackoff / 4, max: opts.MaxBackoff}
	var (
		attempts int
		last     error
		lastKind string
		next     = start
		timer    = time.NewTimer(0)
	)
	defer timer.Stop()
	failed := func(err error, connected bool) {
		last = err
		if k := failureKind(err, connected); k != lastKind {
			lastKind = k
			opts.Logf("ssh %s: %s (attempt %d, %s), still waiting", t.Addr, k, attempts, time.Since(start).Round(time.Millisecond))
		}
	}
	for {
		if now := time.Now(); inFlight < maxInFlight && !now.Before(next) {
			inFlight++
			attempts++
			go dialProbe(probeCtx, t.Addr, opts.ConnectTimeout, results)
			next = now.Add(probe.step())
		}
		wait := time.Until(next)
		if inFlight >= maxInFlight {
			wait = opts.ConnectTimeout
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return nil, waitEnded(ctx, t.Addr, start, attempts, last)
		case <-timer.C:
		case r := <-results:
			inFlight--
			if r.err != nil {
				failed(fmt.Errorf("failed to connect to %q: %w", t.Addr, r.err), false)
				continue
			}
			hctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
			client, err := handshake(hctx, r.conn, t)
			cancel()
			if err == nil {
				return client, nil
			}
			var mismatch *HostKeyMismatchError
			if errors.As(err, &mismatch) {
				return nil, err
			}
			if ctx.Err() != nil {
				return nil, waitEnded(ctx, t.Addr, start, attempts, last)
			}
			failed(err, true)
			next = time.Now().Add(retry.step())
		}
	}
}

func waitEnded(ctx context.Context, addr string, start time.Time, attempts int, last error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &TimeoutError{Addr: addr, Waited: time.Since(start), Attempts: attempts, Last: last}
	}
	if last != nil {
		return fmt.Errorf("stopped waiting for ssh on %q after %s (last failure: %v): %w",
			addr, time.Since(start).Round(time.Millisecond), last, ctx.Err())
	}
	return fmt.Errorf("stopped waiting for ssh on %q after %s: %w", addr, time.Since(start).Round(time.Millisecond), ctx.Err())
}

type probeResult struct {
	conn net.Conn
	err  error
}

func dialProbe(ctx context.Context, addr string, timeout time.Duration, out chan<- probeResult) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	out <- probeResult{conn, err}
}

// drain closes connections from probes that finish after WaitReady returned.
func drain(results <-chan probeResult, n int) {
	for ; n > 0; n-- {
		if r := <-results; r.conn != nil {
			_ = r.conn.Close()
		}
	}
}

// failureKind names a failure for progress logs; connected tells TCP connected.
func failureKind(err error, connected bool) string {
	var auth *AuthError
	var netErr net.Error
	timeout := errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, context.DeadlineExceeded)
	switch {
	case errors.As(err, &auth):
		return "key refused"
	case !connected && isRefused(err):
		return "port closed"
	case !connected && timeout:
		return "no answer (port filtered or host down)"
	case connected && timeout:
		return "no SSH answer in time (TCP connected)"
	default:
		return err.Error()
	}
}

// backoff yields pauses that double up to max, each drawn from [d/2, d) ("equal jitter"), so many
// waiters do not probe in lockstep.
type backoff struct {
	next, max time.Duration
}

func (b *backoff) step() time.Duration {
	d := min(b.next, b.max)
	b.next = min(2*d, b.max)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
