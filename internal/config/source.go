package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// ActionLookuper reads inputs the way GitHub passes them to a container
// action: INPUT_<NAME> upper-cased with hyphens kept (INPUT_VM-NAME), which
// go-envconfig cannot name itself (it rejects "-" in keys), so the key VM_NAME
// is mapped here. An empty value counts as unset: GitHub sets every declared
// input, given or not. Inputs with a fallback read that variable next.
func ActionLookuper(getenv func(string) string) envconfig.Lookuper {
	fallbacks := fallbackNames()
	return envconfig.LookuperFunc(func(key string) (string, bool) {
		if v := getenv("INPUT_" + strings.ReplaceAll(key, "_", "-")); v != "" {
			return v, true
		}
		if fb := fallbacks[key]; fb != "" {
			if v := getenv(fb); v != "" {
				return v, true
			}
		}
		return "", false
	})
}

// flagLookuper reads inputs given as command-line flags, keyed by input name,
// with the same fallbacks as ActionLookuper.
func flagLookuper(values map[string]string, getenv func(string) string) envconfig.Lookuper {
	fallbacks := fallbackNames()
	return envconfig.LookuperFunc(func(key string) (string, bool) {
		if v := values[strings.ToLower(strings.ReplaceAll(key, "_", "-"))]; v != "" {
			return v, true
		}
		if fb := fallbacks[key]; fb != "" {
			if v := getenv(fb); v != "" {
				return v, true
			}
		}
		return "", false
	})
}

func fallbackNames() map[string]string {
	m := map[string]string{}
	for _, d := range definitions() {
		if d.Fallback != "" {
			m[d.Env] = d.Fallback
		}
	}
	return m
}

// Read fills Inputs from a lookuper, applying the static defaults.
func Read(ctx context.Context, l envconfig.Lookuper) (Inputs, error) {
	var in Inputs
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &in, Lookuper: l}); err != nil {
		return Inputs{}, fmt.Errorf("failed to read inputs: %w", err)
	}
	return in, nil
}

// ReadAction reads the inputs of a GitHub Actions step.
func ReadAction(ctx context.Context, getenv func(string) string) (Inputs, error) {
	return Read(ctx, ActionLookuper(getenv))
}

// ErrHelp is returned by ReadFlags when -h or --help was given.
var ErrHelp = flag.ErrHelp

// ReadFlags reads the inputs from a command line: an optional command word
// first (plan, deploy, install, switch, destroy), then --<input> VALUE flags, with the short
// forms the original scripts had (-n vm-name, -g resource-group, ...).
// Boolean inputs may be given without a value. Usage goes to out.
func ReadFlags(ctx context.Context, args []string, getenv func(string) string, out io.Writer) (Inputs, error) {
	values := map[string]string{}
	fs := flag.NewFlagSet("nixos-cloud-deploy", flag.ContinueOnError)
	fs.SetOutput(out)
	for _, d := range definitions() {
		v := &flagValue{name: d.Name, values: values, isBool: d.Default == "false" || d.Default == "true"}
		usage := d.Description
		if d.Default != "" {
			usage += fmt.Sprintf(" (default %q)", d.Default)
		}
		fs.Var(v, d.Name, usage)
		if d.Short != "" {
			fs.Var(v, d.Short, "short for --"+d.Name)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: nixos-cloud-deploy [plan|deploy|install|switch|destroy] [flags]\n       nixos-cloud-deploy proxy [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		values["command"] = args[0]
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return Inputs{}, err
	}
	if fs.NArg() > 0 {
		return Inputs{}, &FieldError{Input: "command line", Value: fs.Arg(0), Rule: "unexpected argument; flags come after the command, for example: plan --vm-name my-vm"}
	}
	return Read(ctx, flagLookuper(values, getenv))
}

type flagValue struct {
	name   string
	values map[string]string
	isBool bool
}

func (f *flagValue) String() string { return "" }
func (f *flagValue) Set(s string) error {
	if _, dup := f.values[f.name]; dup {
		return errors.New("given twice")
	}
	f.values[f.name] = s
	return nil
}
func (f *flagValue) IsBoolFlag() bool { return f.isBool }
