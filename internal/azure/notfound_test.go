package azure

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// wrongSubscription is a provisioner for a subscription the fake ARM does not know.
func wrongSubscription(t *testing.T, f *fakeARM) *Provisioner {
	t.Helper()
	sub := f.sub
	f.sub = "99999999-9999-4999-8999-999999999999"
	p := f.provisioner(t)
	f.sub = sub
	return p
}

// TestNotFoundDecidesOnTheCode: a mistyped subscription answers 404 SubscriptionNotFound. destroy
// must fail and name the subscription instead of reporting "nothing to delete", lookup must not
// say the VM does not exist, and deploy must not try to create the group.
func TestNotFoundDecidesOnTheCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFakeARM()
	f.seedGroup("az-nixos-rg", map[string]string{TagManagedBy: ManagedByValue})
	p := wrongSubscription(t, f)
	const wrong = "99999999-9999-4999-8999-999999999999"

	t.Run("destroy", func(t *testing.T) {
		res, err := p.Destroy(ctx, "az-nixos-rg")
		if err == nil {
			t.Fatalf("Destroy = %+v, nil; want an error naming the subscription", res)
		}
		if res.Note != "" || res.Deleted {
			t.Errorf("result = %+v, want no note and nothing deleted", res)
		}
		for _, w := range []string{"SubscriptionNotFound", `subscription "` + wrong + `"`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("err = %v, want %q", err, w)
			}
		}
	})
	t.Run("lookup", func(t *testing.T) {
		_, err := p.LookupVM(ctx, "az-nixos-rg", "az-nixos")
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("LookupVM err = %v, want an error that is not ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), wrong) {
			t.Errorf("err = %v, want the subscription named", err)
		}
	})
	t.Run("provision", func(t *testing.T) {
		_, err := p.Provision(ctx, testSpec(), nil)
		if err == nil || !strings.Contains(err.Error(), "SubscriptionNotFound") {
			t.Fatalf("Provision err = %v, want SubscriptionNotFound", err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.sentPuts != 0 {
			t.Errorf("%d PUTs sent to a subscription that does not exist", f.sentPuts)
		}
	})
	t.Run("the right subscription still finds nothing", func(t *testing.T) {
		right := f.provisioner(t)
		if _, err := right.LookupVM(ctx, "az-nixos-rg", "az-nixos"); !errors.Is(err, ErrNotFound) {
			t.Errorf("LookupVM of a missing VM: err = %v, want ErrNotFound", err)
		}
		res, err := right.Destroy(ctx, "no-such-rg")
		if err != nil || !strings.Contains(res.Note, "does not exist") {
			t.Errorf("Destroy of a missing group = %+v, %v; want the note", res, err)
		}
	})
}
