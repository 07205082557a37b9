// Package ghapitest is a small in-memory GitHub REST API for tests: the
// endpoints the bot uses, served by httptest under /api/v3/ (the GitHub
// Enterprise Server layout), so the real go-github client talks to it.
//
// It answers as GitHub does where the bot's correctness depends on it; each
// such rule names where it is written. A double that accepts what GitHub
// refuses is a defect: when a rule is missing here, add it with its source.
package ghapitest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

// ActionsLogin is the login of the GITHUB_TOKEN of a workflow run: comments
// it writes are by "github-actions[bot]", a user of type Bot.
const ActionsLogin = "github-actions[bot]"

// Comment is an issue comment held by the server.
type Comment struct {
	ID        int64
	Issue     int
	User      string
	UserType  string // User or Bot
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

// Annotation is a check run annotation of a run's job, as a workflow command
// (::notice title=T::M) produces it.
type Annotation struct {
	Level   string // notice, warning, failure
	Title   string
	Message string
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
	// Annotations are those of the run's one job ("deploy").
	Annotations []Annotation
}

// Delivery is one attempt to deliver a webhook to the App's URL, as
// GET /app/hook/deliveries lists it.
type Delivery struct {
	ID          int64
	GUID        string // X-GitHub-Delivery; a redelivery keeps it
	Event       string
	Action      string
	StatusCode  int // 0: no answer (connection refused, timeout)
	DeliveredAt time.Time
	Redelivery  bool
	payload     []byte
}

// Repo is one repository's state.
type Repo struct {
	DefaultBranch  string
	Roles          map[string]string // login -> role (see SetPermission); missing = not a collaborator
	InstallationID int64
	Comments       []*Comment
	Reactions      []Reaction
	Dispatches     []Dispatch
	Runs           []*Run
	// DispatchInputs, when set for a workflow file, are its
	// workflow_dispatch inputs: a dispatch with another input is refused.
	DispatchInputs map[string][]string
}

// RateLimit describes one rate-limited answer (see RateLimitNext).
type RateLimit struct {
	Status int // 403 or 429: GitHub uses both
	// Secondary limits say so in the message; primary ones set
	// x-ratelimit-remaining: 0.
	Secondary  bool
	RetryAfter int       // seconds; 0: no retry-after header
	Reset      time.Time // x-ratelimit-reset; zero: none
}

// Server is the fake GitHub. Its exported knobs may be set before use; use
// the methods to read state while requests are in flight.
type Server struct {
	*httptest.Server
	// RejectRunDetails is the status a dispatch that sets
	// return_run_details gets from a server that predates the field: 400
	// on GitHub Enterprise Server 3.19 and older ("\"return_run_details\"
	// is not a permitted key.", cli/cli#12672,
	// benc-uk/workflow-dispatch#86), 422 on others. 0: the field works
	// (github.com since 2026-02-19, GHES 3.21).
	RejectRunDetails int
	// IgnoreRunDetails answers 204 without details.
	IgnoreRunDetails bool
	// MaxDispatchInputs is the most inputs a dispatch may carry: 25 on
	// github.com since 2025-12-04 (changelog "Actions workflow dispatch
	// workflows now support 25 inputs"), 10 before and on older GHES.
	MaxDispatchInputs int
	// Login is the token's user (GET /user); AppSlug the App's slug.
	Login   string
	AppSlug string
	// Token, when set, is the only personal token accepted (of Login).
	Token string
	// ActionsToken, when set, is a workflow run's GITHUB_TOKEN: an
	// installation token of the "github-actions" App.
	ActionsToken string
	// Latency delays every answer (benchmarks).
	Latency time.Duration
	// HookURL and HookSecret are the App's webhook: SendWebhook and
	// redeliveries post there.
	HookURL    string
	HookSecret []byte
	// Now is the clock of delivery attempts (default time.Now).
	Now func() time.Time

	mu         sync.Mutex
	nextID     int64
	repos      map[string]*Repo
	calls      map[string]int
	total      int
	fail       map[string]int
	limits     map[string]RateLimit
	tokens     map[string]bool // installation tokens issued
	deliveries []*Delivery     // oldest first
	sending    sync.WaitGroup
}

// New starts a server and closes it when the test ends. The API root is
// s.URL + "/api/v3/".
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{Login: "nixos-cloud-deploy-bot", AppSlug: "nixos-cloud-deploy", nextID: 1000, MaxDispatchInputs: 25, Now: time.Now,
		repos: map[string]*Repo{}, calls: map[string]int{}, fail: map[string]int{}, limits: map[string]RateLimit{},
		tokens: map[string]bool{}}
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
	route("GET /app/hook/deliveries", s.listDeliveries)
	route("POST /app/hook/deliveries/{id}/attempts", s.redeliver)
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
			notFound(w)
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
		notFound(w)
	})
	s.Server = httptest.NewServer(mux)
	// Close first: it waits for the requests in flight, among them a
	// redelivery request whose handler calls s.sending.Add; only then is
	// Wait safe (a WaitGroup's Add from zero must happen before its Wait).
	tb.Cleanup(func() { s.Close(); s.sending.Wait() })
	return s
}

