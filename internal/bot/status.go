package bot

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
)

// The bot keeps no state of its own: everything it needs to find again is
// written into its comments as a hidden marker, and the idempotency key is
// the triggering comment's id:
//
//	<!-- nixos-cloud-deploy: comment=123 run=456 vm=az-nixos command=deploy ... state=queued -->
//
// comment, run and vm come first; the other keys let any replica (or the
// same one after a restart) re-render the status comment from a
// workflow_run event alone. Values never contain spaces: they passed the
// action's validation rules (chatops.Parse).
const markerPrefix = "<!-- nixos-cloud-deploy:"

var markerRE = regexp.MustCompile(`<!-- nixos-cloud-deploy:((?: [a-z]+=[^ ]*)*) -->`)

// States of a status comment, in the order they may follow each other.
const (
	stateDispatching    = "dispatching"
	stateQueued         = "queued"
	stateInProgress     = "in_progress"
	stateSucceeded      = "succeeded"
	stateFailed         = "failed"
	stateCancelled      = "cancelled"
	stateDispatchFailed = "dispatch_failed"
)

func stateRank(s string) int {
	switch s {
	case stateDispatching:
		return 0
	case stateQueued:
		return 1
	case stateInProgress:
		return 2
	case "":
		return -1 // a reply, not a status comment
	}
	return 3
}

func terminal(s string) bool { return stateRank(s) == 3 }

// status is what a status comment shows. The first block is kept in the
// marker; the rest is filled from the run when rendering.
type status struct {
	Comment  int64 // the triggering comment: the idempotency key
	Run      int64
	VM       string
	Command  string // deploy, plan, destroy (the workflow's command input)
	Location string
	Size     string
	Image    string
	Channel  string
	User     string
	State    string
	Ref      string // switch: --ref
	DryRun   bool   // switch: --dry-run

	RunURL    string
	RunNumber int
	Job, Step string
	Duration  time.Duration
	Detail    string // conclusion or error
	// HostKey and FQDN come from the run's notice annotations, once it
	// succeeded (not kept in the marker); Switched is a switch's outcome
	// (generation, closure diff summary), once it ended.
	HostKey, FQDN, Switched string
}

var markerKeys = []string{"comment", "run", "vm", "command", "location", "size", "image", "channel", "user", "state", "ref", "dryrun"}

func (s status) marker() string {
	if s.State == "" {
		return fmt.Sprintf("%s comment=%d -->", markerPrefix, s.Comment)
	}
	vals := []string{strconv.FormatInt(s.Comment, 10), strconv.FormatInt(s.Run, 10), s.VM, s.Command, s.Location, s.Size, s.Image, s.Channel, s.User, s.State, s.Ref, strconv.FormatBool(s.DryRun)}
	keys := markerKeys
	if s.Command != "switch" {
		keys = keys[:len(keys)-2] // ref and dryrun are switch's
	}
	var b strings.Builder
	b.WriteString(markerPrefix)
	for i, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, vals[i])
	}
	b.WriteString(" -->")
	return b.String()
}

// parseMarker reads the marker of a comment body written by the bot.
func parseMarker(body string) (status, bool) {
	m := markerRE.FindStringSubmatch(body)
	if m == nil {
		return status{}, false
	}
	var s status
	for _, kv := range strings.Fields(m[1]) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "comment":
			s.Comment, _ = strconv.ParseInt(v, 10, 64)
		case "run":
			s.Run, _ = strconv.ParseInt(v, 10, 64)
		case "vm":
			s.VM = v
		case "command":
			s.Command = v
		case "location":
			s.Location = v
		case "size":
			s.Size = v
		case "image":
			s.Image = v
		case "channel":
			s.Channel = v
		case "user":
			s.User = v
		case "state":
			s.State = v
		case "ref":
			s.Ref = v
		case "dryrun":
			s.DryRun = v == "true"
		}
	}
	return s, s.Comment != 0
}

