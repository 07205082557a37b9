//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// timing is one deploy with the emulated latencies, taken apart.
type timing struct {
	Total    time.Duration // the binary's wall time, exec to exit
	Critical time.Duration // the emulated latencies on the critical path
	StandIn  time.Duration // inside the nixos-anywhere stand-in (its ssh round trips through our proxy included)
	Boot     time.Duration // the emulated VM's boot (sshd start) in the emulator's hook
	Pipeline time.Duration // the summary's total: the stages, without start-up (discovery, token) and exit
	Stages   []stage
	// What one SSH round trip to the emulated VM costs on this machine, and
	// how many the run made outside the stand-in: the bulk of the overhead.
	Handshake, Session    time.Duration
	Connections, Sessions int
}

// Overhead is what the orchestration adds: everything that is not waiting
// for the far ends (Azure's latencies, the VM's boot, nixos-anywhere).
func (tm timing) Overhead() time.Duration { return tm.Total - tm.Critical - tm.StandIn - tm.Boot }

func (tm timing) String() string {
	var st []string
	for _, s := range tm.Stages {
		st = append(st, fmt.Sprintf("%s=%s", strings.ReplaceAll(s.Name, " ", "-"), s.Duration))
	}
	return fmt.Sprintf("E2E-TIMING total=%s critical-path=%s stand-in=%s vm-boot=%s overhead=%s (outside the stages: %s) stages: %s; ssh: %d connections incl. the proxy's (handshake %s), %d commands (%s each)",
		ms(tm.Total), ms(tm.Critical), ms(tm.StandIn), ms(tm.Boot), ms(tm.Overhead()), ms(tm.Total-tm.Pipeline), strings.Join(st, " "),
		tm.Connections, ms(tm.Handshake), tm.Sessions, ms(tm.Session))
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// timedDeploy runs one fresh deploy with the emulated latencies.
func timedDeploy(tb testing.TB, name string) timing {
	tb.Helper()
	w := newWorld(tb, e2eLatency)
	w.bin = binary // never the race build
	r := w.runAction(tb, w.inputs("deploy", name))
	if tb.Failed() || r.Code != 0 {
		r.dump(tb)
		tb.Fatalf("deploy exit code %d, want 0", r.Code)
	}
	vm := w.fleet.VM(tb, name)
	tm := timing{Total: r.Wall, Critical: criticalPath(e2eLatency), StandIn: r.StandInTime, Boot: vm.BootTime,
		Pipeline: summaryTotal(tb, r.Summary), Stages: summaryStages(tb, r.Summary)}
	// Connections from the host's address: the run's own and the proxy's
	// (one per ssh the stand-in runs; its inner ones arrive from the VM's
	// loopback through the proxy's direct-tcpip channel). Commands from the
	// host's address are the run's own.
	host := w.fleet.net.host.String()
	for _, l := range strings.Split(vm.SSHDLog(), "\n") {
		switch {
		case strings.HasPrefix(l, "Accepted publickey for root from "+host+" "):
			tm.Connections++
		case strings.HasPrefix(l, "Starting session: command for root from "+host+" "):
			tm.Sessions++
		}
	}
	tm.Handshake, tm.Session = sshCost(tb, w, vm)
	return tm
}

// sshCost measures one SSH handshake and one command round trip to the VM
// (median of five each), with the deploy key and the pinned host key, as
// the pipeline connects.
func sshCost(tb testing.TB, w *world, vm *bootedVM) (handshake, session time.Duration) {
	tb.Helper()
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(vm.HostKeyNow(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(w.deployKey.Signer)}, HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second}
	addr := net.JoinHostPort(vm.IP, "22")
	var hs, ss []time.Duration
	for range 5 {
		t0 := time.Now()
		c, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			tb.Fatalf("ssh to the VM: %v", err)
		}
		hs = append(hs, time.Since(t0))
		t0 = time.Now()
		sess, err := c.NewSession()
		if err != nil {
			tb.Fatal(err)
		}
		if err := sess.Run("true"); err != nil {
			tb.Fatal(err)
		}
		ss = append(ss, time.Since(t0))
		c.Close()
	}
	return median(hs), median(ss)
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
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