// APIURL is the REST root as GitHub Enterprise Server has it.
func (s *Server) APIURL() string { return s.URL + "/api/v3/" }

// caller is who a request authenticates as.
type caller struct {
	login, typ string
	jwt        bool // the App itself (/app endpoints)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, pattern string, h func(http.ResponseWriter, *http.Request, *Repo)) {
	if s.Latency > 0 {
		time.Sleep(s.Latency)
	}
	c, ok := s.authenticate(r)
	appRoute := strings.Contains(pattern, " /app") || pattern == "GET /repos/{owner}/{repo}/installation"
	switch {
	case !ok:
		writeJSON(w, 401, map[string]string{"message": "Bad credentials"})
		return
	case appRoute != c.jwt:
		// An App's JWT works only on the App's own endpoints, and an
		// installation or personal token does not work on them
		// (docs, "Authenticating as a GitHub App": "You must use a JWT
		// to access this endpoint").
		writeJSON(w, 401, map[string]string{"message": "A JSON web token could not be decoded"})
		return
	case pattern == "GET /user" && c.typ == "Bot":
		// An installation token (GITHUB_TOKEN included) is not a user:
		// GET /user answers 403 "Resource not accessible by integration".
		writeJSON(w, 403, map[string]string{"message": "Resource not accessible by integration"})
		return
	}
	s.mu.Lock()
	s.calls[pattern]++
	s.total++
	if rl, ok := s.limits[pattern]; ok {
		delete(s.limits, pattern)
		s.mu.Unlock()
		writeRateLimit(w, rl)
		return
	}
	if code, ok := s.fail[pattern]; ok {
		delete(s.fail, pattern)
		s.mu.Unlock()
		writeJSON(w, code, map[string]string{"message": "injected failure"})
		return
	}
	var repo *Repo
	if owner := r.PathValue("owner"); owner != "" {
		repo = s.repos[owner+"/"+r.PathValue("repo")]
		if repo == nil {
			s.mu.Unlock()
			notFound(w)
			return
		}
	}
	r = r.WithContext(withCaller(r.Context(), c))
	if pattern == "POST /app/hook/deliveries/{id}/attempts" {
		s.mu.Unlock() // it sends the webhook itself
		h(w, r, repo)
		return
	}
	defer s.mu.Unlock()
	h(w, r, repo)
}

// writeRateLimit answers as GitHub does when a limit is hit (docs, "Rate
// limits for the REST API", "Exceeding the rate limit"): 403 or 429; a
// primary limit with x-ratelimit-remaining: 0 and x-ratelimit-reset, a
// secondary one with a message saying so and sometimes retry-after.
func writeRateLimit(w http.ResponseWriter, rl RateLimit) {
	h := w.Header()
	if rl.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(rl.RetryAfter))
	}
	if !rl.Reset.IsZero() {
		h.Set("X-Ratelimit-Reset", strconv.FormatInt(rl.Reset.Unix(), 10))
	}
	msg := map[string]string{"message": "API rate limit exceeded for installation ID 4242.",
		"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}
	if rl.Secondary {
		msg = map[string]string{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}
		h.Set("X-Ratelimit-Remaining", "4000")
	} else {
		h.Set("X-Ratelimit-Remaining", "0")
		h.Set("X-Ratelimit-Limit", "1000")
	}
	writeJSON(w, rl.Status, msg)
}

