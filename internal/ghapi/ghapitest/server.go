// Package ghapitest is a small in-memory GitHub REST API for tests: the
// endpoints the bot uses, served by httptest under /api/v3/ (the GitHub
// Enterprise Server layout), so the real go-github client talks to it.
package ghapitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Comment is an issue comment held by the server.
type Comment struct {
	ID        int64
	Issue     int
	User      string
	UserType  string
	Body      string
	CreatedAt time.Time
	UpdatedAt time.Time
	Edits     int
}

// Reaction is a reaction on an issue comment.
type Reaction struct {
	CommentID int64
	Content   string
}

// Dispatch is one accepted workflow_dispatch.
type Dispatch struct {
	Workflow string
	Ref      string
	Inputs   map[string]any
	RunID    int64
}

// Run is a workflow run.
type Run struct {
	ID         int64
	Workflow   string
	Title      string
	Status     string
	Conclusion string
	Event      string
	CreatedAt  time.Time
	StartedAt  time.Time
	UpdatedAt  time.Time
	// Notices are the notice annotations of the run's one job, by title.
	Notices map[string]string
}

// Repo is one repository's state.
type Repo struct {
	DefaultBranch  string
	Permissions    map[string]string // login -> admin, write, read; missing = 404
	InstallationID int64
	Comments       []*Comment
	Reactions      []Reaction
	Dispatches     []Dispatch
	Runs           []*Run
}

// Server is the fake GitHub. Its exported knobs may be set before use; use
// the methods to read state while requests are in flight.
type Server struct {
	*httptest.Server
	// RejectRunDetails makes dispatches that ask for return_run_details
	// fail with 422, as servers that predate the field do.
	RejectRunDetails bool
	// IgnoreRunDetails answers 204 without details.
	IgnoreRunDetails bool
	// Login is the token's user (GET /user); AppSlug the App's slug.
	Login   string
	AppSlug string
	// Token, when set, is the only personal token accepted.
	Token string
	// Latency delays every answer (benchmarks).
	Latency time.Duration

	mu     sync.Mutex
	nextID int64
	repos  map[string]*Repo
	calls  map[string]int
	fail   map[string]int
	tokens map[string]bool // installation tokens issued
}

// New starts a server and closes it when the test ends. The API root is
// s.URL + "/api/v3/".
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{Login: "nixos-cloud-deploy-bot", AppSlug: "nixos-cloud-deploy", nextID: 1000,
		repos: map[string]*Repo{}, calls: map[string]int{}, fail: map[string]int{}, tokens: map[string]bool{}}
	mux := http.NewServeMux()
	route := func(pattern string, h func(http.ResponseWriter, *http.Request, *Repo)) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" /api/v3"+path, func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, pattern, h)
		})
	}
	route("GET /user", s.user)
	route("GET /app", s.app)
	route("POST /app/installations/{id}/access_tokens", s.accessToken)
	route("GET /repos/{owner}/{repo}/installation", s.installation)
	route("GET /repos/{owner}/{repo}", s.repo)
	route("GET /repos/{owner}/{repo}/collaborators/{user}/permission", s.permission)
	route("POST /repos/{owner}/{repo}/issues/comments/{id}/reactions", s.react)
	// GET issues/{number}/comments and GET issues/comments/{id} overlap as
	// ServeMux patterns: one route, told apart here.
	route("GET /repos/{owner}/{repo}/issues/{a}/{b}", func(w http.ResponseWriter, r *http.Request, repo *Repo) {
		s.calls["GET /repos/{owner}/{repo}/issues/{a}/{b}"]--
		switch {
		case r.PathValue("b") == "comments":
			s.calls["GET /repos/{owner}/{repo}/issues/{number}/comments"]++
			r.SetPathValue("number", r.PathValue("a"))
			s.listComments(w, r, repo)
		case r.PathValue("a") == "comments":
			s.calls["GET /repos/{owner}/{repo}/issues/comments/{id}"]++
			r.SetPathValue("id", r.PathValue("b"))
			s.getComment(w, r, repo)
		default:
			writeJSON(w, 404, map[string]string{"message": "Not Found"})
		}
	})
	route("POST /repos/{owner}/{repo}/issues/{number}/comments", s.createComment)
	route("PATCH /repos/{owner}/{repo}/issues/comments/{id}", s.editComment)
	route("DELETE /repos/{owner}/{repo}/issues/comments/{id}", s.deleteComment)
	route("POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches", s.dispatch)
	route("GET /repos/{owner}/{repo}/actions/workflows/{file}/runs", s.listRuns)
	route("GET /repos/{owner}/{repo}/actions/runs/{id}", s.getRun)
	route("GET /repos/{owner}/{repo}/actions/runs/{id}/jobs", s.listJobs)
	route("GET /repos/{owner}/{repo}/check-runs/{id}/annotations", s.listAnnotations)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		tb.Errorf("ghapitest: unexpected request %s %s", r.Method, r.URL)
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
	})
	s.Server = httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	return s
}

