package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Dialer opens a new connection to the machine with the pinned host key,
// waiting for it as long as ctx allows; close ends it.
type Dialer func(ctx context.Context) (r Remote, close func() error, err error)

// Outcome is how a switch ended.
type Outcome struct {
	Confirmed  bool
	RolledBack bool
	// Generation is what the machine's profile says now, Current its
	// running system.
	Generation int
	Current    string
	// Reason is why the machine rolled back.
	Reason string
	// NotDefault: the new system runs but is not the boot default (making
	// it a generation failed).
	NotDefault bool
	// Connections counts the connections that reached the machine.
	Connections int
}

// ConfirmOptions tune AwaitConfirmation.
type ConfirmOptions struct {
	Sudo bool
	// Poll is the pause between two questions on one connection while the
	// activation runs or the watchdog rolls back; default 1s.
	Poll time.Duration
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// RolledBackError is a switch the machine undid by itself.
type RolledBackError struct {
	Generation int
	Reason     string
}

func (e *RolledBackError) Error() string {
	return fmt.Sprintf("rolled back to generation %d: %s", e.Generation, e.Reason)
}

// AwaitConfirmation confirms the switch from generation prev to the system
// path over a new connection, and keeps trying (new connections, as the watchdog may
// be restoring SSH) until ctx ends. The switch either is confirmed, or the
// machine rolled back: then err is a *RolledBackError and the Outcome
// says what the machine runs now.
func AwaitConfirmation(ctx context.Context, dial Dialer, prev int, path string, o ConfirmOptions) (Outcome, error) {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	var out Outcome
	var said string
	say := func(format string, args ...any) {
		if s := fmt.Sprintf(format, args...); s != said {
			said = s
			o.Logf("%s", s)
		}
	}
	for {
		r, closeConn, err := dial(ctx)
		if err != nil {
			return out, err
		}
		out.Connections++
		m := Machine{Remote: r, Sudo: o.Sudo}
		for {
			a, err := m.Confirm(ctx, prev, path)
			if err != nil {
				_ = closeConn()
				if ctx.Err() != nil {
					return out, err
				}
				say("lost the connection while confirming (%v); connecting again", err)
				select {
				case <-ctx.Done():
					return out, context.Cause(ctx)
				case <-time.After(o.Poll): // not a handshake a moment
				}
				break
			}
			out.Generation, out.Current = a.Generation, a.Current
			switch {
			case a.Confirmed, a.State.Phase == "confirmed" && a.State.Path == path:
				// The second form: our confirmation landed but its answer
				// was lost with the connection.
				_ = closeConn()
				out.Confirmed, out.NotDefault = true, a.NotDefault
				return out, nil
			case a.State.Phase == "rolled-back" && a.State.Previous == prev:
				_ = closeConn()
				out.RolledBack, out.Reason = true, a.State.Reason
				return out, &RolledBackError{Generation: a.State.Previous, Reason: a.State.Reason}
			case a.Activating:
				say("the activation is still running on the machine")
			case a.Failed:
				say("the activation failed (switch-to-configuration exited with status %d); the machine rolls back to generation %d", a.ExitStatus, prev)
			case a.State.Phase == "rolling-back":
				say("the machine is rolling back to generation %d: %s", a.State.Previous, a.State.Reason)
			case a.State.Phase == "armed" && a.State.Previous == prev && a.State.Path == path:
				say("waiting for the machine")
			default:
				_ = closeConn()
				return out, &UnknownStateError{State: a.State, Previous: prev, Path: path, Generation: a.Generation, Current: a.Current}
			}
			select {
			case <-ctx.Done():
				_ = closeConn()
				return out, context.Cause(ctx)
			case <-time.After(o.Poll):
			}
		}
	}
}

func stateLine(s State) string {
	switch s.Phase {
	case "":
		return ""
	case "armed":
		return fmt.Sprintf("armed %d %s", s.Previous, s.Path)
	case "confirmed":
		return fmt.Sprintf("confirmed %d %s", s.Generation, s.Path)
	}
	return fmt.Sprintf("%s %d %s", s.Phase, s.Previous, s.Reason)
}

// UnknownStateError: the machine's switch state is not this run's switch:
// another switch ran, or a reboot forgot this one (the machine then boots
// the generation its profile names, the previous one).
type UnknownStateError struct {
	State      State
	Previous   int
	Path       string
	Generation int
	Current    string
}

func (e *UnknownStateError) Error() string {
	return fmt.Sprintf("the machine's switch state is %q, not the switch from generation %d to %s this run made: another switch, or a reboot that forgot it (it runs generation %d, %s)",
		stateLine(e.State), e.Previous, e.Path, e.Generation, e.Current)
}

// IsRolledBack reports whether err says the machine rolled back.
func IsRolledBack(err error) (*RolledBackError, bool) {
	var rb *RolledBackError
	ok := errors.As(err, &rb)
	return rb, ok
}
