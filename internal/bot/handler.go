// Package bot is the ChatOps bot: it turns "/deploy az-nixos" in an issue
// comment into a workflow_dispatch of the deploy workflow and keeps one
// status comment up to date until the run ends.
//
// One code path serves both ways to run it: Server (webhooks of a GitHub
// App, with Redeliverer asking GitHub again for what it failed to take) and
// Handler.HandleEvent plus Handler.Report (steps of the workflows
// chatops.yml and chatops-deploy.yml). Nothing with a side effect happens
// before the signature (Server), the parse and the commenter's role are
// checked. The bot's state is its own comments in GitHub: only comments
// written by the bot's own login count.
package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v62/github"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/chatops"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// GitHub is what the bot needs from the GitHub API; *ghapi.Client is the
// implementation (tests run it against ghapitest, a fake GitHub).
type GitHub interface {
	Permission(ctx context.Context, repo ghapi.Repo, user string) (string, error)
	React(ctx context.Context, repo ghapi.Repo, commentID int64, content string) error
	Comments(ctx context.Context, repo ghapi.Repo, issue int, since time.Time) ([]ghapi.Comment, error)
	CreateComment(ctx context.Context, repo ghapi.Repo, issue int, body string) (ghapi.Comment, error)
	EditComment(ctx context.Context, repo ghapi.Repo, id int64, body string) error
	DeleteComment(ctx context.Context, repo ghapi.Repo, id int64) error
	DefaultBranch(ctx context.Context, repo ghapi.Repo) (string, error)
	Dispatch(ctx context.Context, repo ghapi.Repo, d ghapi.DispatchRequest) (ghapi.Dispatched, error)
	Run(ctx context.Context, repo ghapi.Repo, id int64) (ghapi.Run, error)
	Runs(ctx context.Context, repo ghapi.Repo, workflow string, n int) ([]ghapi.Run, error)
	Annotations(ctx context.Context, repo ghapi.Repo, runID int64) ([]ghapi.Annotation, error)
}

var _ GitHub = (*ghapi.Client)(nil)

// ClientFunc returns the API client for a repository; installationID is the
// GitHub App installation from the webhook payload (0 when there is none).
type ClientFunc func(ctx context.Context, installationID int64, repo ghapi.Repo) (GitHub, error)

// Options configure a Handler.
type Options struct {
	Clients       ClientFunc
	Workflow      string // deploy workflow file name
	Ref           string // "" = the repository's default branch
	MaxCommentAge time.Duration
	// Permissions is the repository role each command needs (read,
	// triage, write, maintain, admin). Help and usage answers use
	// Status's.
	Permissions  map[chatops.Kind]string
	AllowedUsers []string // empty: anyone with the role
	// Self is the login the bot's comments are written by: the App's
	// "<slug>[bot]", "github-actions[bot]" for a workflow's GITHUB_TOKEN,
	// or a token's user. Required: only comments by Self carry state; a
	// marker in anyone else's comment is text.
	Self string
	// FirstAttempt returns when GitHub first tried to deliver a webhook
	// (by its X-GitHub-Delivery), or the zero time when it does not know.
	// A command the bot failed to take in time (a 503, a crash) and got
	// again through a redelivery is measured from then, not from now.
	// nil: every command is measured from now.
	// notBefore is the comment's creation: no attempt can be older.
	FirstAttempt func(ctx context.Context, delivery string, notBefore time.Time) (time.Time, error)
	Now          func() time.Time
	Logger       *slog.Logger
}

// DefaultPermissions: write for deploy, switch and status, admin for destroy.
func DefaultPermissions() map[chatops.Kind]string {
	return map[chatops.Kind]string{chatops.Deploy: "write", chatops.Switch: "write", chatops.Status: "write", chatops.Destroy: "admin"}
}

// Handler handles one event at a time per comment and per run; it is safe
// for concurrent use.
type Handler struct {
	o Options
	// Striped locks serialise work on one comment or one run within a
	// process (events for a run can arrive together and out of order).
	commentLocks [64]sync.Mutex
	runLocks     [64]sync.Mutex
	// runs remembers which recent runs the bot started, so the jobs of
	// every other workflow in the repository cost no API call. A fast path
	// only: an unknown run is looked up.
	runs *runCache
}

