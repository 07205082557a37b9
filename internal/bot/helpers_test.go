package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/chatops"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
)

const (
	testRepo   = "Codertocat/Hello-World" // the repository of the octokit issue_comment examples
	testUser   = "Codertocat"
	testSecret = "It's a Secret to Everybody"
)

// fixture loads a payload from testdata and sets fields given by dotted
// paths ("comment.body"), in memory only.
func fixture(tb testing.TB, name string, set map[string]any) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	for path, v := range set {
		keys := strings.Split(path, ".")
		cur := m
		for _, k := range keys[:len(keys)-1] {
			next, ok := cur[k].(map[string]any)
			if !ok {
				tb.Fatalf("%s: no object at %q of %q", name, k, path)
			}
			cur = next
		}
		cur[keys[len(keys)-1]] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// testEnv is a fake GitHub plus a handler talking to it with the real
// go-github client through the GHES base URL.
type testEnv struct {
	t   testing.TB
	gh  *ghapitest.Server
	h   *Handler
	now time.Time
}

func newEnv(tb testing.TB, mod func(*ghapitest.Server, *Options)) *testEnv {
	tb.Helper()
	srv := ghapitest.New(tb)
	srv.Token = "test-token"
	srv.AddRepo(testRepo, "master")
	srv.SetPermission(testRepo, testUser, "admin")
	// GitHub refuses inputs the workflow does not declare: the real deploy.yml's.
	srv.SetDispatchInputs(testRepo, "deploy.yml", dispatchInputs(tb, "deploy.yml")...)
	e := &testEnv{t: tb, gh: srv, now: time.Now().UTC().Truncate(time.Second)}
	o := Options{Workflow: "deploy.yml", Now: func() time.Time { return e.now }}
	if mod != nil {
		mod(srv, &o)
	}
	e.h = e.handler(o)
	return e
}

// handler builds a fresh handler (a "new process") on the same fake GitHub.
func (e *testEnv) handler(o Options) *Handler {
	e.t.Helper()
	p, err := ghapi.NewProvider(ghapi.Options{APIURL: e.gh.URL + "/api/v3", Token: "test-token",
		RunLookupInterval: time.Millisecond, RunLookupTimeout: 10 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	o.Clients = func(ctx context.Context, inst int64, repo ghapi.Repo) (GitHub, error) {
		return p.Client(ctx, inst, repo)
	}
	if o.Self == "" {
		o.Self = e.gh.Login // the token's user writes the bot's comments
	}
	if o.Workflow == "" {
		o.Workflow = "deploy.yml"
	}
	if o.Now == nil {
		o.Now = func() time.Time { return e.now }
	}
	h, err := NewHandler(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// comment adds a user's comment to issue 1 in the fake and returns its
// issue_comment "created" payload.
func (e *testEnv) comment(body string, age time.Duration) (ghapitest.Comment, []byte) {
	c := e.gh.AddComment(testRepo, 1, testUser, body, e.now.Add(-age))
	return c, fixture(e.t, "issue_comment.created", map[string]any{
		"comment.id": c.ID, "comment.body": body,
		"comment.created_at": c.CreatedAt.Format(time.RFC3339), "comment.updated_at": c.CreatedAt.Format(time.RFC3339),
	})
}

// botComments are the comments the bot wrote on issue 1.
func (e *testEnv) botComments() []ghapitest.Comment {
	var out []ghapitest.Comment
	for _, c := range e.gh.Comments(testRepo, 1) {
		if c.User == e.gh.Login && strings.Contains(c.Body, markerPrefix) {
			out = append(out, c)
		}
	}
	return out
}

func (e *testEnv) reactions(comment int64) []string {
	var out []string
	for _, r := range e.gh.Reactions(testRepo) {
		if r.CommentID == comment {
			out = append(out, r.Content)
		}
	}
	return out
}

// runEvent is a workflow_run payload for a run of the fake.
func (e *testEnv) runEvent(action string, runID int64) []byte {
	r, ok := e.gh.RunByID(testRepo, runID)
	if !ok {
		e.t.Fatalf("no run %d", runID)
	}
	file := "workflow_run.requested"
	if action == "completed" {
		file = "workflow_run.completed"
	}
	set := map[string]any{
		"action": action, "workflow_run.id": runID, "workflow_run.display_title": r.Title,
		"workflow_run.status": r.Status, "workflow_run.conclusion": nil, "workflow_run.run_number": runID % 1000,
		"workflow_run.html_url":   fmt.Sprintf("%s/%s/actions/runs/%d", e.gh.URL, testRepo, runID), // as the fake's API says
		"workflow_run.created_at": r.CreatedAt.UTC().Format(time.RFC3339), "workflow_run.updated_at": r.UpdatedAt.UTC().Format(time.RFC3339),
		"workflow_run.run_started_at": r.StartedAt.UTC().Format(time.RFC3339),
		"repository.name":             "Hello-World", "repository.owner.login": "Codertocat",
	}
	if r.Conclusion != "" {
		set["workflow_run.conclusion"] = r.Conclusion
	}
	return fixture(e.t, file, set)
}

// jobEvent is a workflow_job payload for a job of a fake run.
func (e *testEnv) jobEvent(action string, runID int64) []byte {
	file := map[string]string{"queued": "workflow_job.queued", "in_progress": "workflow_job.in_progress", "completed": "workflow_job.completed"}[action]
	return fixture(e.t, file, map[string]any{
		"workflow_job.run_id": runID, "workflow_job.name": "deploy",
		"repository.name": "Hello-World", "repository.owner.login": "Codertocat",
	})
}

// webhook posts a signed delivery to a Server's handler.
type webhookClient struct {
	url    string
	secret []byte
	n      atomic.Int64
}

func (w *webhookClient) send(tb testing.TB, event, delivery string, body []byte, sign func([]byte) string) (int, string) {
	tb.Helper()
	if delivery == "" {
		delivery = fmt.Sprintf("delivery-%d", w.n.Add(1))
	}
	req, err := http.NewRequest("POST", w.url+"/webhook", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	if sign == nil {
		sign = func(b []byte) string { return Sign(w.secret, b) }
	}
	if s := sign(body); s != "" {
		req.Header.Set("X-Hub-Signature-256", s)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(msg.String())
}

// startServer runs a Server over httptest and drains it at the end.
func startServer(tb testing.TB, h *Handler, o ServerOptions) (*Server, *webhookClient) {
	tb.Helper()
	if o.Secret == nil {
		o.Secret = []byte(testSecret)
	}
	s, err := NewServer(h, o)
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	tb.Cleanup(func() {
		hs.Close()
		_ = s.Drain(context.Background())
	})
	return s, &webhookClient{url: hs.URL, secret: o.Secret}
}

func checkGolden(tb testing.TB, name, got string) {
	tb.Helper()
	golden.Check(tb, filepath.Join("testdata", name+".golden.md"), []byte(got))
}

// chatopsKind is the command kind of a comment's first word.
func chatopsKind(body string) chatops.Kind {
	if c, ok := chatops.Parse(body).(chatops.Command); ok {
		return c.Kind
	}
	return chatops.Unknown
}
