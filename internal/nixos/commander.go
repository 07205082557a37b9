package nixos

import "context"

// Commander runs one command on the target over SSH and returns its standard
// output; a non-zero exit is an error. internal/sshx.Client satisfies it.
type Commander interface {
	Output(ctx context.Context, cmd string) ([]byte, error)
}

// CommanderFunc adapts a function to Commander, for fakes in tests.
type CommanderFunc func(ctx context.Context, cmd string) ([]byte, error)

// Output calls f.
func (f CommanderFunc) Output(ctx context.Context, cmd string) ([]byte, error) { return f(ctx, cmd) }