// correlationID ties a workflow run to the comment that asked for it; it is
// carried in the deploy workflow's run-name
// ("deploy ${{ inputs.vm-name }} [${{ inputs.correlation-id }}]"), which is
// all a workflow_run or workflow_job event needs to find the status comment.
func correlationID(issue int, comment int64) string {
	return fmt.Sprintf("i%d-c%d", issue, comment)
}

var runNameRE = regexp.MustCompile(`^deploy (\S+) \[i([0-9]+)-c([0-9]+)\]$`)

func parseRunName(title string) (vm string, issue int, comment int64, ok bool) {
	m := runNameRE.FindStringSubmatch(title)
	if m == nil {
		return "", 0, 0, false
	}
	issue, err1 := strconv.Atoi(m[2])
	comment, err2 := strconv.ParseInt(m[3], 10, 64)
	return m[1], issue, comment, err1 == nil && err2 == nil && issue > 0 && comment > 0
}

// withRun returns the status updated from the run (and the job being
// reported, if any).
func (s status) withRun(run ghapi.Run, job *jobInfo) status {
	s.Run = run.ID
	s.RunURL, s.RunNumber = run.HTMLURL, run.Number
	s.Job, s.Step = "", ""
	switch {
	case run.Completed():
		s.Detail = run.Conclusion
		switch run.Conclusion {
		case "success":
			s.State = stateSucceeded
		case "cancelled", "skipped":
			s.State = stateCancelled
		default:
			s.State = stateFailed
		}
		if !run.StartedAt.IsZero() && run.UpdatedAt.After(run.StartedAt) {
			s.Duration = run.UpdatedAt.Sub(run.StartedAt).Round(time.Second)
		}
	case run.Status == "in_progress" || (job != nil && job.Status == "in_progress"):
		s.State = stateInProgress
		s.Detail = ""
	default:
		s.State = stateQueued
		s.Detail = run.Status
	}
	if job != nil && s.State == stateInProgress {
		s.Job, s.Step = job.Name, job.Step
	}
	return s
}

var verbs = map[string][2]string{
	"deploy":  {"Deploy", "Deployed"},
	"plan":    {"Plan (dry run) for", "Planned (dry run)"},
	"destroy": {"Destroy", "Destroyed"},
	"switch":  {"Switch", "Switched"},
}

// defaultUser is the action's default user-name: the bot does not pass
// user-name, so this is who can log in.
var defaultUser = func() string {
	for _, in := range config.Definitions() {
		if in.Name == "user-name" {
			return in.Default
		}
	}
	return "nixos"
}()

