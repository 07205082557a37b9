// Package reporttest models how the GitHub Actions runner reads a step's
// output, so tests can tell which lines of a log would act as workflow
// commands. Every rule here is the runner's, from actions/runner (the file
// is named at each rule); a model that acts on less than the runner does
// would hide an injection, so it errs on the side of parsing.
package reporttest

import (
	"strings"
)

// Command is one workflow command the runner would process.
type Command struct {
	Name       string // lower-case
	Properties map[string]string
	Data       string
	Line       string // the output line it came from
}

// registered are the commands the runner knows: one IActionCommandExtension
// each (src/Runner.Common/ExtensionManager.cs, the classes in
// src/Runner.Worker/ActionCommandManager.cs), plus "stop-commands", which the
// manager itself handles. Names compare case-insensitively (the HashSet uses
// StringComparer.OrdinalIgnoreCase).
var registered = map[string]bool{
	"set-env": true, "set-output": true, "save-state": true, "add-mask": true, "add-path": true,
	"add-matcher": true, "remove-matcher": true, "warning": true, "error": true, "notice": true,
	"debug": true, "group": true, "endgroup": true, "echo": true, "stop-commands": true,
}

// Lines splits output the way the runner reads a process's output:
// StreamReader.ReadLine (src/Runner.Sdk/ProcessInvoker.cs), which ends a line
// at "\n", "\r" or "\r\n".
func Lines(output string) []string {
	var lines []string
	for len(output) > 0 {
		i := strings.IndexAny(output, "\r\n")
		if i < 0 {
			lines = append(lines, output)
			break
		}
		lines = append(lines, output[:i])
		if output[i] == '\r' && i+1 < len(output) && output[i+1] == '\n' {
			i++
		}
		output = output[i+1:]
	}
	return lines
}

// Commands returns the workflow commands the runner would process in a
// step's output, in order, including "stop-commands" and the resuming token
// (Name is the token then). Lines it does not process are plain log text.
func Commands(output string) []Command {
	var (
		out       []Command
		stopToken string // non-empty while processing is stopped
	)
	for _, line := range Lines(output) {
		// OutputManager.OnDataReceived looks only at lines holding "##[" or "::".
		if !strings.Contains(line, "##[") && !strings.Contains(line, "::") {
			continue
		}
		known := func(name string) bool {
			n := strings.ToLower(name)
			return registered[n] || stopToken != "" && n == strings.ToLower(stopToken)
		}
		c, ok := parseV2(line, known)
		if !ok {
			c, ok = parseLegacy(line, known)
		}
		if !ok {
			continue
		}
		c.Line = line
		// ActionCommandManager.TryProcessCommand: while stopped, only the
		// token resumes; everything else is text.
		if stopToken != "" {
			if c.Name == strings.ToLower(stopToken) {
				stopToken = ""
				out = append(out, c)
			}
			continue
		}
		if c.Name == "stop-commands" {
			// ValidateStopToken: an empty token, a command's name or
			// "pause-logging" throws (the step fails) unless
			// ACTIONS_ALLOW_UNSECURE_STOP_COMMANDS is set; model the refusal
			// as "not stopped".
			if c.Data == "" || registered[strings.ToLower(c.Data)] || strings.EqualFold(c.Data, "pause-logging") {
				out = append(out, c)
				continue
			}
			stopToken = c.Data
		}
		out = append(out, c)
	}
	return out
}

// parseV2 is ActionCommand.TryParseV2 (src/Runner.Common/ActionCommand.cs):
// after leading white space, "::name[ k=v,k=v]::data".
func parseV2(line string, known func(string) bool) (Command, bool) {
	msg := strings.TrimLeft(line, " \t\v\f\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
	if !strings.HasPrefix(msg, "::") {
		return Command{}, false
	}
	end := strings.Index(msg[2:], "::")
	if end < 0 {
		return Command{}, false
	}
	info := msg[2 : 2+end]
	name, props, hasProps := strings.Cut(info, " ")
	if !known(name) {
		return Command{}, false
	}
	c := Command{Name: strings.ToLower(name), Properties: map[string]string{}}
	if hasProps {
		for _, p := range strings.Split(strings.TrimSpace(props), ",") {
			if k, v, ok := strings.Cut(p, "="); ok && k != "" && v != "" {
				c.Properties[strings.ToLower(k)] = unescape(v, propertyEscapes)
			}
		}
	}
	c.Data = unescape(msg[2+end+2:], dataEscapes)
	return c, true
}

// parseLegacy is ActionCommand.TryParse: "##[name k=v;k=v]data" anywhere in
// the line.
func parseLegacy(line string, known func(string) bool) (Command, bool) {
	i := strings.Index(line, "##[")
	if i < 0 {
		return Command{}, false
	}
	rb := strings.IndexByte(line[i:], ']')
	if rb < 0 {
		return Command{}, false
	}
	info := line[i+3 : i+rb]
	name, props, hasProps := strings.Cut(info, " ")
	if !known(name) {
		return Command{}, false
	}
	c := Command{Name: strings.ToLower(name), Properties: map[string]string{}}
	if hasProps {
		for _, p := range strings.Split(props, ";") {
			if k, v, ok := strings.Cut(p, "="); ok && k != "" && v != "" {
				c.Properties[strings.ToLower(k)] = unescape(v, legacyEscapes)
			}
		}
	}
	c.Data = unescape(line[i+rb+1:], legacyEscapes)
	return c, true
}

// The runner's escape mappings, applied in this order when unescaping.
var (
	dataEscapes     = [][2]string{{"\r", "%0D"}, {"\n", "%0A"}, {"%", "%25"}}
	propertyEscapes = [][2]string{{"\r", "%0D"}, {"\n", "%0A"}, {":", "%3A"}, {",", "%2C"}, {"%", "%25"}}
	legacyEscapes   = [][2]string{{";", "%3B"}, {"\r", "%0D"}, {"\n", "%0A"}, {"]", "%5D"}, {"%", "%25"}}
)

func unescape(s string, mappings [][2]string) string {
	for _, m := range mappings {
		s = strings.ReplaceAll(s, m[1], m[0])
	}
	return s
}

// Annotations returns the processed error, warning and notice commands.
func Annotations(output string) []Command {
	var out []Command
	for _, c := range Commands(output) {
		switch c.Name {
		case "error", "warning", "notice":
			out = append(out, c)
		}
	}
	return out
}
