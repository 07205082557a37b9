package sshx_test

import (
	"context"
	"math/rand/v2"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkReadinessLag: sshd starts listening at a random moment within 2 s of WaitReady starting;
// the lag runs from sshd's "Server listening" to WaitReady returning a logged-in client. For
// comparison, the scripts' `nc -z` loop every 5 s pays 2.5 s on average before it even tries SSH.
// "handshake-ms" is one Dial to a server already listening: the part of the lag no polling avoids.
func BenchmarkReadinessLag(b *testing.B) {
	var lags, handshakes, polls []time.Duration
	for b.Loop() {
		s := sshtest.Start(b, sshtest.Delayed())
		go func() {
			time.Sleep(time.Duration(rand.Int64N(int64(2 * time.Second))))
			if err := s.Listen(); err != nil {
				b.Error(err)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := sshx.WaitReady(ctx, target(s), sshx.WaitOptions{})
		ready := time.Now()
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		lags = append(lags, ready.Sub(s.ListeningAt()))
		c.Close()

		start := time.Now()
		c, err = sshx.Dial(context.Background(), target(s))
		if err != nil {
			b.Fatal(err)
		}
		handshakes = append(handshakes, time.Since(start))
		polls = append(polls, lags[len(lags)-1]-handshakes[len(handshakes)-1])
		c.Close()
		s.KillSessions()
		s.Stop()
	}
	b.ReportMetric(ms(median(lags)), "median-lag-ms")
	b.ReportMetric(ms(percentile(lags, 0.9)), "p90-lag-ms")
	b.ReportMetric(ms(median(handshakes)), "handshake-ms")
	b.ReportMetric(ms(median(polls)), "median-poll-ms") // lag minus the handshake: what polling costs
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRemoteCommands runs the same commands as sessions on one connection and as one ssh
// process each (what the scripts did), against the same sshd.
func BenchmarkRemoteCommands(b *testing.B) {
	const n = 10
	s := sshtest.Start(b)
	ctx := context.Background()
	var oneConn, procs time.Duration
	for b.Loop() {
		start := time.Now()
		c, err := sshx.Dial(ctx, target(s))
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := c.Output(ctx, "true"); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		oneConn += time.Since(start)

		start = time.Now()
		for range n {
			if out, err := exec.Command("ssh", s.SSHArgs("true")...).CombinedOutput(); err != nil {
				b.Fatalf("ssh: %v\n%s", err, out)
			}
		}
		procs += time.Since(start)
	}
	runs := float64(b.N * n)
	b.ReportMetric(ms(oneConn)/runs, "one-conn-ms/cmd")
	b.ReportMetric(ms(procs)/runs, "ssh-process-ms/cmd")
	b.ReportMetric(float64(procs)/float64(oneConn), "speedup-x")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkProxyOverhead runs `ssh host true` directly and through the verifying ProxyCommand (this
// test binary re-executed as the proxy, as the action binary would be).
func BenchmarkProxyOverhead(b *testing.B) {
	exe := testExe(b)
	s := sshtest.Start(b)
	opt, err := sshx.ProxyOption(exe, proxyConfig(s))
	if err != nil {
		b.Fatal(err)
	}
	var direct, proxied time.Duration
	for b.Loop() {
		start := time.Now()
		if out, err := exec.Command("ssh", s.SSHArgs("true")...).CombinedOutput(); err != nil {
			b.Fatalf("ssh: %v\n%s", err, out)
		}
		direct += time.Since(start)

		start = time.Now()
		if out, err := nixosAnywhereSSH(b, s, opt, "true").CombinedOutput(); err != nil {
			b.Fatalf("ssh via proxy: %v\n%s", err, out)
		}
		proxied += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(ms(direct)/n, "direct-ms/conn")
	b.ReportMetric(ms(proxied)/n, "proxied-ms/conn")
	b.ReportMetric(ms(proxied-direct)/n, "added-ms/conn")
	b.ReportMetric(0, "ns/op")
}
