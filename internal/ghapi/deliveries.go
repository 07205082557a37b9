package ghapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-github/v62/github"
)

// HookDelivery is one attempt to deliver a webhook to the App's URL.
type HookDelivery struct {
	ID          int64
	GUID        string // X-GitHub-Delivery: the same for every attempt of one event
	Event       string
	Action      string
	StatusCode  int // what the receiver answered; 0: no answer
	DeliveredAt time.Time
	Redelivery  bool
}

// OK reports whether the receiver took the delivery (a 2xx answer).
func (d HookDelivery) OK() bool { return d.StatusCode >= 200 && d.StatusCode <= 299 }

// maxDeliveryPages bounds one listing (100 deliveries a page).
const maxDeliveryPages = 50

var errNoApp = errors.New("webhook deliveries belong to a GitHub App: set BOT_GITHUB_APP_ID and BOT_GITHUB_APP_PRIVATE_KEY")

// Deliveries lists the App's webhook delivery attempts made at or after
// since, newest first ("List deliveries for an app webhook": JWT only,
// cursor pagination). Only an App has them.
func (p *Provider) Deliveries(ctx context.Context, since time.Time) ([]HookDelivery, error) {
	if p.apps == nil {
		return nil, errNoApp
	}
	opts := &github.ListCursorOptions{PerPage: 100}
	var out []HookDelivery
	for range maxDeliveryPages {
		page, resp, err := p.base.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("failed to list the App's webhook deliveries: %w", err)
		}
		for _, d := range page {
			hd := HookDelivery{ID: d.GetID(), GUID: d.GetGUID(), Event: d.GetEvent(), Action: d.GetAction(),
				StatusCode: d.GetStatusCode(), DeliveredAt: d.GetDeliveredAt().Time, Redelivery: d.GetRedelivery()}
			if hd.DeliveredAt.Before(since) {
				return out, nil
			}
			out = append(out, hd)
		}
		if resp.Cursor == "" {
			return out, nil
		}
		opts.Cursor = resp.Cursor
	}
	return out, nil
}

// Redeliver asks GitHub to send a delivery again, under the same GUID
// ("Redeliver a delivery for an app webhook": JWT only, 202).
func (p *Provider) Redeliver(ctx context.Context, id int64) error {
	if p.apps == nil {
		return errNoApp
	}
	if _, _, err := p.base.Apps.RedeliverHookDelivery(ctx, id); err != nil {
		// go-github decodes the 202's empty object; an AcceptedError is
		// the 202 itself.
		var accepted *github.AcceptedError
		if errors.As(err, &accepted) {
			return nil
		}
		return fmt.Errorf("failed to ask for a redelivery of delivery %d: %w", id, err)
	}
	return nil
}
