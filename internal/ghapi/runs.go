package ghapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-github/v62/github"
)

// Run is a workflow run.
type Run struct {
	ID         int64
	Number     int
	Title      string // display_title: the workflow's run-name
	Status     string // queued, in_progress, completed, waiting, requested, pending
	Conclusion string // success, failure, cancelled, timed_out, ... once completed
	HTMLURL    string
	Event      string
	CreatedAt  time.Time
	StartedAt  time.Time // run_started_at (of the latest attempt)
	UpdatedAt  time.Time
}

// Completed reports whether the run has finished.
func (r Run) Completed() bool { return r.Status == "completed" }

// RunFrom converts a go-github run (from the API or a webhook payload).
func RunFrom(w *github.WorkflowRun) Run {
	if w == nil {
		return Run{}
	}
	return Run{
		ID: w.GetID(), Number: w.GetRunNumber(), Title: w.GetDisplayTitle(),
		Status: w.GetStatus(), Conclusion: w.GetConclusion(), HTMLURL: w.GetHTMLURL(),
		Event:     w.GetEvent(),
		CreatedAt: w.GetCreatedAt().Time, StartedAt: w.GetRunStartedAt().Time, UpdatedAt: w.GetUpdatedAt().Time,
	}
}

// Run gets a workflow run by id.
func (c *Client) Run(ctx context.Context, repo Repo, id int64) (Run, error) {
	w, _, err := c.gh.Actions.GetWorkflowRunByID(ctx, repo.Owner, repo.Name, id)
	if err != nil {
		return Run{}, fmt.Errorf("failed to get workflow run %d: %w", id, err)
	}
	return RunFrom(w), nil
}

// Annotation is a check run annotation of one of a run's jobs.
type Annotation struct {
	Job     string // the job's name
	Level   string // notice, warning, failure
	Title   string
	Message string
}

// Annotations returns the annotations of a run's jobs, job by job, in the
// order GitHub lists them. A job's id is its check run's id. The deploy
// action publishes its public outputs (ssh-host-key, fqdn) as notice
// annotations because the REST API exposes neither step outputs nor step
// summaries; what to believe of them is the caller's decision.
func (c *Client) Annotations(ctx context.Context, repo Repo, runID int64) ([]Annotation, error) {
	jobs, _, err := c.gh.Actions.ListWorkflowJobs(ctx, repo.Owner, repo.Name, runID,
		&github.ListWorkflowJobsOptions{ListOptions: github.ListOptions{PerPage: 100}})
	if err != nil {
		return nil, fmt.Errorf("failed to list the jobs of workflow run %d: %w", runID, err)
	}
	var out []Annotation
	for _, j := range jobs.Jobs {
		opts := &github.ListOptions{PerPage: 100}
		for {
			anns, resp, err := c.gh.Checks.ListCheckRunAnnotations(ctx, repo.Owner, repo.Name, j.GetID(), opts)
			if err != nil {
				return nil, fmt.Errorf("failed to list the annotations of job %d: %w", j.GetID(), err)
			}
			for _, a := range anns {
				out = append(out, Annotation{Job: j.GetName(), Level: a.GetAnnotationLevel(), Title: a.GetTitle(), Message: a.GetMessage()})
			}
			if resp.NextPage == 0 {
				break
			}
			opts.Page = resp.NextPage
		}
	}
	return out, nil
}

// Runs lists the latest runs of a workflow (by file name), newest first, at
// most n (up to 100).
func (c *Client) Runs(ctx context.Context, repo Repo, workflow string, n int) ([]Run, error) {
	n = min(max(n, 1), 100)
	ws, _, err := c.gh.Actions.ListWorkflowRunsByFileName(ctx, repo.Owner, repo.Name, workflow,
		&github.ListWorkflowRunsOptions{ListOptions: github.ListOptions{PerPage: n}})
	if err != nil {
		return nil, fmt.Errorf("failed to list the runs of workflow %q in %s: %w", workflow, repo, err)
	}
	out := make([]Run, 0, len(ws.WorkflowRuns))
	for _, w := range ws.WorkflowRuns {
		out = append(out, RunFrom(w))
	}
	return out, nil
}

// DispatchRequest is one workflow_dispatch.
type DispatchRequest struct {
	Workflow string // file name, for example deploy.yml
	Ref      string
	Inputs   map[string]any
	// CorrelationID must appear in brackets in the workflow's run-name
	// ("deploy <vm> [<id>]"); it finds the run when the server does not
	// return its id.
	CorrelationID string
}

// Dispatched identifies the run a dispatch started.
type Dispatched struct {
	RunID   int64
	HTMLURL string
	// Fallback is true when the run was found by its correlation id.
	Fallback bool
}

type dispatchBody struct {
	Ref              string         `json:"ref"`
	Inputs           map[string]any `json:"inputs,omitempty"`
	ReturnRunDetails bool           `json:"return_run_details,omitempty"`
}

