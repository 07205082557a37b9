package chatops

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func deploy(vm string, mod func(*Command)) Command {
	c := Defaults(Deploy)
	c.VM = vm
	if mod != nil {
		mod(&c)
	}
	return c
}

func TestParseCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want Result
	}{
		{"plain comment", "LGTM, thanks!", Ignore{}},
		{"empty", "", Ignore{}},
		{"slash only", "/", Ignore{}},
		{"other bot's command", "/assign @octocat", Ignore{}},
		{"command not on the first line", "please run\n/deploy az-nixos", Ignore{}},
		{"deploy with defaults", "/deploy az-nixos", deploy("az-nixos", nil)},
		{"deploy with trailing text lines", "/deploy az-nixos\r\nbecause the old one broke", deploy("az-nixos", nil)},
		{"leading blanks", "   /deploy az-nixos  ", deploy("az-nixos", nil)},
		{"all flags", "/deploy web-1 --location westeurope --size=Standard_D4s_v5 -i 'Canonical:ubuntu-24_04-lts:server:24.04.202501010' --channel nixos-unstable --dry-run",
			deploy("web-1", func(c *Command) {
				c.Location, c.Size, c.Image, c.Channel, c.DryRun = "westeurope", "Standard_D4s_v5", "Canonical:ubuntu-24_04-lts:server:24.04.202501010", "nixos-unstable", true
			})},
		{"flags before the vm", "/deploy --dry-run=true -l uksouth az-nixos", deploy("az-nixos", func(c *Command) { c.DryRun = true })},
		{"dry-run false", "/deploy az-nixos --dry-run=false", deploy("az-nixos", nil)},
		{"double quotes and escapes", `/deploy "az-nixos" --size Standard\_B4ms`, deploy("az-nixos", nil)},
		{"double dash", "/deploy -- az-nixos", deploy("az-nixos", nil)},
		{"destroy", "/destroy az-nixos", func() Command { c := Defaults(Destroy); c.VM = "az-nixos"; return c }()},
		{"status for a vm", "/status az-nixos", func() Command { c := Defaults(Status); c.VM = "az-nixos"; return c }()},
		{"status for all", "/status", Defaults(Status)},
		{"help", "/help", Command{Kind: Help}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, Parse(tc.body)); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tc.body, diff)
			}
		})
	}
}

func TestParseReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want string // the reply's first line
	}{
		{"near-miss command", "/deploi az-nixos", "Unknown command `/deploi`; did you mean `/deploy`?"},
		{"case of a command", "/Status", "Unknown command `/Status`; did you mean `/status`?"},
		{"unknown flag with hint", "/deploy az-nixos --locaton uksouth", "Unknown flag `--locaton` for `/deploy`; did you mean `--location`?"},
		{"unknown flag without hint", "/deploy az-nixos --zzzzzzzz", "Unknown flag `--zzzzzzzz` for `/deploy`."},
		{"missing vm", "/deploy", "`/deploy` needs a VM name, for example `/deploy az-nixos`."},
		{"missing vm with flags", "/deploy --dry-run", "`/deploy` needs a VM name, for example `/deploy az-nixos`."},
		{"two vms", "/deploy a-vm b-vm", "`/deploy` takes one VM name, got 2: `a-vm`, `b-vm`."},
		{"flag without value", "/deploy az-nixos --size", "Flag `--size` needs a value."},
		{"flag twice", "/deploy az-nixos -l uksouth --location westeurope", "Flag `--location` is given twice."},
		{"bad bool", "/deploy az-nixos --dry-run=maybe", "`--dry-run` takes no value (or `=true`/`=false`), got `maybe`."},
		{"invalid vm name", "/deploy Az_Nixos!", `vm-name "Az_Nixos!": must be 3-63 characters`},
		{"location near miss", "/deploy az-nixos --location 'UK South'", `location "UK South": must be the region's lower-case name without spaces; did you mean "uksouth"?`},
		{"small size", "/deploy az-nixos --size Standard_B1s", `size "Standard_B1s": has 1 GB of memory`},
		{"bad image", "/deploy az-nixos --image ubuntu", `image "ubuntu": must be an image URN`},
		{"bad channel", "/deploy az-nixos --channel nixos-26.04", `nix-channel "nixos-26.04": must be nixos-YY.MM`},
		{"unclosed quote", "/deploy 'az-nixos", "a quote is not closed."},
		{"lone backslash", `/deploy az-nixos \`, "the line ends with a lone backslash."},
		{"destroy without vm", "/destroy", "`/destroy` needs a VM name, for example `/destroy az-nixos`."},
		{"destroy with a flag", "/destroy az-nixos --force", "`/destroy` takes no flags (got `--force`)."},
		{"status with two vms", "/status a-vm b-vm", "`/status` takes one VM name, got 2 arguments."},
		{"help with args", "/help me", "`/help` takes no arguments."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Parse(tc.body)
			r, ok := got.(Reply)
			if !ok {
				t.Fatalf("Parse(%q) = %#v, want a Reply", tc.body, got)
			}
			first, _, _ := strings.Cut(r.Text, "\n")
			if !strings.HasPrefix(first, tc.want) {
				t.Errorf("Parse(%q) reply starts %q, want prefix %q", tc.body, first, tc.want)
			}
			if !strings.Contains(r.Text, Usage) {
				t.Errorf("Parse(%q) reply lacks the usage text", tc.body)
			}
		})
	}
}

func TestKindZeroValueIsUnknown(t *testing.T) {
	t.Parallel()
	var c Command
	if c.Kind != Unknown || c.Kind.String() != "unknown" {
		t.Fatalf("zero Kind = %v, want unknown", c.Kind)
	}
}

func TestDefaultsAreValid(t *testing.T) {
	t.Parallel()
	c := Defaults(Deploy)
	for name, v := range map[string]string{"location": c.Location, "size": c.Size, "image": c.Image, "channel": c.Channel} {
		if v == "" {
			t.Errorf("default %s is empty", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/deploy az-nixos", "/deploy az-nixos --location uksouth --size Standard_B4ms --dry-run",
		"/destroy az-nixos", "/status", "/help", "/deploy 'a b' \"c\\\"d\" e\\ f", "/deploy --", "/deploy -",
		"/deploy --=x", "/deploy ---", "/deploy '", `/deploy "\`, "/\x00\xff", "/deploy az-nixos --image=::::",
		"/deploy az-nixos\n/destroy az-nixos", "/déploy", "\r\n/deploy", "/deploy --dry-run=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		switch r := Parse(body).(type) {
		case Ignore:
		case Reply:
			if r.Text == "" {
				t.Fatalf("Parse(%q): empty reply", body)
			}
		case Command:
			if r.Kind == Unknown {
				t.Fatalf("Parse(%q): command of kind Unknown", body)
			}
			if (r.Kind == Deploy || r.Kind == Destroy) && r.VM == "" {
				t.Fatalf("Parse(%q): %v without a VM", body, r.Kind)
			}
			// Values end up in the status comment's hidden marker and in
			// Markdown code spans: nothing that could end either.
			for _, v := range []string{r.VM, r.Location, r.Size, r.Image, r.Channel} {
				if !utf8.ValidString(v) || strings.ContainsAny(v, " \t\r\n<>`") {
					t.Fatalf("Parse(%q): unsafe value %q in %#v", body, v, r)
				}
			}
		default:
			t.Fatalf("Parse(%q) = %#v: not a Result of this package", body, r)
		}
	})
}
