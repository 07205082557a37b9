package nixos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
)

var fakeNixosAnywhere = filepath.Join("testdata", "fake-nixos-anywhere", "fake-nixos-anywhere.sh")

func goodArgs(dir string) Args {
	return Args{
		Flake:        "path:" + dir + "#az-nixos",
		FacterReport: filepath.Join(dir, FacterFile),
		IdentityFile: "/run/nixos-cloud-deploy/deploy-key",
		ProxyCommand: "/run/nixos-cloud-deploy/proxy",
		Host:         "20.13.163.33",
		KexecURL:     KexecImageURL("nixos-26.05-small", "x86_64-linux"),
	}
}

func TestArgvGolden(t *testing.T) {
	t.Parallel()
	a := goodArgs("/tmp/ncd/extra/etc/nixos")
	a.ExtraFiles = "/tmp/ncd/extra"
	argv, err := a.Argv()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "argv.golden"), []byte(strings.Join(argv, "\n")+"\n"))
}

func TestArgvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Args)
		want   string
	}{
		{"no attribute", func(a *Args) { a.Flake = "path:/tmp/x" }, `flake "path:/tmp/x": must be <flake>#<attribute>`},
		{"no facter path", func(a *Args) { a.FacterReport = "" }, "facter report path is empty"},
		{"no identity", func(a *Args) { a.IdentityFile = "" }, "identity file is empty"},
		{"proxy with spaces", func(a *Args) { a.ProxyCommand = "/bin/action proxy --host 1.2.3.4" }, "must be one word without whitespace"},
		{"host like an option", func(a *Args) { a.Host = "-oProxyCommand=evil" }, `host "-oProxyCommand=evil"`},
		{"host with user", func(a *Args) { a.Host = "azureuser@1.2.3.4" }, `host "azureuser@1.2.3.4"`},
		{"kexec image over http", func(a *Args) { a.KexecURL = "http://example.com/kexec.tar.gz" }, "must be an https URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := goodArgs("/tmp/x")
			tc.modify(&a)
			_, err := a.Argv()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Argv error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestFindCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		onPath  []string
		want    []string
		wantErr string
	}{
		{"nixos-anywhere on PATH", []string{"nixos-anywhere", "nix"}, []string{"/bin/nixos-anywhere"}, ""},
		{"only nix", []string{"nix"}, []string{"/bin/nix", "--extra-experimental-features", "nix-command flakes", "run", "github:nix-community/nixos-anywhere/" + NixosAnywhereVersion, "--"}, ""},
		{"neither", nil, nil, "install Nix (https://nixos.org/download)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lookPath := func(file string) (string, error) {
				for _, p := range tc.onPath {
					if p == file {
						return "/bin/" + file, nil
					}
				}
				return "", exec.ErrNotFound
			}
			got, err := FindCommand(lookPath)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FindCommand error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FindCommand (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPhaseName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		want string
		ok   bool
	}{
		{"### Uploading install SSH keys ###", "Uploading install SSH keys", true},
		{"### Done! ###", "Done!", true},
		{"### Done! ###\r", "Done!", true},
		{"### Generating facter.json using nixos-facter from nixpkgs ###", "Generating facter.json using nixos-facter from nixpkgs", true},
		{"###  ###", "", false},
		{"######", "", false},
		{"## Installing NixOS ##", "", false},
		{"echo ### not a phase ###", "", false},
		{"### unterminated", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := PhaseName(tc.line)
		if got != tc.want || ok != tc.ok {
			t.Errorf("PhaseName(%q) = %q, %v; want %q, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// fakeClock advances one second on every reading, so each phase lasts as
// many seconds as clock readings it spans: exactly one here.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

var kexecInstallPhases = []PhaseTiming{
	{"Uploading install SSH keys", time.Second},
	{"Gathering machine facts", time.Second},
	{"Switching system into kexec", time.Second},
	{"Gathering machine facts", time.Second},
	{"Generating facter.json using nixos-facter", time.Second},
	{"Formatting hard drive with disko", time.Second},
	{"Uploading the system closure", time.Second},
	{"Installing NixOS", time.Second},
	{"Rebooting", time.Second},
	{"Waiting for the machine to become unreachable due to reboot", time.Second},
	{"Done!", time.Second},
}

// TestTranscriptPhases feeds a real transcript through the phase parser.
func TestTranscriptPhases(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join("testdata", "transcripts", "kexec-install.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := &transcript{now: (&fakeClock{}).now}
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		tr.line(sc.Text())
		lines++
	}
	tr.finish()
	phases, current, tail, aborted := tr.snapshot()
	if diff := cmp.Diff(kexecInstallPhases, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if current != "Done!" || aborted != "" {
		t.Errorf("current = %q, aborted = %q; want %q, %q", current, aborted, "Done!", "")
	}
	if len(tail) != tailLines || tail[len(tail)-1] != "### Done! ###" {
		t.Errorf("tail has %d lines ending %q; want %d ending %q", len(tail), tail[len(tail)-1], tailLines, "### Done! ###")
	}
	if lines <= tailLines {
		t.Fatalf("transcript too short (%d lines) to test the tail", lines)
	}
}

func TestLineWriter(t *testing.T) {
	t.Parallel()
	var got []string
	w := &lineWriter{fn: func(l string) { got = append(got, l) }}
	for _, chunk := range []string{"### Upl", "oading ###\r\nnext", " line\n\n", strings.Repeat("x", maxLine+10), "\nlast"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	w.flush()
	want := []string{"### Uploading ###", "next line", "", strings.Repeat("x", maxLine), strings.Repeat("x", 10), "last"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

// runResult collects what a Runner reports.
type runResult struct {
	mu     sync.Mutex
	lines  []string
	phases []string
	events []string // phases and lines interleaved, to check the order
}

func (r *runResult) runner(mode string, env ...string) *Runner {
	return &Runner{
		Command: []string{fakeNixosAnywhere},
		Env:     append(append(os.Environ(), "FAKE_NA_MODE="+mode), env...),
		Line: func(l string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.lines = append(r.lines, l)
			r.events = append(r.events, "line "+l)
		},
		Phase: func(p string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.phases = append(r.phases, p)
			r.events = append(r.events, "phase "+p)
		},
		now: (&fakeClock{}).now,
	}
}

func TestRunInstalls(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	argvFile := filepath.Join(t.TempDir(), "argv")
	var res runResult
	r := res.runner("ok", "FAKE_NA_ARGV="+argvFile)
	a := goodArgs(dir)
	phases, err := r.Run(context.Background(), a)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff(kexecInstallPhases, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	// The argument vector arrives unchanged, one argument per element.
	recorded, err := os.ReadFile(argvFile)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := a.Argv()
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(string(recorded), "\n"), "\n")); diff != "" {
		t.Errorf("argv seen by nixos-anywhere (-want +got):\n%s", diff)
	}
	// The facter report is where the argument said.
	if _, err := CopyFacterReport(a.FacterReport, t.TempDir()); err != nil {
		t.Errorf("facter report: %v", err)
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	// stderr is merged in order: the ssh-copy-id line comes right after the phase.
	wantStart := []string{
		"phase Uploading install SSH keys",
		"line ### Uploading install SSH keys ###",
		`line /usr/bin/ssh-copy-id: INFO: Source of key(s) to be installed: "/tmp/tmp.fake/nixos-anywhere.pub"`,
		"line Number of key(s) added: 1",
		"phase Gathering machine facts",
	}
	if len(res.events) < len(wantStart) {
		t.Fatalf("events = %q", res.events)
	}
	if diff := cmp.Diff(wantStart, res.events[:len(wantStart)]); diff != "" {
		t.Errorf("first events (-want +got):\n%s", diff)
	}
	if got := res.lines[len(res.lines)-1]; got != "### Done! ###" {
		t.Errorf("last line = %q", got)
	}
}

func TestRunFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode      string
		wantPhase string
		wantAbort string
		wantCode  int
		wantMsg   []string
	}{
		{
			mode: "abort", wantPhase: "Switching system into kexec",
			wantAbort: "Failed to kexec into NixOS installer", wantCode: 1,
			wantMsg: []string{
				`nixos-anywhere aborted: Failed to kexec into NixOS installer (phase "Switching system into kexec")`,
				"\n  Kexec may have failed - check output above\n",
			},
		},
		{
			mode: "fail", wantPhase: "Installing NixOS", wantCode: 2,
			wantMsg: []string{
				`nixos-anywhere failed with exit status 2 (phase "Installing NixOS")`,
				"builder for '/nix/store/00000000000000000000000000000000-grub-config.xml.drv' failed",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			var res runResult
			phases, err := res.runner(tc.mode).Run(context.Background(), goodArgs(t.TempDir()))
			var re *RunError
			if !errors.As(err, &re) {
				t.Fatalf("Run error = %v, want a *RunError", err)
			}
			if re.Phase != tc.wantPhase || re.Aborted != tc.wantAbort || re.ExitCode != tc.wantCode || re.TimedOut {
				t.Errorf("RunError = {Phase %q, Aborted %q, ExitCode %d, TimedOut %v}; want {%q, %q, %d, false}",
					re.Phase, re.Aborted, re.ExitCode, re.TimedOut, tc.wantPhase, tc.wantAbort, tc.wantCode)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q\ndoes not contain %q", err, m)
				}
			}
			if len(phases) == 0 || phases[len(phases)-1].Name != tc.wantPhase {
				t.Errorf("phases = %v, want them to end with %q", phases, tc.wantPhase)
			}
			if len(re.Tail) == 0 || len(re.Tail) > tailLines {
				t.Errorf("tail has %d lines", len(re.Tail))
			}
		})
	}
}

// TestRunKillsProcessGroup hangs nixos-anywhere with a child that ignores
// SIGTERM and holds the output pipe; timeout and cancellation must both end
// the leader and the child and return.
func TestRunKillsProcessGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool
		want    error
	}{
		{name: "install-timeout", timeout: 500 * time.Millisecond, want: context.DeadlineExceeded},
		{name: "cancelled", cancel: true, want: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "pids")
			var res runResult
			r := res.runner("hang", "FAKE_NA_PIDS="+pidFile)
			r.Timeout = tc.timeout
			r.KillGrace = 100 * time.Millisecond
			r.WaitDelay = 100 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				go func() {
					waitFor(t, func() bool { _, err := os.Stat(pidFile); return err == nil })
					cancel()
				}()
			}
			_, err := r.Run(ctx, goodArgs(t.TempDir()))
			var re *RunError
			if !errors.As(err, &re) || !errors.Is(err, tc.want) {
				t.Fatalf("Run error = %v, want a *RunError wrapping %v", err, tc.want)
			}
			if re.Phase != "Switching system into kexec" {
				t.Errorf("phase = %q", re.Phase)
			}
			if re.TimedOut != (tc.want == context.DeadlineExceeded) {
				t.Errorf("TimedOut = %v", re.TimedOut)
			}
			if tc.timeout > 0 && !strings.Contains(err.Error(), "did not finish within 500ms") {
				t.Errorf("error %q does not name the timeout", err)
			}
			pids := readPids(t, pidFile)
			for name, pid := range pids {
				waitFor(t, func() bool { return processGone(pid) })
				if !processGone(pid) {
					t.Errorf("%s (pid %d) still runs", name, pid)
				}
			}
			if len(pids) != 2 {
				t.Errorf("pids = %v, want leader and child", pids)
			}
		})
	}
}

func TestRunBadArgs(t *testing.T) {
	t.Parallel()
	r := &Runner{Command: []string{fakeNixosAnywhere}}
	a := goodArgs(t.TempDir())
	a.Host = ""
	if _, err := r.Run(context.Background(), a); err == nil || !strings.Contains(err.Error(), "invalid nixos-anywhere arguments") {
		t.Fatalf("Run error = %v", err)
	}
	r.Command = []string{filepath.Join(t.TempDir(), "missing")}
	if _, err := r.Run(context.Background(), goodArgs(t.TempDir())); err == nil || !strings.Contains(err.Error(), "failed to start nixos-anywhere") {
		t.Fatalf("Run error = %v", err)
	}
}

func BenchmarkTranscript(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "transcripts", "kexec-install.txt"))
	if err != nil {
		b.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		tr := &transcript{now: time.Now}
		w := &lineWriter{fn: func(l string) { tr.line(l) }}
		_, _ = w.Write(data)
		w.flush()
	}
	b.ReportMetric(float64(b.N*len(lines))/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkRunFake measures the runner's own overhead: starting the
// stand-in nixos-anywhere, following its ~30 lines, reaping it.
func BenchmarkRunFake(b *testing.B) {
	dir := b.TempDir()
	r := &Runner{Command: []string{fakeNixosAnywhere}}
	for b.Loop() {
		if _, err := r.Run(context.Background(), goodArgs(dir)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/run")
}

// waitFor polls cond for up to 10 s: a bound for a broken test, not a timing
// assertion.
func waitFor(t *testing.T, cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func readPids(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the stand-in did not record its pids: %v", err)
	}
	pids := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, pid, _ := strings.Cut(line, " ")
		n, err := strconv.Atoi(pid)
		if err != nil {
			t.Fatalf("pid line %q: %v", line, err)
		}
		pids[name] = n
	}
	return pids
}

// processGone reports whether pid has exited: no /proc entry, or a zombie
// waiting for a parent (init, after reparenting) to reap it.
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}
