package bot

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
)

// appEnv is an App-mode bot: a handler that measures a redelivered
// command's age from GitHub's first attempt, and the App's provider for the
// Redeliverer.
func appEnv(t *testing.T) (*testEnv, *ghapi.Provider) {
	t.Helper()
	e := newEnv(t, nil)
	o := identities[1].opts(t, e.gh)
	o.RunLookupInterval, o.RunLookupTimeout = time.Millisecond, 10*time.Second
	p, err := ghapi.NewProvider(o)
	if err != nil {
		t.Fatal(err)
	}
	e.h, err = NewHandler(Options{Workflow: "deploy.yml", Self: "nixos-cloud-deploy[bot]", Now: func() time.Time { return e.now },
		Clients: func(ctx context.Context, inst int64, repo ghapi.Repo) (GitHub, error) {
			return p.Client(ctx, inst, repo)
		},
		FirstAttempt: func(ctx context.Context, delivery string, notBefore time.Time) (time.Time, error) {
			return FirstAttempt(ctx, p, delivery, notBefore)
		}})
	if err != nil {
		t.Fatal(err)
	}
	e.gh.HookSecret = []byte(testSecret)
	e.gh.Now = func() time.Time { return e.now }
	return e, p
}

// TestCommandTheBotFailedToTakeIsHandledLater: the bot answers 503 while it
// shuts down; GitHub does not try again by itself. The next process asks
// for the redelivery, which comes twenty minutes after the comment, longer
// than BOT_MAX_COMMENT_AGE: it is still handled, once, because GitHub
// first tried within the limit.
func TestCommandTheBotFailedToTakeIsHandledLater(t *testing.T) {
	t.Parallel()
	e, p := appEnv(t)
	// The comment, and the first attempt, twenty minutes ago.
	e.now = e.now.Add(-20 * time.Minute)
	_, payload := e.comment("/deploy az-nixos", 0)
	stopping, _ := startServer(t, e.h, ServerOptions{})
	_ = stopping.Drain(ctx) // shutting down: deliveries get 503
	hs := httptest.NewServer(stopping.Handler())
	t.Cleanup(hs.Close)
	e.gh.HookURL = hs.URL + "/webhook"
	first := e.gh.SendWebhook("issue_comment", payload)
	if first.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("first delivery answered %d, want 503", first.StatusCode)
	}
	// Twenty minutes later, a new process.
	e.now = e.now.Add(20 * time.Minute)
	s, wc := startServer(t, e.h, ServerOptions{})
	e.gh.HookURL = wc.url + "/webhook"
	r := NewRedeliverer(p, RedelivererOptions{})
	n, err := r.Scan(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Scan() = %d, %v; want one redelivery asked for", n, err)
	}
	e.gh.WaitRedeliveries()
	settle(t, s)
	if d := e.gh.Dispatches(testRepo); len(d) != 1 {
		t.Fatalf("%d dispatches, want the command handled once", len(d))
	}
	// The redelivery succeeded: the next scan asks for nothing.
	if n, err := r.Scan(ctx); err != nil || n != 0 {
		t.Errorf("second Scan() = %d, %v; want nothing to ask for", n, err)
	}
}

// TestStaleCommandIsStillRefused: a command GitHub first delivered long
// after it was written (or a redelivery of one the bot took and refused)
// is stale.
func TestStaleCommandIsStillRefused(t *testing.T) {
	t.Parallel()
	e, _ := appEnv(t)
	c, payload := e.comment("/deploy az-nixos", 30*time.Minute)
	e.gh.AddDelivery(ghapitest.Delivery{GUID: "late", Event: "issue_comment", Action: "created", StatusCode: 0,
		DeliveredAt: c.CreatedAt.Add(25 * time.Minute)}, payload)
	s, wc := startServer(t, e.h, ServerOptions{})
	if code, msg := wc.send(t, "issue_comment", "late", payload, nil); code != http.StatusAccepted {
		t.Fatalf("delivery: %d %s, want 202 (the worker checks the first attempt)", code, msg)
	}
	// Without the App's deliveries, a stale command is refused at once.
	if code, msg := wc.send(t, "issue_comment", "unknown-guid", payload, nil); code != http.StatusAccepted {
		t.Fatalf("delivery: %d %s", code, msg)
	}
	settle(t, s)
	if d := e.gh.Dispatches(testRepo); len(d) != 0 {
		t.Fatalf("%d dispatches for a stale command", len(d))
	}
}

