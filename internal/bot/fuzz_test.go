package bot

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// FuzzWebhookIntake throws arbitrary deliveries at the intake: any event
// name, any body, signed with the secret or not. Whatever comes, the intake
// answers one of its statuses and never panics; nothing unsigned gets past
// the signature; nothing larger than the cap is taken. The seed corpus in
// testdata/fuzz/FuzzWebhookIntake holds the octokit payloads, signed and
// not.
func FuzzWebhookIntake(f *testing.F) {
	f.Add("issue_comment", fixture(f, "issue_comment.created", map[string]any{"comment.body": "/deploy az-nixos"}), true)
	f.Add("issue_comment", fixture(f, "issue_comment.edited", nil), true)
	f.Add("workflow_run", fixture(f, "workflow_run.requested", map[string]any{"workflow_run.display_title": "deploy az-nixos [i1-c2]"}), true)
	f.Add("workflow_job", fixture(f, "workflow_job.queued", nil), false)
	f.Add("ping", []byte(`{"zen":"Keep it logically awesome."}`), true)
	f.Add("issue_comment", []byte(`{"action":"created","comment":{"body":"/destroy x","user":{"login":"a","type":"User"}}}`), false)
	h, err := NewHandler(Options{Self: "nixos-cloud-deploy[bot]", Clients: func(context.Context, int64, ghapi.Repo) (GitHub, error) {
		return nil, errors.New("fuzz: no GitHub")
	}})
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewServer(h, ServerOptions{Secret: []byte(testSecret), Workers: 2, QueueSize: 1 << 12})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Drain(context.Background()) })
	srv := s.Handler()
	statuses := []int{http.StatusOK, http.StatusAccepted, http.StatusBadRequest, http.StatusUnauthorized,
		http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable}
	f.Fuzz(func(t *testing.T, event string, body []byte, signed bool) {
		req := httptest.NewRequest("POST", "/webhook", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", "fuzz")
		if signed {
			req.Header.Set("X-Hub-Signature-256", Sign([]byte(testSecret), body))
		} else {
			req.Header.Set("X-Hub-Signature-256", Sign([]byte("not the secret"), body))
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case !slices.Contains(statuses, code):
			t.Fatalf("status %d for event %q", code, event)
		case len(body) > maxPayload && code != http.StatusRequestEntityTooLarge:
			t.Fatalf("a %d-byte body got %d, want 413", len(body), code)
		case !signed && len(body) <= maxPayload && code != http.StatusUnauthorized:
			t.Fatalf("an unsigned delivery got %d, want 401", code)
		case code == http.StatusAccepted:
			// Accepted work is taken by the same triage HandleEvent runs.
			if act, why := h.Triage(event, body); !act {
				t.Fatalf("accepted, but triage says %q", why)
			}
		}
		// Each input is a new delivery id to the de-duplication cache.
		s.seen.remove("fuzz")
	})
}
