package ghapi_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
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
		reject       bool
		ignore       bool
		wantFallback bool
	}{
		{name: "run details"},
		{name: "422 then correlation id", reject: true, wantFallback: true},
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

func TestPermissionOfNonCollaborator(t *testing.T) {
	t.Parallel()
	srv, c := newClient(t, "")
	srv.SetPermission("octo-org/infra", "maintainer", "admin")
	for user, want := range map[string]string{"maintainer": "admin", "stranger": "none"} {
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