// NewHandler checks the options.
func NewHandler(o Options) (*Handler, error) {
	if o.Clients == nil {
		return nil, errors.New("bot: no GitHub client")
	}
	if o.Self == "" {
		return nil, errors.New("bot: no identity: the login the bot comments as is needed to tell its comments from forgeries")
	}
	if o.Workflow == "" {
		o.Workflow = "deploy.yml"
	}
	if o.MaxCommentAge <= 0 {
		o.MaxCommentAge = 10 * time.Minute
	}
	if o.Permissions == nil {
		o.Permissions = DefaultPermissions()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{o: o, runs: newRunCache(4096)}, nil
}

// Outcome says what handling an event did.
type Outcome struct {
	Repo           ghapi.Repo
	InstallationID int64
	Issue          int
	CommentID      int64 // the triggering comment
	RunID          int64 // dispatched now or earlier (0: none)
	// Ignored is the reason nothing was done, or "".
	Ignored string
}

func ignored(format string, args ...any) (Outcome, error) {
	return Outcome{Ignored: fmt.Sprintf(format, args...)}, nil
}

// Events the bot acts on.
var handledEvents = []string{"issue_comment", "workflow_run", "workflow_job"}

// HandleEvent handles one webhook or Actions event payload.
func (h *Handler) HandleEvent(ctx context.Context, event string, payload []byte, log *slog.Logger) (Outcome, error) {
	return h.handle(ctx, event, "", payload, log)
}

// handle is HandleEvent for a webhook delivery (its X-GitHub-Delivery, or
// "" outside webhooks).
func (h *Handler) handle(ctx context.Context, event, delivery string, payload []byte, log *slog.Logger) (Outcome, error) {
	if log == nil {
		log = h.o.Logger
	}
	if !slices.Contains(handledEvents, event) {
		return ignored("event %q is not handled", event)
	}
	ev, err := github.ParseWebHook(event, payload)
	if err != nil {
		return Outcome{}, fmt.Errorf("failed to parse the %s payload: %w", event, err)
	}
	switch e := ev.(type) {
	case *github.IssueCommentEvent:
		return h.onComment(ctx, e, delivery, log)
	case *github.WorkflowRunEvent:
		repo, gh, err := h.client(ctx, e.GetInstallation().GetID(), e.GetRepo())
		if err != nil {
			return Outcome{}, err
		}
		run := ghapi.RunFrom(e.GetWorkflowRun())
		_, _, _, ours := parseRunName(run.Title)
		h.runs.set(run.ID, ours)
		return h.track(ctx, gh, repo, run, nil, nil, log)
	case *github.WorkflowJobEvent:
		j := e.GetWorkflowJob()
		if ours, known := h.runs.get(j.GetRunID()); known && !ours {
			return ignored("a job of run %d, which the bot did not start", j.GetRunID())
		}
		repo, gh, err := h.client(ctx, e.GetInstallation().GetID(), e.GetRepo())
		if err != nil {
			return Outcome{}, err
		}
		// A job carries no run-name: ask for its run (once; the answer
		// "not ours" is remembered).
		run, err := gh.Run(ctx, repo, j.GetRunID())
		if err != nil {
			return Outcome{}, err
		}
		_, _, _, ours := parseRunName(run.Title)
		h.runs.set(run.ID, ours)
		return h.track(ctx, gh, repo, run, jobFrom(j), nil, log)
	}
	return ignored("event %q is not handled", event)
}

func (h *Handler) client(ctx context.Context, installation int64, r *github.Repository) (ghapi.Repo, GitHub, error) {
	repo := ghapi.Repo{Owner: r.GetOwner().GetLogin(), Name: r.GetName()}
	if repo.Owner == "" || repo.Name == "" {
		return repo, nil, errors.New("the payload names no repository")
	}
	gh, err := h.o.Clients(ctx, installation, repo)
	if err != nil {
		return repo, nil, fmt.Errorf("failed to get a GitHub client for %s: %w", repo, err)
	}
	return repo, gh, nil
}

// jobInfo is the part of a workflow_job event the status comment shows.
type jobInfo struct {
	Name, Status, Step string
}

func jobFrom(j *github.WorkflowJob) *jobInfo {
	ji := &jobInfo{Name: j.GetName(), Status: j.GetStatus()}
	for _, s := range j.Steps {
		if s.GetStatus() == "in_progress" {
			ji.Step = s.GetName()
		}
	}
	return ji
}

// triage is the cheap part of the issue_comment checks, run on the request
// path by Server so that edits, bots and chatter are answered at once and
// never take a queue slot. HandleEvent runs the same checks again.
type commentHead struct {
	Action  string `json:"action"`
	Comment struct {
		Body      string    `json:"body"`
		CreatedAt time.Time `json:"created_at"`
		User      struct {
			Login string `json:"login"`
			Type  string `json:"type"`
		} `json:"user"`
	} `json:"comment"`
}

// decodeCommentHead reads the top-level "action" and "comment" and stops
// there: the rest of the payload (repository, sender: most of its bytes) is
// not even scanned on the request path. The worker parses it all.
func decodeCommentHead(payload []byte) (commentHead, error) {
	var head commentHead
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return head, fmt.Errorf("not a JSON object")
	}
	var haveAction, haveComment bool
	for dec.More() && !(haveAction && haveComment) {
		t, err := dec.Token()
		if err != nil {
			return head, err
		}
		var dst any = new(json.RawMessage)
		switch t {
		case "action":
			dst, haveAction = &head.Action, true
		case "comment":
			dst, haveComment = &head.Comment, true
		}
		if err := dec.Decode(dst); err != nil {
			return head, err
		}
	}
	return head, nil
}