// runDetails is the 200 answer to return_run_details: true.
type runDetails struct {
	WorkflowRunID int64  `json:"workflow_run_id"`
	RunURL        string `json:"run_url"`
	HTMLURL       string `json:"html_url"`
}

// Dispatch starts a workflow run and returns its id.
//
// Since 2026-02-19 GitHub answers a dispatch that sets return_run_details
// with 200 and the run's id
// (https://github.blog/changelog/2026-02-19-workflow-dispatch-api-now-returns-run-ids).
// go-github v62 predates the field, so the request is built with NewRequest.
// A server that rejects the field (400 or 422: older GitHub Enterprise
// Server) gets the classic request, and one that ignores it (204) is fine too: the run is
// then found by the correlation id in its run-name.
func (c *Client) Dispatch(ctx context.Context, repo Repo, d DispatchRequest) (Dispatched, error) {
	u := fmt.Sprintf("repos/%s/%s/actions/workflows/%s/dispatches", url.PathEscape(repo.Owner), url.PathEscape(repo.Name), url.PathEscape(d.Workflow))
	req, err := c.gh.NewRequest("POST", u, dispatchBody{Ref: d.Ref, Inputs: d.Inputs, ReturnRunDetails: true})
	if err != nil {
		return Dispatched{}, fmt.Errorf("failed to build the dispatch request: %w", err)
	}
	var det runDetails
	_, err = c.gh.Do(ctx, req, &det)
	switch {
	case err == nil && det.WorkflowRunID != 0:
		return Dispatched{RunID: det.WorkflowRunID, HTMLURL: det.HTMLURL}, nil
	case err == nil:
		// 204: the server ignored return_run_details.
	case StatusCode(err) == 422 || StatusCode(err) == 400:
		// Either the server does not know return_run_details or the
		// inputs are wrong; the classic request, sent once, tells which.
		// GitHub Enterprise Server 3.19 and older answer 400
		// ("\"return_run_details\" is not a permitted key.", cli/cli#12672);
		// 3.21 knows the field.
		if _, err := c.gh.Actions.CreateWorkflowDispatchEventByFileName(ctx, repo.Owner, repo.Name, d.Workflow,
			github.CreateWorkflowDispatchEventRequest{Ref: d.Ref, Inputs: d.Inputs}); err != nil {
			return Dispatched{}, dispatchError(repo, d, err)
		}
	default:
		return Dispatched{}, dispatchError(repo, d, err)
	}
	if d.CorrelationID == "" {
		return Dispatched{}, errors.New("the server did not return the run id and no correlation id was given to find it")
	}
	run, err := c.findRun(ctx, repo, d.Workflow, d.CorrelationID)
	if err != nil {
		return Dispatched{}, err
	}
	return Dispatched{RunID: run.ID, HTMLURL: run.HTMLURL, Fallback: true}, nil
}

func dispatchError(repo Repo, d DispatchRequest, err error) error {
	hint := ""
	switch StatusCode(err) {
	case 404:
		hint = fmt.Sprintf(" (is %q on %q, and may the token run workflows?)", ".github/workflows/"+d.Workflow, d.Ref)
	case 422:
		hint = fmt.Sprintf(" (does the workflow's workflow_dispatch declare every input the bot sends: %s?)", strings.Join(slices.Sorted(maps.Keys(d.Inputs)), ", "))
	case 403:
		hint = " (the token needs actions: write)"
	}
	return fmt.Errorf("failed to dispatch workflow %q at %q in %s: %w%s", d.Workflow, d.Ref, repo, err, hint)
}

// findRun polls the workflow's recent workflow_dispatch runs for the one whose
// run-name carries "[<correlation id>]". Runs appear a few seconds after the
// dispatch.
func (c *Client) findRun(ctx context.Context, repo Repo, workflow, correlationID string) (Run, error) {
	ctx, cancel := context.WithTimeout(ctx, c.lookupFor)
	defer cancel()
	needle := "[" + correlationID + "]"
	t := time.NewTicker(c.lookupEvery)
	defer t.Stop()
	for {
		ws, _, err := c.gh.Actions.ListWorkflowRunsByFileName(ctx, repo.Owner, repo.Name, workflow,
			&github.ListWorkflowRunsOptions{Event: "workflow_dispatch", ListOptions: github.ListOptions{PerPage: 30}})
		if err != nil && ctx.Err() == nil {
			return Run{}, fmt.Errorf("failed to list the runs of workflow %q to find the dispatched one: %w", workflow, err)
		}
		if err == nil {
			for _, w := range ws.WorkflowRuns {
				// display_title is the run-name; name is the workflow's
				// name, which some servers put there instead.
				if strings.Contains(w.GetDisplayTitle(), needle) || strings.Contains(w.GetName(), needle) {
					return RunFrom(w), nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return Run{}, fmt.Errorf("failed to find the dispatched run of %q with %q in its run-name within %v: %w (does the workflow set run-name: deploy ${{ inputs.vm-name }} [${{ inputs.correlation-id }}]?)",
				workflow, needle, c.lookupFor, ctx.Err())
		case <-t.C:
		}
	}
}
