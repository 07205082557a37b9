package chatops

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
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
		{"switch", "/switch az-nixos", func() Command { c := Defaults(Switch); c.VM = "az-nixos"; return c }()},
		{"switch to a ref, dry run", "/switch az-nixos --ref releases/v2 --dry-run", func() Command {
			c := Defaults(Switch)
			c.VM, c.Ref, c.DryRun = "az-nixos", "releases/v2", true
			return c
		}()},
		{"switch to a commit", "/switch --ref=" + strings.Repeat("0f", 20) + " web-1", func() Command {
			c := Defaults(Switch)
			c.VM, c.Ref = "web-1", strings.Repeat("0f", 20)
			return c
		}()},
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
		{"invalid vm name", "/deploy Az_Nixos!", "vm-name `Az_Nixos!`: must be 3-63 characters"},
		{"location near miss", "/deploy az-nixos --location 'UK South'", "location `UK South`: must be the region's lower-case name without spaces; did you mean \"uksouth\"?"},
		{"small size", "/deploy az-nixos --size Standard_B1s", "size `Standard_B1s`: has 1 GB of memory"},
		{"bad image", "/deploy az-nixos --image ubuntu", "image `ubuntu`: must be an image URN"},
		{"bad channel", "/deploy az-nixos --channel nixos-26.04", "nix-channel `nixos-26.04`: must be nixos-YY.MM"},
		{"unclosed quote", "/deploy 'az-nixos", "a quote is not closed."},
		{"lone backslash", `/deploy az-nixos \`, "the line ends with a lone backslash."},
		{"destroy without vm", "/destroy", "`/destroy` needs a VM name, for example `/destroy az-nixos`."},
		{"destroy with a flag", "/destroy az-nixos --force", "`/destroy` takes no flags (got `--force`)."},
		{"status with two vms", "/status a-vm b-vm", "`/status` takes one VM name, got 2 arguments."},
		{"help with args", "/help me", "`/help` takes no arguments."},
		{"switch near miss", "/swich az-nixos", "Unknown command `/swich`; did you mean `/switch`?"},
		{"switch without vm", "/switch --ref main", "`/switch` needs a VM name, for example `/switch az-nixos`."},
		{"switch bad ref", "/switch az-nixos --ref 'main..x'", "config-ref `main..x`: must be a branch or tag name"},
		{"switch option as ref", "/switch az-nixos --ref=--upload-pack=x", "config-ref `--upload-pack=x`: must be a branch or tag name"},
		{"switch has no deploy flags", "/switch az-nixos --size Standard_B4ms", "Unknown flag `--size` for `/switch`."},
		{"switch flag hint", "/switch az-nixos --rev main", "Unknown flag `--rev` for `/switch`; did you mean `--ref`?"},
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

func TestUsageListsEveryCommand(t *testing.T) {
	t.Parallel()
	for _, c := range commands {
		if !strings.Contains(Usage, "`/"+c) {
			t.Errorf("Usage does not list /%s", c)
		}
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

// FuzzParse: whatever a comment says, Parse returns one of its three
// results; a command's values pass the action's own input rules; and a reply,
// which the bot posts as a comment, carries nothing of the comment outside a
// code span: no @mention (GitHub notifies the mentioned users and teams), no
// HTML, no link or image. Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body string) {
		switch r := Parse(body).(type) {
		case Ignore:
		case Reply:
			if r.Text == "" {
				t.Fatalf("Parse(%q): empty reply", body)
			}
			outside := stripCodeSpans(r.Text)
			for _, bad := range []string{"@", "<", "](", "!["} {
				if strings.Contains(outside, bad) {
					t.Fatalf("Parse(%q): reply has %q outside code spans:\n%s", body, bad, r.Text)
				}
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
			// The bot refuses what the action would refuse.
			if r.Kind != Help {
				for _, err := range []error{config.CheckLocation(r.Location), config.CheckSize(r.Size), config.CheckImage(r.Image), config.CheckChannel(r.Channel)} {
					if err != nil {
						t.Fatalf("Parse(%q) = %#v, which the action refuses: %v", body, r, err)
					}
				}
			}
			if r.VM != "" {
				if err := config.CheckVMName(r.VM); err != nil {
					t.Fatalf("Parse(%q) = %#v, which the action refuses: %v", body, r, err)
				}
			}
		default:
			t.Fatalf("Parse(%q) = %#v: not a Result of this package", body, r)
		}
	})
}

// stripCodeSpans removes CommonMark code spans: a backtick string opens one
// that the next backtick string of the same length closes; one without a
// match is literal text (spec 0.31, "Code spans").
func stripCodeSpans(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '`' {
			b.WriteByte(s[i])
			i++
			continue
		}
		n := 0
		for i+n < len(s) && s[i+n] == '`' {
			n++
		}
		end := -1
		for j := i + n; j < len(s); {
			if s[j] != '`' {
				j++
				continue
			}
			m := 0
			for j+m < len(s) && s[j+m] == '`' {
				m++
			}
			if m == n {
				end = j + m
				break
			}
			j += m
		}
		if end < 0 {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		i = end
	}
	return b.String()
}

func TestRepliesKeepCommentTextInCodeSpans(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		"/deploy @octo-org/admins", "/deploy az-nixos --size '@everyone'", "/destroy @x",
		"/deploy a b`@x", "/deploy az-nixos --image '<img src=x>'", "/deploy az-nixos --zzz=`x`@y",
		"/deploy az-nixos --dry-run='[a](https://evil.example)'", "/depl@y", "/status a-vm '``@x``'",
	} {
		r, ok := Parse(body).(Reply)
		if !ok {
			t.Fatalf("Parse(%q) is not a reply", body)
		}
		if out := stripCodeSpans(r.Text); strings.ContainsAny(out, "@<") || strings.Contains(out, "](") {
			t.Errorf("Parse(%q): reply has comment text outside code spans:\n%s", body, r.Text)
		}
	}
}

func TestCodeSpan(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain": "`plain`", "a`b": "``a`b``", "`x": "`` `x ``", "x``": "``` x`` ```", "": "`  `", " ": "`   `",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}
