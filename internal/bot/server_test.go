package bot

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// settle drains the server so that queued work is done before asserting.
func settle(t *testing.T, s *Server) {
	t.Helper()
	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookSignature(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sign     func(body []byte) string
		wantCode int
	}{
		{"valid", nil, http.StatusAccepted},
		{"missing", func([]byte) string { return "" }, http.StatusUnauthorized},
		{"wrong secret", func(b []byte) string { return Sign([]byte("guess"), b) }, http.StatusUnauthorized},
		{"sha1 only", func([]byte) string { return "sha1=0123456789abcdef0123456789abcdef01234567" }, http.StatusUnauthorized},
		{"not hex", func([]byte) string { return "sha256=zz" }, http.StatusUnauthorized},
		{"other body", func(b []byte) string { return Sign([]byte(testSecret), append(b, ' ')) }, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			s, wc := startServer(t, e.h, ServerOptions{})
			_, payload := e.comment("/deploy az-nixos", time.Minute)
			code, msg := wc.send(t, "issue_comment", "", payload, tc.sign)
			if code != tc.wantCode {
				t.Fatalf("status %d (%s), want %d", code, msg, tc.wantCode)
			}
			settle(t, s)
			wantDispatches := 0
			if tc.wantCode == http.StatusAccepted {
				wantDispatches = 1
			}
			if n := len(e.gh.Dispatches(testRepo)); n != wantDispatches {
				t.Errorf("%d dispatches, want %d", n, wantDispatches)
			}
			if tc.wantCode != http.StatusAccepted {
				if n := e.gh.Calls("GET /repos/{owner}/{repo}/collaborators/{user}/permission"); n != 0 {
					t.Errorf("a refused delivery made %d API calls", n)
				}
			}
		})
	}
}

func TestRedelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s, wc := startServer(t, e.h, ServerOptions{})
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	if code, msg := wc.send(t, "issue_comment", "d-1", payload, nil); code != http.StatusAccepted {
		t.Fatalf("first delivery: %d %s", code, msg)
	}
	code, msg := wc.send(t, "issue_comment", "d-1", payload, nil)
	if code != http.StatusOK || msg != "duplicate delivery" {
		t.Fatalf("redelivery: %d %q, want 200 duplicate delivery", code, msg)
	}
	// The same comment under another delivery id (GitHub resending after a
	// timeout, another replica) passes the cache; the marker stops it.
	if code, msg := wc.send(t, "issue_comment", "d-2", payload, nil); code != http.StatusAccepted {
		t.Fatalf("second delivery id: %d %s", code, msg)
	}
	settle(t, s)
	if n := len(e.gh.Dispatches(testRepo)); n != 1 {
		t.Errorf("%d dispatches, want 1", n)
	}
	if n := len(e.botComments()); n != 1 {
		t.Errorf("%d bot comments, want 1", n)
	}
}

func TestIgnoredDeliveriesAnswerAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s, wc := startServer(t, e.h, ServerOptions{})
	stale := fixture(t, "issue_comment.created", map[string]any{"comment.body": "/deploy az-nixos", "comment.created_at": e.now.Add(-time.Hour).Format(time.RFC3339)})
	tests := []struct {
		event string
		body  []byte
		want  string
	}{
		{"issue_comment", fixture(t, "issue_comment.edited", map[string]any{"comment.body": "/deploy az-nixos"}), "ignored: comment edited"},
		{"issue_comment", fixture(t, "issue_comment.deleted", map[string]any{"comment.body": "/deploy az-nixos"}), "ignored: comment deleted"},
		{"issue_comment", fixture(t, "issue_comment.created", map[string]any{"comment.body": "/deploy az-nixos", "comment.user.type": "Bot"}), "ignored: comment by a bot"},
		{"issue_comment", stale, "ignored: stale comment"},
		{"push", []byte(`{}`), `ignored: event "push" is not handled`},
		// CI runs of the repository: the run and then its jobs cost nothing.
		{"workflow_run", fixture(t, "workflow_run.requested", nil), "ignored: not a run the bot started"},
		{"workflow_job", fixture(t, "workflow_job.queued", map[string]any{"workflow_job.run_id": 289782451}), "ignored: a job of a run the bot did not start"},
		{"ping", []byte(`{"zen":"Design for failure."}`), "pong"},
	}
	for _, tc := range tests {
		code, msg := wc.send(t, tc.event, "", tc.body, nil)
		if code != http.StatusOK || !strings.HasPrefix(msg, tc.want) {
			t.Errorf("%s: %d %q, want 200 %q", tc.event, code, msg, tc.want)
		}
	}
	settle(t, s)
	for _, route := range []string{"GET /repos/{owner}/{repo}/collaborators/{user}/permission", "GET /repos/{owner}/{repo}/actions/runs/{id}"} {
		if n := e.gh.Calls(route); n != 0 {
			t.Errorf("%d calls to %s for ignored deliveries", n, route)
		}
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, wc := startServer(t, e.h, ServerOptions{})
	resp, err := http.Get(wc.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /healthz = %d", resp.StatusCode)
	}
}

func TestNoSecretNoServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := NewServer(e.h, ServerOptions{Secret: []byte{}}); err == nil || !strings.Contains(err.Error(), "BOT_WEBHOOK_SECRET") {
		t.Fatalf("NewServer() without a secret: %v", err)
	}
}

// TestFullQueueAndDrain: with the one worker blocked and the queue full, a
// delivery is answered 503 and forgotten, so GitHub's redelivery (same id)
// is taken later; Drain finishes everything that was accepted.
func TestFullQueueAndDrain(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var handled atomic.Int64
	h, err := NewHandler(Options{Workflow: "deploy.yml", Self: "nixos-cloud-deploy[bot]", Clients: func(ctx context.Context, _ int64, _ ghapi.Repo) (GitHub, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		handled.Add(1)
		return nil, errors.New("test: no client") // the work item ends here
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, wc := startServer(t, h, ServerOptions{Workers: 1, QueueSize: 1})
	// Triage passes a bot run without API calls.
	run := fixture(t, "workflow_run.requested", map[string]any{"workflow_run.display_title": "deploy az-nixos [i1-c2]"})
	if code, _ := wc.send(t, "workflow_run", "a", run, nil); code != http.StatusAccepted {
		t.Fatalf("first: %d", code)
	}
	// Wait until the worker holds "a", so "b" sits in the queue.
	for s.queue.len() != 0 {
		time.Sleep(time.Millisecond)
	}
	if code, _ := wc.send(t, "workflow_run", "b", run, nil); code != http.StatusAccepted {
		t.Fatalf("second: %d", code)
	}
	if code, _ := wc.send(t, "workflow_run", "c", run, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("third with a full queue: %d, want 503", code)
	}
	close(release)
	for handled.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	if code, _ := wc.send(t, "workflow_run", "c", run, nil); code != http.StatusAccepted {
		t.Fatalf("redelivery of the refused one: %d, want 202", code)
	}
	settle(t, s)
	if n := handled.Load(); n != 3 {
		t.Errorf("%d deliveries handled, want 3", n)
	}
	if code, _ := wc.send(t, "workflow_run", "d", run, nil); code != http.StatusServiceUnavailable {
		t.Errorf("after drain: %d, want 503", code)
	}
}

func TestServeShutsDownAndDrains(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s, err := NewServer(e.h, ServerOptions{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() { serveErr = s.Serve(sctx, ln, 5*time.Second) })
	wc := &webhookClient{url: "http://" + ln.Addr().String(), secret: []byte(testSecret)}
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	if code, msg := wc.send(t, "issue_comment", "", payload, nil); code != http.StatusAccepted {
		t.Fatalf("%d %s", code, msg)
	}
	cancel()
	wg.Wait()
	if serveErr != nil {
		t.Fatal(serveErr)
	}
	// Accepted work was finished before Serve returned.
	if n := len(e.gh.Dispatches(testRepo)); n != 1 {
		t.Errorf("%d dispatches after shutdown, want 1", n)
	}
}

func TestDecodeCommentHeadMatchesFullDecode(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"issue_comment.created", "issue_comment.edited", "issue_comment.deleted"} {
		payload := fixture(t, name, nil)
		var want commentHead
		if err := json.Unmarshal(payload, &want); err != nil {
			t.Fatal(err)
		}
		got, err := decodeCommentHead(payload)
		if err != nil || got != want {
			t.Errorf("%s: decodeCommentHead() = %+v, %v; want %+v", name, got, err, want)
		}
	}
	for _, bad := range []string{``, `[]`, `{"action":`, `{"comment":{"body":1}}`, `null`} {
		if _, err := decodeCommentHead([]byte(bad)); err == nil {
			t.Errorf("decodeCommentHead(%q) accepted", bad)
		}
	}
}
