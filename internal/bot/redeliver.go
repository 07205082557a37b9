package bot

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// DeliveryAPI is what the Redeliverer needs from GitHub; *ghapi.Provider
// of a GitHub App is the implementation.
type DeliveryAPI interface {
	Deliveries(ctx context.Context, since time.Time) ([]ghapi.HookDelivery, error)
	Redeliver(ctx context.Context, id int64) error
}

var _ DeliveryAPI = (*ghapi.Provider)(nil)

// RedelivererOptions configure a Redeliverer.
type RedelivererOptions struct {
	Every time.Duration // how often to look; default 2 minutes
	// Window is how far back the first look reaches (a start after a
	// crash); default 1 hour.
	Window time.Duration
	// MaxAttempts bounds the redeliveries asked for one delivery;
	// default 5.
	MaxAttempts int
	Now         func() time.Time
	Logger      *slog.Logger
}

// Redeliverer asks GitHub again for the webhook deliveries the bot failed to
// take. GitHub does not redeliver a failed delivery by itself; its docs
// ("Handling failed webhook deliveries") tell an App to list its recent
// deliveries (GET /app/hook/deliveries), find the GUIDs none of whose
// attempts succeeded, and ask for them again (POST
// /app/hook/deliveries/{id}/attempts), on start and on a schedule. Only
// failures a second attempt can cure are asked for again: no answer (a
// crash, a timeout), 5xx (503: queue full or shutting down) and 429; a 4xx
// (wrong signature, too large) would fail the same way.
//
// Several replicas may each run one: a delivery asked for twice is a
// duplicate the intake and the status comment's marker already absorb.
type Redeliverer struct {
	api DeliveryAPI
	o   RedelivererOptions

	mu       sync.Mutex
	lastScan time.Time
	asked    map[string]int // GUID -> redeliveries asked for
}

// NewRedeliverer returns a Redeliverer; Run starts it.
func NewRedeliverer(api DeliveryAPI, o RedelivererOptions) *Redeliverer {
	if o.Every <= 0 {
		o.Every = 2 * time.Minute
	}
	if o.Window <= 0 {
		o.Window = time.Hour
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Redeliverer{api: api, o: o, asked: map[string]int{}}
}

// Run scans at once and then every o.Every until ctx ends.
func (r *Redeliverer) Run(ctx context.Context) {
	t := time.NewTicker(r.o.Every)
	defer t.Stop()
	for {
		if n, err := r.Scan(ctx); err != nil && ctx.Err() == nil {
			r.o.Logger.Warn("failed to look for failed webhook deliveries", "err", err)
		} else if n > 0 {
			r.o.Logger.Info("asked GitHub to redeliver failed webhook deliveries", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retryable reports whether another attempt may succeed where this one
// failed.
func retryable(status int) bool { return status == 0 || status == 429 || status >= 500 }

// Scan looks at the deliveries since the last scan (the first looks back
// o.Window) and asks again for each failed one. It returns how many
// redeliveries it asked for.
func (r *Redeliverer) Scan(ctx context.Context) (int, error) {
	r.mu.Lock()
	start := r.o.Now()
	since := r.lastScan.Add(-r.o.Every) // overlap: a delivery may be recorded late
	if r.lastScan.IsZero() {
		since = start.Add(-r.o.Window)
	}
	r.mu.Unlock()
	ds, err := r.api.Deliveries(ctx, since)
	if err != nil {
		return 0, err
	}
	byGUID := map[string][]ghapi.HookDelivery{}
	for _, d := range ds {
		byGUID[d.GUID] = append(byGUID[d.GUID], d)
	}
	guids := make([]string, 0, len(byGUID))
	for g := range byGUID {
		guids = append(guids, g)
	}
	slices.Sort(guids)
	asked := 0
	for _, g := range guids {
		attempts := byGUID[g]
		if slices.ContainsFunc(attempts, ghapi.HookDelivery.OK) {
			r.forget(g)
			continue
		}
		latest := slices.MaxFunc(attempts, func(a, b ghapi.HookDelivery) int { return a.DeliveredAt.Compare(b.DeliveredAt) })
		if !retryable(latest.StatusCode) || !r.ask(g) {
			continue
		}
		if err := r.api.Redeliver(ctx, latest.ID); err != nil {
			r.o.Logger.Warn("failed to ask for a redelivery", "delivery", g, "event", latest.Event, "err", err)
			continue
		}
		r.o.Logger.Info("asked for a redelivery", "delivery", g, "event", latest.Event, "status", latest.StatusCode)
		asked++
	}
	r.mu.Lock()
	r.lastScan = start
	r.mu.Unlock()
	return asked, nil
}

// ask counts a redelivery of g and reports whether it is still allowed.
func (r *Redeliverer) ask(g string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.asked[g] >= r.o.MaxAttempts {
		return false
	}
	r.asked[g]++
	return true
}

func (r *Redeliverer) forget(g string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.asked, g)
}

// FirstAttempt returns when GitHub first tried to deliver GUID delivery,
// looking at the attempts since notBefore, or the zero time when it finds
// none. It asks GitHub, so it holds across restarts and replicas.
func FirstAttempt(ctx context.Context, api DeliveryAPI, delivery string, notBefore time.Time) (time.Time, error) {
	ds, err := api.Deliveries(ctx, notBefore)
	if err != nil {
		return time.Time{}, err
	}
	var first time.Time
	for _, d := range ds {
		if d.GUID == delivery && (first.IsZero() || d.DeliveredAt.Before(first)) {
			first = d.DeliveredAt
		}
	}
	return first, nil
}