// triageComment decides what a comment is without any API call. A command
// older than MaxCommentAge is stale: it is refused unless the bot itself
// failed to take it in time (see FirstAttempt), which only the caller can
// find out.
func (h *Handler) triageComment(action, login, userType, body string, created time.Time) (res chatops.Result, reason string, stale bool) {
	switch {
	case action != "created":
		return nil, "comment " + action + ", only new comments act", false
	case userType == "Bot":
		return nil, "comment by a bot", false
	case strings.EqualFold(login, h.o.Self):
		return nil, "comment by the bot itself", false
	}
	res = chatops.Parse(body)
	if _, ok := res.(chatops.Ignore); ok {
		return nil, "not a command", false
	}
	// A redelivery days later (or a queue that stalled) must not deploy.
	if age := h.o.Now().Sub(created); age > h.o.MaxCommentAge {
		return res, h.staleReason(age), true
	}
	return res, "", false
}

func (h *Handler) staleReason(age time.Duration) string {
	return fmt.Sprintf("stale comment: %v old, the limit is %v (BOT_MAX_COMMENT_AGE)", age.Round(time.Second), h.o.MaxCommentAge)
}

// Triage tells whether an event could make the bot act, without any API
// call. Server uses it to answer 200 at once for everything else.
func (h *Handler) Triage(event string, payload []byte) (act bool, reason string) {
	switch event {
	case "workflow_run":
		var head struct {
			Run struct {
				ID    int64  `json:"id"`
				Title string `json:"display_title"`
			} `json:"workflow_run"`
		}
		if err := json.Unmarshal(payload, &head); err != nil {
			return false, "invalid JSON: " + err.Error()
		}
		if _, _, _, ok := parseRunName(head.Run.Title); !ok {
			h.runs.set(head.Run.ID, false)
			return false, "not a run the bot started"
		}
		h.runs.set(head.Run.ID, true)
		return true, ""
	case "workflow_job":
		var head struct {
			Job struct {
				RunID int64 `json:"run_id"`
			} `json:"workflow_job"`
		}
		if err := json.Unmarshal(payload, &head); err != nil {
			return false, "invalid JSON: " + err.Error()
		}
		if ours, known := h.runs.get(head.Job.RunID); known && !ours {
			return false, "a job of a run the bot did not start"
		}
		return true, ""
	case "issue_comment":
		head, err := decodeCommentHead(payload)
		if err != nil {
			return false, "invalid JSON: " + err.Error()
		}
		c := head.Comment
		res, why, stale := h.triageComment(head.Action, c.User.Login, c.User.Type, c.Body, c.CreatedAt)
		if stale && h.o.FirstAttempt != nil {
			// Maybe a delivery the bot failed to take: the worker asks.
			return true, ""
		}
		return res != nil && !stale, why
	}
	return false, fmt.Sprintf("event %q is not handled", event)
}

