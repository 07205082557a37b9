// Package chatops parses issue comments into bot commands.
//
// A comment is one of three things (Result): nothing for us (Ignore), a
// message to answer without doing anything (Reply), or a validated Command.
// Only the first line of a comment is read, so a command can be followed by
// an explanation. Values are checked with the action's own input rules
// (internal/config), so the bot refuses what the action would refuse, before
// a workflow run is spent on it.
package chatops

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
)

// Kind is what a command does. The zero value is Unknown: a Command that was
// never filled in must not deploy anything (atlantis PR 6090 fixed exactly
// that bug there).
type Kind int

const (
	Unknown Kind = iota
	Deploy
	Destroy
	Status
	Help
	Switch
)

var kindNames = map[Kind]string{Deploy: "deploy", Destroy: "destroy", Status: "status", Help: "help", Switch: "switch"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "unknown"
}

// Result is the outcome of Parse: Ignore, Reply or Command.
type Result interface{ result() }

// Ignore means the comment is not addressed to the bot.
type Ignore struct{}

// Reply is an answer to post without doing anything else (usage errors).
type Reply struct{ Text string }

// Command is a validated command. Location, Size, Image and Channel hold the
// action's defaults when no flag was given, so the dispatched run and the
// status comment agree on them.
type Command struct {
	Kind     Kind
	VM       string
	Location string
	Size     string
	Image    string
	Channel  string
	DryRun   bool
	// Ref is /switch's --ref: a branch, tag or commit of the workflow's
	// config-repo; "" is its default branch.
	Ref string
}

func (Ignore) result()  {}
func (Reply) result()   {}
func (Command) result() {}

// Usage is the help text, in Markdown.
const Usage = "Commands:\n" +
	"- `/deploy <vm> [--location L] [--size S] [--image URN] [--channel C] [--dry-run]`: install NixOS on the Azure VM `<vm>` (created when missing); `--dry-run` only plans\n" +
	"- `/switch <vm> [--ref REF] [--dry-run]`: move the running VM `<vm>` to a new revision of its configuration (config-repo at `REF`, default its default branch); the VM rolls back by itself unless the switch is confirmed; `--dry-run` shows the closure diff and activates nothing\n" +
	"- `/destroy <vm>`: delete the VM's resource group (only when it was created by nixos-cloud-deploy)\n" +
	"- `/status [vm]`: the latest deploy run for `<vm>`, or for every VM\n" +
	"- `/help`: this text\n\n" +
	"Only the first line of a comment is read. Quote values with spaces: `--image 'a:b:c:latest'`."

var commands = []string{"deploy", "switch", "destroy", "status", "help"}

// flag describes one --flag of /deploy.
type flag struct {
	name   string // long name without dashes
	short  string // one-letter alias, as the action's command line has
	isBool bool
	set    func(*Command, string)
	check  func(string) error
}

var deployFlags = []flag{
	{name: "location", short: "l", set: func(c *Command, v string) { c.Location = v }, check: config.CheckLocation},
	{name: "size", short: "s", set: func(c *Command, v string) { c.Size = v }, check: config.CheckSize},
	{name: "image", short: "i", set: func(c *Command, v string) { c.Image = v }, check: config.CheckImage},
	{name: "channel", set: func(c *Command, v string) { c.Channel = v }, check: config.CheckChannel},
	{name: "dry-run", isBool: true, set: func(c *Command, v string) { c.DryRun = v == "true" }},
}

var switchFlags = []flag{
	{name: "ref", set: func(c *Command, v string) { c.Ref = v }, check: config.CheckConfigRef},
	{name: "dry-run", isBool: true, set: func(c *Command, v string) { c.DryRun = v == "true" }},
}

// Defaults returns a Command of the given kind carrying the action's default
// location, size, image and channel (from internal/config, the one place they
// are defined).
func Defaults(k Kind) Command {
	c := defaults()
	c.Kind = k
	return c
}

// defaults reads config.Definitions (reflection) once.
var defaults = sync.OnceValue(func() Command {
	var c Command
	for _, in := range config.Definitions() {
		switch in.Name {
		case "location":
			c.Location = in.Default
		case "size":
			c.Size = in.Default
		case "image":
			c.Image = in.Default
		case "nix-channel":
			c.Channel = in.Default
		}
	}
	return c
})

// Parse reads the first line of a comment. It never panics (FuzzParse).
func Parse(body string) Result {
	line, _, _ := strings.Cut(body, "\n")
	line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	if !strings.HasPrefix(line, "/") {
		return Ignore{}
	}
	words, err := split(line)
	if err != nil {
		return replyf("%v.", err)
	}
	if len(words) == 0 {
		return Ignore{}
	}
	name, args := strings.TrimPrefix(words[0], "/"), words[1:]
	switch name {
	case "deploy":
		return parseFlags(Deploy, deployFlags, args)
	case "switch":
		return parseFlags(Switch, switchFlags, args)
	case "destroy":
		return parseVMOnly(Destroy, args, true)
	case "status":
		return parseVMOnly(Status, args, false)
	case "help":
		if len(args) > 0 {
			return replyf("`/help` takes no arguments.")
		}
		return Command{Kind: Help}
	}
	// Other bots share the slash namespace (/assign, /lgtm, /cc): a command
	// that is nowhere near ours is not for us. A near miss is.
	if best := config.Closest(name, commands); best != "" {
		return replyf("Unknown command %s; did you mean `/%s`?", code("/"+name), best)
	}
	return Ignore{}
}