// authenticate accepts the personal token (of Login), the Actions token
// (github-actions[bot]), an installation token issued by this server (the
// App's bot), and a JWT-shaped bearer (the App itself).
func (s *Server) authenticate(r *http.Request) (caller, bool) {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if cred == "" || (scheme != "Bearer" && scheme != "token") {
		return caller{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.Count(cred, ".") == 2:
		return caller{login: s.AppSlug, typ: "App", jwt: true}, true
	case s.tokens[cred]:
		return caller{login: s.AppSlug + "[bot]", typ: "Bot"}, true
	case s.ActionsToken != "" && cred == s.ActionsToken:
		return caller{login: ActionsLogin, typ: "Bot"}, true
	case s.Token == "" || cred == s.Token:
		return caller{login: s.Login, typ: "User"}, true
	}
	return caller{}, false
}

// AddRepo creates a repository.
func (s *Server) AddRepo(fullName, defaultBranch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[fullName] = &Repo{DefaultBranch: defaultBranch, Roles: map[string]string{}, InstallationID: 4242,
		DispatchInputs: map[string][]string{}}
}

// SetPermission gives a user a role on a repository: admin, maintain,
// write, triage, read, "none" (removes them), or a custom role as
// "name:base" (base one of read, triage, write, maintain).
func (s *Server) SetPermission(repo, user, role string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if role == "none" {
		delete(s.repos[repo].Roles, user)
		return
	}
	s.repos[repo].Roles[user] = role
}

// SetDispatchInputs declares a workflow's workflow_dispatch inputs.
func (s *Server) SetDispatchInputs(repo, workflow string, inputs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[repo].DispatchInputs[workflow] = inputs
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

// SetAnnotations sets the annotations of a run's job.
func (s *Server) SetAnnotations(repo string, id int64, anns ...Annotation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.repos[repo].Runs {
		if r.ID == id {
			r.Annotations = anns
		}
	}
}

// Notices are notice annotations, one per title, in title order.
func Notices(byTitle map[string]string) []Annotation {
	titles := make([]string, 0, len(byTitle))
	for t := range byTitle {
		titles = append(titles, t)
	}
	slices.Sort(titles)
	out := make([]Annotation, 0, len(titles))
	for _, t := range titles {
		out = append(out, Annotation{Level: "notice", Title: t, Message: byTitle[t]})
	}
	return out
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
	notFound(w)
}

// listAnnotations pages as GitHub does (per_page default 30, at most 100).
// A workflow command annotation without a file has the path ".github"
// (as the runner reports it).
func (s *Server) listAnnotations(w http.ResponseWriter, r *http.Request, repo *Repo) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	all := []map[string]any{}
	for _, run := range repo.Runs {
		if jobID(run.ID) != id {
			continue
		}
		for _, a := range run.Annotations {
			all = append(all, map[string]any{"path": ".github", "annotation_level": a.Level, "title": a.Title, "message": a.Message,
				"start_line": 1, "end_line": 1})
		}
	}
	s.writePage(w, r, all)
}

// writePage answers one page of a list (page and per_page, with a Link
// header to the next page), as GitHub's offset pagination does.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, all []map[string]any) {
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, 100)
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

// TotalCalls counts every authenticated request: what counts against a
// token's rate limit.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// FailNext makes the next request for a route pattern fail with a status.
func (s *Server) FailNext(pattern string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[pattern] = status
}