func (h *Handler) onComment(ctx context.Context, e *github.IssueCommentEvent, delivery string, log *slog.Logger) (Outcome, error) {
	c := e.GetComment()
	res, why, stale := h.triageComment(e.GetAction(), c.GetUser().GetLogin(), c.GetUser().GetType(), c.GetBody(), c.GetCreatedAt().Time)
	if stale {
		ok, err := h.botFailedToTake(ctx, delivery, c.GetCreatedAt().Time)
		if err != nil {
			log.Warn("could not learn when GitHub first sent the command", "comment", c.GetID(), "err", err)
		}
		if !ok {
			log.Warn("refused a stale command", "comment", c.GetID(), "reason", why)
			return ignored("%s", why)
		}
		log.Info("a command the bot failed to take in time, delivered again", "comment", c.GetID(), "delivery", delivery)
	}
	if res == nil {
		return ignored("%s", why)
	}
	repo, gh, err := h.client(ctx, e.GetInstallation().GetID(), e.GetRepo())
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Repo: repo, InstallationID: e.GetInstallation().GetID(), Issue: e.GetIssue().GetNumber(), CommentID: c.GetID()}
	user := c.GetUser().GetLogin()
	log = log.With("repo", repo.String(), "issue", out.Issue, "comment", out.CommentID, "user", user)

	mu := &h.commentLocks[uint64(out.CommentID)%uint64(len(h.commentLocks))]
	mu.Lock()
	defer mu.Unlock()

	kind := chatops.Help
	if cmd, ok := res.(chatops.Command); ok {
		kind = cmd.Kind
	}
	// Authorise before anything visible happens.
	allowed, refusal, err := h.authorise(ctx, gh, repo, user, kind)
	if err != nil {
		return out, err
	}
	// Anything already posted for this comment (by this process before a
	// restart, by another replica, or for an earlier delivery) wins.
	existing, err := h.findStatus(ctx, gh, repo, out.Issue, out.CommentID, c.GetCreatedAt().Time)
	if err != nil {
		return out, err
	}
	if existing != nil {
		st, _ := parseMarker(existing.Body)
		out.RunID = st.Run
		out.Ignored = fmt.Sprintf("already answered in comment %d", existing.ID)
		log.Info("comment already handled", "status_comment", existing.ID, "run", st.Run)
		return out, nil
	}
	if !allowed {
		log.Info("refused", "kind", kind.String(), "reason", refusal)
		_, err := gh.CreateComment(ctx, repo, out.Issue, reply(out.CommentID, refusal))
		out.Ignored = "not authorised"
		return out, err
	}
	if err := gh.React(ctx, repo, out.CommentID, "eyes"); err != nil {
		log.Warn("failed to react", "err", err)
	}
	switch r := res.(type) {
	case chatops.Reply:
		_, err := gh.CreateComment(ctx, repo, out.Issue, reply(out.CommentID, r.Text))
		return out, err
	case chatops.Command:
		switch r.Kind {
		case chatops.Help:
			_, err := gh.CreateComment(ctx, repo, out.Issue, reply(out.CommentID, chatops.Usage))
			return out, err
		case chatops.Status:
			text, err := h.statusReport(ctx, gh, repo, r.VM)
			if err != nil {
				return out, err
			}
			_, err = gh.CreateComment(ctx, repo, out.Issue, reply(out.CommentID, text))
			return out, err
		case chatops.Deploy, chatops.Destroy, chatops.Switch:
			return h.dispatch(ctx, gh, e, out, r, log)
		}
	}
	return out, fmt.Errorf("bot: unhandled parse result %#v", res)
}

// botFailedToTake reports whether a stale command is one GitHub first sent
// within MaxCommentAge of its creation: the bot answered 503 or was down,
// and the command came back through a redelivery. GitHub does not
// redeliver by itself ("Handling failed webhook deliveries"); the bot's
// Redeliverer or a person asked for it.
func (h *Handler) botFailedToTake(ctx context.Context, delivery string, created time.Time) (bool, error) {
	if h.o.FirstAttempt == nil || delivery == "" || h.o.Now().Sub(created) > maxLateCommand {
		return false, nil
	}
	first, err := h.o.FirstAttempt(ctx, delivery, created.Add(-time.Minute))
	if err != nil || first.IsZero() {
		return false, err
	}
	return first.Sub(created) <= h.o.MaxCommentAge, nil
}

