package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// filler is an endless body that costs no memory: what an attacker streams.
type filler struct{ left int64 }

func (f *filler) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), f.left)
	for i := range p[:n] {
		p[i] = '{'
	}
	f.left -= n
	return int(n), nil
}

// heapAllocated is the bytes allocated on the heap so far: every byte the
// process grew by passed through it.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// unsignedFlood posts n bodies of size bytes at once, without a signature,
// half with a Content-Length and half chunked, and returns their statuses.
func unsignedFlood(h http.Handler, n int, size int64) []int {
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := httptest.NewRequest("POST", "/webhook", &filler{left: size})
			req.ContentLength = -1 // chunked: the length is unknown until read
			if i%2 == 0 {
				req.ContentLength = size
			}
			req.Header.Set("X-GitHub-Event", "issue_comment")
			req.Header.Set("X-GitHub-Delivery", fmt.Sprint("flood-", i))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			codes[i] = rec.Code
		})
	}
	wg.Wait()
	return codes
}

// TestUnsignedFloodIsCheap: eight concurrent 24 MiB unsigned posts get 4xx
// and cost the process less than 64 MiB, and a signed /deploy right after
// still works. Not parallel: it measures the whole process's allocations.
func TestUnsignedFloodIsCheap(t *testing.T) {
	e := newEnv(t, nil)
	s, wc := startServer(t, e.h, ServerOptions{})
	runtime.GC()
	before := heapAllocated()
	codes := unsignedFlood(s.Handler(), 8, 24<<20)
	grew := heapAllocated() - before
	for i, c := range codes {
		if c < 400 || c > 499 {
			t.Errorf("post %d: status %d, want 4xx", i, c)
		}
	}
	if grew >= 64<<20 {
		t.Errorf("eight 24 MiB posts allocated %d MiB, want less than 64", grew>>20)
	}
	t.Logf("eight 24 MiB unsigned posts: statuses %v, %.1f MiB allocated", codes, float64(grew)/(1<<20))
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	if code, msg := wc.send(t, "issue_comment", "", payload, nil); code != http.StatusAccepted {
		t.Fatalf("signed /deploy after the flood: %d %s", code, msg)
	}
	settle(t, s)
	if n := len(e.gh.Dispatches(testRepo)); n != 1 {
		t.Errorf("%d dispatches, want 1", n)
	}
}

// TestLargeDeliveryIsRefusedWithoutReadingIt: a Content-Length above the
// cap is answered 413 before the body is read, over a real connection.
func TestLargeDeliveryIsRefusedWithoutReadingIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, wc := startServer(t, e.h, ServerOptions{})
	req, err := http.NewRequest("POST", wc.url+"/webhook", &filler{left: 24 << 20})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 24 << 20
	// The client waits for "100 Continue" before sending the body; the
	// server answers 413 instead, having read nothing.
	req.Header.Set("Expect", "100-continue")
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// BenchmarkUnsignedFlood reports what eight concurrent 24 MiB unsigned
// posts cost the intake (target: less than 64 MiB in all).
func BenchmarkUnsignedFlood(b *testing.B) {
	h, err := NewHandler(Options{Self: "nixos-cloud-deploy[bot]", Clients: func(context.Context, int64, ghapi.Repo) (GitHub, error) {
		return nil, errors.New("benchmark: no GitHub")
	}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewServer(h, ServerOptions{Secret: []byte(testSecret)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Drain(context.Background())
	var grew uint64
	for b.Loop() {
		before := heapAllocated()
		for _, c := range unsignedFlood(s.Handler(), 8, 24<<20) {
			if c < 400 || c > 499 {
				b.Fatalf("status %d", c)
			}
		}
		grew += heapAllocated() - before
	}
	b.ReportMetric(float64(grew)/float64(b.N)/(1<<20), "MiB/flood")
}

// TestReadBudgetBoundsConcurrentBodies: bodies whose length is unknown take
// maxPayload each from the budget; once 32 of them are being read (slowly,
// as an attacker would), the next waits and is answered 503, and a
// delivery that announces a small length gets through as soon as one ends.
func TestReadBudgetBoundsConcurrentBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s, _ := startServer(t, e.h, ServerOptions{})
	h := s.Handler()
	post := func(body io.Reader, length int64) int {
		req := httptest.NewRequest("POST", "/webhook", body)
		req.ContentLength = length
		req.Header.Set("X-GitHub-Event", "issue_comment")
		req.Header.Set("X-GitHub-Delivery", "slow")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	const slow = readBudget / maxPayload
	writers := make([]*io.PipeWriter, slow)
	codes := make(chan int, slow)
	for i := range slow {
		pr, pw := io.Pipe()
		writers[i] = pw
		go func() { codes <- post(pr, -1) }()
	}
	// Wait until the slow bodies hold the whole budget.
	for s.reading.TryAcquire(1) {
		s.reading.Release(1)
		time.Sleep(time.Millisecond)
	}
	if code := post(&filler{left: 10}, -1); code != http.StatusServiceUnavailable {
		t.Errorf("a body beyond the budget: %d, want 503", code)
	}
	for _, pw := range writers {
		pw.Close()
	}
	for range slow {
		if code := <-codes; code != http.StatusUnauthorized {
			t.Errorf("a slow unsigned body: %d, want 401", code)
		}
	}
	if code := post(&filler{left: 10}, 10); code != http.StatusUnauthorized {
		t.Errorf("a small body after the flood: %d, want 401 (read, then refused)", code)
	}
}
