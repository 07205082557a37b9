package ghapi_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
)

var repo = ghapi.Repo{Owner: "octo-org", Name: "infra"}

func newClient(t *testing.T, apiURL string) (*ghapitest.Server, *ghapi.Client) {
	t.Helper()
	srv := ghapitest.New(t)
	srv.Token = "tok"
	srv.AddRepo("octo-org/infra", "main")
	if apiURL == "" {
		apiURL = srv.URL
	}
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: strings.ReplaceAll(apiURL, "SERVER", srv.URL), Token: "tok",
		RunLookupInterval: time.Millisecond, RunLookupTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Client(context.Background(), 0, repo)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestEnterpriseBaseURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"SERVER", "SERVER/", "SERVER/api/v3", "SERVER/api/v3/"} {
		t.Run(u, func(t *testing.T) {
			t.Parallel()
			_, c := newClient(t, u)
			got, err := c.DefaultBranch(context.Background(), repo)
			if err != nil || got != "main" {
				t.Fatalf("DefaultBranch() = %q, %v; want main", got, err)
			}
		})
	}
}

func TestBadTokenIsRefused(t *testing.T) {
	t.Parallel()
	srv := ghapitest.New(t)
	srv.Token = "right"
	srv.AddRepo("octo-org/infra", "main")
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: srv.URL, Token: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := p.Client(context.Background(), 0, repo)
	if _, err := c.DefaultBranch(context.Background(), repo); ghapi.StatusCode(err) != 401 {
		t.Fatalf("DefaultBranch() error = %v, want a 401", err)
	}
}

func TestDispatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		reject       int // the status a server that predates return_run_details answers
		ignore       bool
		wantFallback bool
	}{
		{name: "run details"},
		{name: "422 then correlation id", reject: 422, wantFallback: true},
		// GitHub Enterprise Server 3.19 and older (cli/cli#12672).
		{name: "GHES 400 then correlation id", reject: 400, wantFallback: true},
		{name: "204 then correlation id", ignore: true, wantFallback: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, c := newClient(t, "")
			srv.RejectRunDetails, srv.IgnoreRunDetails = tc.reject, tc.ignore
			// Someone else's run that must not be mistaken for ours.
			srv.AddRun("octo-org/infra", ghapitest.Run{Workflow: "deploy.yml", Title: "deploy az-nixos [i1-c1]", Event: "workflow_dispatch", Status: "completed"})
			inputs := map[string]any{"vm-name": "az-nixos", "correlation-id": "i7-c99"}
			got, err := c.Dispatch(context.Background(), repo, ghapi.DispatchRequest{Workflow: "deploy.yml", Ref: "main", Inputs: inputs, CorrelationID: "i7-c99"})
			if err != nil {
				t.Fatal(err)
			}
			ds := srv.Dispatches("octo-org/infra")
			if len(ds) != 1 {
				t.Fatalf("%d dispatches, want 1", len(ds))
			}
			want := ghapi.Dispatched{RunID: ds[0].RunID, HTMLURL: fmt.Sprintf("%s/octo-org/infra/actions/runs/%d", srv.URL, ds[0].RunID), Fallback: tc.wantFallback}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Dispatch() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(inputs, ds[0].Inputs); diff != "" || ds[0].Ref != "main" {
				t.Errorf("dispatched ref %q, inputs mismatch (-want +got):\n%s", ds[0].Ref, diff)
			}
			wantRequests := 1
			if tc.reject != 0 {
				wantRequests = 2 // the refused one, then the classic one, once
			}
			if n := srv.Calls("POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches"); n != wantRequests {
				t.Errorf("%d dispatch requests, want %d", n, wantRequests)
			}
		})
	}
}

func TestDispatchErrorsSayWhy(t *testing.T) {
	t.Parallel()
	srv, c := newClient(t, "")
	srv.FailNext("POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches", 404)
	_, err := c.Dispatch(context.Background(), repo, ghapi.DispatchRequest{Workflow: "deploy.yml", Ref: "main", CorrelationID: "x"})
	if err == nil || !strings.Contains(err.Error(), `failed to dispatch workflow "deploy.yml" at "main" in octo-org/infra`) || !strings.Contains(err.Error(), "may the token run workflows") {
		t.Fatalf("Dispatch() error = %v", err)
	}
}