func replyf(format string, args ...any) Reply {
	return Reply{Text: fmt.Sprintf(format, args...) + "\n\n" + Usage}
}

func parseVMOnly(k Kind, args []string, required bool) Result {
	c := Defaults(k)
	for _, a := range args {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return replyf("`/%s` takes no flags (got %s).", k, code(a))
		}
	}
	switch {
	case len(args) > 1:
		return replyf("`/%s` takes one VM name, got %d arguments.", k, len(args))
	case len(args) == 0 && required:
		return replyf("`/%s` needs a VM name, for example `/%s az-nixos`.", k, k)
	case len(args) == 1:
		if err := config.CheckVMName(args[0]); err != nil {
			return invalid(err)
		}
		c.VM = args[0]
	}
	return c
}

// parseFlags reads "<vm> [--flag value|--flag=value|--bool]..." for a
// command with flags.
func parseFlags(k Kind, flags []flag, args []string) Result {
	c := Defaults(k)
	var positional []string
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, ok := lookupFlag(flags, name)
		if !ok {
			return replyf("Unknown flag %s for `/%s`%s.", code(a), k, flagHint(flags, name))
		}
		if seen[f.name] {
			return replyf("Flag `--%s` is given twice.", f.name)
		}
		seen[f.name] = true
		switch {
		case f.isBool && !hasValue:
			value = "true"
		case f.isBool:
			value = strings.ToLower(value)
			if value != "true" && value != "false" {
				return replyf("`--%s` takes no value (or `=true`/`=false`), got %s.", f.name, code(value))
			}
		case !hasValue:
			if i+1 >= len(args) {
				return replyf("Flag `--%s` needs a value.", f.name)
			}
			i++
			value = args[i]
		}
		if f.check != nil {
			if err := f.check(value); err != nil {
				return invalid(err)
			}
		}
		f.set(&c, value)
	}
	switch len(positional) {
	case 0:
		return replyf("`/%s` needs a VM name, for example `/%s az-nixos`.", k, k)
	case 1:
	default:
		return replyf("`/%s` takes one VM name, got %d: %s.", k, len(positional), quoteAll(positional))
	}
	if err := config.CheckVMName(positional[0]); err != nil {
		return invalid(err)
	}
	c.VM = positional[0]
	return c
}

func lookupFlag(flags []flag, name string) (flag, bool) {
	for _, f := range flags {
		if name == f.name || (f.short != "" && name == f.short) {
			return f, true
		}
	}
	return flag{}, false
}

func flagHint(flags []flag, name string) string {
	names := make([]string, len(flags))
	for i, f := range flags {
		names[i] = f.name
	}
	if best := config.Closest(name, names); best != "" {
		return fmt.Sprintf("; did you mean `--%s`?", best)
	}
	return ""
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = code(s)
	}
	return strings.Join(q, ", ")
}

// code renders text from the comment as a Markdown code span that the text
// cannot end, so nothing in it is markup: no @mention (GitHub notifies
// mentioned users and teams, but not inside code spans), no HTML, no link.
// CommonMark: a code span ends at the next backtick string of the same
// length, so the fence is one backtick longer than the longest run inside;
// content that starts or ends with a backtick (or is blank) gets a space on
// both sides, which the renderer strips again.
func code(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || strings.TrimSpace(s) == "" {
		s = " " + s + " "
	}
	return fence + s + fence
}

// invalid replies to a value the action's rules refuse: the input and the
// rule are ours, the value is the commenter's and goes in a code span.
func invalid(err error) Reply {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return replyf("%v.", err)
	}
	if fe.Value == "" || fe.Secret {
		return replyf("%s: %s.", fe.Input, fe.Rule)
	}
	return replyf("%s %s: %s.", fe.Input, code(fe.Value), fe.Rule)
}

// split breaks a line into words the way a POSIX shell would for quoting:
// 'single quotes' keep everything, "double quotes" allow \" and \\, and a
// backslash outside quotes escapes the next character. No expansion of any
// kind happens.
func split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	const (
		none = iota
		single
		double
	)
	quote := none
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch quote {
		case single:
			if r == '\'' {
				quote = none
			} else {
				cur.WriteRune(r)
			}
			continue
		case double:
			switch {
			case r == '"':
				quote = none
			case r == '\\' && i+1 < len(rs) && (rs[i+1] == '"' || rs[i+1] == '\\'):
				i++
				cur.WriteRune(rs[i])
			default:
				cur.WriteRune(r)
			}
			continue
		}
		switch {
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '\'':
			quote, inWord = single, true
		case r == '"':
			quote, inWord = double, true
		case r == '\\':
			if i+1 >= len(rs) {
				return nil, errors.New("the line ends with a lone backslash")
			}
			i++
			cur.WriteRune(rs[i])
			inWord = true
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != none {
		return nil, errors.New("a quote is not closed")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
