package bot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWebhookAck measures how fast the server acknowledges signed
// deliveries under load: each iteration sends 2,000 issue_comment
// deliveries ("/deploy vm-N", one issue each) from 50 concurrent clients on
// loopback, plus 200 redeliveries of already sent ids. The workers run the
// whole path against the fake GitHub (5 ms per API call). It fails if any delivery is lost or
// any comment is dispatched twice. Reported: ack latency p50/p99 (target p99
// < 20 ms), 503s, and the peak live heap.
func BenchmarkWebhookAck(b *testing.B) {
	const (
		deliveries  = 2000
		redelivered = 200
		clients     = 50
	)
	var all []time.Duration
	var peak atomic.Uint64
	stop := make(chan struct{})
	go sampleHeap(stop, &peak)
	defer close(stop)
	busy := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e := newEnv(b, nil)
		e.gh.SetPermission(testRepo, testUser, "write")
		// GitHub's API is not in-process: each call takes a few ms of
		// waiting, not of this machine's CPU.
		e.gh.Latency = 5 * time.Millisecond
		s, wc := startServer(b, e.h, ServerOptions{Workers: 16, QueueSize: 4096})
		type item struct {
			delivery string
			body     []byte
		}
		items := make([]item, 0, deliveries+redelivered)
		for i := range deliveries {
			c := e.gh.AddComment(testRepo, i+1, testUser, fmt.Sprintf("/deploy vm-%d", i), e.now)
			items = append(items, item{fmt.Sprintf("d-%d", i), fixture(b, "issue_comment.created", map[string]any{
				"comment.id": c.ID, "comment.body": c.Body, "issue.number": i + 1,
				"comment.created_at": c.CreatedAt.Format(time.RFC3339),
			})})
		}
		for i := range redelivered {
			items = append(items, items[i*7])
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
		work := make(chan item)
		lat := make([][]time.Duration, clients)
		var dup, unavailable atomic.Int64
		var wg sync.WaitGroup
		b.StartTimer()
		for w := range clients {
			wg.Go(func() {
				for it := range work {
					for {
						t0 := time.Now()
						code := post(b, client, wc, it.delivery, it.body)
						lat[w] = append(lat[w], time.Since(t0))
						if code == http.StatusServiceUnavailable { // GitHub would redeliver
							unavailable.Add(1)
							time.Sleep(10 * time.Millisecond)
							continue
						}
						if code == http.StatusOK {
							dup.Add(1)
						} else if code != http.StatusAccepted {
							b.Errorf("delivery %s: status %d", it.delivery, code)
						}
						break
					}
				}
			})
		}
		for _, it := range items {
			work <- it
		}
		close(work)
		wg.Wait()
		b.StopTimer()
		if err := s.Drain(b.Context()); err != nil {
			b.Fatal(err)
		}
		for _, l := range lat {
			all = append(all, l...)
		}
		busy += int(unavailable.Load())
		// Nothing lost, nothing twice.
		ds := e.gh.Dispatches(testRepo)
		seen := map[string]bool{}
		for _, d := range ds {
			id := fmt.Sprint(d.Inputs["correlation-id"])
			if seen[id] {
				b.Fatalf("comment %s dispatched twice", id)
			}
			seen[id] = true
		}
		if len(ds) != deliveries {
			b.Fatalf("%d dispatches for %d deliveries: lost some", len(ds), deliveries)
		}
		if int(dup.Load()) < redelivered {
			b.Fatalf("%d redeliveries answered as duplicates, want %d", dup.Load(), redelivered)
		}
		client.CloseIdleConnections()
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(busy)/float64(b.N), "503s/op")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}

func post(tb testing.TB, c *http.Client, wc *webhookClient, delivery string, body []byte) int {
	req, err := http.NewRequest("POST", wc.url+"/webhook", bytesReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "issue_comment")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", Sign(wc.secret, body))
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// sampleHeap records the largest live heap seen (runtime/metrics, no
// stop-the-world).
func sampleHeap(stop <-chan struct{}, peak *atomic.Uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
		}
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// BenchmarkAckPath is the CPU cost of acknowledging one delivery (verify,
// triage, de-duplicate, enqueue), without the network.
func BenchmarkAckPath(b *testing.B) {
	h, err := NewHandler(Options{Self: "nixos-cloud-deploy[bot]", Clients: func(context.Context, int64, ghapi.Repo) (GitHub, error) {
		return nil, errors.New("benchmark: no GitHub")
	}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewServer(h, ServerOptions{Secret: []byte(testSecret), QueueSize: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Drain(context.Background())
	body := fixture(b, "issue_comment.created", map[string]any{"comment.body": "/deploy az-nixos", "comment.created_at": time.Now().Format(time.RFC3339)})
	sig := Sign([]byte(testSecret), body)
	srv := s.Handler()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest("POST", "/webhook", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "issue_comment")
		req.Header.Set("X-GitHub-Delivery", strconv.Itoa(i))
		req.Header.Set("X-Hub-Signature-256", sig)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted && rec.Code != http.StatusServiceUnavailable {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