// fakeDeliveries is a DeliveryAPI that records the redeliveries asked for.
type fakeDeliveries struct {
	list  []ghapi.HookDelivery
	asked []int64
	err   error
	now   func() time.Time
}

func (f *fakeDeliveries) Deliveries(_ context.Context, since time.Time) ([]ghapi.HookDelivery, error) {
	var out []ghapi.HookDelivery
	for _, d := range f.list {
		if !d.DeliveredAt.Before(since) {
			out = append(out, d)
		}
	}
	return out, f.err
}

// Redeliver records the request and, as the receiver is still failing, a
// new failed attempt of the same GUID.
func (f *fakeDeliveries) Redeliver(_ context.Context, id int64) error {
	f.asked = append(f.asked, id)
	for _, d := range f.list {
		if d.ID == id {
			f.list = append(f.list, ghapi.HookDelivery{ID: int64(100 + len(f.list)), GUID: d.GUID, StatusCode: 503, DeliveredAt: f.now(), Redelivery: true})
			break
		}
	}
	return nil
}

func TestRedelivererAsksOnlyForCurableFailures(t *testing.T) {
	t.Parallel()
	now := time.Now()
	at := func(min int) time.Time { return now.Add(time.Duration(min) * time.Minute) }
	f := &fakeDeliveries{list: []ghapi.HookDelivery{
		{ID: 1, GUID: "ok", StatusCode: 202, DeliveredAt: at(-5)},
		{ID: 2, GUID: "busy", StatusCode: 503, DeliveredAt: at(-5)},
		{ID: 3, GUID: "down", StatusCode: 0, DeliveredAt: at(-4)},
		{ID: 4, GUID: "throttled", StatusCode: 429, DeliveredAt: at(-4)},
		{ID: 5, GUID: "bad-signature", StatusCode: 401, DeliveredAt: at(-3)},
		{ID: 6, GUID: "too-large", StatusCode: 413, DeliveredAt: at(-3)},
		{ID: 7, GUID: "retried-ok", StatusCode: 503, DeliveredAt: at(-3)},
		{ID: 8, GUID: "retried-ok", StatusCode: 202, DeliveredAt: at(-2), Redelivery: true},
		{ID: 9, GUID: "retried-failed", StatusCode: 502, DeliveredAt: at(-3)},
		{ID: 10, GUID: "retried-failed", StatusCode: 503, DeliveredAt: at(-2), Redelivery: true},
		{ID: 11, GUID: "too-old", StatusCode: 503, DeliveredAt: at(-90)},
	}}
	f.now = func() time.Time { return now }
	r := NewRedeliverer(f, RedelivererOptions{Now: func() time.Time { return now }, MaxAttempts: 2})
	if _, err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	asked := slices.Clone(f.asked)
	slices.Sort(asked)
	// The latest attempt of each failed GUID, within the first hour.
	if want := []int64{2, 3, 4, 10}; !slices.Equal(asked, want) {
		t.Errorf("asked for %v, want %v", asked, want)
	}
	// Still failing: asked again, up to MaxAttempts, then given up.
	for range 3 {
		now = now.Add(2 * time.Minute)
		if _, err := r.Scan(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.asked); n != 8 {
		t.Errorf("%d redeliveries asked for in all, want 8 (each of 4 twice)", n)
	}
	f.err = errors.New("boom")
	if _, err := r.Scan(ctx); err == nil {
		t.Error("Scan() hid a listing error")
	}
}
