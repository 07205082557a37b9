package repotest

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
)

// scalar is any YAML scalar as its text (false, 64 and "64" are all text to
// GitHub's inputs and with: values).
type scalar string

func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a scalar, got a %v", n.Line, n.Kind)
	}
	*s = scalar(n.Value)
	return nil
}

type workflow struct {
	Name        string            `yaml:"name"`
	RunName     string            `yaml:"run-name"`
	On          triggers          `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Concurrency struct {
		Group            string  `yaml:"group"`
		CancelInProgress *scalar `yaml:"cancel-in-progress"`
	} `yaml:"concurrency"`
	Jobs map[string]job `yaml:"jobs"`
}

type triggers struct {
	WorkflowDispatch *struct {
		Inputs map[string]workflowInput `yaml:"inputs"`
	} `yaml:"workflow_dispatch"`
	WorkflowCall *struct {
		Inputs  map[string]workflowInput `yaml:"inputs"`
		Secrets map[string]struct {
			Required bool `yaml:"required"`
		} `yaml:"secrets"`
		Outputs map[string]struct {
			Value string `yaml:"value"`
		} `yaml:"outputs"`
	} `yaml:"workflow_call"`
	IssueComment *struct {
		Types []string `yaml:"types"`
	} `yaml:"issue_comment"`
	Push *struct {
		Tags []string `yaml:"tags"`
	} `yaml:"push"`
}

type workflowInput struct {
	Required bool     `yaml:"required"`
	Type     string   `yaml:"type"`
	Default  *scalar  `yaml:"default"`
	Options  []string `yaml:"options"`
}

type job struct {
	If          string            `yaml:"if"`
	Permissions map[string]string `yaml:"permissions"`
	Outputs     map[string]string `yaml:"outputs"`
	Steps       []step            `yaml:"steps"`
}

type step struct {
	ID   string            `yaml:"id"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]scalar `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

func parseWorkflow(src string) (workflow, error) {
	var w workflow
	err := yaml.Unmarshal([]byte(src), &w)
	return w, err
}

// steps returns every step of every job, jobs in name order.
func (w workflow) steps() []step {
	var names []string
	for n := range w.Jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []step
	for _, n := range names {
		out = append(out, w.Jobs[n].Steps...)
	}
	return out
}

func workflowFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no workflows under .github/workflows: %v", err)
	}
	for i, f := range files {
		files[i], _ = filepath.Rel(root, f)
	}
	return files
}

// ---- deploy.yml: the action's inputs, secrets from secrets only ------------

// actionStepRE matches the step that runs this action: the released action
// (deploy.yml is also a reusable workflow, where ./ would be the caller's
// checkout) or the local one.
var actionStepRE = regexp.MustCompile(`^(?:nixos-cloud-deploy/nixos-cloud-deploy@\S+|\./?)$`)

// fromRepoSettings are inputs deploy.yml takes from the repository's
// secrets or variables, not from its own inputs: the Azure identity is set
// up once per repository.
var fromRepoSettings = map[string]string{
	"azure-client-id":       "AZURE_CLIENT_ID",
	"azure-tenant-id":       "AZURE_TENANT_ID",
	"azure-subscription-id": "AZURE_SUBSCRIPTION_ID",
}

// fromRepoVariables are inputs deploy.yml takes from the repository's
// variables only, never from an input: the cloud's endpoints decide where the
// Azure credential is sent, so whoever may dispatch the workflow must not
// choose them (issue 16).
var fromRepoVariables = map[string]string{
	"azure-environment":   "AZURE_ENVIRONMENT",
	"arm-endpoint":        "ARM_ENDPOINT",
	"azure-oidc-audience": "AZURE_OIDC_AUDIENCE",
}

// callOnly are inputs only a caller of the reusable workflow passes:
// GitHub accepts at most 25 workflow_dispatch inputs (changelog
// 2025-12-04; 10 before, and on GHES releases that predate it), so a manual
// run or the bot reads these from repository variables instead
// (inputs.X || vars.NAME), or leaves them to the action's default.
var callOnly = map[string]string{
	"build-on":        "BUILD_ON",
	"confirm-timeout": "CONFIRM_TIMEOUT",
}

// maxDispatchInputs is GitHub's limit on workflow_dispatch inputs.
const maxDispatchInputs = 25

var secretRefRE = regexp.MustCompile(`^\$\{\{\s*secrets\.([A-Za-z0-9_]+)\s*\}\}$`)

func deployWorkflowProblems(src string, defs []config.Input, outs []config.Output) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	// The bot finds its run by the correlation id in the run name.
	for _, ref := range []string{"inputs.vm-name", "inputs.correlation-id"} {
		if !strings.Contains(w.RunName, ref) {
			add("run-name %q does not show %s", w.RunName, ref)
		}
	}
	// Two deploys of one VM queue instead of racing.
	if !strings.Contains(w.Concurrency.Group, "inputs.vm-name") {
		add("concurrency.group %q is not per VM (inputs.vm-name)", w.Concurrency.Group)
	}
	if w.Concurrency.CancelInProgress == nil || *w.Concurrency.CancelInProgress != "false" {
		add("concurrency.cancel-in-progress must be false: a running install must never be cancelled by the next request")
	}
	if d := cmp.Diff(map[string]string{"id-token": "write", "contents": "read"}, w.Permissions); d != "" {
		add("permissions (-want +got):\n%s", d)
	}

	// The inputs of both triggers: the action's, without the secret ones
	// and the Azure identity (repository settings, and GitHub allows only
	// 25 workflow_dispatch inputs), with the same defaults, plus
	// correlation-id.
	type in struct{ Default string }
	want := map[string]in{"correlation-id": {}}
	for _, d := range defs {
		if !d.Secret && fromRepoSettings[d.Name] == "" && fromRepoVariables[d.Name] == "" {
			want[d.Name] = in{d.Default}
		}
	}
	check := func(trigger string, inputs map[string]workflowInput, types []string) {
		want := want
		if trigger == "workflow_dispatch" {
			want = maps.Clone(want)
			for name := range callOnly {
				delete(want, name)
			}
			if len(inputs) > maxDispatchInputs {
				add("workflow_dispatch has %d inputs; GitHub refuses more than %d (move rarely set ones to callOnly)", len(inputs), maxDispatchInputs)
			}
		}
		got := map[string]in{}
		for name, i := range inputs {
			def := ""
			if i.Default != nil {
				def = string(*i.Default)
			}
			got[name] = in{def}
			if i.Required {
				add("%s input %q is required; every input has a default or is optional, as in action.yml", trigger, name)
			}
			if !slices.Contains(types, i.Type) {
				add("%s input %q has type %q, want one of %v", trigger, name, i.Type, types)
			}
			if i.Type == "choice" && !slices.Contains(i.Options, def) {
				add("%s input %q: default %q is not among options %v", trigger, name, def, i.Options)
			}
			if i.Type == "boolean" && def != "true" && def != "false" {
				add("%s input %q: boolean default %q", trigger, name, def)
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			add("%s inputs differ from config.Definitions minus secrets plus correlation-id (-want +got):\n%s", trigger, d)
		}
	}
	if w.On.WorkflowDispatch == nil {
		add("no workflow_dispatch trigger")
	} else {
		check("workflow_dispatch", w.On.WorkflowDispatch.Inputs, []string{"string", "choice", "boolean"})
	}
	if w.On.WorkflowCall == nil {
		add("no workflow_call trigger")
		return problems
	}
	check("workflow_call", w.On.WorkflowCall.Inputs, []string{"string", "boolean"})

	// The step that runs the action gets every input.
	var (
		act    *step
		jobID  string
		job    job
		nSteps int
	)
	for id, j := range w.Jobs {
		for i := range j.Steps {
			if actionStepRE.MatchString(j.Steps[i].Uses) {
				act, jobID, job = &j.Steps[i], id, j
				nSteps++
			}
		}
	}
	if nSteps != 1 {
		add("%d steps run the action, want 1", nSteps)
		return problems
	}
	gotWith := map[string]bool{}
	for name := range act.With {
		gotWith[name] = true
	}
	wantWith := map[string]bool{}
	for _, d := range defs {
		wantWith[d.Name] = true
		v := string(act.With[d.Name])
		switch {
		case d.Secret:
			m := secretRefRE.FindStringSubmatch(v)
			if m == nil {
				add("with.%s = %q: a secret input must be exactly ${{ secrets.NAME }}", d.Name, v)
				break
			}
			if _, ok := w.On.WorkflowCall.Secrets[m[1]]; !ok {
				add("with.%s uses secrets.%s, which workflow_call.secrets does not declare", d.Name, m[1])
			}
		case fromRepoVariables[d.Name] != "":
			if want := "${{ vars." + fromRepoVariables[d.Name] + " }}"; v != want {
				add("with.%s = %q: want exactly %q, a repository variable (an input would let whoever dispatches choose where the Azure token goes)", d.Name, v, want)
			}
		case fromRepoSettings[d.Name] != "":
			if !strings.Contains(v, "secrets."+fromRepoSettings[d.Name]) || !strings.Contains(v, "vars."+fromRepoSettings[d.Name]) {
				add("with.%s = %q: want the repository's secrets.%[3]s or vars.%[3]s", d.Name, v, fromRepoSettings[d.Name])
			}
		case !strings.Contains(v, "inputs."+d.Name):
			add("with.%s = %q does not pass inputs.%s", d.Name, v, d.Name)
		case callOnly[d.Name] != "" && !strings.Contains(v, "vars."+callOnly[d.Name]):
			add("with.%s = %q: a manual run has no such input; want inputs.%s || vars.%s", d.Name, v, d.Name, callOnly[d.Name])
		}
	}
	if d := cmp.Diff(wantWith, gotWith); d != "" {
		add("the action step's with: keys differ from config.Definitions (-want +got):\n%s", d)
	}
	for s := range w.On.WorkflowCall.Secrets {
		if strings.HasPrefix(strings.ToUpper(s), "GITHUB_") {
			add("secret %s: GitHub refuses secret names that start with GITHUB_", s)
		}
	}

	// Outputs: the action's, through the job, to the caller.
	wantOut, gotOut, gotJobOut := map[string]string{}, map[string]string{}, map[string]string{}
	for _, o := range outs {
		wantOut[o.Name] = fmt.Sprintf("${{ jobs.%s.outputs.%s }}", jobID, o.Name)
		gotJobOut[o.Name] = job.Outputs[o.Name]
	}
	for name, o := range w.On.WorkflowCall.Outputs {
		gotOut[name] = o.Value
	}
	if d := cmp.Diff(wantOut, gotOut); d != "" {
		add("workflow_call outputs differ from config.Outputs (-want +got):\n%s", d)
	}
	for name, v := range gotJobOut {
		if want := fmt.Sprintf("${{ steps.%s.outputs.%s }}", act.ID, name); v != want {
			add("jobs.%s.outputs.%s = %q, want %q", jobID, name, v, want)
		}
	}
	return problems
}

func TestDeployWorkflowMatchesAction(t *testing.T) {
	t.Parallel()
	reportProblems(t, "deploy.yml", deployWorkflowProblems(readRepoFile(t, ".github/workflows/deploy.yml"), config.Definitions(), config.Outputs()))
}

func TestDeployWorkflowChecksCanFail(t *testing.T) {
	t.Parallel()
	src := readRepoFile(t, ".github/workflows/deploy.yml")
	defs, outs := config.Definitions(), config.Outputs()
	if p := deployWorkflowProblems(src, defs, outs); len(p) != 0 {
		t.Fatalf("the real deploy.yml: %q", p)
	}
	withExtra := append(slices.Clone(defs), config.Input{Name: "new-input", Default: "x"})
	withoutLocation := slices.DeleteFunc(slices.Clone(defs), func(d config.Input) bool { return d.Name == "location" })
	changedDefault := slices.Clone(defs)
	for i := range changedDefault {
		if changedDefault[i].Name == "size" {
			changedDefault[i].Default = "Standard_D2s_v5"
		}
	}
	extraOutput := append(slices.Clone(outs), config.Output{Name: "new-output"})
	tests := []struct {
		name string
		src  string
		defs []config.Input
		outs []config.Output
		want string
	}{
		{"action gained an input", src, withExtra, outs, `"new-input"`},
		{"action lost an input", src, withoutLocation, outs, `"location"`},
		{"action default changed", src, changedDefault, outs, "Standard_D2s_v5"},
		{"action gained an output", src, defs, extraOutput, "new-output"},
		{"secret from an input", mustReplace(t, src, "${{ secrets.AZURE_CLIENT_SECRET }}", "${{ inputs.azure-client-secret }}"), defs, outs, "exactly ${{ secrets.NAME }}"},
		{"cancel in progress", mustReplace(t, src, "cancel-in-progress: false", "cancel-in-progress: true"), defs, outs, "cancel-in-progress"},
		{"one group for all VMs", mustReplace(t, src, "group: deploy-${{ inputs.vm-name }}", "group: deploy"), defs, outs, "not per VM"},
		{"no correlation id", mustReplace(t, src, "run-name: deploy ${{ inputs.vm-name }} [${{ inputs.correlation-id }}]", "run-name: deploy ${{ inputs.vm-name }}"), defs, outs, "inputs.correlation-id"},
		{"no OIDC", mustReplace(t, src, "  id-token: write\n", ""), defs, outs, "permissions"},
		{"arm-endpoint from an input", mustReplace(t, src, "arm-endpoint: ${{ vars.ARM_ENDPOINT }}", "arm-endpoint: ${{ inputs.arm-endpoint || vars.ARM_ENDPOINT }}"), defs, outs, "with.arm-endpoint"},
		{"azure-environment as a dispatch input", mustReplace(t, src, "  workflow_dispatch:\n    inputs:\n", "  workflow_dispatch:\n    inputs:\n      azure-environment:\n        type: string\n        required: false\n"), defs, outs, "azure-environment"},
		{"call-only input without its variable", mustReplace(t, src, "${{ inputs.build-on || vars.BUILD_ON }}", "${{ inputs.build-on }}"), defs, outs, "vars.BUILD_ON"},
		{"too many dispatch inputs", strings.Replace(src, "      correlation-id:", "      build-on:\n        type: string\n        default: local\n      confirm-timeout:\n        type: string\n        default: 60s\n      correlation-id:", 1), defs, outs, "GitHub refuses more than 25"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expectProblems(t, deployWorkflowProblems(tc.src, tc.defs, tc.outs), tc.want)
		})
	}
}

// ---- every workflow: pinned actions, no expressions in run: ---------------

var (
	usesLineRE = regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*(\S+)\s*(?:#\s*(.*))?$`)
	shaRefRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@([0-9a-f]{40})$`)
	versionRE  = regexp.MustCompile(`^v[0-9]+(\.[0-9]+){0,2}$`)
	// This project's own action by its major tag: the release moves the tag
	// to a commit whose action.yml pins the image by digest.
	ownActionRE = regexp.MustCompile(`^nixos-cloud-deploy/nixos-cloud-deploy@v[0-9]+$`)
)

// pinProblems: every third-party action is pinned by a full commit SHA with
// its version in a comment; shas maps action to the SHA seen, so one action
// is pinned to one commit across all workflows.
func pinProblems(file, src string, shas map[string]string) []string {
	var problems []string
	for i, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		m := usesLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ref, comment := m[1], strings.TrimSpace(m[2])
		where := fmt.Sprintf("%s:%d: %s", file, i+1, ref)
		switch {
		case strings.HasPrefix(ref, "./"):
		case strings.HasPrefix(ref, "docker://"):
			if !digestRE.MatchString(ref) {
				problems = append(problems, where+": a docker:// image must be pinned by @sha256 digest")
			}
		case ownActionRE.MatchString(ref):
		default:
			sm := shaRefRE.FindStringSubmatch(ref)
			if sm == nil {
				problems = append(problems, where+": pin by full commit SHA (owner/repo@<40 hex> # vX.Y.Z), tags move")
				continue
			}
			if !versionRE.MatchString(comment) {
				problems = append(problems, fmt.Sprintf("%s: the comment %q must name the version the SHA is (# vX.Y.Z)", where, comment))
			}
			action, _, _ := strings.Cut(ref, "@")
			if prev, ok := shas[action]; ok && prev != sm[1] {
				problems = append(problems, fmt.Sprintf("%s: pinned to %s here and %s elsewhere; use one", where, sm[1], prev))
			}
			shas[action] = sm[1]
		}
	}
	return problems
}

// runProblems: no ${{ }} inside a run: script. An expression is pasted into
// the script before the shell parses it, so a value an attacker controls (a
// comment body, a branch name) or a secret would become shell code or land in
// the log; values reach scripts through env: instead.
func runProblems(file, src string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", file, err)}
	}
	var problems []string
	for _, s := range w.steps() {
		if strings.Contains(s.Run, "${{") {
			problems = append(problems, fmt.Sprintf("%s: run: %q has a ${{ }} expression; pass the value through env:", file, abbreviate(s.Run)))
		}
	}
	return problems
}

func TestWorkflowsPinActionsAndKeepExpressionsOutOfRun(t *testing.T) {
	t.Parallel()
	shas := map[string]string{}
	for _, f := range workflowFiles(t) {
		src := readRepoFile(t, f)
		reportProblems(t, f, pinProblems(f, src, shas))
		reportProblems(t, f, runProblems(f, src))
	}
	for _, a := range []string{"actions/checkout", "actions/setup-go", "docker/login-action", "docker/build-push-action", "docker/setup-buildx-action"} {
		if _, ok := shas[a]; !ok {
			t.Errorf("no workflow uses %s; the release and CI need it", a)
		}
	}
}

func TestWorkflowChecksCanFail(t *testing.T) {
	t.Parallel()
	sha := strings.Repeat("a", 40)
	tests := []struct {
		name, src, want string
		check           func(file, src string) []string
	}{
		{"tag", "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v7\n", "pin by full commit SHA", nil},
		{"branch", "jobs:\n  a:\n    steps:\n      - uses: docker/login-action@main\n", "pin by full commit SHA", nil},
		{"no version comment", "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@" + sha + "\n", "must name the version", nil},
		{"two SHAs", "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@" + sha + " # v7.0.1\n      - uses: actions/checkout@" + strings.Repeat("b", 40) + " # v7.0.0\n", "use one", nil},
		{"docker by tag", "jobs:\n  a:\n    steps:\n      - uses: docker://alpine:3\n", "pinned by @sha256", nil},
		{"secret in run", "jobs:\n  a:\n    steps:\n      - run: echo ${{ secrets.X }}\n", "pass the value through env", runProblems},
		{"comment body in run", "jobs:\n  a:\n    steps:\n      - run: |\n          echo \"${{ github.event.comment.body }}\"\n", "pass the value through env", runProblems},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check := tc.check
			if check == nil {
				check = func(file, src string) []string { return pinProblems(file, src, map[string]string{}) }
			}
			expectProblems(t, check("test.yml", tc.src), tc.want)
		})
	}
}

// ---- ci.yml, chatops.yml, release.yml: the parts others rely on -----------

func ciProblems(src string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	var plan, makeTest, deps bool
	for _, s := range w.steps() {
		if s.Uses == "./" && s.With["command"] == "plan" {
			plan = true
		}
		if strings.TrimSpace(s.Run) == "make test" {
			makeTest = true
		}
		if strings.TrimSpace(s.Run) == "bash scripts/deps.sh" {
			deps = true
		}
		if strings.HasPrefix(s.Uses, "actions/setup-go@") && s.With["go-version-file"] != "go.mod" && !strings.HasPrefix(string(s.With["go-version"]), "1.26") {
			problems = append(problems, "setup-go must take Go from go.mod (go-version-file: go.mod) or 1.26")
		}
	}
	if !plan {
		problems = append(problems, "no step runs the action from ./ with command: plan (actionlint checks action.yml through it)")
	}
	if !makeTest || !deps {
		problems = append(problems, "no steps `bash scripts/deps.sh` and `make test`")
	}
	return problems
}

// chatopsProblems: workflows lists the workflow files; the bot dispatches
// one of them (BOT_WORKFLOW, default deploy.yml).
func chatopsProblems(src string, workflows []string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if w.On.IssueComment == nil || !slices.Equal(w.On.IssueComment.Types, []string{"created"}) {
		problems = append(problems, "on.issue_comment.types must be [created]: edits and deletions are not commands")
	}
	if d := cmp.Diff(map[string]string{"issues": "write", "actions": "write", "contents": "read"}, w.Permissions); d != "" {
		problems = append(problems, fmt.Sprintf("permissions (-want +got):\n%s", d))
	}
	bot := 0
	for name, j := range w.Jobs {
		for _, s := range j.Steps {
			if !strings.Contains(s.Run, "go run ./cmd/bot handle-event") {
				continue
			}
			bot++
			if !strings.Contains(j.If, "startsWith(github.event.comment.body, '/')") {
				problems = append(problems, fmt.Sprintf("job %s: if %q does not limit comments to those starting with /", name, j.If))
			}
			if s.Env["GITHUB_TOKEN"] == "" {
				problems = append(problems, "the bot step has no GITHUB_TOKEN in env")
			}
			wf := s.Env["BOT_WORKFLOW"]
			if wf == "" {
				wf = "deploy.yml"
			}
			if !slices.Contains(workflows, wf) {
				problems = append(problems, fmt.Sprintf("BOT_WORKFLOW %q is not a workflow of .github/workflows %v", wf, workflows))
			}
		}
	}
	if bot != 1 {
		problems = append(problems, fmt.Sprintf("%d steps run `go run ./cmd/bot handle-event`, want 1", bot))
	}
	return problems
}

// releaseImageLineRE is the line of action.yml the release rewrites, or its
// rewritten form on a release commit.
var releaseImageLineRE = regexp.MustCompile(`(?m)^  image: (Dockerfile|docker://ghcr\.io/\S+@sha256:[0-9a-f]{64})$`)

func releaseProblems(src, actionYML string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if w.On.Push == nil || !slices.Contains(w.On.Push.Tags, "v*") {
		problems = append(problems, "on.push.tags must include v*")
	}
	var build, rewrite bool
	for _, s := range w.steps() {
		if strings.HasPrefix(s.Uses, "docker/build-push-action@") && s.With["push"] == "true" {
			build = true
		}
		if strings.Contains(s.Run, "image: Dockerfile") && strings.Contains(s.Run, "docker://") && strings.Contains(s.Run, "git push") {
			rewrite = true
		}
	}
	if !build {
		problems = append(problems, "no docker/build-push-action step with push: true")
	}
	if !rewrite {
		problems = append(problems, "no step rewrites action.yml's `image: Dockerfile` to docker://...@digest and pushes the tags")
	}
	if n := len(releaseImageLineRE.FindAllString(actionYML, -1)); n != 1 {
		problems = append(problems, fmt.Sprintf("action.yml has %d lines `  image: Dockerfile` (or its released docker:// form), want 1: the release rewrites exactly that line", n))
	}
	return problems
}

func TestCIChatopsReleaseWorkflows(t *testing.T) {
	t.Parallel()
	var names []string
	for _, f := range workflowFiles(t) {
		names = append(names, filepath.Base(f))
	}
	reportProblems(t, "ci.yml", ciProblems(readRepoFile(t, ".github/workflows/ci.yml")))
	reportProblems(t, "chatops.yml", chatopsProblems(readRepoFile(t, ".github/workflows/chatops.yml"), names))
	reportProblems(t, "release.yml", releaseProblems(readRepoFile(t, ".github/workflows/release.yml"), readRepoFile(t, "action.yml")))
}

func TestCIChatopsReleaseChecksCanFail(t *testing.T) {
	t.Parallel()
	ci := readRepoFile(t, ".github/workflows/ci.yml")
	chatops := readRepoFile(t, ".github/workflows/chatops.yml")
	release := readRepoFile(t, ".github/workflows/release.yml")
	action := readRepoFile(t, "action.yml")
	names := []string{"chatops.yml", "ci.yml", "deploy.yml", "release.yml"}
	tests := []struct {
		name     string
		problems func(t *testing.T) []string
		want     string
	}{
		{"ci without plan", func(t *testing.T) []string {
			return ciProblems(mustReplace(t, ci, "command: plan", "command: deploy"))
		}, "command: plan"},
		{"chatops on edits", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "types: [created]", "types: [created, edited]"), names)
		}, "must be [created]"},
		{"chatops on every comment", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "startsWith(github.event.comment.body, '/')", "true"), names)
		}, "starting with /"},
		{"chatops dispatches a missing workflow", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "BOT_WORKFLOW: deploy.yml", "BOT_WORKFLOW: deploy-vm.yml"), names)
		}, `"deploy-vm.yml"`},
		{"release without rewrite", func(t *testing.T) []string {
			return releaseProblems(strings.ReplaceAll(release, "docker://", "oci://"), action)
		}, "rewrites action.yml"},
		{"action.yml image moved", func(t *testing.T) []string {
			return releaseProblems(release, mustReplace(t, action, "  image: Dockerfile", "  image: ./Dockerfile"))
		}, "want 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expectProblems(t, tc.problems(t), tc.want)
		})
	}
}
