package bot

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

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
)

// identities are the three ways the bot authenticates, and the login
// GitHub gives its comments in each.
var identities = []struct {
	name string
	self string
	opts func(t *testing.T, srv *ghapitest.Server) ghapi.Options
}{
	{"workflow GITHUB_TOKEN", ghapitest.ActionsLogin, func(_ *testing.T, srv *ghapitest.Server) ghapi.Options {
		srv.ActionsToken = "ghs_actions"
		return ghapi.Options{APIURL: srv.URL, Token: "ghs_actions"}
	}},
	{"GitHub App", "nixos-cloud-deploy[bot]", func(t *testing.T, srv *ghapitest.Server) ghapi.Options {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return ghapi.Options{APIURL: srv.URL, AppID: 1, PrivateKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})}
	}},
	{"token's user", "nixos-cloud-deploy-bot", func(_ *testing.T, srv *ghapitest.Server) ghapi.Options {
		return ghapi.Options{APIURL: srv.URL, Token: "test-token"}
	}},
}

// withIdentity is newEnv whose handler authenticates as one of identities
// and learns its login as cmd/bot does.
func withIdentity(t *testing.T, i int) *testEnv {
	t.Helper()
	e := newEnv(t, nil)
	o := identities[i].opts(t, e.gh)
	o.RunLookupInterval, o.RunLookupTimeout = time.Millisecond, 10*time.Second
	p, err := ghapi.NewProvider(o)
	if err != nil {
		t.Fatal(err)
	}
	self := ghapitest.ActionsLogin
	if o.Token != "ghs_actions" {
		if self, err = p.Identity(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if self != identities[i].self {
		t.Fatalf("identity %q, want %q", self, identities[i].self)
	}
	e.h, err = NewHandler(Options{Workflow: "deploy.yml", Self: self, Now: func() time.Time { return e.now },
		Clients: func(ctx context.Context, inst int64, repo ghapi.Repo) (GitHub, error) {
			return p.Client(ctx, inst, repo)
		}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestForgedMarkerIsNotState: anyone can write the hidden marker into a
// comment. Before the bot answers a maintainer's /deploy, a user without
// any role posts one that claims the comment is answered; the bot must
// still dispatch, and later never edit or count the forged comment.
func TestForgedMarkerIsNotState(t *testing.T) {
	t.Parallel()
	for i, id := range identities {
		t.Run(id.name, func(t *testing.T) {
			t.Parallel()
			e := withIdentity(t, i)
			c, payload := e.comment("/deploy az-nixos", time.Minute)
			forged := fmt.Sprintf("<!-- nixos-cloud-deploy: comment=%d run=1 vm=az-nixos command=deploy location=uksouth size=x image=x channel=x user=Codertocat state=succeeded -->\nlooks done", c.ID)
			f := e.gh.AddComment(testRepo, 1, "mallory", forged, e.now)
			out, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
			if err != nil {
				t.Fatal(err)
			}
			if out.Ignored != "" || len(e.gh.Dispatches(testRepo)) != 1 {
				t.Fatalf("HandleEvent() = %+v with %d dispatches; the forged marker was believed", out, len(e.gh.Dispatches(testRepo)))
			}
			// The run's events edit the bot's comment, never the forged one.
			e.gh.SetRun(testRepo, out.RunID, "completed", "success", e.now.Add(time.Minute))
			if _, err := e.h.HandleEvent(ctx, "workflow_run", e.runEvent("completed", out.RunID), nil); err != nil {
				t.Fatal(err)
			}
			var mine []ghapitest.Comment
			for _, cm := range e.gh.Comments(testRepo, 1) {
				switch {
				case cm.ID == f.ID && (cm.Edits != 0 || cm.Body != forged):
					t.Errorf("the forged comment was edited: %q", cm.Body)
				case cm.User == id.self:
					mine = append(mine, cm)
				}
			}
			if len(mine) != 1 || !strings.Contains(mine[0].Body, "state=succeeded") || !strings.Contains(mine[0].Body, fmt.Sprintf("run=%d", out.RunID)) {
				t.Errorf("the bot's comments = %+v, want its one status comment, succeeded", mine)
			}
		})
	}
}

// TestForgedReplyDoesNotSilenceRefusal: a marker in someone else's
// comment does not count as the bot's answer to a refused command either.
func TestForgedReplyDoesNotSilenceRefusal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.gh.SetPermission(testRepo, testUser, "read")
	c, payload := e.comment("/deploy az-nixos", time.Minute)
	e.gh.AddComment(testRepo, 1, "mallory", fmt.Sprintf("<!-- nixos-cloud-deploy: comment=%d -->", c.ID), e.now)
	if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
		t.Fatal(err)
	}
	if bc := e.botComments(); len(bc) != 1 || !strings.Contains(bc[0].Body, "needs **write**") {
		t.Fatalf("bot comments = %+v, want the refusal", bc)
	}
}

// TestRolesAsGitHubReportsThem: the legacy permission says write for a
// maintainer and read for a triager; BOT_PERMISSION_*=maintain and =triage
// go by the role.
func TestRolesAsGitHubReportsThem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		role, body, need string
		allowed          bool
	}{
		{"maintain", "/deploy az-nixos", "maintain", true},
		{"deployers:maintain", "/deploy az-nixos", "maintain", true}, // a custom role on maintain
		{"write", "/deploy az-nixos", "maintain", false},
		{"triage", "/status", "triage", true},
		{"read", "/status", "triage", false},
	}
	for _, tc := range tests {
		t.Run(tc.role+" "+tc.body, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(_ *ghapitest.Server, o *Options) {
				o.Permissions = DefaultPermissions()
				o.Permissions[chatopsKind(tc.body)] = tc.need
			})
			e.gh.SetPermission(testRepo, testUser, tc.role)
			_, payload := e.comment(tc.body, time.Minute)
			if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
				t.Fatal(err)
			}
			bc := e.botComments()
			refused := len(bc) == 1 && strings.Contains(bc[0].Body, "needs **"+tc.need+"**")
			if refused == tc.allowed {
				t.Errorf("role %s, %s needing %s: bot comments %+v; allowed = %v", tc.role, tc.body, tc.need, bc, !refused)
			}
		})
	}
}

// TestWrongIdentityStopsBeforeDispatch: a bot that takes itself for
// github-actions[bot] while its token writes as someone else would never
// find its own comments again; it stops before dispatching anything.
func TestWrongIdentityStopsBeforeDispatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *ghapitest.Server, o *Options) { o.Self = ghapitest.ActionsLogin })
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	_, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
	if err == nil || !strings.Contains(err.Error(), `the token writes comments as "nixos-cloud-deploy-bot"`) {
		t.Fatalf("HandleEvent() error = %v", err)
	}
	if n := len(e.gh.Dispatches(testRepo)); n != 0 {
		t.Errorf("%d dispatches", n)
	}
	if n := len(e.botComments()); n != 0 {
		t.Errorf("%d comments left behind", n)
	}
}
