package bot

import (
	"regexp"
	"strings"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi"
	"golang.org/x/crypto/ssh"
)

// Titles of the notice annotations the action writes (internal/cli).
const (
	NoticeHostKey = "ssh-host-key"
	NoticeFQDN    = "fqdn"
	NoticeSwitch  = "switch"
)

// maxNoticesPerStep is the runner's cap: a step's 11th notice is dropped
// from the annotations (actions/runner src/Runner.Worker/ExecutionContext.cs,
// _maxCountPerIssueType = 10).
const maxNoticesPerStep = 10

// hostFacts picks the action's own ssh-host-key and fqdn notices out of a
// run's annotations, or "" for what cannot be told apart from a forgery.
//
// Any line the job prints that reads "::notice title=ssh-host-key::..." is a
// notice annotation, and nothing in an annotation says which step or which
// program wrote it. The action prints what comes from the VM inside
// ::stop-commands::<random token> (issue 16), and its own notices after
// that block ends, once per title. So its notices are recognised by what a
// forger cannot arrange:
//
//   - exactly one notice with the title in the whole run: a forged line next
//     to the action's own makes two, and then neither is believed;
//   - fewer notices in every job than the runner keeps per step: with ten,
//     the action's own could have been pushed out by forged ones;
//   - the message is what the action writes: one known_hosts line (no
//     marker such as @cert-authority), one DNS name.
//
// Workflow mode does not need this: chatops-deploy.yml hands the deploy
// job's outputs to `bot report`, and outputs are not log lines.
func hostFacts(anns []ghapi.Annotation) (hostKey, fqdn string) {
	f := noticeFacts(anns)
	return f.HostKey, f.FQDN
}

// noticeFacts is hostFacts with a switch's outcome (the "switch" notice:
// generation, revision and the closure diff's counts, plain words and
// numbers).
func noticeFacts(anns []ghapi.Annotation) HostFacts {
	var f HostFacts
	perJob := map[string]int{}
	byTitle := map[string][]string{}
	for _, a := range anns {
		if a.Level != "notice" {
			continue
		}
		perJob[a.Job]++
		byTitle[a.Title] = append(byTitle[a.Title], a.Message)
	}
	for _, n := range perJob {
		if n >= maxNoticesPerStep {
			return f
		}
	}
	if m := byTitle[NoticeHostKey]; len(m) == 1 && validKnownHostsLine(m[0]) {
		f.HostKey = m[0]
	}
	if m := byTitle[NoticeFQDN]; len(m) == 1 && validFQDN(m[0]) {
		f.FQDN = m[0]
	}
	if m := byTitle[NoticeSwitch]; len(m) == 1 && switchNoticeRE.MatchString(m[0]) {
		f.Switched = m[0]
	}
	return f
}

// switchNoticeRE is what the action's switch notice is made of
// (internal/deploy SwitchReport.Notice): nothing that renders as Markdown
// or HTML, or mentions anyone.
var switchNoticeRE = regexp.MustCompile(`^[A-Za-z0-9 .,;:()+/%-]{1,512}$`)

// validKnownHostsLine accepts one known_hosts line, hosts and a key, as the
// action's ssh-host-key output is: no marker, no comment, nothing after.
func validKnownHostsLine(s string) bool {
	if s == "" || strings.ContainsAny(s, "\r\n`|") {
		return false
	}
	marker, hosts, _, comment, rest, err := ssh.ParseKnownHosts([]byte(s))
	if err != nil || marker != "" || len(hosts) == 0 || comment != "" || len(rest) != 0 {
		return false
	}
	for _, h := range hosts {
		if !validHost(h) {
			return false
		}
	}
	return true
}

var (
	fqdnRE = regexp.MustCompile(`^(?i:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.(?i:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?))+$`)
	hostRE = regexp.MustCompile(`^(?:\[[0-9A-Za-z.:-]+\]:[0-9]{1,5}|[0-9A-Za-z.:-]+)$`)
)

func validFQDN(s string) bool { return len(s) <= 253 && fqdnRE.MatchString(s) }

// validHost is a known_hosts host pattern the action writes: a name, an
// address, or [address]:port.
func validHost(s string) bool { return len(s) <= 260 && hostRE.MatchString(s) }