// RateLimitNext makes the next request for a route pattern hit a rate limit.
func (s *Server) RateLimitNext(pattern string, rl RateLimit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits[pattern] = rl
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, 404, map[string]string{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
}

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) user(w http.ResponseWriter, r *http.Request, _ *Repo) {
	writeJSON(w, 200, map[string]any{"login": callerOf(r).login, "type": "User"})
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

// roleRank orders the base roles.
var roleRank = map[string]int{"read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}

// permission answers "Get repository permissions for a user" (REST docs):
// "The permission attribute provides the legacy base roles of admin,
// write, read, and none, where the maintain role is mapped to write and the
// triage role is mapped to read. To determine the role assigned to the
// collaborator, see the role_name attribute, which will provide the full
// role name, including custom roles." The user's permissions object holds
// the base role's flags (pull, triage, push, maintain, admin). A user who is
// not a collaborator gets 404 ("is not a user").
func (s *Server) permission(w http.ResponseWriter, r *http.Request, repo *Repo) {
	login := r.PathValue("user")
	role, ok := repo.Roles[login]
	if !ok {
		writeJSON(w, 404, map[string]string{"message": login + " is not a user"})
		return
	}
	name, base, custom := strings.Cut(role, ":")
	if !custom {
		base = role
	}
	legacy := map[string]string{"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}[base]
	rank := roleRank[base]
	writeJSON(w, 200, map[string]any{"permission": legacy, "role_name": name, "user": map[string]any{
		"login": login, "type": "User", "role_name": name,
		"permissions": map[string]bool{"pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3, "maintain": rank >= 4, "admin": rank >= 5},
	}})
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

// listComments: oldest first, since filters on updated_at (REST docs,
// "List issue comments": "Only show results that were last updated after
// the given time").
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
	s.writePage(w, r, all)
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

// createComment: the comment's author is whoever the token belongs to.
func (s *Server) createComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	issue, _ := strconv.Atoi(r.PathValue("number"))
	var body struct{ Body string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Body == "" {
		writeJSON(w, 422, map[string]string{"message": "body required"})
		return
	}
	s.nextID++
	now := time.Now()
	c := callerOf(r)
	cm := &Comment{ID: s.nextID, Issue: issue, User: c.login, UserType: c.typ, Body: body.Body, CreatedAt: now, UpdatedAt: now}
	repo.Comments = append(repo.Comments, cm)
	writeJSON(w, 201, commentJSON(cm))
}

func (s *Server) getComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	c, _ := s.findComment(repo, r)
	if c == nil {
		notFound(w)
		return
	}
	writeJSON(w, 200, commentJSON(c))
}

func (s *Server) editComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	c, _ := s.findComment(repo, r)
	var body struct{ Body string }
	if c == nil || json.NewDecoder(r.Body).Decode(&body) != nil {
		notFound(w)
		return
	}
	c.Body, c.UpdatedAt = body.Body, time.Now()
	c.Edits++
	writeJSON(w, 200, commentJSON(c))
}

func (s *Server) deleteComment(w http.ResponseWriter, r *http.Request, repo *Repo) {
	c, i := s.findComment(repo, r)
	if c == nil {
		notFound(w)
		return
	}
	repo.Comments = slices.Delete(repo.Comments, i, i+1)
	w.WriteHeader(204)
}

// dispatch answers "Create a workflow dispatch event" (REST docs): ref is
// required; inputs the workflow does not declare are refused with 422;
// return_run_details (since 2026-02-19) turns the 204 into a 200 with
// workflow_run_id, run_url and html_url.
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
	if body.ReturnRunDetails != nil && s.RejectRunDetails != 0 {
		writeJSON(w, s.RejectRunDetails, map[string]string{"message": "Invalid request.\n\n\"return_run_details\" is not a permitted key."})
		return
	}
	if len(body.Inputs) > s.MaxDispatchInputs {
		writeJSON(w, 422, map[string]string{"message": fmt.Sprintf("Invalid request.\n\nToo many inputs: the maximum is %d.", s.MaxDispatchInputs)})
		return
	}
	file := r.PathValue("file")
	if declared, ok := repo.DispatchInputs[file]; ok {
		var unexpected []string
		for k := range body.Inputs {
			if !slices.Contains(declared, k) {
				unexpected = append(unexpected, k)
			}
		}
		if len(unexpected) > 0 {
			slices.Sort(unexpected)
			b, _ := json.Marshal(unexpected)
			writeJSON(w, 422, map[string]string{"message": "Unexpected inputs provided: " + string(b)})
			return
		}
	}
	s.nextID++
	now := time.Now()
	// The deploy workflow's run-name: deploy ${{ inputs.vm-name }} [${{ inputs.correlation-id }}]
	run := &Run{ID: s.nextID, Workflow: file, Status: "queued", Event: "workflow_dispatch", CreatedAt: now, UpdatedAt: now,
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
	notFound(w)
}

// ---- the App's webhook: deliveries and redeliveries -----------------------

// SendWebhook delivers an event to HookURL as GitHub does (signed with
// HookSecret, X-GitHub-Delivery a new GUID) and records the attempt with
// the status the receiver answered (0: no answer). GitHub does not retry a
// failed delivery by itself (docs, "Handling failed webhook deliveries").
func (s *Server) SendWebhook(event string, payload []byte) Delivery {
	s.mu.Lock()
	s.nextID++
	guid := fmt.Sprintf("%08x-0000-4000-8000-%012x", s.nextID, s.nextID)
	s.mu.Unlock()
	return s.send(guid, event, payload, false)
}

func (s *Server) send(guid, event string, payload []byte, redelivery bool) Delivery {
	var action struct {
		Action string `json:"action"`
	}
	_ = json.Unmarshal(payload, &action)
	code := 0
	req, err := http.NewRequest("POST", s.HookURL, bytes.NewReader(payload))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "GitHub-Hookshot/ghapitest")
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", guid)
		req.Header.Set("X-Hub-Signature-256", sign(s.HookSecret, payload))
		// GitHub waits 10 s for an answer, then records a failure.
		c := &http.Client{Timeout: 10 * time.Second}
		if resp, err := c.Do(req); err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	d := &Delivery{ID: s.nextID, GUID: guid, Event: event, Action: action.Action, StatusCode: code, DeliveredAt: s.Now(),
		Redelivery: redelivery, payload: payload}
	s.deliveries = append(s.deliveries, d)
	return *d
}

// AddDelivery records a past delivery attempt (payload kept for a
// redelivery) and returns its id.
func (s *Server) AddDelivery(d Delivery, payload []byte) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	d.ID, d.payload = s.nextID, payload
	s.deliveries = append(s.deliveries, &d)
	return d.ID
}

// Deliveries returns the recorded delivery attempts, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, len(s.deliveries))
	for i, d := range s.deliveries {
		out[i] = *d
	}
	return out
}

