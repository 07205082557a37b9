package rollout

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

func TestParseState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want State
	}{
		{"", State{}},
		{"armed 41 /nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", State{Phase: "armed", Previous: 41, Path: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new"}},
		{"confirmed 42 /nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", State{Phase: "confirmed", Generation: 42, Path: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new"}},
		{"rolling-back 41 no confirmation over a new SSH connection within 60s of the activation", State{Phase: "rolling-back", Previous: 41, Reason: "no confirmation over a new SSH connection within 60s of the activation"}},
		{"rolled-back 7 the activation failed (switch-to-configuration exited with status 4)", State{Phase: "rolled-back", Previous: 7, Reason: "the activation failed (switch-to-configuration exited with status 4)"}},
	} {
		if d := cmp.Diff(tc.want, parseState(tc.line)); d != "" {
			t.Errorf("parseState(%q) (-want +got):\n%s", tc.line, d)
		}
		if tc.line != "" && stateLine(tc.want) != tc.line {
			t.Errorf("stateLine(%+v) = %q, want %q", tc.want, stateLine(tc.want), tc.line)
		}
	}
}

func TestParseDryRun(t *testing.T) {
	t.Parallel()
	// printMissing's wording, NixOS/nix src/libmain/shared.cc.
	out := `these 3 derivations will be built:
  /nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-etc.drv
  /nix/store/1c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-nixos-system-az-nixos-26.05.drv
  /nix/store/2c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-system-path.drv
these 120 paths will be fetched (45.2 MiB download, 201.7 MiB unpacked):
  /nix/store/3c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-htop-3.4.0
`
	want := DryRun{Build: 3, Fetch: 120, Download: "45.2 MiB", Unpacked: "201.7 MiB"}
	if d := cmp.Diff(want, ParseDryRun(out)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	one := ParseDryRun("this derivation will be built:\n  /nix/store/x.drv\nthis path will be fetched (0.1 KiB download, 0.2 KiB unpacked):\n  /nix/store/y\n")
	if one.Build != 1 || one.Fetch != 1 || one.Download != "0.1 KiB" {
		t.Errorf("singular forms: %+v", one)
	}
	if s := want.Summary(); s != "3 derivations to build on the machine, 120 paths to fetch (45.2 MiB download, 201.7 MiB unpacked)" {
		t.Errorf("summary %q", s)
	}
}

func TestParsePathInfoJSON(t *testing.T) {
	t.Parallel()
	want := []PathInfo{{"/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-a-1", 100}, {"/nix/store/1c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-b-2", 200}}
	// Nix 2.19 and later: an object keyed by path.
	byPath := `{"/nix/store/1c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-b-2":{"narSize":200,"references":[]},"/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-a-1":{"narSize":100}}`
	// Before: an array with "path".
	list := `[{"path":"/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-a-1","narSize":100},{"path":"/nix/store/1c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-b-2","narSize":200}]`
	for _, in := range []string{byPath, list} {
		got, err := parsePathInfoJSON([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	}
	if _, err := parsePathInfoJSON([]byte(`{"/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-a-1":null}`)); err == nil {
		t.Error("an invalid path (null) was accepted")
	}
}

func TestCheckStorePath(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-nixos-system-az-nixos-26.05", "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-a.drv"} {
		if err := CheckStorePath(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/nix/store/short-x", "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4e-x", "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-x;rm -rf /", "/tmp/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-x", "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-x/../../etc"} {
		if CheckStorePath(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSSHOptionsRefuseWhatNIXSSHOPTSCannotCarry(t *testing.T) {
	t.Parallel()
	if _, err := SSHOptions(2222, "/tmp/a b/known_hosts", "alias", "/tmp/key"); err == nil {
		t.Error("a path with a space was accepted")
	}
	opts, err := SSHOptions(2222, "/tmp/x/known_hosts", "alias", "/tmp/x/key")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(opts, " ")
	for _, want := range []string{"-p 2222", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/tmp/x/known_hosts", "GlobalKnownHostsFile=/dev/null", "HostKeyAlias=alias", "-i /tmp/x/key", "IdentitiesOnly=yes"} {
		if !strings.Contains(joined, want) {
			t.Errorf("NIX_SSHOPTS %q lacks %q", joined, want)
		}
	}
}

func TestChildEnvDropsSecrets(t *testing.T) {
	t.Parallel()
	got := ChildEnv([]string{"PATH=/bin", "INPUT_DEPLOY-KEY=secret", "AZURE_CLIENT_SECRET=s", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=t", "GITHUB_TOKEN=g", "HOME=/root", "GITHUB_WORKSPACE=/w"})
	if d := cmp.Diff([]string{"PATH=/bin", "HOME=/root", "GITHUB_WORKSPACE=/w"}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// machineStates is a hand-written Remote that answers the confirm script as
// a machine whose state moves on by itself, one answer per question.
type machineStates struct {
	mu      sync.Mutex
	answers []string // the confirm script's output, in order; the last repeats
	asked   int
	failAt  int // the question that loses the connection (1-based; 0: none)
}

func (m *machineStates) Run(context.Context, string, ...sshx.RunOption) error {
	return errors.New("unexpected Run")
}

func (m *machineStates) Output(_ context.Context, cmd string, _ ...sshx.RunOption) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !strings.Contains(cmd, "confirmed") {
		return nil, errors.New("unexpected command " + cmd)
	}
	m.asked++
	if m.asked == m.failAt {
		return nil, errors.New("connection lost")
	}
	a := m.answers[min(m.asked-1, len(m.answers)-1)]
	return []byte(a), nil
}

func TestAwaitConfirmation(t *testing.T) {
	t.Parallel()
	tail := "generation 42\ncurrent /nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new\n"
	back := "generation 41\ncurrent /nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-old\n"
	tests := []struct {
		name    string
		m       *machineStates
		want    Outcome
		wantErr string
	}{
		{"confirmed at once", &machineStates{answers: []string{"confirmed\n" + tail}},
			Outcome{Confirmed: true, Generation: 42, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", Connections: 1}, ""},
		{"activation still running, then confirmed", &machineStates{answers: []string{"activating\n" + tail, "activating\n" + tail, "confirmed\n" + tail}},
			Outcome{Confirmed: true, Generation: 42, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", Connections: 1}, ""},
		{"answer lost, confirmation landed", &machineStates{answers: []string{"", "state confirmed 42 /nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new\n" + tail}, failAt: 1},
			Outcome{Confirmed: true, Generation: 42, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", Connections: 2}, ""},
		{"rolled back before the first answer", &machineStates{answers: []string{"state rolled-back 41 no confirmation over a new SSH connection within 60s of the activation\n" + back}},
			Outcome{RolledBack: true, Generation: 41, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-old", Reason: "no confirmation over a new SSH connection within 60s of the activation", Connections: 1},
			"rolled back to generation 41: no confirmation over a new SSH connection within 60s of the activation"},
		{"activation failed, rolling back, rolled back", &machineStates{answers: []string{"failed 4\n" + tail, "state rolling-back 41 the activation failed\n" + tail, "state rolled-back 41 the activation failed\n" + back}},
			Outcome{RolledBack: true, Generation: 41, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-old", Reason: "the activation failed", Connections: 1},
			"rolled back to generation 41: the activation failed"},
		{"someone else's switch", &machineStates{answers: []string{"state armed 41 /nix/store/1c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-other\n" + tail}},
			Outcome{Generation: 42, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", Connections: 1}, `not the switch from generation 41 to /nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new`},
		{"confirmed, not the boot default", &machineStates{answers: []string{"confirmed-not-default\n" + back}},
			Outcome{Confirmed: true, NotDefault: true, Generation: 41, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-old", Connections: 1}, ""},
		{"a reboot forgot it", &machineStates{answers: []string{"state \n" + back}},
			Outcome{Generation: 41, Current: "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-old", Connections: 1}, `the machine's switch state is ""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dial := func(context.Context) (Remote, func() error, error) { return tc.m, func() error { return nil }, nil }
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := AwaitConfirmation(ctx, dial, 41, "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", ConfirmOptions{Poll: time.Millisecond})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("outcome (-want +got):\n%s", d)
			}
			if rb, ok := IsRolledBack(err); ok != tc.want.RolledBack || ok && rb.Generation != 41 {
				t.Errorf("IsRolledBack = %v, %v", rb, ok)
			}
		})
	}
}

func TestAwaitConfirmationEndsWithTheContext(t *testing.T) {
	t.Parallel()
	m := &machineStates{answers: []string{"activating\ngeneration 42\n"}}
	ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, errors.New("the machine answered no confirmation within 50ms"))
	defer cancel()
	_, err := AwaitConfirmation(ctx, func(context.Context) (Remote, func() error, error) { return m, func() error { return nil }, nil }, 41, "/nix/store/0c8bq2hfr1k3gk4m7ydd4h6ybbbdiq4x-new", ConfirmOptions{Poll: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no confirmation within 50ms") {
		t.Fatalf("err = %v", err)
	}
}

func TestNixMissingSaysHowToGetIt(t *testing.T) {
	t.Parallel()
	n := &Nix{Path: "/nonexistent/nix"}
	if _, err := n.Evaluate(context.Background(), "git+file:///x", "az-nixos"); !errors.Is(err, ErrNoNix) || !strings.Contains(err.Error(), "use the action") {
		t.Fatalf("err = %v", err)
	}
}