// maxLateCommand bounds how late a command the bot failed to take may still
// run: the lookup lists every delivery since the comment, and a deploy a day
// after it was asked for surprises more than it helps.
const maxLateCommand = 24 * time.Hour

// permissionRank orders GitHub's base repository roles.
var permissionRank = map[string]int{"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}

func (h *Handler) authorise(ctx context.Context, gh GitHub, repo ghapi.Repo, user string, kind chatops.Kind) (bool, string, error) {
	if len(h.o.AllowedUsers) > 0 && !slices.ContainsFunc(h.o.AllowedUsers, func(u string) bool { return strings.EqualFold(u, user) }) {
		return false, fmt.Sprintf("Sorry @%s, only these users may use this bot here: %s.", user, strings.Join(h.o.AllowedUsers, ", ")), nil
	}
	need := h.o.Permissions[kind]
	if kind == chatops.Help || need == "" {
		need = h.o.Permissions[chatops.Status]
	}
	if need == "" {
		need = "write"
	}
	have, err := gh.Permission(ctx, repo, user)
	if err != nil {
		return false, "", err
	}
	if permissionRank[have] >= permissionRank[need] {
		return true, "", nil
	}
	cmd := "/" + kind.String()
	return false, fmt.Sprintf("Sorry @%s, `%s` needs **%s** permission on %s; you have **%s**. Ask a maintainer to run it, or to grant you %s.", user, cmd, need, repo, have, need), nil
}

// mine reports whether the bot wrote a comment. GitHub sets a comment's
// user from the token that created it: no one else can write as Self.
func (h *Handler) mine(c ghapi.Comment) bool { return strings.EqualFold(c.User, h.o.Self) }

// statusSlack widens "comments updated since": the status comment is
// written a moment before the run exists, and clocks differ a little.
const statusSlack = 10 * time.Minute

// findStatus returns the bot's oldest comment for a triggering comment, or
// nil. Only comments updated after since are listed.
func (h *Handler) findStatus(ctx context.Context, gh GitHub, repo ghapi.Repo, issue int, comment int64, since time.Time) (*ghapi.Comment, error) {
	all, err := h.statusComments(ctx, gh, repo, issue, comment, since)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	return &all[0], nil
}

func (h *Handler) statusComments(ctx context.Context, gh GitHub, repo ghapi.Repo, issue int, comment int64, since time.Time) ([]ghapi.Comment, error) {
	if !since.IsZero() {
		since = since.Add(-statusSlack)
	}
	cs, err := gh.Comments(ctx, repo, issue, since)
	if err != nil {
		return nil, err
	}
	var out []ghapi.Comment
	for _, c := range cs {
		if !h.mine(c) {
			continue // anyone can write a marker; only the bot's own count
		}
		if st, ok := parseMarker(c.Body); ok && st.Comment == comment {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b ghapi.Comment) int { return int(a.ID - b.ID) })
	return out, nil
}

func (h *Handler) dispatch(ctx context.Context, gh GitHub, e *github.IssueCommentEvent, out Outcome, cmd chatops.Command, log *slog.Logger) (Outcome, error) {
	command := cmd.Kind.String()
	// A dry run of deploy is its plan; a dry run of switch reaches the VM
	// for the closure diff, so it stays a switch with dry-run set.
	dryRun := cmd.DryRun && cmd.Kind == chatops.Switch
	if cmd.DryRun && cmd.Kind == chatops.Deploy {
		command = "plan"
	}
	st := status{Comment: out.CommentID, VM: cmd.VM, Command: command, Location: cmd.Location, Size: cmd.Size,
		Image: cmd.Image, Channel: cmd.Channel, User: e.GetComment().GetUser().GetLogin(), State: stateDispatching,
		Ref: cmd.Ref, DryRun: dryRun}
	mine, err := gh.CreateComment(ctx, out.Repo, out.Issue, st.render())
	if err != nil {
		return out, err
	}
	if !h.mine(mine) {
		// The token writes as someone else than the bot believes it is
		// (a GITHUB_TOKEN replaced by an App's token, say): it would never
		// find this comment again, and would dispatch on every redelivery.
		_ = gh.DeleteComment(ctx, out.Repo, mine.ID)
		return out, fmt.Errorf("the token writes comments as %q, but the bot takes itself for %q: its state would be lost (give the token's own identity: BOT_GITHUB_TOKEN, or the App's id and key)", mine.User, h.o.Self)
	}
	// Claim: with several replicas (or a redelivery racing the original),
	// each may have written a status comment; the oldest one wins and the
	// others withdraw before dispatching anything.
	all, err := h.statusComments(ctx, gh, out.Repo, out.Issue, out.CommentID, e.GetComment().GetCreatedAt().Time)
	if err != nil {
		return out, err
	}
	if len(all) > 0 && all[0].ID != mine.ID {
		log.Info("another handler claimed the comment", "status_comment", all[0].ID)
		if err := gh.DeleteComment(ctx, out.Repo, mine.ID); err != nil {
			log.Warn("failed to withdraw a duplicate status comment", "err", err)
		}
		out.Ignored = fmt.Sprintf("claimed by comment %d", all[0].ID)
		return out, nil
	}
	ref := h.o.Ref
	if ref == "" {
		ref = e.GetRepo().GetDefaultBranch()
	}
	if ref == "" {
		if ref, err = gh.DefaultBranch(ctx, out.Repo); err != nil {
			return out, h.dispatchFailed(ctx, gh, out, mine.ID, st, err)
		}
	}
	corr := correlationID(out.Issue, out.CommentID)
	req := ghapi.DispatchRequest{
		Workflow: h.o.Workflow, Ref: ref, CorrelationID: corr,
		// The deploy workflow's workflow_dispatch inputs.
		Inputs: map[string]any{
			"vm-name": cmd.VM, "location": cmd.Location, "size": cmd.Size, "image": cmd.Image,
			"nix-channel": cmd.Channel, "command": command, "correlation-id": corr,
			"config-ref": cmd.Ref, "dry-run": dryRun,
		},
	}
	if cmd.Kind != chatops.Switch {
		// GitHub answers 422 to an input the workflow does not declare: a
		// deploy.yml copied before switch existed has neither.
		delete(req.Inputs, "config-ref")
		delete(req.Inputs, "dry-run")
	}
	d, err := gh.Dispatch(ctx, out.Repo, req)
	if err != nil {
		return out, h.dispatchFailed(ctx, gh, out, mine.ID, st, err)
	}
	log.Info("dispatched", "run", d.RunID, "fallback", d.Fallback, "ref", ref, "command", command, "vm", cmd.VM)
	out.RunID = d.RunID
	st = st.withRun(ghapi.Run{ID: d.RunID, HTMLURL: d.HTMLURL, Status: "queued"}, nil)
	if err := gh.EditComment(ctx, out.Repo, mine.ID, st.render()); err != nil {
		return out, err
	}
	if err := gh.React(ctx, out.Repo, out.CommentID, "rocket"); err != nil {
		log.Warn("failed to react", "err", err)
	}
	return out, nil
}

func (h *Handler) dispatchFailed(ctx context.Context, gh GitHub, out Outcome, statusID int64, st status, cause error) error {
	// The comment says why even when the deadline is what ended it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st.State, st.Detail = stateDispatchFailed, cause.Error()
	if err := gh.EditComment(ctx, out.Repo, statusID, st.render()); err != nil {
		return errors.Join(cause, err)
	}
	if err := gh.React(ctx, out.Repo, out.CommentID, "-1"); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// HostFacts are the public facts of a successful deploy the status comment
// shows, as the run's own outputs say them.
type HostFacts struct {
	HostKey string // a known_hosts line
	FQDN    string
	// Switched is a switch's outcome; only the action's notice has it.
	Switched string
}

// track updates the status comment of the run's triggering comment. facts,
// when not nil, come from the deploy job's outputs; otherwise a successful
// deploy's are read from its notice annotations.
func (h *Handler) track(ctx context.Context, gh GitHub, repo ghapi.Repo, run ghapi.Run, job *jobInfo, facts *HostFacts, log *slog.Logger) (Outcome, error) {
	vm, issue, comment, ok := parseRunName(run.Title)
	if !ok {
		return ignored("run %d %q was not started by the bot", run.ID, run.Title)
	}
	out := Outcome{Repo: repo, Issue: issue, CommentID: comment, RunID: run.ID}
	log = log.With("repo", repo.String(), "run", run.ID, "vm", vm, "comment", comment)
	mu := &h.runLocks[uint64(run.ID)%uint64(len(h.runLocks))]
	mu.Lock()
	defer mu.Unlock()

	var since time.Time
	if !run.CreatedAt.IsZero() {
		since = run.CreatedAt
	}
	sc, err := h.findStatus(ctx, gh, repo, issue, comment, since)
	if err != nil {
		return out, err
	}
	if sc == nil {
		out.Ignored = "no status comment for the run"
		log.Warn("no status comment found for a bot run")
		return out, nil
	}
	old, _ := parseMarker(sc.Body)
	if old.Run != 0 && old.Run != run.ID {
		out.Ignored = fmt.Sprintf("the status comment tracks run %d", old.Run)
		return out, nil
	}
	next := old.withRun(run, job)
	if stateRank(next.State) < stateRank(old.State) {
		// Events arrive out of order; a comment never goes back.
		out.Ignored = fmt.Sprintf("stale event: %s after %s", next.State, old.State)
		return out, nil
	}
	wantHost := next.State == stateSucceeded && next.Command == "deploy"
	wantSwitch := terminal(next.State) && next.Command == "switch"
	if facts != nil && wantHost {
		next.HostKey, next.FQDN = facts.HostKey, facts.FQDN
		wantHost = false
	}
	if wantHost || wantSwitch {
		// The action publishes the pinned host key, and a switch's
		// outcome, as notice annotations; noticeFacts believes only its
		// own.
		if anns, err := gh.Annotations(ctx, repo, run.ID); err != nil {
			log.Warn("failed to read the run's notices; the comment points to the summary", "err", err)
		} else {
			f := noticeFacts(anns)
			if wantHost {
				next.HostKey, next.FQDN = f.HostKey, f.FQDN
			}
			if wantSwitch {
				next.Switched = f.Switched
			}
		}
	}
	body := next.render()
	if body == sc.Body {
		out.Ignored = "no change"
		return out, nil
	}
	if err := gh.EditComment(ctx, repo, sc.ID, body); err != nil {
		return out, err
	}
	log.Info("status comment updated", "status_comment", sc.ID, "state", next.State)
	if terminal(next.State) && !terminal(old.State) {
		reaction := "+1"
		if next.State != stateSucceeded {
			reaction = "-1"
		}
		if err := gh.React(ctx, repo, comment, reaction); err != nil {
			log.Warn("failed to react", "err", err)
		}
	}
	return out, nil
}

// statusReport answers /status from the latest runs of the workflow.
func (h *Handler) statusReport(ctx context.Context, gh GitHub, repo ghapi.Repo, vm string) (string, error) {
	runs, err := gh.Runs(ctx, repo, h.o.Workflow, 50)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if vm != "" {
		for _, run := range runs {
			rvm, issue, comment, ok := parseRunName(run.Title)
			if !ok || rvm != vm {
				continue
			}
			st := status{VM: vm, Command: "deploy"}
			if sc, err := h.findStatus(ctx, gh, repo, issue, comment, run.CreatedAt); err == nil && sc != nil {
				st, _ = parseMarker(sc.Body)
			}
			st = st.withRun(run, nil)
			fmt.Fprintf(&b, "Latest run for `%s`: [run #%d](%s), `%s` by @%s: **%s**", vm, run.Number, run.HTMLURL, st.Command, or(st.User, "someone"), stateText(st))
			if st.State == stateSucceeded && st.Command == "deploy" && st.Location != "" {
				fqdn := fmt.Sprintf("%s.<hash>.%s.cloudapp.azure.com", vm, st.Location) // Azure's hash: see the run's fqdn output
				fmt.Fprintf(&b, "\n\n`ssh %s@%s`", defaultUser, fqdn)
			}
			return b.String(), nil
		}
		return fmt.Sprintf("No run of `%s` for `%s` among the latest %d runs.", h.o.Workflow, vm, len(runs)), nil
	}
	seen := map[string]bool{}
	b.WriteString("| VM | latest run | state |\n|---|---|---|\n")
	for _, run := range runs {
		rvm, _, _, ok := parseRunName(run.Title)
		if !ok || seen[rvm] {
			continue
		}
		seen[rvm] = true
		fmt.Fprintf(&b, "| `%s` | [#%d](%s) | %s |\n", rvm, run.Number, run.HTMLURL, stateText(status{}.withRun(run, nil)))
	}
	if len(seen) == 0 {
		return fmt.Sprintf("No bot runs of `%s` among the latest %d runs.", h.o.Workflow, len(runs)), nil
	}
	return b.String(), nil
}

func stateText(st status) string {
	switch st.State {
	case stateSucceeded:
		return "succeeded in " + st.Duration.String()
	case stateFailed:
		return "failed (" + st.Detail + ")"
	case stateInProgress:
		return "in progress"
	}
	return st.State
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Report is the end of a run started by the bot in workflow mode, as the
// run itself tells it (chatops-deploy.yml's last job): no workflow_run
// webhook reaches a workflow, and a run started with a workflow's
// GITHUB_TOKEN starts no workflow_run workflow either (docs, "Triggering a
// workflow from a workflow"), so the run reports its own end.
type Report struct {
	Repo  ghapi.Repo
	RunID int64
	// Result is the deploy job's result: success, failure, cancelled or
	// skipped (needs.<job>.result).
	Result string
	Facts  HostFacts // the deploy job's outputs; empty unless it succeeded
}

var jobResults = []string{"success", "failure", "cancelled", "skipped"}

// Report updates the status comment of the reporting run to its end state.
// A run the bot did not start, or one whose status comment tracks another
// run, changes nothing.
func (h *Handler) Report(ctx context.Context, r Report, log *slog.Logger) (Outcome, error) {
	if log == nil {
		log = h.o.Logger
	}
	if !slices.Contains(jobResults, r.Result) {
		return Outcome{}, fmt.Errorf("job result %q: must be one of %s", r.Result, strings.Join(jobResults, ", "))
	}
	if r.Facts.HostKey != "" && !validKnownHostsLine(r.Facts.HostKey) {
		return Outcome{}, fmt.Errorf("ssh-host-key output %q: not one known_hosts line", r.Facts.HostKey)
	}
	if r.Facts.FQDN != "" && !validFQDN(r.Facts.FQDN) {
		return Outcome{}, fmt.Errorf("fqdn output %q: not a DNS name", r.Facts.FQDN)
	}
	gh, err := h.o.Clients(ctx, 0, r.Repo)
	if err != nil {
		return Outcome{}, fmt.Errorf("failed to get a GitHub client for %s: %w", r.Repo, err)
	}
	run, err := gh.Run(ctx, r.Repo, r.RunID)
	if err != nil {
		return Outcome{}, err
	}
	// The run is still going (this job is part of it): its end is the
	// deploy job's result, now.
	run.Status, run.Conclusion, run.UpdatedAt = "completed", r.Result, h.o.Now()
	if run.StartedAt.IsZero() {
		run.StartedAt = run.CreatedAt
	}
	facts := r.Facts
	return h.track(ctx, gh, r.Repo, run, nil, &facts, log)
}

// runCache is a bounded map of run id to "started by the bot".
type runCache struct {
	mu   sync.Mutex
	m    map[int64]bool
	ring []int64
	next int
}

func newRunCache(n int) *runCache {
	return &runCache{m: make(map[int64]bool, n), ring: make([]int64, n)}
}

func (c *runCache) get(id int64) (ours, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ours, known = c.m[id]
	return ours, known
}

func (c *runCache) set(id int64, ours bool) {
	if id == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok {
		if old := c.ring[c.next]; old != 0 {
			delete(c.m, old)
		}
		c.ring[c.next] = id
		c.next = (c.next + 1) % len(c.ring)
	}
	c.m[id] = ours
}
