package bot

import (
	"strings"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
)

const forgedKey = "az-nixos.uksouth.cloudapp.azure.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFORGEDFORGEDFORGEDFORGEDFORGEDFORGEDFORGED"

func notice(title, msg string) ghapi.Annotation {
	return ghapi.Annotation{Job: "deploy", Level: "notice", Title: title, Message: msg}
}

func TestHostFactsBelievesOnlyTheActionsOwnNotice(t *testing.T) {
	t.Parallel()
	const fqdn = "az-nixos.uksouth.cloudapp.azure.com"
	own := []ghapi.Annotation{notice(NoticeHostKey, testHostKey), notice(NoticeFQDN, fqdn)}
	many := func(n int) []ghapi.Annotation {
		var out []ghapi.Annotation
		for range n {
			out = append(out, notice("phase", "done"))
		}
		return out
	}
	tests := []struct {
		name             string
		anns             []ghapi.Annotation
		wantKey, wantFQD string
	}{
		{"the action's own", own, testHostKey, fqdn},
		// A VM printing "::notice title=ssh-host-key::..." before the
		// action's own: two, so neither is believed (not "the last one").
		{"forged next to the real one", append([]ghapi.Annotation{notice(NoticeHostKey, forgedKey)}, own...), "", fqdn},
		{"forged after the real one", append(append([]ghapi.Annotation{}, own...), notice(NoticeHostKey, forgedKey)), "", fqdn},
		// Ten forged notices push the action's own out (the runner keeps
		// ten per step): nothing is believed.
		{"the runner's cap reached", append(many(9), notice(NoticeHostKey, forgedKey)), "", ""},
		{"not a known_hosts line", []ghapi.Annotation{notice(NoticeHostKey, "see `rm -rf` | and more")}, "", ""},
		{"a marker line", []ghapi.Annotation{notice(NoticeHostKey, "@cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")}, "", ""},
		{"two lines", []ghapi.Annotation{notice(NoticeHostKey, testHostKey+"\n"+forgedKey)}, "", ""},
		{"a warning is not a notice", []ghapi.Annotation{{Job: "deploy", Level: "warning", Title: NoticeHostKey, Message: testHostKey}}, "", ""},
		{"fqdn with markdown", []ghapi.Annotation{notice(NoticeFQDN, "[x](https://evil.example)")}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, f := hostFacts(tc.anns)
			if key != tc.wantKey || f != tc.wantFQD {
				t.Errorf("hostFacts() = %q, %q; want %q, %q", key, f, tc.wantKey, tc.wantFQD)
			}
		})
	}
}

// TestForgedHostKeyNoticeIsNotShown: App mode reads the notices through
// the API; a forged one next to the action's own never reaches the comment.
func TestForgedHostKeyNoticeIsNotShown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, payload := e.comment("/deploy az-nixos", time.Minute)
	out, err := e.h.HandleEvent(ctx, "issue_comment", payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.gh.SetRun(testRepo, out.RunID, "in_progress", "", e.now)
	e.gh.SetRun(testRepo, out.RunID, "completed", "success", e.now.Add(5*time.Minute))
	e.gh.SetAnnotations(testRepo, out.RunID,
		ghapitest.Annotation{Level: "notice", Title: NoticeHostKey, Message: forgedKey}, // printed by the VM
		ghapitest.Annotation{Level: "notice", Title: NoticeHostKey, Message: testHostKey},
		ghapitest.Annotation{Level: "notice", Title: NoticeFQDN, Message: "az-nixos.uksouth.cloudapp.azure.com"})
	if _, err := e.h.HandleEvent(ctx, "workflow_run", e.runEvent("completed", out.RunID), nil); err != nil {
		t.Fatal(err)
	}
	body := e.botComments()[0].Body
	if strings.Contains(body, "FORGED") || strings.Contains(body, "| Host key | `") {
		t.Errorf("the status comment shows a host key from ambiguous notices:\n%s", body)
	}
	if !strings.Contains(body, "the `ssh-host-key` output in the summary") {
		t.Errorf("the status comment does not point to the run's outputs:\n%s", body)
	}
}

func TestReportRefusesOutputsThatAreNotWhatTheActionWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, r := range []Report{
		{Result: "succeeded"},
		{Result: "success", Facts: HostFacts{HostKey: "ssh-ed25519 AAAA | evil"}},
		{Result: "success", Facts: HostFacts{FQDN: "a b"}},
	} {
		r.Repo, r.RunID = ghapi.Repo{Owner: "Codertocat", Name: "Hello-World"}, 1
		if _, err := e.h.Report(ctx, r, nil); err == nil {
			t.Errorf("Report(%+v) accepted", r)
		}
	}
	if n := e.gh.TotalCalls(); n != 0 {
		t.Errorf("%d API calls for refused reports", n)
	}
}

func TestSwitchNoticeBelievedOnlyAlone(t *testing.T) {
	t.Parallel()
	const own = "generation 42 (was 41) runs 0123456789ab; 2 upgraded, 1 added; 12 paths (34.0 MiB) to copy or fetch"
	tests := []struct {
		name string
		anns []ghapi.Annotation
		want string
	}{
		{"the action's own", []ghapi.Annotation{notice(NoticeSwitch, own)}, own},
		{"a forged second one", []ghapi.Annotation{notice(NoticeSwitch, "generation 99 runs evil"), notice(NoticeSwitch, own)}, ""},
		{"markdown and a mention", []ghapi.Annotation{notice(NoticeSwitch, "done, see [this](https://evil.example) @org/team")}, ""},
	}
	for _, tc := range tests {
		if got := noticeFacts(tc.anns).Switched; got != tc.want {
			t.Errorf("%s: Switched = %q, want %q", tc.name, got, tc.want)
		}
	}
}