func TestCommentsPaginate(t *testing.T) {
	t.Parallel()
	srv, c := newClient(t, "")
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	srv.AddComment("octo-org/infra", 3, "someone", "old", old)
	for i := range 150 {
		srv.AddComment("octo-org/infra", 3, "someone", fmt.Sprint(i), time.Now())
	}
	srv.AddComment("octo-org/infra", 4, "someone", "other issue", time.Now())
	got, err := c.Comments(context.Background(), repo, 3, old.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 150 || got[0].Body != "0" || got[149].Body != "149" {
		t.Fatalf("got %d comments (first %q), want 150 since the cut-off", len(got), got[0].Body)
	}
	if n := srv.Calls("GET /repos/{owner}/{repo}/issues/{number}/comments"); n != 2 {
		t.Errorf("%d list calls, want 2 pages", n)
	}
}

// TestPermissionIsTheRole: the legacy permission says write for a
// maintainer and read for a triager; the role is what counts.
func TestPermissionIsTheRole(t *testing.T) {
	t.Parallel()
	srv, c := newClient(t, "")
	for user, role := range map[string]string{"owner": "admin", "maintainer": "maintain", "writer": "write", "triager": "triage",
		"reader": "read", "deployer": "deployer:maintain", "auditor": "auditor:read"} {
		srv.SetPermission("octo-org/infra", user, role)
	}
	for user, want := range map[string]string{"owner": "admin", "maintainer": "maintain", "writer": "write", "triager": "triage",
		"reader": "read", "deployer": "maintain", "auditor": "read", "stranger": "none"} {
		got, err := c.Permission(context.Background(), repo, user)
		if err != nil || got != want {
			t.Errorf("Permission(%q) = %q, %v; want %q", user, got, err, want)
		}
	}
}

func TestGitHubAppInstallationTokens(t *testing.T) {
	t.Parallel()
	srv := ghapitest.New(t)
	srv.Token = "no-personal-token-accepted"
	srv.AddRepo("octo-org/infra", "main")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: srv.URL, AppID: 12, PrivateKey: pemKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if id, err := p.Identity(ctx); err != nil || id != "nixos-cloud-deploy[bot]" {
		t.Fatalf("Identity() = %q, %v", id, err)
	}
	for _, inst := range []int64{0, 4242} { // 0: looked up from the repository
		c, err := p.Client(ctx, inst, repo)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := c.DefaultBranch(ctx, repo); err != nil || b != "main" {
			t.Fatalf("installation %d: DefaultBranch() = %q, %v", inst, b, err)
		}
	}
	if n := srv.Calls("POST /app/installations/{id}/access_tokens"); n != 1 {
		t.Errorf("%d installation tokens minted, want 1 (cached per installation)", n)
	}
}

func TestBadAppKeyIsNotEchoed(t *testing.T) {
	t.Parallel()
	_, err := ghapi.NewProvider(ghapi.Options{AppID: 1, PrivateKey: []byte("super-secret-not-a-key")})
	if err == nil || strings.Contains(err.Error(), "super-secret") {
		t.Fatalf("NewProvider() error = %v", err)
	}
}

func TestRetriesOnlyIdempotentRequests(t *testing.T) {
	t.Parallel()
	srv, c := newClient(t, "")
	srv.FailNext("GET /repos/{owner}/{repo}", 502)
	if b, err := c.DefaultBranch(context.Background(), repo); err != nil || b != "main" {
		t.Fatalf("DefaultBranch() after a 502 = %q, %v; want a retried success", b, err)
	}
	if n := srv.Calls("GET /repos/{owner}/{repo}"); n != 2 {
		t.Errorf("%d GETs, want 2", n)
	}
	cm := srv.AddComment("octo-org/infra", 1, "someone", "hi", time.Now())
	srv.FailNext("PATCH /repos/{owner}/{repo}/issues/comments/{id}", 503)
	if err := c.EditComment(context.Background(), repo, cm.ID, "edited"); err != nil {
		t.Fatalf("EditComment() after a 503: %v", err)
	}
	if got := srv.Comments("octo-org/infra", 1)[0].Body; got != "edited" {
		t.Errorf("comment body %q after the retried edit", got)
	}
	route := "POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches"
	srv.FailNext(route, 502)
	if _, err := c.Dispatch(context.Background(), repo, ghapi.DispatchRequest{Workflow: "deploy.yml", Ref: "main", CorrelationID: "x"}); ghapi.StatusCode(err) != 502 {
		t.Fatalf("Dispatch() error = %v, want the 502", err)
	}
	if n := srv.Calls(route); n != 1 {
		t.Errorf("%d dispatch requests, want 1: a dispatch is never repeated", n)
	}
}

// rateLimited is a client whose pauses are recorded instead of slept.
func rateLimited(t *testing.T, maxWait time.Duration) (*ghapitest.Server, *ghapi.Client, *[]time.Duration) {
	t.Helper()
	srv := ghapitest.New(t)
	srv.Token = "tok"
	srv.AddRepo("octo-org/infra", "main")
	var mu sync.Mutex
	var waits []time.Duration
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: srv.URL, Token: "tok", MaxRateLimitWait: maxWait,
		Wait: func(_ context.Context, d time.Duration) error {
			mu.Lock()
			defer mu.Unlock()
			waits = append(waits, d)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Client(context.Background(), 0, repo)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, &waits
}

// TestRateLimitsAreWaitedOut follows "Rate limits for the REST API",
// "Exceeding the rate limit": wait retry-after when given, until
// x-ratelimit-reset when x-ratelimit-remaining is 0, else at least a minute.
func TestRateLimitsAreWaitedOut(t *testing.T) {
	t.Parallel()
	const getRepo = "GET /repos/{owner}/{repo}"
	tests := []struct {
		name    string
		limit   ghapitest.RateLimit
		wantMin time.Duration
		wantMax time.Duration
	}{
		{"secondary 403 with retry-after", ghapitest.RateLimit{Status: 403, Secondary: true, RetryAfter: 7}, 7 * time.Second, 7 * time.Second},
		{"secondary 429 with retry-after", ghapitest.RateLimit{Status: 429, Secondary: true, RetryAfter: 3}, 3 * time.Second, 3 * time.Second},
		{"secondary 403 without headers", ghapitest.RateLimit{Status: 403, Secondary: true}, time.Minute, time.Minute},
		{"primary 403 until reset", ghapitest.RateLimit{Status: 403, Reset: time.Now().Add(90 * time.Second)}, 80 * time.Second, 92 * time.Second},
		{"primary 429 until reset", ghapitest.RateLimit{Status: 429, Reset: time.Now().Add(30 * time.Second)}, 20 * time.Second, 32 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, c, waits := rateLimited(t, 5*time.Minute)
			srv.RateLimitNext(getRepo, tc.limit)
			if b, err := c.DefaultBranch(context.Background(), repo); err != nil || b != "main" {
				t.Fatalf("DefaultBranch() = %q, %v; want the retried answer", b, err)
			}
			if n := srv.Calls(getRepo); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
			if len(*waits) != 1 || (*waits)[0] < tc.wantMin || (*waits)[0] > tc.wantMax {
				t.Errorf("waits %v, want one of %v to %v", *waits, tc.wantMin, tc.wantMax)
			}
		})
	}
}

func TestRateLimitedWritesAreRepeatedOnce(t *testing.T) {
	t.Parallel()
	srv, c, _ := rateLimited(t, 5*time.Minute)
	// A secondary limit on content creation refuses the request: repeating
	// it cannot post twice.
	srv.RateLimitNext("POST /repos/{owner}/{repo}/issues/{number}/comments", ghapitest.RateLimit{Status: 403, Secondary: true, RetryAfter: 1})
	if _, err := c.CreateComment(context.Background(), repo, 1, "hello"); err != nil {
		t.Fatal(err)
	}
	cm := srv.Comments("octo-org/infra", 1)
	if len(cm) != 1 {
		t.Fatalf("%d comments, want 1", len(cm))
	}
	srv.RateLimitNext("PATCH /repos/{owner}/{repo}/issues/comments/{id}", ghapitest.RateLimit{Status: 429, Secondary: true, RetryAfter: 1})
	if err := c.EditComment(context.Background(), repo, cm[0].ID, "edited"); err != nil {
		t.Fatal(err)
	}
	if got := srv.Comments("octo-org/infra", 1)[0].Body; got != "edited" {
		t.Errorf("body %q after a rate-limited edit", got)
	}
	srv.RateLimitNext("POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches", ghapitest.RateLimit{Status: 403, Secondary: true, RetryAfter: 1})
	if _, err := c.Dispatch(context.Background(), repo, ghapi.DispatchRequest{Workflow: "deploy.yml", Ref: "main", CorrelationID: "x"}); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Dispatches("octo-org/infra")); n != 1 {
		t.Errorf("%d dispatches, want 1", n)
	}
}

