package azure

import (
	"context"
	"testing"
	"time"
)

// benchLatencies are emulated ARM operation times, in the proportions Azure shows.
var benchLatencies = map[string]time.Duration{
	KindResourceGroup: 20 * time.Millisecond,
	KindPublicIP:      300 * time.Millisecond,
	KindNSG:           200 * time.Millisecond,
	KindVNet:          400 * time.Millisecond,
	KindNIC:           200 * time.Millisecond,
	KindVM:            1500 * time.Millisecond,
}

// benchPreflight is the emulated time of each pre-flight read (Resource SKUs of the location,
// vCPU usages): they run together, while the group is read, and the first PUT waits for them.
const benchPreflight = 150 * time.Millisecond

// BenchmarkProvision measures provisioning wall time, pre-flight reads included, against the
// critical path of the dependency graph, RG + max(PIP, NSG, VNet) + NIC + VM, and against the
// sequential sum a one-call-after-another script pays. Target: wall/critical <= 1.15.
func BenchmarkProvision(b *testing.B) {
	l := benchLatencies
	critical := l[KindResourceGroup] + max(l[KindPublicIP], l[KindNSG], l[KindVNet]) + l[KindNIC] + l[KindVM]
	var sequential time.Duration
	for _, d := range l {
		sequential += d
	}
	s := testSpec()
	s.AutoShutdown = "" // not part of the emulated graph

	var total time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		f := newFakeARM()
		f.latency = l
		f.preflightLatency = benchPreflight
		p := f.provisioner(b)
		b.StartTimer()
		start := time.Now()
		if _, err := p.Provision(context.Background(), s, nil); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		n++
	}
	wall := total / time.Duration(n)
	ratio := float64(wall) / float64(critical)
	b.ReportMetric(float64(wall.Milliseconds()), "wall-ms")
	b.ReportMetric(float64(critical.Milliseconds()), "critical-ms")
	b.ReportMetric(float64(sequential.Milliseconds()), "sequential-ms")
	b.ReportMetric(float64(benchPreflight.Milliseconds()), "preflight-ms")
	b.ReportMetric(ratio, "wall/critical")
	b.ReportMetric(float64(sequential)/float64(wall), "sequential/wall")
	b.ReportMetric(0, "ns/op") // wall-ms says it better
	if ratio > 1.15 {
		b.Errorf("wall %v is %.3f × the critical path %v; want <= 1.15", wall, ratio, critical)
	}
}
