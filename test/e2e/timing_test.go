//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// timing is one deploy with the emulated latencies, taken apart.
type timing struct {
	Total    time.Duration // the binary's wall time, exec to exit
	Critical time.Duration // the emulated latencies on the critical path
	StandIn  time.Duration // inside the nixos-anywhere stand-in (its ssh round trips through our proxy included)
	Boot     time.Duration // the emulated VM's boot (sshd start) in the emulator's hook
	Pipeline time.Duration // the summary's total: the stages, without start-up (discovery, token) and exit
	Stages   []stage
}

// Overhead is what the orchestration adds: everything that is not waiting
// for the far ends (Azure's latencies, the VM's boot, nixos-anywhere).
func (tm timing) Overhead() time.Duration { return tm.Total - tm.Critical - tm.StandIn - tm.Boot }

func (tm timing) String() string {
	var st []string
	for _, s := range tm.Stages {
		st = append(st, fmt.Sprintf("%s=%s", strings.ReplaceAll(s.Name, " ", "-"), s.Duration))
	}
	return fmt.Sprintf("E2E-TIMING total=%s critical-path=%s stand-in=%s vm-boot=%s overhead=%s (outside the stages: %s) stages: %s",
		ms(tm.Total), ms(tm.Critical), ms(tm.StandIn), ms(tm.Boot), ms(tm.Overhead()), ms(tm.Total-tm.Pipeline), strings.Join(st, " "))
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// timedDeploy runs one fresh deploy with the emulated latencies.
func timedDeploy(tb testing.TB, name string) timing {
	tb.Helper()
	w := newWorld(tb, e2eLatency)
	r := w.runAction(tb, w.inputs("deploy", name))
	if tb.Failed() || r.Code != 0 {
		r.dump(tb)
		tb.Fatalf("deploy exit code %d, want 0", r.Code)
	}
	vm := w.fleet.VM(tb, name)
	return timing{Total: r.Wall, Critical: criticalPath(e2eLatency), StandIn: r.StandInTime, Boot: vm.BootTime,
		Pipeline: summaryTotal(tb, r.Summary), Stages: summaryStages(tb, r.Summary)}
}

// TestTiming reports the orchestration overhead of one deploy over the
// emulated cloud latencies (target: under 2 s). It asserts nothing about
// wall time; the figure goes to the log and to a file:
// $E2E_TIMING_FILE, or nixos-cloud-deploy-e2e-timing.txt in the temp dir.
// Not parallel, so the other tests do not compete for the CPU.
func TestTiming(t *testing.T) {
	tm := timedDeploy(t, "e2e-timed")
	line := tm.String()
	load, _ := os.ReadFile("/proc/loadavg")
	line += fmt.Sprintf(" (loadavg %s)", strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	t.Log(line)
	fmt.Println(line)
	path := os.Getenv("E2E_TIMING_FILE")
	if path == "" {
		path = filepath.Join(os.TempDir(), "nixos-cloud-deploy-e2e-timing.txt")
	}
	if err := os.WriteFile(path, []byte(line+"\n"), 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
	}
}

// BenchmarkDeploy runs whole deploys with the emulated latencies and reports
// the orchestration overhead (ms/op) beside the parts it subtracts.
func BenchmarkDeploy(b *testing.B) {
	var sum timing
	runs := 0
	for b.Loop() {
		tm := timedDeploy(b, fmt.Sprintf("e2e-bench-%d", runs))
		runs++
		b.Log(tm.String())
		sum.Total += tm.Total
		sum.Critical += tm.Critical
		sum.StandIn += tm.StandIn
		sum.Boot += tm.Boot
	}
	n := float64(runs)
	b.ReportMetric(float64(sum.Overhead().Milliseconds())/n, "overhead-ms/op")
	b.ReportMetric(float64(sum.Total.Milliseconds())/n, "total-ms/op")
	b.ReportMetric(float64(sum.Critical.Milliseconds())/n, "critical-path-ms/op")
	b.ReportMetric(float64(sum.StandIn.Milliseconds())/n, "stand-in-ms/op")
	b.ReportMetric(float64(sum.Boot.Milliseconds())/n, "vm-boot-ms/op")
}

// summaryTotal reads the total row of a step summary.
func summaryTotal(tb testing.TB, summary string) time.Duration {
	tb.Helper()
	for _, l := range strings.Split(summary, "\n") {
		if rest, ok := strings.CutPrefix(l, "| **total** | | **"); ok {
			d, err := time.ParseDuration(strings.TrimSuffix(rest, "** | |"))
			if err != nil {
				tb.Fatalf("summary total %q: %v", l, err)
			}
			return d
		}
	}
	tb.Fatalf("summary has no total row:\n%s", summary)
	return 0
}
