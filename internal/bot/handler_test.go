package bot

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/chatops"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
)

var ctx = context.Background()

// testHostKey is what the action's ssh-host-key output looks like.
const testHostKey = "az-nixos.uksouth.cloudapp.azure.com,20.0.0.4 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

func TestDispatchWithRunDetailsAndFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		reject int  // the server refuses return_run_details (400 or 422)
		ignore bool // the server ignores it (204)
	}{
		{name: "run details"},
		{name: "422 then correlation id", reject: 422},
		{name: "GHES 400 then correlation id", reject: 400},
		{name: "204 then correlation id", ignore: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(s *ghapitest.Server, _ *Options) { s.RejectRunDetails, s.IgnoreRunDetails = tc.reject, tc.ignore })
			c, payload := e.comment("/deploy az-nixos --location westeurope --size Standard_B2s --dry-run", time.Minute)
			out, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
			if err != nil {
				t.Fatal(err)
			}
			ds := e.gh.Dispatches(testRepo)
			if len(ds) != 1 {
				t.Fatalf("%d dispatches, want 1", len(ds))
			}
			corr := fmt.Sprintf("i1-c%d", c.ID)
			want := ghapitest.Dispatch{Workflow: "deploy.yml", Ref: "master", RunID: out.RunID, Inputs: map[string]any{
				"vm-name": "az-nixos", "location": "westeurope", "size": "Standard_B2s", "image": chatops.Defaults(chatops.Deploy).Image,
				"nix-channel": chatops.Defaults(chatops.Deploy).Channel, "command": "plan", "correlation-id": corr,
			}}
			if diff := cmp.Diff(want, ds[0]); diff != "" {
				t.Errorf("dispatch mismatch (-want +got):\n%s", diff)
			}
			bc := e.botComments()
			if len(bc) != 1 {
				t.Fatalf("%d bot comments, want 1", len(bc))
			}
			st, _ := parseMarker(bc[0].Body)
			if st.Comment != c.ID || st.Run != out.RunID || st.VM != "az-nixos" || st.State != stateQueued {
				t.Errorf("marker = %+v; want comment %d, run %d, vm az-nixos, queued", st, c.ID, out.RunID)
			}
			wantMarker := fmt.Sprintf("<!-- nixos-cloud-deploy: comment=%d run=%d vm=az-nixos ", c.ID, out.RunID)
			if !strings.HasPrefix(bc[0].Body, wantMarker) {
				t.Errorf("status comment starts %q, want %q", bc[0].Body[:min(80, len(bc[0].Body))], wantMarker)
			}
			if diff := cmp.Diff([]string{"eyes", "rocket"}, e.reactions(c.ID)); diff != "" {
				t.Errorf("reactions (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStatusCommentThroughARun drives one run through its webhook events,
// out of order at the end, and checks the one status comment is edited in
// place to the final state.
func TestStatusCommentThroughARun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, payload := e.comment("/deploy az-nixos", time.Minute)
	out, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := out.RunID
	start := e.now.Add(time.Minute)
	type step struct {
		event, action string
		status        string // the run's status at the fake before the event
		conclusion    string
		wantState     string
	}
	steps := []step{
		{"workflow_run", "requested", "queued", "", stateQueued},
		{"workflow_job", "queued", "queued", "", stateQueued},
		{"workflow_run", "in_progress", "in_progress", "", stateInProgress},
		{"workflow_job", "in_progress", "in_progress", "", stateInProgress},
		{"workflow_job", "completed", "in_progress", "", stateInProgress},
		{"workflow_run", "completed", "completed", "success", stateSucceeded},
		// A late, out-of-order event must not undo the final state.
		{"workflow_run", "in_progress", "in_progress", "", stateSucceeded},
		{"workflow_job", "in_progress", "in_progress", "", stateSucceeded},
	}
	for i, s := range steps {
		at := start
		if s.status == "completed" {
			at = start.Add(12*time.Minute + 5*time.Second)
		}
		e.gh.SetRun(testRepo, id, s.status, s.conclusion, at)
		if s.conclusion == "success" {
			// What the action annotates on success.
			e.gh.SetAnnotations(testRepo, id, ghapitest.Notices(map[string]string{
				NoticeHostKey: testHostKey,
				NoticeFQDN:    "az-nixos.uksouth.cloudapp.azure.com",
			})...)
		}
		var body []byte
		if s.event == "workflow_run" {
			body = e.runEvent(s.action, id)
		} else {
			body = e.jobEvent(s.action, id)
		}
		if s.status == "in_progress" && i >= 6 {
			// Put the fake's run back to completed: only the event is late.
			e.gh.SetRun(testRepo, id, "completed", "success", start.Add(12*time.Minute+5*time.Second))
		}
		if _, err := e.h.HandleEvent(ctx, s.event, body, nil); err != nil {
			t.Fatalf("step %d (%s %s): %v", i, s.event, s.action, err)
		}
		bc := e.botComments()
		if len(bc) != 1 {
			t.Fatalf("step %d: %d bot comments, want 1 edited in place", i, len(bc))
		}
		if st, _ := parseMarker(bc[0].Body); st.State != s.wantState {
			t.Errorf("step %d (%s %s): state %q, want %q", i, s.event, s.action, st.State, s.wantState)
		}
	}
	final := e.botComments()[0]
	if !strings.Contains(final.Body, "| Host key | `"+testHostKey+"`") {
		t.Errorf("the final comment lacks the host key line from the run's notices:\n%s", final.Body)
	}
	if final.Edits < 3 {
		t.Errorf("status comment edited %d times, want at least 3 (queued, in progress, done)", final.Edits)
	}
	checkGolden(t, "lifecycle_final", strings.NewReplacer(fmt.Sprint(c.ID), "COMMENT", e.gh.URL, "https://github.example").Replace(final.Body))
	if diff := cmp.Diff([]string{"eyes", "rocket", "+1"}, e.reactions(c.ID)); diff != "" {
		t.Errorf("reactions (-want +got):\n%s", diff)
	}
}

// TestSwitchThroughARun: /switch dispatches command switch with the ref and
// dry-run, and the status comment shows the switch's outcome from the run's
// notice, on success and when the VM rolled back.
func TestSwitchThroughARun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, conclusion, notice string
		wantInputs                     map[string]any
		want                           []string
	}{
		{"dry run to a ref", "/switch az-nixos --ref releases/v2 --dry-run", "success",
			"dry run: 0123456789ab would replace generation 41; 2 upgraded, 1 added; 12 paths (34.0 MiB) to copy or fetch",
			map[string]any{"command": "switch", "config-ref": "releases/v2", "dry-run": true},
			[]string{"### ✅ Dry run of a switch for `az-nixos`", "| Configuration | `releases/v2` |", "| Result | dry run: 0123456789ab would replace generation 41; 2 upgraded, 1 added"}},
		{"rolled back", "/switch az-nixos", "failure",
			"generation 41 (was 41) runs 0123456789ab; 1 upgraded",
			map[string]any{"command": "switch", "config-ref": "", "dry-run": false},
			[]string{"### ❌ Switch `az-nixos`: failed", "| Configuration | the default branch of config-repo |", "| Result | generation 41 (was 41)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			c, payload := e.comment(tc.body, time.Minute)
			out, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
			if err != nil {
				t.Fatal(err)
			}
			ds := e.gh.Dispatches(testRepo)
			if len(ds) != 1 {
				t.Fatalf("%d dispatches, want 1", len(ds))
			}
			for k, v := range tc.wantInputs {
				if got := ds[0].Inputs[k]; got != v {
					t.Errorf("dispatch input %s = %#v, want %#v", k, got, v)
				}
			}
			e.gh.SetRun(testRepo, out.RunID, "completed", tc.conclusion, e.now.Add(2*time.Minute))
			e.gh.SetAnnotations(testRepo, out.RunID, ghapitest.Notices(map[string]string{NoticeSwitch: tc.notice})...)
			if _, err := e.h.HandleEvent(ctx, "workflow_run", e.runEvent("completed", out.RunID), nil); err != nil {
				t.Fatal(err)
			}
			body := e.botComments()[0].Body
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("status comment lacks %q:\n%s", w, body)
				}
			}
			if st, _ := parseMarker(body); st.Comment != c.ID || st.Command != "switch" || st.Ref != tc.wantInputs["config-ref"] || st.DryRun != tc.wantInputs["dry-run"] {
				t.Errorf("marker %+v", st)
			}
		})
	}
}

func TestFailedRunGetsThumbsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, payload := e.comment("/deploy az-nixos", time.Minute)
	out, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.gh.SetRun(testRepo, out.RunID, "in_progress", "", e.now)
	e.gh.SetRun(testRepo, out.RunID, "completed", "failure", e.now.Add(3*time.Minute))
	if _, err := e.h.HandleEvent(ctx, "workflow_run", e.runEvent("completed", out.RunID), nil); err != nil {
		t.Fatal(err)
	}
	body := e.botComments()[0].Body
	if !strings.Contains(body, "failed") || !strings.Contains(body, "`failure` after 3m0s") {
		t.Errorf("final comment:\n%s", body)
	}
	if diff := cmp.Diff([]string{"eyes", "rocket", "-1"}, e.reactions(c.ID)); diff != "" {
		t.Errorf("reactions (-want +got):\n%s", diff)
	}
}

func TestForeignRunsAreIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.gh.AddRun(testRepo, ghapitest.Run{Workflow: "deploy.yml", Title: "deploy az-nixos", Status: "queued", Event: "push"})
	out, err := e.h.HandleEvent(ctx, "workflow_run", e.runEvent("requested", id), nil)
	if err != nil || out.Ignored == "" {
		t.Fatalf("HandleEvent() = %+v, %v; want ignored", out, err)
	}
	if n := e.gh.Calls("PATCH /repos/{owner}/{repo}/issues/comments/{id}"); n != 0 {
		t.Errorf("%d edits for a run the bot did not start", n)
	}
}