// listDeliveries answers "List deliveries for an app webhook" (REST docs;
// JWT only): newest first, per_page (default 30, at most 100) and cursor
// pagination through the Link header. status is "OK" for a 2xx answer.
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, _ *Repo) {
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, 100)
	start := len(s.deliveries) - 1
	if c := r.URL.Query().Get("cursor"); c != "" {
		id, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			writeJSON(w, 400, map[string]string{"message": "invalid cursor"})
			return
		}
		start = slices.IndexFunc(s.deliveries, func(d *Delivery) bool { return d.ID == id })
	}
	out := []map[string]any{}
	i := start
	for ; i >= 0 && len(out) < perPage; i-- {
		d := s.deliveries[i]
		status := "OK"
		if d.StatusCode < 200 || d.StatusCode > 299 {
			status = "Invalid HTTP Response: " + strconv.Itoa(d.StatusCode)
		}
		out = append(out, map[string]any{"id": d.ID, "guid": d.GUID, "delivered_at": ts(d.DeliveredAt), "redelivery": d.Redelivery,
			"duration": 0.05, "status": status, "status_code": d.StatusCode, "event": d.Event, "action": d.Action,
			"installation_id": 4242, "repository_id": 1296269})
	}
	if i >= 0 {
		q := r.URL.Query()
		q.Set("cursor", strconv.FormatInt(s.deliveries[i].ID, 10))
		w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, s.URL, r.URL.Path, q.Encode()))
	}
	writeJSON(w, 200, out)
}

// redeliver answers "Redeliver a delivery for an app webhook" (REST docs;
// JWT only): 202, and the same payload goes out again under the same GUID,
// recorded as a redelivery.
func (s *Server) redeliver(w http.ResponseWriter, r *http.Request, _ *Repo) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.mu.Lock()
	var d *Delivery
	for _, x := range s.deliveries {
		if x.ID == id {
			d = x
		}
	}
	s.mu.Unlock()
	if d == nil {
		notFound(w)
		return
	}
	writeJSON(w, 202, map[string]any{})
	// GitHub sends it after answering; WaitRedeliveries waits for it.
	s.sending.Add(1)
	go func() {
		defer s.sending.Done()
		s.send(d.GUID, d.Event, d.payload, true)
	}()
}

// WaitRedeliveries waits until every requested redelivery was sent and
// answered.
func (s *Server) WaitRedeliveries() { s.sending.Wait() }

func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

type callerKey struct{}

func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller)
	return c
}