// render writes the status comment. Where the facts come from: the deploy
// workflow's outputs are not readable through the REST API (step summaries
// are not exposed, and downloading an artifact per comment edit is heavy),
// so the action also publishes the public ones (ssh-host-key, fqdn) as
// notice annotations, which the API does expose; the bot reads them once the
// run succeeded. Without them, the comment shows what the bot knows for
// certain: the run's state, conclusion, duration and link, and the FQDN and
// ssh command computed from the VM name and location exactly as the action
// builds them (DNS label = VM name, scoped to the resource group:
// <vm>.<hash>.<location>.cloudapp.azure.com, the hash Azure's), and
// points to the run's summary for the host key.
func (s status) render() string {
	v, ok := verbs[s.Command]
	if !ok {
		v = [2]string{s.Command, s.Command}
	}
	if s.Command == "switch" && s.DryRun {
		v = [2]string{"Switch (dry run) for", "Dry run of a switch for"}
	}
	// What the name looks like until the run's fqdn notice says what it is:
	// the DNS label is scoped to the resource group, so Azure adds a hash.
	fqdn := fmt.Sprintf("%s.<hash>.%s.cloudapp.azure.com", s.VM, s.Location)
	if s.FQDN != "" {
		fqdn = s.FQDN
	}
	run := "the run"
	switch {
	case s.RunURL != "" && s.RunNumber != 0:
		run = fmt.Sprintf("[run #%d](%s)", s.RunNumber, s.RunURL)
	case s.RunURL != "":
		run = fmt.Sprintf("[the run](%s)", s.RunURL)
	}
	var b strings.Builder
	b.WriteString(s.marker() + "\n")
	switch s.State {
	case stateDispatching:
		fmt.Fprintf(&b, "### ⏳ %s `%s`: starting\n\nDispatching the `deploy` workflow…\n", v[0], s.VM)
	case stateQueued:
		fmt.Fprintf(&b, "### ⏳ %s `%s`: queued\n\nWaiting for a runner (or for an earlier run for this VM): %s.\n", v[0], s.VM, run)
	case stateInProgress:
		fmt.Fprintf(&b, "### 🔄 %s `%s`: in progress\n\n", v[0], s.VM)
		if s.Job != "" {
			fmt.Fprintf(&b, "Job `%s`", s.Job)
			if s.Step != "" {
				fmt.Fprintf(&b, ", step `%s`", s.Step)
			}
			b.WriteString(": ")
		}
		fmt.Fprintf(&b, "%s.\n", run)
	case stateSucceeded:
		fmt.Fprintf(&b, "### ✅ %s `%s`\n\nSucceeded in %s: %s.\n", v[1], s.VM, s.Duration, run)
	case stateFailed:
		fmt.Fprintf(&b, "### ❌ %s `%s`: failed\n\nThe run ended with `%s` after %s: %s. Its log and summary show the failing stage and the VM's serial console.\n", v[0], s.VM, s.Detail, s.Duration, run)
	case stateCancelled:
		fmt.Fprintf(&b, "### ⚪ %s `%s`: cancelled\n\n%s was cancelled after %s.\n", v[0], s.VM, upperFirst(run), s.Duration)
	case stateDispatchFailed:
		fmt.Fprintf(&b, "### ❌ %s `%s`: could not start\n\n%s\n", v[0], s.VM, quote(s.Detail))
	}
	b.WriteString("\n| | |\n|---|---|\n")
	if s.Command == "deploy" {
		if s.State == stateSucceeded {
			fmt.Fprintf(&b, "| FQDN | `%s` |\n| SSH | `ssh %s@%s` |\n", fqdn, defaultUser, fqdn)
			if s.HostKey != "" {
				fmt.Fprintf(&b, "| Host key | `%s` (add it to `~/.ssh/known_hosts` before you connect) |\n", strings.ReplaceAll(s.HostKey, "|", "\\|"))
			} else {
				fmt.Fprintf(&b, "| Host key | the `ssh-host-key` output in the summary of %s: add that line to `~/.ssh/known_hosts` before you connect |\n", run)
			}
		} else if !terminal(s.State) {
			fmt.Fprintf(&b, "| FQDN | `%s` (when ready) |\n", fqdn)
		}
	}
	if s.Command == "switch" {
		ref := "the default branch of config-repo"
		if s.Ref != "" {
			ref = "`" + s.Ref + "`"
		}
		fmt.Fprintf(&b, "| Configuration | %s |\n", ref)
		if s.Switched != "" {
			fmt.Fprintf(&b, "| Result | %s |\n", strings.ReplaceAll(s.Switched, "|", "\\|"))
		}
	} else if s.Command != "destroy" {
		fmt.Fprintf(&b, "| Location, size | `%s`, `%s` |\n| Image | `%s` |\n| Channel | `%s` |\n", s.Location, s.Size, s.Image, s.Channel)
	}
	fmt.Fprintf(&b, "| Asked by | @%s |\n", s.User)
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func quote(s string) string {
	return "> " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n> ")
}

// reply renders a one-off answer to a comment, with the marker that makes
// answering idempotent.
func reply(comment int64, text string) string {
	return status{Comment: comment}.marker() + "\n" + text
}
