package reporttest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestModel checks the model against cases of the runner's own tests
// (actions/runner src/Test/L0/Worker/ActionCommandL0.cs, with a registered
// command in place of their "do-something") and the stop-commands rules of
// ActionCommandManager.TryProcessCommand.
func TestModel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, log string
		want      []string // name:data of each processed command
	}{
		{"legacy", "##[error k1=v1;]msg\n", []string{"error:msg"}},
		{"legacy anywhere in a line", ">>>   ##[warning k1=v1;]msg\n", []string{"warning:msg"}},
		{"legacy escapes", "##[error k1=%3B=%0D=%0A=%5D;]%3B-%0D-%0A-%5D\n", []string{"error:;-\r-\n-]"}},
		{"v2", "::error k1=v1,::msg\n", []string{"error:msg"}},
		{"v2 after white space", " \t ::notice::x\n", []string{"notice:x"}},
		{"v2 not at the start", "x ::notice::x\n", nil},
		{"unknown command", "::nope::x\n", nil},
		{"case-insensitive", "::ERROR::x\n", []string{"error:x"}},
		{"CR ends a line", "text\r::error::x\n", []string{"error:x"}},
		{"stopped", "::stop-commands::tok1234\n::error::x\n##[error]y\n::TOK1234::\n::error::z\n",
			[]string{"stop-commands:tok1234", "tok1234:", "error:z"}},
		{"legacy resume", "::stop-commands::tok1234\nabc ##[tok1234]\n::error::z\n", []string{"stop-commands:tok1234", "tok1234:", "error:z"}},
		{"registered name as token", "::stop-commands::error\n::error::x\n", []string{"stop-commands:error", "error:x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, cmd := range Commands(tc.log) {
				got = append(got, cmd.Name+":"+cmd.Data)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Commands(%q) (-want +got):\n%s", tc.log, d)
			}
		})
	}
	if cs := Commands("::error title=a%3Ab%2Cc::d\n"); len(cs) != 1 || cs[0].Properties["title"] != "a:b,c" {
		t.Errorf("properties: %#v", cs)
	}
}