// TestRestartDoesNotDispatchTwice: a new handler (a restarted or second
// replica, with an empty delivery cache) gets the same comment again and
// finds the marker in GitHub.
func TestRestartDoesNotDispatchTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	first, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	restarted := e.handler(Options{})
	out, err := restarted.HandleEvent(ctx, "issue_comment", payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.gh.Dispatches(testRepo)); n != 1 {
		t.Fatalf("%d dispatches after a restart, want 1", n)
	}
	if n := len(e.botComments()); n != 1 {
		t.Errorf("%d bot comments, want 1", n)
	}
	if out.RunID != first.RunID || !strings.Contains(out.Ignored, "already answered") {
		t.Errorf("second handling = %+v, want the first run %d and 'already answered'", out, first.RunID)
	}
}

// TestReplicasRace: several handlers get the same comment at once; exactly
// one dispatches and one status comment remains.
func TestReplicasRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	var wg sync.WaitGroup
	for range 8 {
		h := e.handler(Options{})
		wg.Go(func() {
			if _, err := h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := len(e.gh.Dispatches(testRepo)); n != 1 {
		t.Errorf("%d dispatches from 8 racing replicas, want 1", n)
	}
	if n := len(e.botComments()); n != 1 {
		t.Errorf("%d status comments left, want 1", n)
	}
}

func TestCommentsThatDoNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fixture string
		set     map[string]any
		age     time.Duration
		reason  string
	}{
		{"edited", "issue_comment.edited", nil, time.Minute, "comment edited"},
		{"deleted", "issue_comment.deleted", nil, time.Minute, "comment deleted"},
		{"bot author", "issue_comment.created", map[string]any{"comment.user.type": "Bot", "comment.user.login": "renovate[bot]"}, time.Minute, "comment by a bot"},
		{"the bot itself", "issue_comment.created", map[string]any{"comment.user.login": "nixos-cloud-deploy-bot"}, time.Minute, "comment by the bot itself"},
		{"stale", "issue_comment.created", nil, 11 * time.Minute, "stale comment: 11m0s old"},
		{"not a command", "issue_comment.created", map[string]any{"comment.body": "You are totally right! I'll get this fixed right away."}, time.Minute, "not a command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(_ *ghapitest.Server, o *Options) { o.Self = "nixos-cloud-deploy-bot" })
			set := map[string]any{"comment.body": "/deploy az-nixos", "comment.created_at": e.now.Add(-tc.age).Format(time.RFC3339)}
			for k, v := range tc.set {
				set[k] = v
			}
			out, err := e.h.HandleEvent(ctx, "issue_comment", fixture(t, tc.fixture, set), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out.Ignored, tc.reason) {
				t.Errorf("Ignored = %q, want prefix %q", out.Ignored, tc.reason)
			}
			if n := e.gh.Calls("GET /repos/{owner}/{repo}/collaborators/{user}/permission"); n != 0 {
				t.Errorf("%d API calls, want none", n)
			}
		})
	}
}

func TestPermissionRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, perm, body, want string
	}{
		{"reader deploys", "read", "/deploy az-nixos", "`/deploy` needs **write** permission on Codertocat/Hello-World; you have **read**"},
		{"writer destroys", "write", "/destroy az-nixos", "`/destroy` needs **admin** permission on Codertocat/Hello-World; you have **write**"},
		{"reader switches", "read", "/switch az-nixos", "`/switch` needs **write** permission on Codertocat/Hello-World; you have **read**"},
		{"stranger asks for help", "", "/help", "`/help` needs **write** permission"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			if tc.perm != "" {
				e.gh.SetPermission(testRepo, testUser, tc.perm)
			} else {
				e.gh.SetPermission(testRepo, testUser, "none")
			}
			c, payload := e.comment(tc.body, time.Minute)
			for range 2 { // the refusal is posted once, however often the event comes
				if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(e.gh.Dispatches(testRepo)); n != 0 {
				t.Fatalf("%d dispatches, want none", n)
			}
			bc := e.botComments()
			if len(bc) != 1 || !strings.Contains(bc[0].Body, tc.want) {
				t.Fatalf("bot comments = %+v, want one containing %q", bc, tc.want)
			}
			if r := e.reactions(c.ID); len(r) != 0 {
				t.Errorf("reactions %v on a refused command, want none", r)
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *ghapitest.Server, o *Options) { o.AllowedUsers = []string{"octocat"} })
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(e.gh.Dispatches(testRepo)); n != 0 {
		t.Fatalf("%d dispatches by a user outside the allow-list", n)
	}
	if bc := e.botComments(); len(bc) != 1 || !strings.Contains(bc[0].Body, "only these users may use this bot here: octocat") {
		t.Errorf("bot comments = %+v", bc)
	}
}

func TestRepliesAndHelp(t *testing.T) {
	t.Parallel()
	tests := []struct{ body, want string }{
		{"/deploi az-nixos", "did you mean `/deploy`?"},
		{"/deploy az-nixos --size Standard_B1s", "nixos-anywhere's kexec installer needs at least"},
		{"/help", "- `/destroy <vm>`"},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			_, payload := e.comment(tc.body, time.Minute)
			if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
				t.Fatal(err)
			}
			bc := e.botComments()
			if len(bc) != 1 || !strings.Contains(bc[0].Body, tc.want) {
				t.Fatalf("bot comments = %+v, want one containing %q", bc, tc.want)
			}
			if n := len(e.gh.Dispatches(testRepo)); n != 0 {
				t.Errorf("%d dispatches for a reply", n)
			}
		})
	}
}

func TestDispatchFailureIsReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.gh.FailNext("POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches", 404)
	c, payload := e.comment("/deploy az-nixos", time.Minute)
	if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err == nil {
		t.Fatal("HandleEvent() succeeded, want the dispatch error")
	}
	bc := e.botComments()
	if len(bc) != 1 || !strings.Contains(bc[0].Body, "could not start") || !strings.Contains(bc[0].Body, "may the token run workflows") {
		t.Fatalf("bot comments = %+v", bc)
	}
	if diff := cmp.Diff([]string{"eyes", "-1"}, e.reactions(c.ID)); diff != "" {
		t.Errorf("reactions (-want +got):\n%s", diff)
	}
}

func TestStatusCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, payload := e.comment("/deploy az-nixos --location westeurope", time.Minute)
	out, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.gh.SetRun(testRepo, out.RunID, "in_progress", "", e.now)
	e.gh.SetRun(testRepo, out.RunID, "completed", "success", e.now.Add(9*time.Minute))
	// Someone else's deploy of another VM, not started by the bot.
	e.gh.AddRun(testRepo, ghapitest.Run{Workflow: "deploy.yml", Title: "deploy web-1 [i9-c9]", Status: "in_progress", Event: "workflow_dispatch"})

	_, payload = e.comment("/status az-nixos", 0)
	if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
		t.Fatal(err)
	}
	bc := e.botComments()
	got := bc[len(bc)-1].Body
	for _, want := range []string{"Latest run for `az-nixos`", "`deploy` by @Codertocat: **succeeded in 9m0s**", "`ssh nixos@az-nixos.<hash>.westeurope.cloudapp.azure.com`"} {
		if !strings.Contains(got, want) {
			t.Errorf("/status reply lacks %q:\n%s", want, got)
		}
	}
	_, payload = e.comment("/status", 0)
	if _, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil); err != nil {
		t.Fatal(err)
	}
	bc = e.botComments()
	got = bc[len(bc)-1].Body
	for _, want := range []string{"| `web-1` |", "| in progress |", "| `az-nixos` |", "succeeded in 9m0s"} {
		if !strings.Contains(got, want) {
			t.Errorf("/status reply lacks %q:\n%s", want, got)
		}
	}
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	base := status{Comment: 123, Run: 456, VM: "az-nixos", Command: "deploy", Location: "uksouth", Size: "Standard_B4ms",
		Image: "Canonical:ubuntu-24_04-lts:server:latest", Channel: "nixos-26.05", User: "octocat",
		RunURL: "https://github.com/o/r/actions/runs/456", RunNumber: 17}
	with := func(f func(*status)) status { s := base; f(&s); return s }
	tests := map[string]status{
		"dispatching": with(func(s *status) { s.State, s.Run, s.RunURL, s.RunNumber = stateDispatching, 0, "", 0 }),
		"queued":      with(func(s *status) { s.State = stateQueued }),
		"in_progress": with(func(s *status) { s.State, s.Job, s.Step = stateInProgress, "deploy", "Install NixOS" }),
		"succeeded":   with(func(s *status) { s.State, s.Duration = stateSucceeded, 12*time.Minute+5*time.Second }),
		"succeeded_with_notices": with(func(s *status) {
			s.State, s.Duration = stateSucceeded, 12*time.Minute+5*time.Second
			s.HostKey, s.FQDN = "az-nixos.uksouth.cloudapp.azure.com,20.0.0.4 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "az-nixos.uksouth.cloudapp.azure.com"
		}),
		"failed":    with(func(s *status) { s.State, s.Detail, s.Duration = stateFailed, "failure", 3*time.Minute }),
		"cancelled": with(func(s *status) { s.State, s.Detail, s.Duration = stateCancelled, "cancelled", time.Minute }),
		"dispatch_failed": with(func(s *status) {
			s.State, s.Detail, s.Run, s.RunURL = stateDispatchFailed, "failed to dispatch: 404", 0, ""
		}),
		"plan_succeeded": with(func(s *status) { s.Command, s.State, s.Duration = "plan", stateSucceeded, 40*time.Second }),
		"destroy_succeeded": with(func(s *status) {
			s.Command, s.State, s.Duration = "destroy", stateSucceeded, 2*time.Minute
		}),
		"switch_succeeded": with(func(s *status) {
			s.Command, s.Ref, s.State, s.Duration = "switch", "main", stateSucceeded, 3*time.Minute
			s.Switched = "generation 42 (was 41) runs 0123456789ab; 2 upgraded, 1 added"
		}),
		"switch_dry_run_in_progress": with(func(s *status) {
			s.Command, s.DryRun, s.State, s.Job, s.Step = "switch", true, stateInProgress, "deploy", "nixos-cloud-deploy switch az-nixos"
		}),
	}
	for name, st := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body := st.render()
			checkGolden(t, "status_"+name, body)
			back, ok := parseMarker(body)
			want := st
			want.RunURL, want.RunNumber, want.Job, want.Step, want.Duration, want.Detail = "", 0, "", "", 0, ""
			want.HostKey, want.FQDN, want.Switched = "", "", ""
			if diff := cmp.Diff(want, back, cmp.AllowUnexported(status{})); !ok || diff != "" {
				t.Errorf("marker round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunNameRoundTrip(t *testing.T) {
	t.Parallel()
	title := "deploy az-nixos [" + correlationID(42, 1234567890123) + "]"
	vm, issue, comment, ok := parseRunName(title)
	if !ok || vm != "az-nixos" || issue != 42 || comment != 1234567890123 {
		t.Fatalf("parseRunName(%q) = %q, %d, %d, %v", title, vm, issue, comment, ok)
	}
	for _, bad := range []string{"", "deploy", "CI", "deploy az-nixos [i0-c1]", "deploy az-nixos [x]", "build az-nixos [i1-c2]"} {
		if _, _, _, ok := parseRunName(bad); ok {
			t.Errorf("parseRunName(%q) accepted", bad)
		}
	}
}