func TestForbiddenAndLongLimitsAreNotWaited(t *testing.T) {
	t.Parallel()
	const getRepo = "GET /repos/{owner}/{repo}"
	srv, c, waits := rateLimited(t, time.Minute)
	// A 403 for a missing permission is not a rate limit.
	srv.FailNext(getRepo, 403)
	if _, err := c.DefaultBranch(context.Background(), repo); ghapi.StatusCode(err) != 403 {
		t.Fatalf("DefaultBranch() error = %v, want the 403", err)
	}
	// A reset an hour away is more than the bot waits: the caller hears of it.
	srv.RateLimitNext(getRepo, ghapitest.RateLimit{Status: 403, Reset: time.Now().Add(time.Hour)})
	if _, err := c.DefaultBranch(context.Background(), repo); ghapi.StatusCode(err) != 403 {
		t.Fatalf("DefaultBranch() error = %v, want the rate limit", err)
	}
	if n := srv.Calls(getRepo); n != 2 {
		t.Errorf("%d requests, want 2 (none repeated)", n)
	}
	if len(*waits) != 0 {
		t.Errorf("waited %v, want no wait", *waits)
	}
}

func TestDeliveriesAndRedelivery(t *testing.T) {
	t.Parallel()
	srv := ghapitest.New(t)
	srv.Token = "no-personal-token-accepted"
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: srv.URL, AppID: 12, PrivateKey: pemKey})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	var ids []int64
	for i := range 250 { // three pages of 100
		ids = append(ids, srv.AddDelivery(ghapitest.Delivery{GUID: fmt.Sprintf("g-%d", i), Event: "issue_comment", Action: "created",
			StatusCode: 202, DeliveredAt: start.Add(time.Duration(i) * time.Second)}, []byte(`{}`)))
	}
	got, err := p.Deliveries(context.Background(), start.Add(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 230 || got[0].GUID != "g-249" || got[229].GUID != "g-20" || !got[0].OK() {
		t.Fatalf("Deliveries() = %d (first %+v), want 230 newest first down to g-20", len(got), got[0])
	}
	if n := srv.Calls("GET /app/hook/deliveries"); n != 3 {
		t.Errorf("%d list requests, want 3 pages", n)
	}
	if err := p.Redeliver(context.Background(), ids[7]); err != nil {
		t.Fatal(err)
	}
	srv.WaitRedeliveries()
	all := srv.Deliveries()
	if last := all[len(all)-1]; last.GUID != "g-7" || !last.Redelivery {
		t.Errorf("last delivery %+v, want a redelivery of g-7", last)
	}
	tok, err := ghapi.NewProvider(ghapi.Options{APIURL: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Deliveries(context.Background(), start); err == nil || !strings.Contains(err.Error(), "GitHub App") {
		t.Errorf("Deliveries() with a token: %v, want an error naming the App", err)
	}
}

func TestAnnotationsPaginate(t *testing.T) {
	t.Parallel()
	srv, c := newClient(t, "")
	id := srv.AddRun("octo-org/infra", ghapitest.Run{Workflow: "deploy.yml", Status: "completed", Conclusion: "success"})
	var anns []ghapitest.Annotation
	for i := range 130 {
		anns = append(anns, ghapitest.Annotation{Level: "warning", Title: fmt.Sprint(i), Message: "m"})
	}
	srv.SetAnnotations("octo-org/infra", id, anns...)
	got, err := c.Annotations(context.Background(), repo, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 130 || got[129].Title != "129" || got[0].Job != "deploy" {
		t.Fatalf("Annotations() = %d, want 130 from job deploy", len(got))
	}
}