// APIURL is the REST root as GitHub Enterprise Server has it.
func (s *Server) APIURL() string { return s.URL + "/api/v3/" }

func (s *Server) serve(w http.ResponseWriter, r *http.Request, pattern string, h func(http.ResponseWriter, *http.Request, *Repo)) {
	if s.Latency > 0 {
		time.Sleep(s.Latency)
	}
	if !s.authorised(r, pattern) {
		writeJSON(w, 401, map[string]string{"message": "Bad credentials"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[pattern]++
	if code, ok := s.fail[pattern]; ok {
		delete(s.fail, pattern)
		w.Header().Set("Retry-After", "0")
		writeJSON(w, code, map[string]string{"message": "injected failure"})
		return
	}
	var repo *Repo
	if owner := r.PathValue("owner"); owner != "" {
		repo = s.repos[owner+"/"+r.PathValue("repo")]
		if repo == nil {
			writeJSON(w, 404, map[string]string{"message": "Not Found"})
			return
		}
	}
	h(w, r, repo)
}

// authorised accepts the personal token, an installation token issued by
// this server, and (for /app endpoints) any JWT-shaped bearer.
func (s *Server) authorised(r *http.Request, pattern string) bool {
	auth := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(auth, " ")
	if cred == "" || (scheme != "Bearer" && scheme != "token") {
		return false
	}
	if strings.Contains(pattern, " /app") || pattern == "GET /repos/{owner}/{repo}/installation" {
		return strings.Count(cred, ".") == 2 // a JWT
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[cred] || s.Token == "" || cred == s.Token
}

// AddRepo creates a repository.
func (s *Server) AddRepo(fullName, defaultBranch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[fullName] = &Repo{DefaultBranch: defaultBranch, Permissions: map[string]string{}, InstallationID: 4242}
}

// SetPermission sets a user's permission (admin, write, read).
func (s *Server) SetPermission(repo, user, perm string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[repo].Permissions[user] = perm
}

// AddComment adds a comment as a user would and returns it.
func (s *Server) AddComment(repo string, issue int, user, body string, at time.Time) Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	c := &Comment{ID: s.nextID, Issue: issue, User: user, UserType: "User", Body: body, CreatedAt: at, UpdatedAt: at}
	s.repos[repo].Comments = append(s.repos[repo].Comments, c)
	return *c
}

// Comments returns copies of an issue's comments.
func (s *Server) Comments(repo string, issue int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Comment
	for _, c := range s.repos[repo].Comments {
		if c.Issue == issue {
			out = append(out, *c)
		}
	}
	return out
}

// Reactions returns the reactions given in a repository.
func (s *Server) Reactions(repo string) []Reaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.repos[repo].Reactions)
}

// Dispatches returns the accepted dispatches.
func (s *Server) Dispatches(repo string) []Dispatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.repos[repo].Dispatches)
}

// AddRun adds a run as if dispatched by someone else and returns its id.
func (s *Server) AddRun(repo string, r Run) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	r.ID = s.nextID
	s.repos[repo].Runs = append(s.repos[repo].Runs, &r)
	return r.ID
}

// SetRun moves a run to a status and conclusion.
func (s *Server) SetRun(repo string, id int64, status, conclusion string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.repos[repo].Runs {
		if r.ID == id {
			r.Status, r.Conclusion, r.UpdatedAt = status, conclusion, at
			if status == "in_progress" && r.StartedAt.IsZero() {
				r.StartedAt = at
			}
		}
	}
}

// SetNotices sets the notice annotations of a run's job.
func (s *Server) SetNotices(repo string, id int64, notices map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.repos[repo].Runs {
		if r.ID == id {
			r.Notices = notices
		}
	}
}

// jobID is the id of a run's one job (and its check run).
func jobID(runID int64) int64 { return runID*10 + 1 }

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, repo *Repo) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	for _, run := range repo.Runs {
		if run.ID == id {
			writeJSON(w, 200, map[string]any{"total_count": 1, "jobs": []map[string]any{{
				"id": jobID(id), "run_id": id, "name": "deploy", "status": run.Status, "conclusion": run.Conclusion,
			}}})
			return
		}
	}
	writeJSON(w, 404, map[string]string{"message": "Not Found"})
}

