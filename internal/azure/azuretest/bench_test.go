package azuretest

import (
	"context"
	"testing"
	"time"
)

// BenchmarkGraph measures the emulator's own cost: one full deployment graph (group, public IP, NSG,
// VNet in parallel, NIC, VM) through the real SDK clients with zero emulated latency.
func BenchmarkGraph(b *testing.B) {
	e := newEmulator(b, Options{})
	c := newClients(b, e)
	ctx := context.Background()
	var requests int
	b.ResetTimer()
	for b.Loop() {
		e.ResetRequests()
		g := createNetwork(ctx, b, c)
		createVM(ctx, b, c, g.nic)
		requests += len(e.Requests())
		b.StopTimer()
		p, err := c.groups.BeginDelete(ctx, testGroup, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, poll); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(requests)/float64(b.N), "requests/graph")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/graph")
}

// BenchmarkLatencyFidelity creates the graph with issue 3's emulated latencies and reports wall time over
// the critical path (RG + max(PIP, NSG, VNet) + NIC + VM): how much a parallel SDK driver pays on top of the
// configured latencies (polling at 2 ms, TLS, JSON), the floor any provisioner measured here sees.
func BenchmarkLatencyFidelity(b *testing.B) {
	lat := Latency{
		ResourceGroup: 20 * time.Millisecond, PublicIP: 300 * time.Millisecond, NSG: 200 * time.Millisecond,
		VNet: 400 * time.Millisecond, NIC: 200 * time.Millisecond, VM: 1500 * time.Millisecond,
	}
	critical := lat.ResourceGroup + max(lat.PublicIP, lat.NSG, lat.VNet) + lat.NIC + lat.VM
	sequential := lat.ResourceGroup + lat.PublicIP + lat.NSG + lat.VNet + lat.NIC + lat.VM
	e := newEmulator(b, Options{Latency: lat})
	c := newClients(b, e)
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		g := createNetwork(ctx, b, c)
		createVM(ctx, b, c, g.nic)
		total += time.Since(start)
		b.StopTimer()
		e.SetLatency(Latency{})
		p, err := c.groups.BeginDelete(ctx, testGroup, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, poll); err != nil {
			b.Fatal(err)
		}
		e.SetLatency(lat)
		b.StartTimer()
	}
	wall := total / time.Duration(b.N)
	b.ReportMetric(float64(wall)/float64(critical), "wall/critical")
	b.ReportMetric(float64(wall.Milliseconds()), "wall-ms")
	b.ReportMetric(float64(critical.Milliseconds()), "critical-ms")
	b.ReportMetric(float64(sequential.Milliseconds()), "sequential-ms")
}