func (s *Server) listAnnotations(w http.ResponseWriter, r *http.Request, repo *Repo) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	anns := []map[string]any{}
	for _, run := range repo.Runs {
		if jobID(run.ID) != id {
			continue
		}
		titles := make([]string, 0, len(run.Notices))
		for t := range run.Notices {
			titles = append(titles, t)
		}
		slices.Sort(titles)
		for _, t := range titles {
			anns = append(anns, map[string]any{"path": ".github", "annotation_level": "notice", "title": t, "message": run.Notices[t],
				"start_line": 1, "end_line": 1})
		}
	}
	writeJSON(w, 200, anns)
}

// RunByID returns a run.
func (s *Server) RunByID(repo string, id int64) (Run, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.repos[repo].Runs {
		if r.ID == id {
			return *r, true
		}
	}
	return Run{}, false
}

// Calls counts the requests served for a route pattern such as
// "PATCH /repos/{owner}/{repo}/issues/comments/{id}".
func (s *Server) Calls(pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[pattern]
}

// FailNext makes the next request for a route pattern fail with a status.
func (s *Server) FailNext(pattern string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[pattern] = status
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) user(w http.ResponseWriter, _ *http.Request, _ *Repo) {
	writeJSON(w, 200, map[string]any{"login": s.Login, "type": "User"})
}

func (s *Server) app(w http.ResponseWriter, _ *http.Request, _ *Repo) {
	writeJSON(w, 200, map[string]any{"id": 1, "slug": s.AppSlug})
}

func (s *Server) accessToken(w http.ResponseWriter, r *http.Request, _ *Repo) {
	tok := "ghs_installation_" + r.PathValue("id")
	s.tokens[tok] = true
	writeJSON(w, 201, map[string]any{"token": tok, "expires_at": ts(time.Now().Add(time.Hour))})
}

func (s *Server) installation(w http.ResponseWriter, _ *http.Request, repo *Repo) {
	writeJSON(w, 200, map[string]any{"id": repo.InstallationID})
}

func (s *Server) repo(w http.ResponseWriter, r *http.Request, repo *Repo) {
	writeJSON(w, 200, map[string]any{"name": r.PathValue("repo"), "full_name": r.PathValue("owner") + "/" + r.PathValue("repo"), "default_branch": repo.DefaultBranch})
}

func (s *Server) permission(w http.ResponseWriter, r *http.Request, repo *Repo) {
	p, ok := repo.Permissions[r.PathValue("user")]
	if !ok {
		writeJSON(w, 404, map[string]string{"message": "is not a user"})
		return
	}
	writeJSON(w, 200, map[string]any{"permission": p, "user": map[string]any{"login": r.PathValue("user")}})
}

func (s *Server) react(w http.ResponseWriter, r *http.Request, repo *Repo) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var body struct{ Content string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Content == "" {
		writeJSON(w, 422, map[string]string{"message": "content required"})
		return
	}
	code := 201
	re := Reaction{CommentID: id, Content: body.Content}
	if slices.Contains(repo.Reactions, re) {
		code = 200 // as GitHub: the existing reaction
	} else {
		repo.Reactions = append(repo.Reactions, re)
	}
	writeJSON(w, code, map[string]any{"id": 1, "content": body.Content})
}

func commentJSON(c *Comment) map[string]any {
	return map[string]any{"id": c.ID, "body": c.Body, "user": map[string]any{"login": c.User, "type": c.UserType},
		"created_at": ts(c.CreatedAt), "updated_at": ts(c.UpdatedAt)}
}

func (s *Server) listComments(w http.ResponseWriter, r *http.Request, repo *Repo) {
	issue, _ := strconv.Atoi(r.PathValue("number"))
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		since, _ = time.Parse(time.RFC3339, v)
	}
	var all []map[string]any
	for _, c := range repo.Comments {
		if c.Issue == issue && !c.UpdatedAt.Before(since) {
			all = append(all, commentJSON(c))
		}
	}
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	lo, hi := min((page-1)*perPage, len(all)), min(page*perPage, len(all))
	if hi < len(all) {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(page+1))
		w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, s.URL, r.URL.Path, q.Encode()))
	}
	writeJSON(w, 200, append([]map[string]any{}, all[lo:hi]...))
}

func (s *Server) findComment(repo *Repo, r *http.Request) (*Comment, int) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	for i, c := range repo.Comments {
		if c.ID == id {
			return c, i
		}
	}
	return nil, -1
}

func (s *Server) createComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	issue, _ := strconv.Atoi(r.PathValue("number"))
	var body struct{ Body string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Body == "" {
		writeJSON(w, 422, map[string]string{"message": "body required"})
		return
	}
	s.nextID++
	now := time.Now()
	c := &Comment{ID: s.nextID, Issue: issue, User: s.Login, UserType: "Bot", Body: body.Body, CreatedAt: now, UpdatedAt: now}
	repo.Comments = append(repo.Comments, c)
	writeJSON(w, 201, commentJSON(c))
}

func (s *Server) getComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	c, _ := s.findComment(repo, r)
	if c == nil {
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
		return
	}
	writeJSON(w, 200, commentJSON(c))
}

func (s *Server) editComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	c, _ := s.findComment(repo, r)
	var body struct{ Body string }
	if c == nil || json.NewDecoder(r.Body).Decode(&body) != nil {
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
		return
	}
	c.Body, c.UpdatedAt = body.Body, time.Now()
	c.Edits++
	writeJSON(w, 200, commentJSON(c))
}

func (s *Server) deleteComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	c, i := s.findComment(repo, r)
	if c == nil {
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
		return
	}
	repo.Comments = slices.Delete(repo.Comments, i, i+1)
	w.WriteHeader(204)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, repo *Repo) {
	var body struct {
		Ref              string         `json:"ref"`
		Inputs           map[string]any `json:"inputs"`
		ReturnRunDetails *bool          `json:"return_run_details"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Ref == "" {
		writeJSON(w, 422, map[string]string{"message": "Invalid request: ref is required"})
		return
	}
	wantDetails := body.ReturnRunDetails != nil && *body.ReturnRunDetails
	if body.ReturnRunDetails != nil && s.RejectRunDetails {
		writeJSON(w, 422, map[string]string{"message": "Invalid request.\n\n\"return_run_details\" is not a permitted key."})
		return
	}
	s.nextID++
	now := time.Now()
	// The deploy workflow's run-name: deploy ${{ inputs.vm-name }} [${{ inputs.correlation-id }}]
	run := &Run{ID: s.nextID, Workflow: r.PathValue("file"), Status: "queued", Event: "workflow_dispatch", CreatedAt: now, UpdatedAt: now,
		Title: fmt.Sprintf("deploy %v [%v]", body.Inputs["vm-name"], body.Inputs["correlation-id"])}
	repo.Runs = append(repo.Runs, run)
	repo.Dispatches = append(repo.Dispatches, Dispatch{Workflow: run.Workflow, Ref: body.Ref, Inputs: body.Inputs, RunID: run.ID})
	if !wantDetails || s.IgnoreRunDetails {
		w.WriteHeader(204)
		return
	}
	writeJSON(w, 200, map[string]any{"workflow_run_id": run.ID, "run_url": s.APIURL() + "repos/" + r.PathValue("owner") + "/" + r.PathValue("repo") + "/actions/runs/" + strconv.FormatInt(run.ID, 10),
		"html_url": s.runHTML(r, run.ID)})
}

func (s *Server) runHTML(r *http.Request, id int64) string {
	return fmt.Sprintf("%s/%s/%s/actions/runs/%d", s.URL, r.PathValue("owner"), r.PathValue("repo"), id)
}

func (s *Server) runJSON(r *http.Request, run *Run) map[string]any {
	m := map[string]any{"id": run.ID, "name": "deploy", "display_title": run.Title, "status": run.Status, "event": run.Event,
		"html_url": s.runHTML(r, run.ID), "path": ".github/workflows/" + run.Workflow, "run_number": run.ID % 1000,
		"created_at": ts(run.CreatedAt), "updated_at": ts(run.UpdatedAt)}
	if run.Conclusion != "" {
		m["conclusion"] = run.Conclusion
	}
	if !run.StartedAt.IsZero() {
		m["run_started_at"] = ts(run.StartedAt)
	}
	return m
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, repo *Repo) {
	event := r.URL.Query().Get("event")
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	runs := []map[string]any{}
	for i := len(repo.Runs) - 1; i >= 0 && len(runs) < perPage; i-- { // newest first
		run := repo.Runs[i]
		if run.Workflow == r.PathValue("file") && (event == "" || run.Event == event) {
			runs = append(runs, s.runJSON(r, run))
		}
	}
	writeJSON(w, 200, map[string]any{"total_count": len(runs), "workflow_runs": runs})
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, repo *Repo) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	for _, run := range repo.Runs {
		if run.ID == id {
			writeJSON(w, 200, s.runJSON(r, run))
			return
		}
	}
	writeJSON(w, 404, map[string]string{"message": "Not Found"})
}
